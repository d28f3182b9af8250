//! Instants and the common RFC 3339 form.
//!
//! An instant is an i128 number of attoseconds (10^-18 s) since the Unix epoch: Python's
//! instants are nanoseconds, exact Fractions of them when a timestamp has more than nine
//! fractional digits; up to eighteen digits are held exactly here (more: a hand-over).

use crate::state::FxMap;
use pyo3::prelude::*;
use pyo3::types::PyDict;

pub type I = i128;

/// attoseconds per nanosecond (Python's instant unit)
pub const UNIT: I = 1_000_000_000;
/// one second
pub const NS: I = 1_000_000_000 * UNIT;
/// one millisecond
pub const MS: I = 1_000_000 * UNIT;
pub const HOUR: I = 3600 * NS;
pub const DAY: I = 86400 * NS;

const DAYS_YEAR_1: I = -719_162;
const DAYS_YEAR_10000: I = 2_932_897;
pub const MIN_INSTANT: I = DAYS_YEAR_1 * DAY;
pub const END_INSTANT: I = DAYS_YEAR_10000 * DAY;
pub const MIN_MS: i64 = (MIN_INSTANT / MS) as i64;
pub const END_MS: i64 = (END_INSTANT / MS) as i64;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

/// An RFC 3339 date-time as streams.timeutil.parse_rfc3339 reads it
/// (`YYYY-MM-DD[Tt]HH:MM:SS[.f+]([Zz]|[+-]HH:MM)`), with at most 18 fractional digits; None for
/// anything else (Python then decides: more digits, or not an instant).
pub fn parse_utc(s: &str) -> Option<I> {
    let b = s.as_bytes();
    let n = b.len();
    if n < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if year < 1 || !(1..=12).contains(&month) {
        return None;
    }
    const MDAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mdays = if month == 2 && leap(year) {
        29
    } else {
        MDAYS[(month - 1) as usize]
    };
    if day < 1 || day > mdays || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut secs =
        days_from_civil(year, month, day) as I * 86400 + (hour * 3600 + minute * 60 + second) as I;
    let mut i = 19;
    let mut frac: I = 0;
    if b[i] == b'.' {
        i += 1;
        let f = i;
        while i < n && b[i].is_ascii_digit() {
            i += 1;
        }
        let k = i - f;
        if k == 0 || k > 18 {
            return None;
        }
        frac = digits(&b[f..i])? as I;
        for _ in k..18 {
            frac *= 10;
        }
    }
    match b.get(i)? {
        b'Z' | b'z' if i + 1 == n => {}
        &sign @ (b'+' | b'-') if i + 6 == n && b[i + 3] == b':' => {
            let oh = digits(&b[i + 1..i + 3])?;
            let om = digits(&b[i + 4..i + 6])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 3600 + om * 60) as I;
            if sign == b'+' {
                secs -= off;
            } else {
                secs += off;
            }
        }
        _ => return None,
    }
    let inst = secs * NS + frac;
    if !(MIN_INSTANT..END_INSTANT).contains(&inst) {
        return None;
    }
    Some(inst)
}

/// Expiry runs every 6 hours of event time (`_Clock.maybe_sweep`, streams.live.SWEEP_EVERY).
pub const SWEEP_EVERY: I = 6 * HOUR;

/// The fold point before any record (Python: -(10**30) ns).
pub const INIT_FOLD: I = -(10_i128.pow(37));

pub const H24: I = 24 * HOUR;
pub const D7: I = 7 * DAY;
pub const D30: I = 30 * DAY;
pub const D31: I = 31 * DAY;
pub const D90: I = 90 * DAY;

pub struct Clock {
    pub watermark: Option<I>,
    pub fold: I,
    pub last_sweep: Option<I>,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            watermark: None,
            fold: INIT_FOLD,
            last_sweep: None,
        }
    }

    #[inline]
    pub fn see(&mut self, rts: I, margin: I, limit: Option<I>) {
        if self.watermark.is_none_or(|w| rts > w) {
            self.watermark = Some(rts);
            let f = match limit {
                Some(l) => (rts - margin).min(l),
                None => rts - margin,
            };
            if f > self.fold {
                self.fold = f;
            }
        }
    }

    /// `_Clock.maybe_sweep`'s decision (and its first-call bookkeeping).
    pub fn sweep_due(&mut self) -> bool {
        match self.last_sweep {
            None => {
                self.last_sweep = Some(self.fold);
                false
            }
            Some(l) => self.fold - l >= SWEEP_EVERY,
        }
    }
}

