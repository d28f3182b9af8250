//! The stored encoding of users and customers (streams/codec.py `encode_stored_user` /
//! `encode_account`), written straight from the core's state: byte for byte what
//! `encode_stored_user(export(key))` gives (msgspec's msgpack: smallest int encodings, float64, fixstr /
//! str8 / str16 / str32, fixmap / map16 / map32, fixarray / array16 / array32, the extension
//! types 1 (an int beyond 64 bits) and 2 (a Fraction), the version byte first, trailing Nones
//! left out). The core holds no str with lone surrogates (extension type 3). An entity it cannot
//! be sure to write exactly is given as None, for the caller to encode in Python.
//! tests/unit/test_native_codec.py checks it against streams/codec.py.

use crate::convert::INIT_FOLD_NS;
use crate::envelope::{PRODUCT, SURVEY};
use crate::small_map::SmallMap;
use crate::state::{Account, Days, Inst, Ms, User, NONE};
use crate::time::{I, INIT_FOLD, UNIT};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

/// streams/codec.py FORMAT_VERSION
pub const FORMAT_VERSION: u8 = 2;
/// streams/codec.py ID_PREFIX: the first byte of an event id's key
pub const ID_PREFIX: u8 = 2;
/// streams/codec.py _TOPICS: the input topics written as their index in `offs`
pub const TOPICS: [&str; 2] = [PRODUCT, SURVEY];
/// streams/codec.py EXT_BIG_INT, EXT_FRACTION
pub const EXT_BIG_INT: i8 = 1;
pub const EXT_FRACTION: i8 = 2;

/// A value the writer cannot be sure to encode as Python would: the entity goes to Python.
pub(crate) struct Unsure;

pub(crate) type W = Result<(), Unsure>;

pub(crate) struct Out(pub(crate) Vec<u8>);

impl Out {
    #[inline]
    pub(crate) fn nil(&mut self) {
        self.0.push(0xc0);
    }

    /// msgspec's int encoding (the smallest form); beyond [-2^63, 2^64): extension type 1
    pub(crate) fn int(&mut self, x: i128) {
        let b = &mut self.0;
        if x >= 0 {
            if x < 128 {
                b.push(x as u8);
            } else if x < 1 << 8 {
                b.extend_from_slice(&[0xcc, x as u8]);
            } else if x < 1 << 16 {
                b.push(0xcd);
                b.extend_from_slice(&(x as u16).to_be_bytes());
            } else if x < 1 << 32 {
                b.push(0xce);
                b.extend_from_slice(&(x as u32).to_be_bytes());
            } else if x < 1 << 64 {
                b.push(0xcf);
                b.extend_from_slice(&(x as u64).to_be_bytes());
            } else {
                self.big_int(x);
            }
        } else if x >= -32 {
            b.push(x as i8 as u8);
        } else if x >= -(1 << 7) {
            b.extend_from_slice(&[0xd0, x as i8 as u8]);
        } else if x >= -(1 << 15) {
            b.push(0xd1);
            b.extend_from_slice(&(x as i16).to_be_bytes());
        } else if x >= -(1 << 31) {
            b.push(0xd2);
            b.extend_from_slice(&(x as i32).to_be_bytes());
        } else if x >= -(1 << 63) {
            b.push(0xd3);
            b.extend_from_slice(&(x as i64).to_be_bytes());
        } else {
            self.big_int(x);
        }
    }

    /// `x.to_bytes((x.bit_length() + 8) // 8, "big", signed=True)` as extension type 1
    pub(crate) fn big_int(&mut self, x: i128) {
        let bits = 128 - x.unsigned_abs().leading_zeros() as usize;
        let n = (bits + 8) / 8;
        let be = x.to_be_bytes();
        let sign = if x < 0 { 0xff } else { 0 };
        self.ext_header(EXT_BIG_INT, n);
        for i in 0..n {
            // byte i of n, big-endian; sign-extended beyond the 16 bytes of an i128
            let from_end = n - 1 - i;
            self.0.push(if from_end < 16 {
                be[15 - from_end]
            } else {
                sign
            });
        }
    }

