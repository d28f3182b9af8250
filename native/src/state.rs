//! Entity state: the Rust mirror of streams/state.py (UserState, AccountState), field for field.
//! An empty Vec or map stands for Python's None.

use crate::names::Name;
use crate::small_map::SmallMap;
use crate::time::I;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;
use thin_vec::ThinVec;

/// The hasher of maps keyed by producer input: ahash with keys drawn at random once per process
/// (so that a producer cannot choose colliding keys), shared by every map rather than held by
/// each (ahash::RandomState is 32 bytes: a user holds seven maps).
#[derive(Clone, Copy, Default)]
pub struct RandomKeys;

static KEYS: OnceLock<ahash::RandomState> = OnceLock::new();

impl BuildHasher for RandomKeys {
    type Hasher = ahash::AHasher;

    #[inline]
    fn build_hasher(&self) -> ahash::AHasher {
        KEYS.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

// streams/state.py
pub const F_CLICK: u8 = 0;
pub const F_IMPRESSION: u8 = 1;
pub const F_CANCEL: u8 = 2;
pub const F_SOCIAL: u8 = 3;
pub const SV_CSAT: u8 = 0;
pub const SV_NPS: u8 = 1;
pub const SV_CES: u8 = 2;
pub const K_NONE: u8 = 0;
pub const K_NPS: u8 = 1;
pub const K_CSAT: u8 = 2;
pub const K_SUB_START: u8 = 3;
pub const K_SUB_CANCEL: u8 = 4;
pub const K_ORDER: u8 = 5;
// streams/records.py REJECT_REASONS, in order
pub const REASONS: [&str; 5] = ["too_large", "bad_json", "schema", "future", "too_late"];

/// streams.state.UserState.__slots__: the order `convert` builds states in
pub const USER_SLOTS: [&str; 15] = [
    "answers", "days", "facts", "features", "ids", "last", "lastp", "ms", "offs", "orders", "resp",
    "returns", "sessions", "signup", "tickets",
];
/// streams.state.AccountState.__slots__
pub const ACCOUNT_SLOTS: [&str; 12] = [
    "csat", "csatp", "days", "first", "last", "lastp", "nps", "npsp", "offs", "orders", "sub",
    "subp",
];

/// FxHash (rustc's hasher): fast, but predictable: only for maps keyed by small internal
/// integers (`FxMap`), never by producer input (see `Map`).
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

/// Maps keyed by producer input (user, event, response, session, ticket, order and customer ids,
/// feature names, event types...): a hasher with random keys per process (`RandomKeys`), so that a producer
/// cannot choose keys that collide (hash flooding) and turn a live worker's maps quadratic.
pub type Map<K, V> = HashMap<K, V, RandomKeys>;

/// Maps keyed by small internal integers (the day calculator's slots).
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// `push_tight` for a thin list.
#[inline]
pub fn push_tight_thin<T>(v: &mut ThinVec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 2).max(1));
    }
    v.push(x);
}

/// `v.push(x)`, but a full vector grows by half its length (at least one slot) rather than to
/// four slots and then by doubling: an entity's vectors hold a few items each, and their spare
/// slots were a third of a million users' memory. Amortized O(1) still (growth by 1.5x).
#[inline]
pub fn push_tight<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 2).max(1));
    }
    v.push(x);
}

/// A string key held inline when short (ids, names: no allocation), on the heap otherwise.
/// Hashes and compares as its text, so maps of it are looked up with `&str`.
#[derive(Clone)]
pub enum Key {
    Inline(u8, [u8; 22]),
    Heap(Box<str>),
}

impl Key {
    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            // SAFETY: built from a &str's first `n` bytes (`From<&str>`)
            Key::Inline(n, b) => unsafe { std::str::from_utf8_unchecked(&b[..*n as usize]) },
            Key::Heap(s) => s,
        }
    }
}