/// streams.timeutil.DayCalc: fixed offset inline, else the zone's offsets from Python, cached
/// per 15-minute slot exactly as DayCalc caches them.
pub struct DayCalc {
    pub fixed: Option<I>,
    pub py: Py<PyAny>,
    pub cache: FxMap<i64, Option<I>>,
}

pub const SLOT: I = 900 * NS;
pub const SLOT_NS: I = SLOT / UNIT;

impl DayCalc {
    /// From the settings' `fixed_offset_ns` (None: ask `daycalc`, a streams.timeutil.DayCalc).
    pub fn new(settings: &Bound<'_, PyDict>, daycalc: Py<PyAny>) -> PyResult<Self> {
        let fixed: Option<I> = crate::user::setting(settings, "fixed_offset_ns")?
            .extract::<Option<I>>()?
            .map(|o| o * UNIT);
        Ok(DayCalc {
            fixed,
            py: daycalc,
            cache: FxMap::default(),
        })
    }

    /// The zone's UTC offset at a whole-nanosecond instant (DayCalc.offset_ns).
    pub fn offset(&self, py: Python<'_>, inst_ns: I) -> PyResult<I> {
        Ok(self
            .py
            .bind(py)
            .call_method1("offset_ns", (inst_ns,))?
            .extract::<I>()?
            * UNIT)
    }

    #[inline]
    pub fn day(&mut self, py: Python<'_>, inst: I) -> PyResult<i64> {
        if let Some(off) = self.fixed {
            return Ok((inst + off).div_euclid(DAY) as i64);
        }
        let slot = inst.div_euclid(SLOT);
        let off = match self.cache.get(&(slot as i64)) {
            Some(o) => *o,
            None => {
                let a = self.offset(py, slot * SLOT_NS)?;
                let b = self.offset(py, slot * SLOT_NS + SLOT_NS - 1)?;
                let o = if a == b { Some(a) } else { None };
                self.cache.insert(slot as i64, o);
                o
            }
        };
        let off = match off {
            Some(o) => o,
            // DayCalc.offset_ns reads whole seconds: the nanoseconds' floor is as good
            None => self.offset(py, inst.div_euclid(UNIT))?,
        };
        Ok((inst + off).div_euclid(DAY) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_form() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_utc("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000 * UNIT)
        );
        assert_eq!(
            parse_utc("1970-01-01T00:00:00.1234567891Z"),
            Some(123_456_789_100_000_000)
        );
        assert_eq!(parse_utc("2000-02-29T00:00:00Z"), Some(951_782_400 * NS));
        assert_eq!(parse_utc("2001-02-29T00:00:00Z"), None);
        assert_eq!(parse_utc("1970-01-01T00:00:60Z"), None);
        assert_eq!(parse_utc("1970-01-01t00:00:00z"), Some(0));
        assert_eq!(parse_utc("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_utc("1969-12-31T23:30:00-00:30"), Some(0));
        assert_eq!(parse_utc("1970-01-01T00:00:00+24:00"), None);
        assert_eq!(parse_utc("1970-01-01T00:00:00+01:60"), None);
        assert_eq!(parse_utc("1970-01-01T00:00:00+0100"), None);
        assert_eq!(parse_utc("1970-01-01T00:00:00"), None);
        assert_eq!(parse_utc("0001-01-01T00:00:00+00:01"), None);
        assert_eq!(parse_utc("1970-01-01 00:00:00Z"), None);
        assert_eq!(parse_utc("1970-01-01T00:00:00.Z"), None);
        assert_eq!(parse_utc("1970-01-01T00:00:00.1234567891234567891Z"), None);
        assert_eq!(parse_utc("0000-01-01T00:00:00Z"), None);
        assert_eq!(parse_utc("0001-01-01T00:00:00Z"), Some(MIN_INSTANT));
    }
}