    /// msgspec's extension header: fixext 1/2/4/8/16, else ext 8/16/32
    pub(crate) fn ext_header(&mut self, code: i8, n: usize) {
        let b = &mut self.0;
        match n {
            1 => b.push(0xd4),
            2 => b.push(0xd5),
            4 => b.push(0xd6),
            8 => b.push(0xd7),
            16 => b.push(0xd8),
            _ if n < 1 << 8 => b.extend_from_slice(&[0xc7, n as u8]),
            _ if n < 1 << 16 => {
                b.push(0xc8);
                b.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                b.push(0xc9);
                b.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
        b.push(code as u8);
    }

    /// bytes as msgspec writes them (bin 8 / 16 / 32), None as nil
    pub(crate) fn bin(&mut self, x: Option<&[u8]>) -> W {
        let Some(v) = x else {
            self.nil();
            return Ok(());
        };
        let n = v.len();
        let b = &mut self.0;
        if n < 1 << 8 {
            b.extend_from_slice(&[0xc4, n as u8]);
        } else if n < 1 << 16 {
            b.push(0xc5);
            b.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n < 1 << 32 {
            b.push(0xc6);
            b.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            return Err(Unsure);
        }
        b.extend_from_slice(v);
        Ok(())
    }

    #[inline]
    pub(crate) fn float(&mut self, f: f64) {
        self.0.push(0xcb);
        self.0.extend_from_slice(&f.to_bits().to_be_bytes());
    }

    pub(crate) fn head(&mut self, n: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) -> W {
        let b = &mut self.0;
        if n <= fix_max {
            b.push(fix | n as u8);
        } else if n < 1 << 16 {
            b.push(m16);
            b.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n < 1 << 32 {
            b.push(m32);
            b.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            return Err(Unsure);
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn array(&mut self, n: usize) -> W {
        self.head(n, 0x90, 15, 0xdc, 0xdd)
    }

    #[inline]
    pub(crate) fn map(&mut self, n: usize) -> W {
        self.head(n, 0x80, 15, 0xde, 0xdf)
    }

    pub(crate) fn str(&mut self, s: &str) -> W {
        let n = s.len();
        let b = &mut self.0;
        if n < 32 {
            b.push(0xa0 | n as u8);
        } else if n < 1 << 8 {
            b.extend_from_slice(&[0xd9, n as u8]);
        } else if n < 1 << 16 {
            b.push(0xda);
            b.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n < 1 << 32 {
            b.push(0xdb);
            b.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            return Err(Unsure);
        }
        b.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// An instant as `Conv::t` gives it to Python: whole ns as an int, else
    /// `Fraction(atto, 10**9)` (extension type 2: the msgpack array [numerator, denominator])
    pub(crate) fn t(&mut self, x: I) {
        if x == INIT_FOLD {
            return self.int(INIT_FOLD_NS);
        }
        if x % UNIT == 0 {
            return self.int(x / UNIT);
        }
        let g = gcd(x.unsigned_abs(), UNIT as u128) as I;
        let mut payload = Out(Vec::with_capacity(20));
        payload.0.push(0x92);
        payload.int(x / g);
        payload.int(UNIT / g);
        self.ext_header(EXT_FRACTION, payload.0.len());
        self.0.extend_from_slice(&payload.0);
    }

    #[inline]
    pub(crate) fn ot(&mut self, x: Option<I>) {
        match x {
            Some(v) => self.t(v),
            None => self.nil(),
        }
    }

    /// `Conv::tlist`: None when empty
    pub(crate) fn tlist(&mut self, v: &[I]) -> W {
        if v.is_empty() {
            self.nil();
            return Ok(());
        }
        self.array(v.len())?;
        for &x in v {
            self.t(x);
        }
        Ok(())
    }

    /// `Conv::pairs`: [(instant, n)], None when empty
    pub(crate) fn pairs<N: Copy>(&mut self, v: &[(I, N)], n: impl Fn(&mut Self, N)) -> W {
        if v.is_empty() {
            self.nil();
            return Ok(());
        }
        self.array(v.len())?;
        for &(x, k) in v {
            self.0.push(0x92);
            self.t(x);
            n(self, k);
        }
        Ok(())
    }

    pub(crate) fn pair(&mut self, v: Option<(I, i64)>) {
        match v {
            Some((x, n)) => {
                self.0.push(0x92);
                self.t(x);
                self.int(n as i128);
            }
            None => self.nil(),
        }
    }

    /// `Conv::day_dict`: None when empty; a repeated day (which the dict would merge) is unsure
    pub(crate) fn days(&mut self, d: &Days) -> W {
        if d.is_empty() {
            self.nil();
            return Ok(());
        }
        let v = &d.0;
        for (i, e) in v.iter().enumerate() {
            if v[..i].iter().any(|f| f.0 == e.0) {
                return Err(Unsure);
            }
        }
        self.map(v.len())?;
        for &(k, x) in v {
            self.int(k as i128);
            self.t(x.get());
        }
        Ok(())
    }

    pub(crate) fn str_dict(&mut self, m: &SmallMap<Inst>) -> W {
        self.map(m.len())?;
        for (k, &x) in m {
            self.str(k.as_str())?;
            self.t(x.get());
        }
        Ok(())
    }

    pub(crate) fn str_dict_or_none(&mut self, m: &SmallMap<Inst>) -> W {
        if m.is_empty() {
            self.nil();
            Ok(())
        } else {
            self.str_dict(m)
        }
    }

    /// `_flat_offs`: [topic (0, 1 or its name), partition(s)..., offset, ...], None when empty;
    /// a source given twice (which the dict would merge) is unsure
    pub(crate) fn offs<S>(
        &mut self,
        offs: &[(u32, i64)],
        srcs: &[S],
        src: impl Fn(&S) -> (&str, i64, Option<i64>),
    ) -> W {
        if offs.is_empty() {
            self.nil();
            return Ok(());
        }
        for (i, e) in offs.iter().enumerate() {
            if offs[..i].iter().any(|f| f.0 == e.0) {
                return Err(Unsure);
            }
        }
        let mut n = 0;
        for &(id, _) in offs {
            let s = srcs.get(id as usize).ok_or(Unsure)?;
            n += 3 + src(s).2.is_some() as usize;
        }
        self.array(n)?;
        for &(id, off) in offs {
            let (topic, part, via) = src(&srcs[id as usize]);
            match TOPICS.iter().position(|t| *t == topic) {
                Some(code) => self.int(code as i128),
                None => self.str(topic)?,
            }
            self.int(part as i128);
            if let Some(v) = via {
                self.int(v as i128);
            }
            self.int(off as i128);
        }
        Ok(())
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A positional array of at most 15 slots after the version byte, its trailing Nones left
/// out (`_trimmed`, keeping the first `keep`): one buffer, cut after the last slot kept.
struct Slots {
    o: Out,
    n: usize,
    keep: usize,
    /// (slots, length of the buffer) after the last slot that is kept
    end: (usize, usize),
}

impl Slots {
    fn new(keep: usize) -> Self {
        let mut o = Out(Vec::with_capacity(256));
        o.0.extend_from_slice(&[FORMAT_VERSION, 0x90]);
        Slots {
            o,
            n: 0,
            keep,
            end: (0, 2),
        }
    }

    fn slot(&mut self, f: impl FnOnce(&mut Out) -> W) -> Result<&mut Self, Unsure> {
        let start = self.o.0.len();
        f(&mut self.o)?;
        self.n += 1;
        if self.n <= self.keep || self.o.0[start..] != [0xc0] {
            self.end = (self.n, self.o.0.len());
        }
        Ok(self)
    }

    fn finish(mut self) -> Vec<u8> {
        let (n, len) = self.end;
        debug_assert!(n <= 15);
        self.o.0.truncate(len);
        self.o.0[1] = 0x90 | n as u8;
        self.o.0
    }
}

/// `encode_stored_user(Conv::user_to_py(u, with_ids=True))`: the ids slot an empty map (each id
/// is stored under its own key: `id_write`)
fn user(u: &User, srcs: &[(Box<str>, i64)]) -> Result<Vec<u8>, Unsure> {
    let mut s = Slots::new(2);
    s.slot(|o| o.offs(&u.offs, srcs, |s| (&*s.0, s.1, None)))?
        .slot(|o| o.map(0))?
        .slot(|o| o.days(&u.days))?
        .slot(|o| {
            o.ot(u.last.get());
            Ok(())
        })?
        .slot(|o| {
            o.ot(u.signup.get());
            Ok(())
        })?
        .slot(|o| {
            if u.ms.is_empty() && !u.ms_some {
                o.nil();
                return Ok(());
            }
            o.map(u.ms.len())?;
            for (i, (k, m)) in u.ms.into_iter().enumerate() {
                if u.ms.0[..i].iter().any(|e| e.0 == *k) {
                    return Err(Unsure);
                }
                o.str(k.as_str())?;
                match m {
                    Ms::At(x) => o.t(x.get()),
                    Ms::List(v) => o.tlist(v)?,
                }
            }
            Ok(())
        })?
        .slot(|o| {
            if u.rare().features.is_empty() {
                o.nil();
                return Ok(());
            }
            o.map(u.rare().features.len())?;
            for (k, (f0, f1)) in &u.rare().features {
                o.str(k.as_str())?;
                o.0.push(0x92);
                o.ot(*f0);
                o.tlist(f1)?;
            }
            Ok(())
        })?
        .slot(|o| {
            if u.rare().answers.is_empty() {
                o.nil();
                return Ok(());
            }
            o.array(u.rare().answers.len())?;
            for (ts, sv, score, tp) in &u.rare().answers {
                o.0.push(0x94);
                o.t(*ts);
                o.int(*sv as i128);
                o.int(*score as i128);
                match tp {
                    Some(k) => o.str(k.as_str())?,
                    None => o.nil(),
                }
            }
            Ok(())
        })?
        .slot(|o| {
            if u.rare().sessions.is_empty() {
                o.nil();
                return Ok(());
            }
            o.map(u.rare().sessions.len())?;
            for (k, s) in &u.rare().sessions {
                o.str(k.as_str())?;
                o.0.push(0x95);
                for &x in s {
                    o.ot((x != NONE).then_some(x));
                }
            }
            Ok(())
        })?
        .slot(|o| o.str_dict_or_none(&u.rare().orders))?
        .slot(|o| o.pairs(&u.rare().facts, |o, c| o.int(c as i128)))?
        .slot(|o| o.str_dict_or_none(&u.rare().resp))?
        .slot(|o| {
            if u.rare().tickets.is_empty() {
                o.nil();
                return Ok(());
            }
            o.map(u.rare().tickets.len())?;
            for (k, t) in &u.rare().tickets {
                o.str(k.as_str())?;
                o.0.push(0x92);
                o.ot(t[0]);
                o.ot(t[1]);
            }
            Ok(())
        })?
        .slot(|o| o.str_dict_or_none(&u.rare().returns))?
        .slot(|o| o.tlist(&u.lastp))?;
    Ok(s.finish())
}

/// `encode_account(Conv::account_to_py(a))`
fn account(a: &Account, srcs: &[(Box<str>, (i64, i64))]) -> Result<Vec<u8>, Unsure> {
    let int = |o: &mut Out, n: i64| o.int(n as i128);
    let mut s = Slots::new(1);
    s.slot(|o| {
        o.t(a.first.get());
        Ok(())
    })?
    .slot(|o| o.offs(&a.offs, srcs, |s| (&*s.0, s.1 .0, Some(s.1 .1))))?
    .slot(|o| o.days(&a.days))?
    .slot(|o| {
        o.ot(a.last.get());
        Ok(())
    })?
    .slot(|o| {
        o.pair(a.sub.get());
        Ok(())
    })?
    .slot(|o| {
        o.pair(a.nps.get());
        Ok(())
    })?
    .slot(|o| {
        o.pair(a.csat.get());
        Ok(())
    })?
    .slot(|o| o.pairs(&a.orders, |o, f| o.float(f)))?
    .slot(|o| o.tlist(&a.pending.lastp))?
    .slot(|o| o.pairs(&a.pending.subp, int))?
    .slot(|o| o.pairs(&a.pending.npsp, int))?
    .slot(|o| o.pairs(&a.pending.csatp, int))?;
    Ok(s.finish())
}

/// streams/codec.py `id_key(uid, eid)`
pub fn id_key(uid: &str, eid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + uid.len() + eid.len());
    k.push(ID_PREFIX);
    k.extend_from_slice(&(uid.len() as u32).to_be_bytes());
    k.extend_from_slice(uid.as_bytes());
    k.extend_from_slice(eid.as_bytes());
    k
}

/// streams/codec.py `encode_id(ts, partition, offset)` (with `Conv::t`'s instant)
pub fn id_value(ts: I, partition: i64, offset: i64) -> Vec<u8> {
    let mut o = Out(Vec::with_capacity(24));
    o.0.push(FORMAT_VERSION);
    o.0.push(0x93);
    o.t(ts);
    o.int(partition as i128);
    o.int(offset as i128);
    o.0
}

/// {key: bytes | None} of the given keys present in `m` (every entity when `keys` is None);
/// None where the entity must be encoded in Python.
fn encoded<'py, E>(
    py: Python<'py>,
    m: &crate::entities::Entities<E>,
    keys: Option<&Bound<'py, PyAny>>,
    enc: impl Fn(&E) -> Result<Vec<u8>, Unsure>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let one = |e: &E| -> Option<Bound<'py, PyBytes>> { enc(e).ok().map(|b| PyBytes::new(py, &b)) };
    match keys {
        None => {
            for (k, e) in m {
                d.set_item(k.as_str(), one(e))?;
            }
        }
        Some(keys) => {
            for k in keys.try_iter()? {
                let k = k?;
                if let Some(e) = k.extract::<&str>().ok().and_then(|s| m.get(s)) {
                    d.set_item(&k, one(e))?;
                }
            }
        }
    }
    Ok(d)
}

/// streams/codec.py ENTITY_PREFIX: the first byte of an entity's table key
pub const ENTITY_PREFIX: u8 = 1;

/// An epoch's writes of the changed entities `keys` (agents/epoch.py `entity_writes`):
/// `[(ENTITY_PREFIX + id, stored bytes)]` of those that exist, in the order of their ids (a str's
/// code points, which their UTF-8 bytes keep), then `[(key, None)]` of those that are gone, in
/// the same order. The second list holds `(position, id)` of the values the core leaves to
/// Python (None in the first list until the caller fills them).
fn entity_writes<'py, E>(
    py: Python<'py>,
    m: &crate::entities::Entities<E>,
    keys: &Bound<'py, PyAny>,
    enc: impl Fn(&E) -> Result<Vec<u8>, Unsure>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    // (table key, whether it is valid UTF-8: an id with a lone surrogate is never held here)
    let mut items: Vec<(Vec<u8>, bool)> = Vec::new();
    for k in keys.try_iter()? {
        let k = k?;
        let s = k.cast::<PyString>()?;
        let mut key = vec![ENTITY_PREFIX];
        let valid = match s.to_str() {
            Ok(id) => {
                key.extend_from_slice(id.as_bytes());
                true
            }
            Err(_) => {
                let b = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
                key.extend_from_slice(b.cast::<PyBytes>()?.as_bytes());
                false
            }
        };
        items.push((key, valid));
    }
    items.sort_unstable();
    let puts = PyList::empty(py);
    let gaps = PyList::empty(py);
    let mut gone: Vec<Vec<u8>> = Vec::new();
    for (key, valid) in items {
        let id = if valid {
            std::str::from_utf8(&key[1..]).ok()
        } else {
            None
        };
        match id.and_then(|id| m.get(id).map(|e| (id, e))) {
            Some((id, e)) => match enc(e) {
                Ok(v) => puts.append((PyBytes::new(py, &key), PyBytes::new(py, &v)))?,
                Err(Unsure) => {
                    gaps.append((puts.len(), PyString::new(py, id)))?;
                    puts.append((PyBytes::new(py, &key), py.None()))?;
                }
            },
            None => gone.push(key),
        }
    }
    for key in gone {
        puts.append((PyBytes::new(py, &key), py.None()))?;
    }
    Ok((puts, gaps))
}

pub fn user_writes<'py>(
    py: Python<'py>,
    users: &crate::entities::Entities<User>,
    srcs: &[(Box<str>, i64)],
    keys: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    entity_writes(py, users, keys, |u| user(u, srcs))
}

pub fn account_writes<'py>(
    py: Python<'py>,
    accounts: &crate::entities::Entities<Account>,
    srcs: &[(Box<str>, (i64, i64))],
    keys: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    entity_writes(py, accounts, keys, |a| account(a, srcs))
}

pub fn users_encoded<'py>(
    py: Python<'py>,
    users: &crate::entities::Entities<User>,
    srcs: &[(Box<str>, i64)],
    keys: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    encoded(py, users, keys, |u| user(u, srcs))
}

pub fn accounts_encoded<'py>(
    py: Python<'py>,
    accounts: &crate::entities::Entities<Account>,
    srcs: &[(Box<str>, (i64, i64))],
    keys: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    encoded(py, accounts, keys, |a| account(a, srcs))
}
