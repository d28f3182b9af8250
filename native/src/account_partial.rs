//! An account partition's partial at T: the Rust mirror of `streams.engine.AccountPartition.partial`
//! (with `customer_health`, `health_at_risk`, `_subscribed`, `_latest` and `_max_below`), value
//! for value, and the rows a live partition keeps between two asks so that an ask at the
//! worker's "now" reads a dense vector instead of every customer's heap blocks.
//!
//! What a customer adds to the partial at T is a `CustomerAt`: whether it exists, whether it was
//! subscribed 30 days before T and is at T, its orders in the last 90 and 30 days, its last
//! activity, its active days in the 30 days to T's day and its latest survey answer. Every one
//! of those is decided by comparisons `x <= T` (an answer's, an order's, a day's instant, or
//! such an instant plus 30 or 90 days), and a `Span` notes, while the customer is computed, the
//! instants around T between which each comparison would be decided the same way. Within that
//! span and on the same day the `CustomerAt` is the same, so a live partition keeps it in a
//! `Row` (32 bytes, the span rounded inwards to whole nanoseconds) until the customer changes
//! (a fact applied, a sweep that changed it, a load, a removal) or T leaves the span. What
//! depends on T itself (the recency of the last activity, so the health score) is computed from
//! the row at each ask, exactly as from the customer: the row holds the same values.

use crate::entities::Entities;
use crate::partial::{
    floats_block, prefetch, prefetch_slice, sum_terms, visit_prefetched, whole_ns, At, AHEAD,
};
use crate::state::Account;
use crate::time::{DayCalc, D30, D90, I, UNIT};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList};
use std::convert::Infallible;

const D30_NS: I = D30 / UNIT;

/// The instants [lo, hi) around T within which every comparison `x <= T` made so far is decided
/// as it was at T.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Span {
    lo: I,
    hi: I,
}

impl Span {
    /// No comparison made yet.
    pub(crate) fn all() -> Span {
        Span {
            lo: I::MIN,
            hi: I::MAX,
        }
    }

    /// `x <= t`, noted.
    #[inline(always)]
    fn le(&mut self, x: I, t: I) -> bool {
        if x <= t {
            if x > self.lo {
                self.lo = x;
            }
            true
        } else {
            if x < self.hi {
                self.hi = x;
            }
            false
        }
    }
}

/// `_latest(folded, pending, t)`
#[inline]
fn latest(folded: Option<(I, i64)>, pending: &[(I, i64)], t: I, s: &mut Span) -> Option<(I, i64)> {
    let mut best = folded;
    for &k in pending {
        if s.le(k.0, t) && best.is_none_or(|b| k > b) {
            best = Some(k);
        }
    }
    best
}

/// `_max_below(folded, pending, t)`
#[inline]
fn max_below(folded: Option<I>, pending: &[I], t: I, s: &mut Span) -> Option<I> {
    let mut best = folded;
    for &p in pending {
        if s.le(p, t) && best.is_none_or(|b| p > b) {
            best = Some(p);
        }
    }
    best
}

/// `_subscribed(a, t - before)`: each `ev.ts <= t - before` is decided as `ev.ts + before <= t`.
#[inline]
fn subscribed(a: &Account, before: I, t: I, s: &mut Span) -> bool {
    let mut best = a.sub.get();
    for &ev in &a.pending.subp {
        if s.le(ev.0 + before, t) && best.is_none_or(|b| ev > b) {
            best = Some(ev);
        }
    }
    best.is_some_and(|b| b.1 == 0)
}

/// The latest survey answer at T that the health score reads: an NPS answer, else a CSAT one
/// (their stored values: minus the score, as `AccountState` keeps them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Feel {
    Unknown,
    Nps(i64),
    Csat(i64),
}