impl Key {
    /// Equality, without a call to memcmp for short keys (the bytes after an inline key's
    /// length are zeros: `From<&str>`).
    #[inline]
    pub fn same(&self, o: &Key) -> bool {
        match (self, o) {
            (Key::Inline(n, a), Key::Inline(m, b)) => n == m && a == b,
            _ => self.as_str() == o.as_str(),
        }
    }
}

impl From<&str> for Key {
    #[inline]
    fn from(s: &str) -> Self {
        if s.len() <= 22 {
            let mut b = [0u8; 22];
            b[..s.len()].copy_from_slice(s.as_bytes());
            Key::Inline(s.len() as u8, b)
        } else {
            Key::Heap(Box::from(s))
        }
    }
}

impl std::borrow::Borrow<str> for Key {
    #[inline]
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::hash::Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, o: &Self) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for Key {}

/// Local day -> earliest activity that day: at most ~32 days are kept, and nearly every activity
/// is on the newest day, so a short list searched from its end beats a hash map.
#[derive(Default)]
pub struct Days(pub Vec<(i64, Inst)>);

impl Days {
    #[inline]
    pub fn note(&mut self, day: i64, ts: I) {
        for e in self.0.iter_mut().rev() {
            if e.0 == day {
                if ts < e.1.get() {
                    e.1 = Inst(ts);
                }
                return;
            }
        }
        push_tight(&mut self.0, (day, Inst(ts)));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn retain_from(&mut self, dcut: i64) {
        self.0.retain(|e| e.0 >= dcut);
    }
}

/// An absent instant in fixed-size state (sessions): half the size of an `Option<i128>`.
pub const NONE: I = I::MIN;

/// An instant as entities hold it in their lists: an `I` stored 8-byte aligned. An `i128` is
/// 16-byte aligned, so a pair (8-byte key or day, instant) took 32 bytes where 24 hold it (an
/// event id's entry 48 where 40 do, a milestone's 64 where 32 do): a third of a million users'
/// core (docs/decisions.md 57). Read by value (`get`); no reference to the packed field is made.
#[derive(Clone, Copy)]
#[repr(C, packed(8))]
pub struct Inst(I);

impl Inst {
    #[inline]
    pub const fn new(x: I) -> Self {
        Inst(x)
    }

    #[inline]
    pub const fn get(self) -> I {
        self.0
    }
}

impl std::fmt::Debug for Inst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// A milestone: before the signup is known, every instant seen; after, the earliest at or after
/// the signup.
#[derive(Clone, Debug)]
pub enum Ms {
    List(Vec<I>),
    At(Inst),
}

/// A user's milestones by name: the configured activation events, value event and onboarding
/// steps only (`UserPartition._milestone`'s keys), so a handful at most: a short list searched
/// in order beats a hash map, and it is one block the partial's scan can prefetch. An entry is
/// 32 bytes (names.rs, `Inst`).
#[derive(Default, Clone)]
pub struct Milestones(pub Vec<(Name, Ms)>);

impl Milestones {
    #[inline]
    pub fn get_mut(&mut self, k: Name) -> Option<&mut Ms> {
        self.0.iter_mut().find(|e| e.0 == k).map(|e| &mut e.1)
    }

    /// Set `k` (added at the end when new).
    pub fn insert(&mut self, k: Name, v: Ms) {
        match self.get_mut(k) {
            Some(m) => *m = v,
            None => push_tight(&mut self.0, (k, v)),
        }
    }

    pub fn retain(&mut self, mut f: impl FnMut(&Name, &mut Ms) -> bool) {
        self.0.retain_mut(|(k, v)| f(k, v));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl<'a> IntoIterator for &'a Milestones {
    type Item = (&'a Name, &'a Ms);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Name, Ms)>, fn(&'a (Name, Ms)) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|e| (&e.0, &e.1))
    }
}

/// An entity's (source id, last offset applied) pairs: one for nearly every user (its
/// partition of the product topic), held inline; a list only when there are more.
#[derive(Default)]
pub enum Offsets {
    #[default]
    None,
    One((u32, i64)),
    Many(Vec<(u32, i64)>),
}

impl Offsets {
    #[inline]
    pub fn push(&mut self, x: (u32, i64)) {
        match self {
            Offsets::None => *self = Offsets::One(x),
            Offsets::One(a) => *self = Offsets::Many(vec![*a, x]),
            Offsets::Many(v) => push_tight(v, x),
        }
    }
}

impl std::ops::Deref for Offsets {
    type Target = [(u32, i64)];

