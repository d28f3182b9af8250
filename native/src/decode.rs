//! The stored encoding read back (streams/codec.py `decode_user` / `decode_account`, then
//! `Conv::user_from_py` / `account_from_py`), straight from the bytes into the core's state: a
//! restarted worker loads its partitions without making a Python object per entity.
//!
//! It reads what codec.rs and streams/codec.py write (format version 2). Anything else it is not
//! sure to read exactly as the Python path would (another version byte, a big int or a str with
//! lone surrogates, a bool or float where an int belongs, a key given twice, an instant finer than
//! attoseconds, bytes that are not such a value) makes it give up on the whole load: the caller
//! then takes the Python path, which reads or refuses those bytes with its own errors.
//! tests/unit/test_native_codec.py checks it against the Python path.

use crate::codec::{EXT_BIG_INT, EXT_FRACTION, FORMAT_VERSION, TOPICS};
use crate::small_map::SmallMap;
use crate::state::{Account, Days, Inst, Key, Latest, Ms, Rare, User, When, NONE};
use crate::time::{I, UNIT};

/// The most entries of a map kept in a vector (days, milestones) read here: their duplicate
/// check is quadratic, and real states hold a few (days are at most ~90, milestones a handful).
const MAX_SCANNED: usize = 1024;

/// A value this reader is not sure to read as the Python path would.
pub struct Unsure;

pub(crate) type R<T> = Result<T, Unsure>;