/// What a customer adds to the partial at T, everything but what T itself changes continuously.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CustomerAt {
    /// `a.first <= t`; nothing else is computed (nor added) otherwise
    exists: bool,
    /// `_subscribed(a, t - 30 days)`, `_subscribed(a, t)`
    sub_was: bool,
    sub_now: bool,
    /// orders in (t - 90 days, t] and (t - 30 days, t]
    n90: u32,
    n30: u32,
    /// `_max_below(a.last, a.lastp, t)`
    last: Option<I>,
    /// active days in d0-29..=d0 by T (0 without a last activity: not read then)
    n_days: u8,
    feel: Feel,
}

impl CustomerAt {
    const ABSENT: CustomerAt = CustomerAt {
        exists: false,
        sub_was: false,
        sub_now: false,
        n90: 0,
        n30: 0,
        last: None,
        n_days: 0,
        feel: Feel::Unknown,
    };
}

/// Customer `a` at T (day `d0` of T), each comparison noted in `s`.
pub(crate) fn customer_at(a: &Account, t: I, d0: i64, s: &mut Span) -> CustomerAt {
    if !s.le(a.first.get(), t) {
        return CustomerAt::ABSENT;
    }
    let sub_was = subscribed(a, D30, t, s);
    let sub_now = subscribed(a, 0, t, s);
    let (mut n90, mut n30) = (0u32, 0u32);
    for &(ts, _) in &a.orders {
        // t - 90 days < ts <= t, and ts > t - 30 days
        if !s.le(ts + D90, t) && s.le(ts, t) {
            n90 += 1;
            if !s.le(ts + D30, t) {
                n30 += 1;
            }
        }
    }
    let p = &a.pending;
    let last = max_below(a.last.get(), &p.lastp, t, s);
    let mut n_days = 0u8;
    if last.is_some() {
        for &(d, m) in &a.days.0 {
            if (d0 - 29..=d0).contains(&d) && s.le(m.get(), t) {
                n_days += 1;
            }
        }
    }
    let feel = match latest(a.nps.get(), &p.npsp, t, s) {
        Some(b) => Feel::Nps(b.1),
        None => match latest(a.csat.get(), &p.csatp, t, s) {
            Some(b) => Feel::Csat(b.1),
            None => Feel::Unknown,
        },
    };
    CustomerAt {
        exists: true,
        sub_was,
        sub_now,
        n90,
        n30,
        last,
        n_days,
        feel,
    }
}

// ---- the health score ------------------------------------------------------------------------

fn is_frac(x: I) -> bool {
    x % UNIT != 0
}

/// The correctly rounded (to nearest, ties to even) float of n / d, for 0 < n, d < 2**126.
fn div_round(n: u128, d: u128) -> f64 {
    let (mut q, mut r) = (n / d, n % d);
    let mut e: i32 = 0;
    while q < (1u128 << 55) {
        r <<= 1;
        q <<= 1;
        if r >= d {
            q |= 1;
            r -= d;
        }
        e -= 1;
    }
    let sticky = r != 0;
    let shift = (128 - q.leading_zeros()) - 53;
    let mut mant = q >> shift;
    let rem = q & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if rem > half || (rem == half && (sticky || mant & 1 == 1)) {
        mant += 1;
    }
    let exp = e + shift as i32;
    (mant as f64) * f64::from_bits(((exp + 1023) as u64) << 52) // mant <= 2**53: exact
}

/// Python's `int / int` (true division: the correctly rounded quotient), d > 0.
fn int_div(n: I, d: I) -> f64 {
    const EXACT: I = 1 << 53;
    if (-EXACT..=EXACT).contains(&n) && d <= EXACT {
        return n as f64 / d as f64;
    }
    if n == 0 {
        return 0.0;
    }
    let q = div_round(n.unsigned_abs(), d as u128);
    if n < 0 {
        -q
    } else {
        q
    }
}

