//! Entity state: the Rust mirror of streams/state.py (UserState, AccountState), field for field.
//! An empty Vec or map stands for Python's None.

use crate::time::I;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash (rustc's hasher): fast for short string keys; the inputs are not adversarial for
/// memory (state is bounded by expiry) and a replay is one process.
#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Fx {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for Fx {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut c = bytes.chunks_exact(8);
        for w in &mut c {
            self.add(u64::from_le_bytes(w.try_into().unwrap()));
        }
        let r = c.remainder();
        if !r.is_empty() {
            let mut buf = [0u8; 8];
            buf[..r.len()].copy_from_slice(r);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type Map<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// A milestone: before the signup is known, every instant seen; after, the earliest at or after
/// the signup.
#[derive(Clone, Debug)]
pub enum Ms {
    List(Vec<I>),
    At(I),
}

#[derive(Default)]
pub struct User {
    pub ids: Map<Box<str>, I>,
    pub resp: Map<Box<str>, I>,
    pub facts: Vec<(I, u8)>,
    pub answers: Vec<(I, u8, i64, Option<Box<str>>)>,
    pub signup: Option<I>,
    pub ms: Map<Box<str>, Ms>,
    pub days: Map<i64, I>,
    pub last: Option<I>,
    pub lastp: Vec<I>,
    pub features: Map<Box<str>, (Option<I>, Vec<I>)>,
    pub sessions: Map<Box<str>, [Option<I>; 5]>,
    pub tickets: Map<Box<str>, [Option<I>; 2]>,
    pub orders: Map<Box<str>, I>,
    pub returns: Map<Box<str>, I>,
}

impl User {
    pub fn is_empty(&self) -> bool {
        self.signup.is_none()
            && self.ids.is_empty()
            && self.resp.is_empty()
            && self.facts.is_empty()
            && self.answers.is_empty()
            && self.ms.is_empty()
            && self.days.is_empty()
            && self.last.is_none()
            && self.lastp.is_empty()
            && self.features.is_empty()
            && self.sessions.is_empty()
            && self.tickets.is_empty()
            && self.orders.is_empty()
            && self.returns.is_empty()
    }
}

pub struct Account {
    pub first: I,
    pub days: Map<i64, I>,
    pub last: Option<I>,
    pub lastp: Vec<I>,
    pub nps: Option<(I, i64)>,
    pub npsp: Vec<(I, i64)>,
    pub csat: Option<(I, i64)>,
    pub csatp: Vec<(I, i64)>,
    pub sub: Option<(I, i64)>,
    pub subp: Vec<(I, i64)>,
    pub orders: Vec<(I, f64)>,
}

impl Account {
    pub fn new(first: I) -> Self {
        Account {
            first,
            days: Map::default(),
            last: None,
            lastp: Vec::new(),
            nps: None,
            npsp: Vec::new(),
            csat: None,
            csatp: Vec::new(),
            sub: None,
            subp: Vec::new(),
            orders: Vec::new(),
        }
    }
}