pub(crate) struct Rd<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Rd<'a> {
    #[inline]
    pub(crate) fn byte(&mut self) -> R<u8> {
        let c = *self.b.get(self.i).ok_or(Unsure)?;
        self.i += 1;
        Ok(c)
    }

    #[inline]
    pub(crate) fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(Unsure)
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.i.checked_add(n).ok_or(Unsure)?;
        let s = self.b.get(self.i..end).ok_or(Unsure)?;
        self.i = end;
        Ok(s)
    }

    #[inline]
    pub(crate) fn be(&mut self, n: usize) -> R<u64> {
        let mut x = 0u64;
        for &c in self.take(n)? {
            x = (x << 8) | c as u64;
        }
        Ok(x)
    }

    /// A nil: consumed, true.
    #[inline]
    pub(crate) fn nil(&mut self) -> R<bool> {
        if self.peek()? == 0xc0 {
            self.i += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// An int of msgpack's own forms (not a bool, a float or an extension type)
    pub(crate) fn int(&mut self) -> R<i128> {
        let c = self.byte()?;
        Ok(match c {
            0x00..=0x7f => c as i128,
            0xe0..=0xff => c as i8 as i128,
            0xcc => self.be(1)? as i128,
            0xcd => self.be(2)? as i128,
            0xce => self.be(4)? as i128,
            0xcf => self.be(8)? as i128,
            0xd0 => self.be(1)? as u8 as i8 as i128,
            0xd1 => self.be(2)? as u16 as i16 as i128,
            0xd2 => self.be(4)? as u32 as i32 as i128,
            0xd3 => self.be(8)? as i64 as i128,
            _ => return Err(Unsure),
        })
    }

    pub(crate) fn i64(&mut self) -> R<i64> {
        i64::try_from(self.int()?).map_err(|_| Unsure)
    }

    /// An array's or map's length; never more than the bytes left (each item takes at least
    /// one), so that a length read from the bytes cannot make a reader reserve memory for
    /// items that are not there.
    pub(crate) fn len(&mut self, fix: u8, fix_max: u8, m16: u8, m32: u8) -> R<usize> {
        let c = self.byte()?;
        let n = if c & !fix_max == fix {
            (c & fix_max) as usize
        } else if c == m16 {
            self.be(2)? as usize
        } else if c == m32 {
            self.be(4)? as usize
        } else {
            return Err(Unsure);
        };
        if n > self.b.len() - self.i {
            return Err(Unsure);
        }
        Ok(n)
    }

    #[inline]
    pub(crate) fn array(&mut self) -> R<usize> {
        self.len(0x90, 0x0f, 0xdc, 0xdd)
    }

    #[inline]
    pub(crate) fn map(&mut self) -> R<usize> {
        self.len(0x80, 0x0f, 0xde, 0xdf)
    }

    /// An array that is nil when empty on the Python side: its length, 0 for nil
    #[inline]
    pub(crate) fn array_or_nil(&mut self) -> R<usize> {
        if self.nil()? {
            Ok(0)
        } else {
            self.array()
        }
    }

    #[inline]
    pub(crate) fn map_or_nil(&mut self) -> R<usize> {
        if self.nil()? {
            Ok(0)
        } else {
            self.map()
        }
    }

    pub(crate) fn str(&mut self) -> R<&'a str> {
        let c = self.byte()?;
        let n = match c {
            0xa0..=0xbf => (c & 0x1f) as usize,
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return Err(Unsure),
        };
        std::str::from_utf8(self.take(n)?).map_err(|_| Unsure)
    }

    /// bytes (bin 8 / 16 / 32) or nil
    pub(crate) fn bin_or_nil(&mut self) -> R<Option<&'a [u8]>> {
        let n = match self.byte()? {
            0xc0 => return Ok(None),
            0xc4 => self.be(1)? as usize,
            0xc5 => self.be(2)? as usize,
            0xc6 => self.be(4)? as usize,
            _ => return Err(Unsure),
        };
        self.take(n).map(Some)
    }

    pub(crate) fn bool(&mut self) -> R<bool> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(Unsure),
        }
    }

    pub(crate) fn float(&mut self) -> R<f64> {
        match self.byte()? {
            0xcb => Ok(f64::from_bits(self.be(8)?)),
            0xca => Ok(f32::from_bits(self.be(4)? as u32) as f64),
            _ => Err(Unsure),
        }
    }

    /// An extension value's header: its type and payload, when the next value is one.
    pub(crate) fn ext(&mut self) -> R<Option<(i8, &'a [u8])>> {
        let n = match self.peek()? {
            0xd4 => 1,
            0xd5 => 2,
            0xd6 => 4,
            0xd7 => 8,
            0xd8 => 16,
            0xc7..=0xc9 => 0,
            _ => return Ok(None),
        };
        let n = match self.byte()? {
            0xc7 => self.be(1)? as usize,
            0xc8 => self.be(2)? as usize,
            0xc9 => self.be(4)? as usize,
            _ => n,
        };
        let code = self.byte()? as i8;
        Ok(Some((code, self.take(n)?)))
    }

    /// An int, of msgpack's forms or extension type 1 (beyond 64 bits: two's complement,
    /// big-endian), when it fits in an i128.
    pub(crate) fn big_int(&mut self) -> R<i128> {
        match self.ext()? {
            None => self.int(),
            Some((EXT_BIG_INT, b)) if !b.is_empty() && b.len() <= 16 => {
                let mut be = [if b[0] & 0x80 != 0 { 0xff } else { 0 }; 16];
                be[16 - b.len()..].copy_from_slice(b);
                Ok(i128::from_be_bytes(be))
            }
            Some(_) => Err(Unsure),
        }
    }

    /// An instant in attoseconds: an int of ns (extension type 1 beyond 64 bits), or a
    /// Fraction of them (extension type 2: the array [numerator, denominator])
    pub(crate) fn t(&mut self) -> R<I> {
        let start = self.i;
        let payload = match self.ext()? {
            Some((EXT_FRACTION, payload)) => payload,
            Some(_) => {
                self.i = start;
                return self.big_int()?.checked_mul(UNIT).ok_or(Unsure);
            }
            None => return self.int()?.checked_mul(UNIT).ok_or(Unsure),
        };
        let mut p = Rd { b: payload, i: 0 };
        if p.array()? != 2 {
            return Err(Unsure);
        }
        let (num, den) = (p.big_int()?, p.big_int()?);
        if p.i != p.b.len() || den <= 0 {
            return Err(Unsure);
        }
        let a = num.checked_mul(UNIT).ok_or(Unsure)?;
        if a % den != 0 {
            return Err(Unsure);
        }
        Ok(a / den)
    }

    pub(crate) fn ot(&mut self) -> R<Option<I>> {
        if self.nil()? {
            Ok(None)
        } else {
            self.t().map(Some)
        }
    }

    pub(crate) fn tlist(&mut self) -> R<Vec<I>> {
        let n = self.array_or_nil()?;
        (0..n).map(|_| self.t()).collect()
    }

    pub(crate) fn str_map(&mut self) -> R<SmallMap<Inst>> {
        let n = self.map_or_nil()?;
        let mut m = SmallMap::new();
        m.reserve(n);
        for _ in 0..n {
            let k = Key::from(self.str()?);
            if m.insert(k, Inst::new(self.t()?)).is_some() {
                return Err(Unsure);
            }
        }
        Ok(m)
    }

    pub(crate) fn days(&mut self) -> R<Days> {
        let n = self.map_or_nil()?;
        if n > MAX_SCANNED {
            return Err(Unsure); // the duplicate check below is quadratic: Python's dict reads it
        }
        let mut d = Days::default();
        d.0.reserve(n);
        for _ in 0..n {
            let day = self.i64()?;
            if d.0.iter().any(|e| e.0 == day) {
                return Err(Unsure);
            }
            d.0.push((day, Inst::new(self.t()?)));
        }
        Ok(d)
    }

    pub(crate) fn pairs<N>(&mut self, n: impl Fn(&mut Self) -> R<N>) -> R<Vec<(I, N)>> {
        let len = self.array_or_nil()?;
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            if self.array()? != 2 {
                return Err(Unsure);
            }
            let x = self.t()?;
            v.push((x, n(self)?));
        }
        Ok(v)
    }

    pub(crate) fn pair(&mut self) -> R<Option<(I, i64)>> {
        if self.nil()? {
            return Ok(None);
        }
        if self.array()? != 2 {
            return Err(Unsure);
        }
        Ok(Some((self.t()?, self.i64()?)))
    }

    /// `_offs(flat, width)`: the sources (topic, partition[, user partition]) and offsets
    pub(crate) fn offs(&mut self, width: usize) -> R<Vec<(&'a str, i64, i64, i64)>> {
        let n = self.array_or_nil()?;
        if n % (width + 1) != 0 || n > MAX_SCANNED {
            return Err(Unsure);
        }
        let mut out: Vec<(&str, i64, i64, i64)> = Vec::with_capacity(n / (width + 1));
        for _ in 0..n / (width + 1) {
            let topic = match self.peek()? {
                0xa0..=0xbf | 0xd9 | 0xda | 0xdb => self.str()?,
                _ => *TOPICS
                    .get(usize::try_from(self.int()?).map_err(|_| Unsure)?)
                    .ok_or(Unsure)?,
            };
            let part = self.i64()?;
            let via = if width == 3 { self.i64()? } else { 0 };
            let off = self.i64()?;
            if out
                .iter()
                .any(|e| e.0 == topic && e.1 == part && e.2 == via)
            {
                return Err(Unsure);
            }
            out.push((topic, part, via, off));
        }
        Ok(out)
    }
}