/// `customer_health(a, t)` (health, recency, frequency, sentiment) and `health_at_risk` (exact)
/// of an existing customer.
fn health_of(c: &CustomerAt, at: At) -> (f64, f64, f64, f64, bool) {
    let t = at.t;
    let n = c.n_days as i64;
    let (recency, freq) = match c.last {
        None => (0.0, 0.0),
        Some(last) => {
            let recency = if at.frac || is_frac(last) {
                // float(max(0.0, 1 - Fraction(t - last) / _D30)): exact, rounded once
                let num = D30 - (t - last);
                if num > 0 {
                    div_round(num as u128, D30 as u128)
                } else {
                    0.0
                }
            } else {
                // float(max(0.0, 1 - (t - last) / _D30)): int / int, then a float subtraction
                let v = 1.0 - int_div((t - last) / UNIT, D30_NS);
                if v > 0.0 {
                    v
                } else {
                    0.0
                }
            };
            (recency, (n as f64 / 20.0).min(1.0))
        }
    };
    let sentiment = match c.feel {
        Feel::Nps(v) => (-v) as f64 / 10.0,
        Feel::Csat(v) => (-v - 1) as f64 / 4.0,
        Feel::Unknown => 0.5,
    };
    let h = 100.0 * (0.4 * recency + 0.3 * freq + 0.3 * sentiment);
    if (h - 40.0).abs() >= 1e-6 {
        return (h, recency, freq, sentiment, h < 40.0);
    }
    // health_at_risk, exactly: 4 er + 3 ef + 3 es < 4, times 20 * D30 (attoseconds)
    let mut lhs: I = 0;
    if let Some(last) = c.last {
        lhs += 80 * (D30 - (t - last)).max(0) + 3 * (n.min(20) as I) * D30;
    }
    lhs += match c.feel {
        Feel::Nps(v) => 6 * (-v as I) * D30,
        Feel::Csat(v) => 15 * ((-v - 1) as I) * D30,
        Feel::Unknown => 30 * D30,
    };
    (h, recency, freq, sentiment, lhs < 80 * D30)
}

/// `agents.health.health_entry`'s inputs for the given customers at T: (customer, health,
/// recency, frequency, sentiment, at risk) of those that exist at T (`first <= t`), in order.
pub fn health_entries<'py>(
    py: Python<'py>,
    accounts: &Entities<Account>,
    customers: &Bound<'py, PyAny>,
    dc: &mut DayCalc,
    at: At,
) -> PyResult<Bound<'py, PyList>> {
    let d0 = dc.day(py, at.t)?;
    let out = PyList::empty(py);
    for c in customers.try_iter()? {
        let c = c?;
        let Some(a) = accounts.get(c.extract::<&str>()?) else {
            continue;
        };
        let now = customer_at(a, at.t, d0, &mut Span::all());
        if !now.exists {
            continue;
        }
        let (h, recency, freq, sentiment, risk) = health_of(&now, at);
        out.append((c, h, recency, freq, sentiment, risk))?;
    }
    Ok(out)
}

// ---- the rows kept between asks --------------------------------------------------------------

/// A `CustomerAt` kept between asks, valid for T in [lo, hi) (nanoseconds) on the rows' day.
#[derive(Clone, Copy)]
struct Row {
    lo: i64,
    hi: i64,
    /// the last activity in whole nanoseconds (a row is not kept for a finer one)
    last: i64,
    feel: i16,
    n90: u16,
    n30: u16,
    n_days: u8,
    bits: u8,
}

const KEPT: u8 = 1;
const EXISTS: u8 = 2;
const SUB_WAS: u8 = 4;
const SUB_NOW: u8 = 8;
const LAST: u8 = 16;
const NPS: u8 = 32;
const CSAT: u8 = 64;

impl Row {
    const STALE: Row = Row {
        lo: 0,
        hi: 0,
        last: 0,
        feel: 0,
        n90: 0,
        n30: 0,
        n_days: 0,
        bits: 0,
    };

    /// The row of `c`, computed at an instant within `s`; stale when a value does not fit (the
    /// customer is then computed at each ask).
    fn new(c: &CustomerAt, s: Span) -> Row {
        Row::try_new(c, s).unwrap_or(Row::STALE)
    }