    #[inline]
    fn deref(&self) -> &[(u32, i64)] {
        match self {
            Offsets::None => &[],
            Offsets::One(a) => std::slice::from_ref(a),
            Offsets::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Offsets {
    #[inline]
    fn deref_mut(&mut self) -> &mut [(u32, i64)] {
        match self {
            Offsets::None => &mut [],
            Offsets::One(a) => std::slice::from_mut(a),
            Offsets::Many(v) => v,
        }
    }
}

impl<'a> IntoIterator for &'a Offsets {
    type Item = &'a (u32, i64);
    type IntoIter = std::slice::Iter<'a, (u32, i64)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// What most users hold none of at a given time (survey answers and response ids, facts,
/// sessions, features, tickets, orders, returns): boxed, so a user without any pays 8 bytes for
/// all of it in the dense vector of users (`Entities`), and a scan of the users reads fewer
/// cache lines. `User::tidy` drops the box once it is empty.
#[derive(Default)]
pub struct Rare {
    pub resp: SmallMap<Inst>,
    pub facts: Vec<(I, u8)>,
    pub answers: Vec<(I, u8, i64, Option<Key>)>,
    pub features: SmallMap<(Option<I>, Vec<I>)>,
    /// [start, end, first page view, second page view, newest event]; `NONE` for unknown
    pub sessions: SmallMap<[I; 5]>,
    pub tickets: SmallMap<[Option<I>; 2]>,
    pub orders: SmallMap<Inst>,
    pub returns: SmallMap<Inst>,
}

impl Rare {
    pub fn is_empty(&self) -> bool {
        self.resp.is_empty()
            && self.facts.is_empty()
            && self.answers.is_empty()
            && self.features.is_empty()
            && self.sessions.is_empty()
            && self.tickets.is_empty()
            && self.orders.is_empty()
            && self.returns.is_empty()
    }
}

/// What `User::rare` reads for a user without the box.
static NO_RARE: Rare = Rare {
    resp: SmallMap::new(),
    facts: Vec::new(),
    answers: Vec::new(),
    features: SmallMap::new(),
    sessions: SmallMap::new(),
    tickets: SmallMap::new(),
    orders: SmallMap::new(),
    returns: SmallMap::new(),
};

/// The user's `Rare` part, made when first written.
#[inline]
pub fn rare_mut(r: &mut Option<Box<Rare>>) -> &mut Rare {
    r.get_or_insert_with(Box::default)
}

#[derive(Default)]
pub struct User {
    pub ids: SmallMap<Inst>,
    pub signup: When,
    pub ms: Milestones,
    pub days: Days,
    pub last: When,
    /// activity after the fold, not yet folded into `last`: every user active within the fold
    /// margin holds some, so it is not in `Rare` (a thin list: 8 bytes when empty)
    pub lastp: ThinVec<I>,
    pub rare: Option<Box<Rare>>,
    /// Python's `ms` is a dict even when empty (a milestone before the signup, or a signup
    /// that dropped every list): exported as {} rather than None
    pub ms_some: bool,
    /// live only: (source id, last offset applied to this user); ids are the partition's
    pub offs: Offsets,
}

impl User {
    /// The rarely held parts (empty ones when the user holds none).
    #[inline]
    pub fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    #[inline]
    pub fn rare_mut(&mut self) -> &mut Rare {
        rare_mut(&mut self.rare)
    }

    /// Drop the `Rare` box when nothing is left in it.
    #[inline]
    pub fn tidy(&mut self) {
        if self.rare.as_deref().is_some_and(Rare::is_empty) {
            self.rare = None;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.signup.get().is_none()
            && self.ids.is_empty()
            && self.ms.is_empty()
            && self.days.is_empty()
            && self.last.get().is_none()
            && self.lastp.is_empty()
            && self.rare().is_empty()
    }
}

/// An `Option<I>` in 16 bytes rather than 32: `NONE` when absent, which no instant is
/// (docs/decisions.md 50). A user's signup and last activity, a customer's last activity.
#[derive(Clone, Copy)]
#[repr(C, packed(8))]
pub struct When(I);

impl When {
    pub const NONE: When = When(NONE);

    #[inline]
    pub fn get(self) -> Option<I> {
        let x = self.0;
        (x != NONE).then_some(x)
    }

    #[inline]
    pub fn of(o: Option<I>) -> Self {
        debug_assert!(o != Some(NONE));
        When(o.unwrap_or(NONE))
    }
}

impl Default for When {
    fn default() -> Self {
        When::NONE
    }
}

/// An `Option<(instant, value)>` in 32 bytes rather than 48: the instant is `NONE` when absent,
/// which no instant is (docs/decisions.md 50).
#[derive(Clone, Copy)]
#[repr(C, packed(8))]
pub struct Latest {
    ts: I,
    v: i64,
}

impl Latest {
    pub const NONE: Latest = Latest { ts: NONE, v: 0 };

    #[inline]
    pub fn get(self) -> Option<(I, i64)> {
        let (ts, v) = (self.ts, self.v);
        (ts != NONE).then_some((ts, v))
    }

    #[inline]
    pub fn of(o: Option<(I, i64)>) -> Self {
        match o {
            Some((ts, v)) => {
                debug_assert!(ts != NONE);
                Latest { ts, v }
            }
            None => Latest::NONE,
        }
    }
}

/// What a customer holds after the fold, not yet folded into its `last`, `nps`, `csat` and
/// `sub`: activity, answers and subscription events of the last minutes (the fold margin) or,
/// for subscriptions, of the last 30 days. Under live traffic most customers hold some, so the
/// lists are inline, and thin: 8 bytes each when empty, where a `Vec` takes 24
/// (docs/decisions.md 57).
#[derive(Default)]
pub struct Pending {
    pub lastp: ThinVec<I>,
    pub npsp: ThinVec<(I, i64)>,
    pub csatp: ThinVec<(I, i64)>,
    pub subp: ThinVec<(I, i64)>,
}

pub struct Account {
    pub first: Inst,
    pub days: Days,
    pub last: When,
    pub nps: Latest,
    pub csat: Latest,
    pub sub: Latest,
    pub orders: Vec<(I, f64)>,
    pub pending: Pending,
    /// live only: (source id, last offset applied to this customer)
    pub offs: Offsets,
}

impl Account {
    pub fn new(first: I) -> Self {
        Account {
            first: Inst::new(first),
            days: Days::default(),
            last: When::NONE,
            nps: Latest::NONE,
            csat: Latest::NONE,
            sub: Latest::NONE,
            orders: Vec::new(),
            pending: Pending::default(),
            offs: Offsets::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_structs_stay_small() {
        // the dense vectors of entities hold these inline: a million users, a third of a
        // million customers (see docs/architecture.md, "How the core holds a partition's entities")
        assert_eq!(std::mem::size_of::<Offsets>(), 24);
        assert!(
            std::mem::size_of::<User>() <= 152,
            "{}",
            std::mem::size_of::<User>()
        );
        assert!(
            std::mem::size_of::<Account>() <= 208,
            "{}",
            std::mem::size_of::<Account>()
        );
        // the entries of an entity's lists (docs/decisions.md 57)
        assert_eq!(std::mem::size_of::<(i64, Inst)>(), 24);
        assert_eq!(std::mem::size_of::<(Key, Inst)>(), 40);
        assert_eq!(std::mem::size_of::<Ms>(), 24);
        assert_eq!(std::mem::size_of::<(Name, Ms)>(), 32);
        assert_eq!(std::mem::size_of::<Latest>(), 24);
    }
}