/// The version byte and the slots' array: a reader at the first slot, and the slot count.
fn open(b: &[u8], max: usize) -> R<(Rd<'_>, usize)> {
    let mut r = Rd { b, i: 0 };
    if r.byte()? != FORMAT_VERSION {
        return Err(Unsure);
    }
    let n = r.array()?;
    if n > max {
        return Err(Unsure);
    }
    Ok((r, n))
}

/// streams/codec.py `decode_id_key`: (user id, event id)
pub fn id_key(k: &[u8]) -> R<(&str, &str)> {
    if k.len() < 5 || k[0] != crate::codec::ID_PREFIX {
        return Err(Unsure);
    }
    let n = u32::from_be_bytes([k[1], k[2], k[3], k[4]]) as usize;
    let rest = &k[5..];
    if rest.len() < n {
        return Err(Unsure);
    }
    let uid = std::str::from_utf8(&rest[..n]).map_err(|_| Unsure)?;
    let eid = std::str::from_utf8(&rest[n..]).map_err(|_| Unsure)?;
    Ok((uid, eid))
}

/// streams/codec.py `decode_id`: (ts, partition, offset)
pub fn id_value(b: &[u8]) -> R<(I, i64, i64)> {
    let (mut r, n) = open(b, 3)?;
    if n != 3 {
        return Err(Unsure);
    }
    let ts = r.t()?;
    let (part, off) = (r.i64()?, r.i64()?);
    if r.i != b.len() {
        return Err(Unsure);
    }
    Ok((ts, part, off))
}