    fn try_new(c: &CustomerAt, s: Span) -> Option<Row> {
        // the span rounded inwards: lo up, hi down, to whole nanoseconds
        let lo = if s.lo == I::MIN {
            i64::MIN
        } else {
            let q = s.lo.div_euclid(UNIT) + I::from(s.lo.rem_euclid(UNIT) != 0);
            i64::try_from(q).ok()?
        };
        let hi = if s.hi == I::MAX {
            i64::MAX
        } else {
            i64::try_from(s.hi.div_euclid(UNIT)).unwrap_or(if s.hi > 0 {
                i64::MAX
            } else {
                i64::MIN
            })
        };
        let mut bits = KEPT;
        let mut last = 0;
        if let Some(l) = c.last {
            last = whole_ns(l)?;
            bits |= LAST;
        }
        let feel = match c.feel {
            Feel::Unknown => 0,
            Feel::Nps(v) => {
                bits |= NPS;
                i16::try_from(v).ok()?
            }
            Feel::Csat(v) => {
                bits |= CSAT;
                i16::try_from(v).ok()?
            }
        };
        for (yes, bit) in [
            (c.exists, EXISTS),
            (c.sub_was, SUB_WAS),
            (c.sub_now, SUB_NOW),
        ] {
            if yes {
                bits |= bit;
            }
        }
        Some(Row {
            lo,
            hi,
            last,
            feel,
            n90: u16::try_from(c.n90).ok()?,
            n30: u16::try_from(c.n30).ok()?,
            n_days: c.n_days,
            bits,
        })
    }

    /// Whether the row holds at T.
    #[inline(always)]
    fn holds(&self, t: I) -> bool {
        self.bits & KEPT != 0 && (self.lo as I) * UNIT <= t && t < (self.hi as I) * UNIT
    }

    #[inline(always)]
    fn get(&self) -> CustomerAt {
        let b = self.bits;
        CustomerAt {
            exists: b & EXISTS != 0,
            sub_was: b & SUB_WAS != 0,
            sub_now: b & SUB_NOW != 0,
            n90: self.n90 as u32,
            n30: self.n30 as u32,
            last: (b & LAST != 0).then(|| self.last as I * UNIT),
            n_days: self.n_days,
            feel: if b & NPS != 0 {
                Feel::Nps(self.feel as i64)
            } else if b & CSAT != 0 {
                Feel::Csat(self.feel as i64)
            } else {
                Feel::Unknown
            },
        }
    }
}

/// A live account partition's rows: one per customer, at the customer's position in the
/// partition's `Entities` (a position past the end, or a stale row, is computed at the next ask).
/// Whoever changes a customer marks its row stale (`changed`), or all of them (`clear`).
#[derive(Default)]
pub struct Rows {
    day: Option<i64>,
    rows: Vec<Row>,
    /// customers read from their rows (tests/unit/test_native_live.py checks they are)
    pub reused: u64,
}

impl Rows {
    /// The customer at position `i` changed.
    #[inline]
    pub fn changed(&mut self, i: usize) {
        if let Some(r) = self.rows.get_mut(i) {
            *r = Row::STALE;
        }
    }

    /// The customer at position `i` was removed and the last one took its place: `len` remain.
    pub fn removed(&mut self, i: usize, len: usize) {
        self.changed(i);
        self.rows.truncate(len);
    }

    pub fn clear(&mut self) {
        self.rows.clear();
    }
}

// ---- the scan --------------------------------------------------------------------------------

/// Prefetch the fields of a customer's struct that `customer_at` reads.
#[inline(always)]
fn prefetch_account_fields(a: &Account) {
    prefetch(&a.first);
    prefetch(&a.days);
    prefetch(&a.last);
    prefetch(&a.nps);
    prefetch(&a.csat);
    prefetch(&a.sub);
    prefetch(&a.orders);
    prefetch(&a.pending);
}

/// Prefetch a customer's heap blocks that `customer_at` reads.
#[inline(always)]
fn prefetch_account(a: &Account) {
    prefetch_slice(&a.days.0);
    prefetch_slice(&a.pending.lastp);
    prefetch_slice(&a.pending.npsp);
    prefetch_slice(&a.pending.csatp);
    prefetch_slice(&a.pending.subp);
    prefetch_slice(&a.orders);
}

/// What the scan of a partition's customers at T adds up (`AccountPartition.partial`).
pub struct AccountScan {
    /// subscribers, sub_start, sub_lost, sub_new, orders_90, customers_1, customers_2,
    /// customers_30, at_risk: the names of `COUNT_NAMES`
    counts: [i64; 9],
    revenue_90: Vec<f64>,
    revenue_30: Vec<f64>,
    healths: Vec<f64>,
    /// `sum_terms(&healths)`
    health_terms: Option<Vec<f64>>,
}

const COUNT_NAMES: [&str; 9] = [
    "subscribers",
    "sub_start",
    "sub_lost",
    "sub_new",
    "orders_90",
    "customers_1",
    "customers_2",
    "customers_30",
    "at_risk",
];

impl AccountScan {
    fn new(n: usize) -> Self {
        AccountScan {
            counts: [0; 9],
            revenue_90: Vec::new(),
            revenue_30: Vec::new(),
            healths: Vec::with_capacity(n),
            health_terms: None,
        }
    }

    /// Customer `a` at T, `c` (its orders are read only when it has some in the 90 days).
    #[inline(always)]
    fn add(&mut self, c: &CustomerAt, a: &Account, at: At) {
        if !c.exists {
            return;
        }
        let k = &mut self.counts;
        if c.sub_now {
            k[0] += 1;
        }
        if c.sub_was {
            k[1] += 1;
            if !c.sub_now {
                k[2] += 1;
            }
        } else if c.sub_now {
            k[3] += 1;
        }
        if c.n90 > 0 {
            let t = at.t;
            let (t30, t90) = (t - D30, t - D90);
            for &(ts, amount) in &a.orders {
                if t90 < ts && ts <= t {
                    self.revenue_90.push(amount);
                    if ts > t30 {
                        self.revenue_30.push(amount);
                    }
                }
            }
            k[4] += c.n90 as i64;
            k[5] += 1;
            if c.n90 >= 2 {
                k[6] += 1;
            }
            if c.n30 > 0 {
                k[7] += 1;
            }
        }
        let (h, _, _, _, risk) = health_of(c, at);
        self.healths.push(h);
        if risk {
            k[8] += 1;
        }
    }
}

/// The scan of every customer at T (day `d0` of T): Rust only, so it runs without the GIL. With
/// `rows`, a customer whose row holds at T is read from it, and the others' rows are computed.
pub fn scan_accounts(
    accounts: &Entities<Account>,
    rows: Option<&mut Rows>,
    at: At,
    d0: i64,
) -> AccountScan {
    let t = at.t;
    let mut scan = AccountScan::new(accounts.len());
    let n = accounts.len();
    match rows {
        None => {
            let Ok(()) = visit_prefetched::<_, Infallible>(
                accounts.values(),
                prefetch_account_fields,
                prefetch_account,
                |a| {
                    scan.add(&customer_at(a, t, d0, &mut Span::all()), a, at);
                    Ok(())
                },
            );
        }
        Some(rows) => {
            if rows.day != Some(d0) {
                rows.rows.clear();
                rows.day = Some(d0);
            }
            rows.rows.resize(n, Row::STALE);
            // prefetch the customers the rows do not answer for (or whose orders are read)
            let wanted = |r: &Row| !r.holds(t) || (r.bits & EXISTS != 0 && r.n90 > 0);
            for i in 0..n {
                if let Some(r) = rows.rows.get(i + 2 * AHEAD) {
                    if wanted(r) {
                        prefetch_account_fields(accounts.at(i + 2 * AHEAD));
                    }
                }
                if let Some(r) = rows.rows.get(i + AHEAD) {
                    if !r.holds(t) {
                        prefetch_account(accounts.at(i + AHEAD));
                    } else if wanted(r) {
                        prefetch_slice(&accounts.at(i + AHEAD).orders);
                    }
                }
                let a = accounts.at(i);
                let row = &mut rows.rows[i];
                let c = if row.holds(t) {
                    rows.reused += 1;
                    row.get()
                } else {
                    let mut s = Span::all();
                    let c = customer_at(a, t, d0, &mut s);
                    *row = Row::new(&c, s);
                    c
                };
                scan.add(&c, a, at);
            }
        }
    }
    scan.health_terms = sum_terms(&scan.healths);
    scan
}