/// `decode_user` then `Conv::user_from_py`; `src` interns a (topic, partition) source.
pub fn user(b: &[u8], src: &mut dyn FnMut(&str, i64) -> u32) -> R<User> {
    let (mut r, n) = open(b, 15)?;
    if n < 2 {
        return Err(Unsure);
    }
    let mut u = User::default();
    let mut rare = Rare::default(); // boxed at the end if anything is in it
    for slot in 0..n {
        match slot {
            0 => {
                for (topic, part, _, off) in r.offs(2)? {
                    u.offs.push((src(topic, part), off));
                }
            }
            1 => u.ids = r.str_map()?,
            2 => u.days = r.days()?,
            3 => u.last = When::of(r.ot()?),
            4 => u.signup = When::of(r.ot()?),
            5 => {
                if !r.nil()? {
                    u.ms_some = true;
                    let n = r.map()?;
                    if n > MAX_SCANNED {
                        return Err(Unsure);
                    }
                    for _ in 0..n {
                        let k = r.str()?;
                        let k = crate::names::intern(k).ok_or(Unsure)?;
                        if u.ms.0.iter().any(|e| e.0 == k) {
                            return Err(Unsure);
                        }
                        let m = match r.peek()? {
                            0x90..=0x9f | 0xdc | 0xdd => Ms::List(r.tlist()?),
                            _ => Ms::At(Inst::new(r.t()?)),
                        };
                        u.ms.0.push((k, m));
                    }
                }
            }
            6 => {
                let len = r.map_or_nil()?;
                rare.features.reserve(len);
                for _ in 0..len {
                    let k = Key::from(r.str()?);
                    if r.array()? != 2 {
                        return Err(Unsure);
                    }
                    let f = (r.ot()?, r.tlist()?);
                    if rare.features.insert(k, f).is_some() {
                        return Err(Unsure);
                    }
                }
            }
            7 => {
                let len = r.array_or_nil()?;
                rare.answers.reserve(len);
                for _ in 0..len {
                    if r.array()? != 4 {
                        return Err(Unsure);
                    }
                    let ts = r.t()?;
                    let sv = u8::try_from(r.int()?).map_err(|_| Unsure)?;
                    let score = r.i64()?;
                    let tp = if r.nil()? {
                        None
                    } else {
                        Some(Key::from(r.str()?))
                    };
                    rare.answers.push((ts, sv, score, tp));
                }
            }
            8 => {
                let len = r.map_or_nil()?;
                rare.sessions.reserve(len);
                for _ in 0..len {
                    let k = Key::from(r.str()?);
                    if r.array()? != 5 {
                        return Err(Unsure);
                    }
                    let mut s = [NONE; 5];
                    for e in s.iter_mut() {
                        *e = r.ot()?.unwrap_or(NONE);
                    }
                    if rare.sessions.insert(k, s).is_some() {
                        return Err(Unsure);
                    }
                }
            }
            9 => rare.orders = r.str_map()?,
            10 => {
                rare.facts = r.pairs(|r| u8::try_from(r.int()?).map_err(|_| Unsure))?;
            }
            11 => rare.resp = r.str_map()?,
            12 => {
                let len = r.map_or_nil()?;
                rare.tickets.reserve(len);
                for _ in 0..len {
                    let k = Key::from(r.str()?);
                    if r.array()? != 2 {
                        return Err(Unsure);
                    }
                    let t = [r.ot()?, r.ot()?];
                    if rare.tickets.insert(k, t).is_some() {
                        return Err(Unsure);
                    }
                }
            }
            13 => rare.returns = r.str_map()?,
            _ => u.lastp = r.tlist()?.into(),
        }
    }
    if r.i != b.len() {
        return Err(Unsure);
    }
    if !rare.is_empty() {
        u.rare = Some(Box::new(rare));
    }
    Ok(u)
}

/// `decode_account` then `Conv::account_from_py`; `src` interns a (topic, partition, user
/// partition) source.
pub fn account(b: &[u8], src: &mut dyn FnMut(&str, i64, i64) -> u32) -> R<Account> {
    let (mut r, n) = open(b, 12)?;
    if n < 1 {
        return Err(Unsure);
    }
    let mut a = Account::new(r.t()?);
    for slot in 1..n {
        match slot {
            1 => {
                for (topic, part, via, off) in r.offs(3)? {
                    a.offs.push((src(topic, part, via), off));
                }
            }
            2 => a.days = r.days()?,
            3 => a.last = When::of(r.ot()?),
            4 => a.sub = Latest::of(r.pair()?),
            5 => a.nps = Latest::of(r.pair()?),
            6 => a.csat = Latest::of(r.pair()?),
            7 => a.orders = r.pairs(|r| r.float())?,
            8 => a.pending.lastp = r.tlist()?.into(),
            9 => a.pending.subp = r.pairs(|r| r.i64())?.into(),
            10 => a.pending.npsp = r.pairs(|r| r.i64())?.into(),
            _ => a.pending.csatp = r.pairs(|r| r.i64())?.into(),
        }
    }
    if r.i != b.len() {
        return Err(Unsure);
    }
    Ok(a)
}