/// The scan as the dict of `Partial` fields the Python side builds its `Partial` from.
fn account_scan_dict<'py>(py: Python<'py>, scan: &AccountScan) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in COUNT_NAMES.iter().zip(scan.counts) {
        d.set_item(*k, v)?;
    }
    let floats = |v: &[f64]| PyList::new(py, v.iter().map(|&x| PyFloat::new(py, x)));
    d.set_item("revenue_90", floats(&scan.revenue_90)?)?;
    d.set_item("revenue_30", floats(&scan.revenue_30)?)?;
    // the health scores as a block, with terms of their exact sum (`sum_terms`)
    d.set_item("health", floats_block(py, &scan.healths))?;
    match &scan.health_terms {
        Some(terms) => d.set_item("health_terms", floats(terms)?)?,
        None => d.set_item("health_terms", py.None())?,
    }
    Ok(d)
}

/// `AccountPartition.partial(t)`: the scan runs with the GIL released, so the partitions of a
/// worker scan on several cores at once (agents/gather.py).
pub fn accounts_partial<'py>(
    py: Python<'py>,
    accounts: &Entities<Account>,
    rows: Option<&mut Rows>,
    dc: &mut DayCalc,
    at: At,
) -> PyResult<Bound<'py, PyDict>> {
    let d0 = dc.day(py, at.t)?;
    let scan = py.detach(|| scan_accounts(accounts, rows, at, d0));
    account_scan_dict(py, &scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divides_like_python() {
        assert_eq!(int_div(1, 3), 1.0 / 3.0);
        assert_eq!(int_div(-7, 2), -3.5);
        assert_eq!(int_div(0, 5), 0.0);
        // beyond 2**53: 2**60 + 1 over 3, correctly rounded
        let n: I = (1 << 60) + 1;
        assert_eq!(int_div(n, 3), 384_307_168_202_282_325.666_f64);
        assert_eq!(div_round(1, 1), 1.0);
        assert_eq!(div_round(2, 3), 2.0 / 3.0);
        assert_eq!(div_round(1 << 100, 1 << 40), (1u64 << 60) as f64);
        // a tie rounds to even: (2**53 + 1) / 1 -> 2**53
        assert_eq!(div_round((1 << 53) + 1, 1), 9_007_199_254_740_992.0);
        assert_eq!(div_round((1 << 53) + 3, 1), 9_007_199_254_740_996.0);
    }

    #[test]
    fn a_row_gives_back_what_it_was_made_of() {
        let c = CustomerAt {
            exists: true,
            sub_was: true,
            sub_now: false,
            n90: 3,
            n30: 1,
            last: Some(1_700_000_000_123_456_789 * UNIT),
            n_days: 17,
            feel: Feel::Csat(-4),
        };
        let s = Span {
            lo: 5 * UNIT + 1,
            hi: 9 * UNIT - 1,
        };
        let r = Row::new(&c, s);
        assert_eq!(r.get(), c);
        // the span rounded inwards: [6 ns, 8 ns)
        assert!(!r.holds(6 * UNIT - 1) && r.holds(6 * UNIT) && r.holds(8 * UNIT - 1));
        assert!(!r.holds(8 * UNIT));
        // a last activity finer than a nanosecond, or an answer past i16: no row
        for c2 in [
            CustomerAt {
                last: Some(5 * UNIT + 7),
                ..c
            },
            CustomerAt {
                feel: Feel::Nps(70_000),
                ..c
            },
        ] {
            assert!(!Row::new(&c2, s).holds(7 * UNIT));
        }
        let open = Row::new(&CustomerAt::ABSENT, Span::all());
        assert!(open.holds(0) && open.get() == CustomerAt::ABSENT);
        // a row a customer: 32 bytes beside its ~300 (docs/architecture.md)
        assert_eq!(std::mem::size_of::<Row>(), 32);
    }
}
