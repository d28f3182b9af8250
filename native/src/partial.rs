//! A user partition's partial at T computed by a scan of the state held here: the Rust mirror of
//! `streams.engine.UserPartition.partial` / `_user_partial` (with `_max_below`,
//! `SurveyCounts.add` and `Partial.add_answer`), value for value and type for type, and what
//! account_partial.rs shares (`At`, `sum_terms`, the prefetches).
//!
//! Python's instants are int nanoseconds, or Fractions when finer: a difference of two of them
//! (a time to first value, a session's duration, a ticket's resolution time) is a Fraction when
//! either is, even when it is whole, so each such value carries that flag here and the sums are
//! Fractions once one of their terms is. The floats (health) follow Python's operations one by
//! one: `int / int` is the correctly rounded quotient, `Fraction` arithmetic is exact and
//! rounded once by `float()`.
//!
//! The result is a dict of the `streams.engine.Partial` fields (the dicts of fixed keys and the
//! `SurveyCounts` as lists) that streams/native_live.py turns into a `Partial`. Dicts keep the
//! order their keys were first counted in, lists the order users, their sessions, tickets...
//! are visited in: the order the exported state (`export()`) lists them in, so the partial is
//! the one the Python engine computes on the exported state, in order too.

use crate::convert::Conv;
use crate::names::Name;
use crate::state::{
    Key, Map, Milestones, Ms, User, F_CANCEL, F_CLICK, F_IMPRESSION, F_SOCIAL, NONE,
};
use crate::state::{SV_CES, SV_CSAT, SV_NPS};
use crate::time::{DayCalc, D30, D7, D90, DAY, H24, HOUR, I, UNIT};
use pyo3::conversion::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

const H1: I = HOUR;
const D14: I = 14 * DAY;

/// What the user scan reads of the configuration.
pub struct PartialCfg {
    /// (step, "step:<step>") in the configured order
    pub steps: Vec<(String, String)>,
    /// every milestone key the scan reads (activation events, the value event, the steps'),
    /// once each; and the index in it of each act key, of the value event, of each step
    ms_keys: Vec<Name>,
    act_idx: Vec<usize>,
    value_idx: usize,
    step_idx: Vec<usize>,
    /// each step's index in `steps`, or that of the first step of the same name
    step_canon: Vec<usize>,
}

impl PartialCfg {
    pub fn from_settings(settings: &Bound<'_, PyDict>) -> PyResult<Self> {
        let get = |k: &str| crate::user::setting(settings, k);
        let steps: Vec<String> = get("funnel_steps")?.extract()?;
        let steps: Vec<(String, String)> = steps
            .into_iter()
            .map(|s| {
                let k = format!("step:{s}");
                (s, k)
            })
            .collect();
        let act_keys: Vec<String> = get("activation_events")?.extract()?;
        let value_event: String = get("value_event")?.extract()?;
        let mut ms_keys: Vec<Name> = Vec::new();
        let mut idx = |k: &str| -> PyResult<usize> {
            let name = crate::names::intern_or_err(k)?;
            Ok(match ms_keys.iter().position(|&x| x == name) {
                Some(i) => i,
                None => {
                    ms_keys.push(name);
                    ms_keys.len() - 1
                }
            })
        };
        let act_idx = act_keys.iter().map(|k| idx(k)).collect::<PyResult<_>>()?;
        let value_idx = idx(&value_event)?;
        let step_idx = steps.iter().map(|(_, k)| idx(k)).collect::<PyResult<_>>()?;
        let step_canon = (0..steps.len())
            .map(|i| steps.iter().position(|s| s.0 == steps[i].0).unwrap_or(i))
            .collect();
        Ok(PartialCfg {
            step_canon,
            steps,
            ms_keys,
            act_idx,
            value_idx,
            step_idx,
        })
    }

    /// The instant of every key of `ms_keys` in `ms` (None: absent, or a list: a milestone
    /// before the signup, which `type(m) is not list` leaves out): one pass over the user's
    /// milestones rather than a lookup per key.
    #[inline]
    fn read_ms(&self, ms: &Milestones, out: &mut Vec<Option<I>>) {
        out.clear();
        out.resize(self.ms_keys.len(), None);
        for (k, m) in ms {
            if let Ms::At(x) = m {
                if let Some(i) = self.ms_keys.iter().position(|x| x == k) {
                    out[i] = Some(x.get());
                }
            }
        }
    }
}

/// T as the scan reads it.
#[derive(Clone, Copy)]
pub struct At {
    pub t: I,
    /// T is a Python Fraction (not an int): then every `t - x` is one too
    pub frac: bool,
}

/// `streams.engine.SurveyCounts`
#[derive(Default, Clone)]
pub(crate) struct Counts {
    csat_n: [i64; 3],
    csat_pos: [i64; 3],
    nps_n: [i64; 2],
    nps_pro: [i64; 2],
    nps_det: [i64; 2],
    ces_n: [i64; 2],
    ces_sum: [i64; 2],
}

impl Counts {
    /// `SurveyCounts.add`
    #[inline]
    fn add(&mut self, sv: u8, score: i64, age: I) {
        match sv {
            SV_CSAT => {
                for (i, w) in [H1, H24, D7].into_iter().enumerate() {
                    if age < w {
                        self.csat_n[i] += 1;
                        if score >= 4 {
                            self.csat_pos[i] += 1;
                        }
                    }
                }
            }
            SV_NPS => {
                for (i, w) in [D7, D30].into_iter().enumerate() {
                    if age < w {
                        self.nps_n[i] += 1;
                        if score >= 9 {
                            self.nps_pro[i] += 1;
                        } else if score <= 6 {
                            self.nps_det[i] += 1;
                        }
                    }
                }
            }
            SV_CES => {
                for (i, w) in [D7, D30].into_iter().enumerate() {
                    if age < w {
                        self.ces_n[i] += 1;
                        self.ces_sum[i] += score;
                    }
                }
            }
            _ => {}
        }
    }

    /// `self += sign * o`, field by field
    pub(crate) fn add_signed(&mut self, o: &Counts, sign: i64) {
        fn each<const N: usize>(a: &mut [i64; N], b: &[i64; N], sign: i64) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += sign * y;
            }
        }
        each(&mut self.csat_n, &o.csat_n, sign);
        each(&mut self.csat_pos, &o.csat_pos, sign);
        each(&mut self.nps_n, &o.nps_n, sign);
        each(&mut self.nps_pro, &o.nps_pro, sign);
        each(&mut self.nps_det, &o.nps_det, sign);
        each(&mut self.ces_n, &o.ces_n, sign);
        each(&mut self.ces_sum, &o.ces_sum, sign);
    }

    /// (csat_n, csat_pos, nps_n, nps_pro, nps_det, ces_n, ces_sum): SurveyCounts' fields
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        (
            self.csat_n.to_vec(),
            self.csat_pos.to_vec(),
            self.nps_n.to_vec(),
            self.nps_pro.to_vec(),
            self.nps_det.to_vec(),
            self.ces_n.to_vec(),
            self.ces_sum.to_vec(),
        )
            .into_bound_py_any(py)
    }
}

/// Counts by key, in the order keys were first counted (a Python dict's).
pub(crate) struct Ordered<V> {
    index: Map<Key, usize>,
    pub(crate) items: Vec<(Key, V)>,
}

impl<V: Default> Ordered<V> {
    pub(crate) fn new() -> Self {
        Ordered {
            index: Map::default(),
            items: Vec::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.items.clear();
    }

    #[inline]
    pub(crate) fn entry(&mut self, k: &str) -> &mut V {
        let i = match self.index.get(k) {
            Some(&i) => i,
            None => {
                let i = self.items.len();
                self.index.insert(Key::from(k), i);
                self.items.push((Key::from(k), V::default()));
                i
            }
        };
        &mut self.items[i].1
    }
}

/// A duration (a difference of two instants): attoseconds, and whether Python holds it as a
/// Fraction.
pub(crate) type Dur = (I, bool);

/// The sum of durations as Python accumulates it from int 0.
#[derive(Default)]
pub(crate) struct DurSum {
    pub(crate) total: I,
    pub(crate) frac: bool,
}

impl DurSum {
    #[inline]
    fn add(&mut self, d: Dur) {
        self.total += d.0;
        self.frac |= d.1;
    }
}

#[inline]
fn is_frac(x: I) -> bool {
    x % UNIT != 0
}

#[inline]
fn dur(a: I, b: I) -> Dur {
    (a - b, is_frac(a) || is_frac(b))
}

fn dur_py<'py>(py: Python<'py>, conv: &Conv, d: Dur) -> PyResult<Bound<'py, PyAny>> {
    if d.1 {
        conv.fraction.bind(py).call1((d.0,)) // Fraction(atto, 10**9): a Fraction, even whole
    } else {
        conv.t(py, d.0)
    }
}

fn durs_py<'py>(py: Python<'py>, conv: &Conv, v: &[Dur]) -> PyResult<Bound<'py, PyList>> {
    let items = v
        .iter()
        .map(|&d| dur_py(py, conv, d))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// Durations for Python in one block: when each is a whole number of nanoseconds that fits an
/// i64 (always, but for instants finer than a nanosecond), the bytes of those nanoseconds as
/// native-endian i64s, which Python reads as an `array('q')` (streams/native_live.py): one
/// object rather than an int object for each of a million users. Otherwise `durs_py`'s list.
pub(crate) fn durs_block<'py>(
    py: Python<'py>,
    conv: &Conv,
    v: &[Dur],
) -> PyResult<Bound<'py, PyAny>> {
    let mut bytes: Vec<u8> = Vec::with_capacity(v.len() * 8);
    for &(d, frac) in v {
        let ns = if frac { None } else { whole_ns(d) };
        match ns {
            Some(ns) => bytes.extend_from_slice(&ns.to_ne_bytes()),
            None => return Ok(durs_py(py, conv, v)?.into_any()),
        }
    }
    Ok(PyBytes::new(py, &bytes).into_any())
}

/// The inverse of UNIT's odd factor (5^9) modulo 2^128, by Newton's iteration (each step doubles
/// the bits that are right; an odd number is its own inverse modulo 8).
const INV_ODD_UNIT: u128 = {
    let odd: u128 = 1_953_125;
    let mut inv = odd;
    let mut i = 0;
    while i < 6 {
        inv = inv.wrapping_mul(2u128.wrapping_sub(odd.wrapping_mul(inv)));
        i += 1;
    }
    inv
};

/// `d / UNIT` when UNIT (2^9 * 5^9) divides `d` and the quotient fits an i64; else None. Without
/// an i128 division (a call to a slow routine, once per duration of a million users): the low
/// nine bits must be zero, and the rest times the inverse of 5^9 modulo 2^128 is the quotient
/// exactly when 5^9 divides it, which multiplying back checks (no overflow: |q| < 2^63).
#[inline]
pub(crate) fn whole_ns(d: I) -> Option<i64> {
    if d & 511 != 0 {
        return None;
    }
    let x = d >> 9;
    let q = (x as u128).wrapping_mul(INV_ODD_UNIT) as i128;
    let q = i64::try_from(q).ok()?;
    (q as i128 * 1_953_125 == x).then_some(q)
}

/// Floats whose exact sum is the exact sum of `values`: the partials of Shewchuk's algorithm,
/// as Python's `math.fsum` keeps them (each addition split into its rounded sum and the exact
/// error). `math.fsum` of them is therefore `math.fsum(values)` (the sum correctly rounded, in
/// any order), and a partition hands over a few floats for its health sum rather than one for
/// each of its customers. `None` when a value or a partial is not finite (`math.fsum`'s special
/// cases): the caller then hands over the values themselves.
pub(crate) fn sum_terms(values: &[f64]) -> Option<Vec<f64>> {
    let mut partials: Vec<f64> = Vec::new();
    for &v in values {
        if !v.is_finite() {
            return None;
        }
        let mut x = v;
        let mut kept = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        if !x.is_finite() {
            return None;
        }
        partials.truncate(kept);
        partials.push(x);
    }
    Some(partials)
}

/// `sum_terms` for Python (tests/unit/test_distribution.py holds it to `math.fsum`).
#[pyfunction]
#[pyo3(name = "sum_terms")]
pub fn py_sum_terms(values: Vec<f64>) -> Option<Vec<f64>> {
    sum_terms(&values)
}

/// The bytes of floats as native-endian f64s (Python reads them as an `array('d')`).
pub(crate) fn floats_block<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyBytes> {
    let mut bytes: Vec<u8> = Vec::with_capacity(v.len() * 8);
    for x in v {
        bytes.extend_from_slice(&x.to_ne_bytes());
    }
    PyBytes::new(py, &bytes)
}

/// `_max_below(folded, pending, t)`: the folded value is taken as it is (not checked against t).
#[inline]
pub(crate) fn max_below(folded: Option<I>, pending: &[I], t: I) -> Option<I> {
    let mut best = folded;
    for &p in pending {
        if p <= t && best.is_none_or(|b| p > b) {
            best = Some(p);
        }
    }
    best
}

// ---- the user partition ----------------------------------------------------------------------

/// `Partial`'s fields a user partition fills (`aggregate.rs` keeps signed sums of them).
pub(crate) struct UserAcc {
    dau: i64,
    wau: i64,
    mau: i64,
    new: i64,
    returning: i64,
    resurrecting: i64,
    dormant_lifecycle: i64,
    features: Ordered<i64>,
    surveys: Counts,
    /// per touchpoint: (answers within 30 days, their counts); a touchpoint is listed when it
    /// has such an answer, even if no window of its counts holds it
    by_tp: Ordered<(i64, Counts)>,
    mature: i64,
    activated: i64,
    returned: i64,
    pub(crate) ttfv: Vec<Dur>,
    funnel: Vec<(usize, i64)>, // (step's index, count) in the order steps were first reached
    ret_cohort: [i64; 3],
    ret_kept: [i64; 3],
    returns: i64,
    sessions: i64,
    session_dur: DurSum,
    session_dur_n: i64,
    pub(crate) session_durs: Vec<Dur>,
    bounces: i64,
    clicks: i64,
    impressions: i64,
    social: Vec<i64>,
    tickets_opened: i64,
    open_tickets: i64,
    resolution: DurSum,
    resolution_n: i64,
    pub(crate) resolution_durs: Vec<Dur>,
    // SIGNALS: cancellation, nps_detractor, csat_negative, dormant
    sig1: [i64; 4],
    sig24: [i64; 4],
}

impl UserAcc {
    pub(crate) fn new(n_social: usize) -> Self {
        UserAcc {
            dau: 0,
            wau: 0,
            mau: 0,
            new: 0,
            returning: 0,
            resurrecting: 0,
            dormant_lifecycle: 0,
            features: Ordered::new(),
            surveys: Counts::default(),
            by_tp: Ordered::new(),
            mature: 0,
            activated: 0,
            returned: 0,
            ttfv: Vec::new(),
            funnel: Vec::new(),
            ret_cohort: [0; 3],
            ret_kept: [0; 3],
            returns: 0,
            sessions: 0,
            session_dur: DurSum::default(),
            session_dur_n: 0,
            session_durs: Vec::new(),
            bounces: 0,
            clicks: 0,
            impressions: 0,
            social: vec![0; n_social],
            tickets_opened: 0,
            open_tickets: 0,
            resolution: DurSum::default(),
            resolution_n: 0,
            resolution_durs: Vec::new(),
            sig1: [0; 4],
            sig24: [0; 4],
        }
    }

    pub(crate) fn social_len(&self) -> usize {
        self.social.len()
    }

    /// Back to zero, keeping the allocations (one user's contribution at a time).
    pub(crate) fn clear(&mut self) {
        let (mut features, mut by_tp) = (
            std::mem::replace(&mut self.features, Ordered::new()),
            std::mem::replace(&mut self.by_tp, Ordered::new()),
        );
        let (mut ttfv, mut sd, mut rd, mut funnel, mut social) = (
            std::mem::take(&mut self.ttfv),
            std::mem::take(&mut self.session_durs),
            std::mem::take(&mut self.resolution_durs),
            std::mem::take(&mut self.funnel),
            std::mem::take(&mut self.social),
        );
        features.clear();
        by_tp.clear();
        ttfv.clear();
        sd.clear();
        rd.clear();
        funnel.clear();
        social.iter_mut().for_each(|x| *x = 0);
        *self = UserAcc {
            features,
            by_tp,
            ttfv,
            session_durs: sd,
            resolution_durs: rd,
            funnel,
            social,
            ..UserAcc::new(0)
        };
    }

    /// `self += sign * c` for every count and sum; the lists (times to first value, session
    /// and resolution durations) are left to the caller.
    pub(crate) fn add_signed(&mut self, c: &UserAcc, sign: i64) {
        macro_rules! scalars {
            ($($f:ident),*) => { $( self.$f += sign * c.$f; )* };
        }
        scalars!(
            dau,
            wau,
            mau,
            new,
            returning,
            resurrecting,
            dormant_lifecycle,
            mature,
            activated,
            returned,
            returns,
            sessions,
            session_dur_n,
            bounces,
            clicks,
            impressions,
            tickets_opened,
            open_tickets,
            resolution_n
        );
        for (k, n) in &c.features.items {
            *self.features.entry(k.as_str()) += sign * n;
        }
        self.surveys.add_signed(&c.surveys, sign);
        for (k, (n, cn)) in &c.by_tp.items {
            let e = self.by_tp.entry(k.as_str());
            e.0 += sign * n;
            e.1.add_signed(cn, sign);
        }
        for &(step, n) in &c.funnel {
            match self.funnel.iter_mut().find(|x| x.0 == step) {
                Some(x) => x.1 += sign * n,
                None => self.funnel.push((step, sign * n)),
            }
        }
        for i in 0..3 {
            self.ret_cohort[i] += sign * c.ret_cohort[i];
            self.ret_kept[i] += sign * c.ret_kept[i];
        }
        for (x, y) in self.social.iter_mut().zip(&c.social) {
            *x += sign * y;
        }
        for i in 0..4 {
            self.sig1[i] += sign * c.sig1[i];
            self.sig24[i] += sign * c.sig24[i];
        }
        self.session_dur.total += sign as I * c.session_dur.total;
        self.resolution.total += sign as I * c.resolution.total;
    }

    /// The dict of Partial fields (the module's doc) with these lists; `counters` are
    /// (accepted, duplicates, rejected by reason). Keys counted zero times are left out (a
    /// sum of contributions may hold them; a scan never does).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn to_dict<'py>(
        &self,
        py: Python<'py>,
        conv: &Conv,
        cfg: &PartialCfg,
        counters: (u64, u64, &[u64; 5]),
        ttfv: Bound<'py, PyAny>,
        session_durs: &[Dur],
        resolution_durs: &[Dur],
    ) -> PyResult<Bound<'py, PyDict>> {
        let p = self;
        let d = PyDict::new(py);
        d.set_item("accepted", counters.0)?;
        d.set_item("duplicates", counters.1)?;
        d.set_item("rejected", counters.2.to_vec())?;
        for (k, v) in [
            ("dau", p.dau),
            ("wau", p.wau),
            ("mau", p.mau),
            ("new", p.new),
            ("returning", p.returning),
            ("resurrecting", p.resurrecting),
            ("dormant_lifecycle", p.dormant_lifecycle),
            ("mature", p.mature),
            ("activated", p.activated),
            ("returned", p.returned),
            ("returns", p.returns),
            ("sessions", p.sessions),
            ("session_dur_n", p.session_dur_n),
            ("bounces", p.bounces),
            ("clicks", p.clicks),
            ("impressions", p.impressions),
            ("tickets_opened", p.tickets_opened),
            ("open_tickets", p.open_tickets),
            ("resolution_n", p.resolution_n),
        ] {
            d.set_item(k, v)?;
        }
        let features = PyDict::new(py);
        for (k, n) in &p.features.items {
            if *n != 0 {
                features.set_item(k.as_str(), n)?;
            }
        }
        d.set_item("features", features)?;
        d.set_item("surveys", p.surveys.to_py(py)?)?;
        let by_tp = PyDict::new(py);
        for (k, (n, cn)) in &p.by_tp.items {
            if *n != 0 {
                by_tp.set_item(k.as_str(), cn.to_py(py)?)?;
            }
        }
        d.set_item("by_tp", by_tp)?;
        d.set_item("ttfv", ttfv)?;
        let funnel = PyDict::new(py);
        for &(step, n) in &p.funnel {
            if n != 0 {
                funnel.set_item(cfg.steps[step].0.as_str(), n)?;
            }
        }
        d.set_item("funnel", funnel)?;
        d.set_item("ret_cohort", p.ret_cohort.to_vec())?;
        d.set_item("ret_kept", p.ret_kept.to_vec())?;
        let sum = |s: &DurSum| dur_py(py, conv, (s.total, s.frac));
        d.set_item("session_dur", sum(&p.session_dur)?)?;
        d.set_item("session_durs", durs_py(py, conv, session_durs)?)?;
        d.set_item("social", p.social.clone())?;
        d.set_item("resolution", sum(&p.resolution)?)?;
        d.set_item("resolution_durs", durs_py(py, conv, resolution_durs)?)?;
        d.set_item("sig1", p.sig1.to_vec())?;
        d.set_item("sig24", p.sig24.to_vec())?;
        Ok(d)
    }
}

const SIG_CANCEL: usize = 0;
const SIG_NPS: usize = 1;
const SIG_CSAT: usize = 2;
const SIG_DORMANT: usize = 3;

pub(crate) struct UserCtx<'a> {
    pub(crate) at: At,
    pub(crate) d0: i64,
    pub(crate) cfg: &'a PartialCfg,
}

/// Ask for the memory a user's scan reads (its days, answers, facts, milestones...) ahead of
/// time: the scan is bound by cache misses on each user's heap blocks, which prefetching a few
/// users ahead overlaps.
#[inline(always)]
fn prefetch_user(u: &User) {
    prefetch_slice(&u.days.0);
    prefetch_slice(&u.ms.0);
    prefetch_slice(&u.lastp);
    if let Some(r) = u.rare.as_deref() {
        // the box (its blocks are found when the scan reaches the user: few users have one)
        prefetch_slice(std::slice::from_ref(r));
    }
}

/// Prefetch a slice's cache lines (its first 1 KiB).
#[inline(always)]
pub(crate) fn prefetch_slice<T>(v: &[T]) {
    let bytes = std::mem::size_of_val(v).min(1024);
    let p = v.as_ptr() as *const u8;
    let mut off = 0;
    while off < bytes {
        prefetch(p.wrapping_add(off));
        off += 64;
    }
}

#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetch the fields of a user's struct the scan reads (the struct spans several cache
/// lines; taking a field's address reads nothing), so that `prefetch_user` finds them cached.
#[inline(always)]
fn prefetch_fields(u: &User) {
    prefetch(&u.days);
    prefetch(&u.ms);
    prefetch(&u.signup);
    prefetch(&u.last);
    prefetch(&u.lastp);
    prefetch(&u.rare);
}

/// How many users ahead the scan prefetches their blocks (`prefetch_user`), and their structs'
/// fields (`prefetch_fields`, twice as far).
pub(crate) const AHEAD: usize = 8;

/// `visit` each of `items` in order, with `fields` (what the struct holds) asked ahead of time
/// 2 * AHEAD items before it and `blocks` (what those fields point to) AHEAD items before it.
#[inline(always)]
pub(crate) fn visit_prefetched<'a, T: 'a, E>(
    items: impl Iterator<Item = &'a T> + Clone,
    fields: impl Fn(&T),
    blocks: impl Fn(&T),
    mut visit: impl FnMut(&'a T) -> Result<(), E>,
) -> Result<(), E> {
    let mut ahead = items.clone();
    let mut ahead2 = items.clone();
    for x in ahead2.by_ref().take(2 * AHEAD) {
        fields(x);
    }
    for x in ahead.by_ref().take(AHEAD) {
        blocks(x);
    }
    for x in items {
        if let Some(y) = ahead2.next() {
            fields(y);
        }
        if let Some(y) = ahead.next() {
            blocks(y);
        }
        visit(x)?;
    }
    Ok(())
}

/// `UserPartition._user_partial`.
pub(crate) fn user_partial(
    py: Python<'_>,
    p: &mut UserAcc,
    u: &User,
    c: &UserCtx<'_>,
    dc: &mut DayCalc,
    ms: &mut Vec<Option<I>>,
) -> PyResult<()> {
    let t = c.at.t;
    let d0 = c.d0;
    // the active days in d0-30..=d0 (by T): bit k for day d0 - k
    let mut active: u64 = 0;
    for &(d, m) in &u.days.0 {
        if m.get() <= t && (d0 - 30..=d0).contains(&d) {
            active |= 1u64 << (d0 - d);
        }
    }
    let is_active = |d: i64| (d0 - 30..=d0).contains(&d) && active & (1u64 << (d0 - d)) != 0;
    let on_d0 = active & 1 != 0;
    if active != 0 {
        if on_d0 {
            p.dau += 1;
        }
        if active & 0x7f != 0 {
            p.wau += 1;
        }
        if active & ((1u64 << 30) - 1) != 0 {
            p.mau += 1;
        }
    }
    let s = u.signup.get();
    let sday = match s {
        Some(s) if s <= t => Some(dc.day(py, s)?),
        _ => None,
    };
    if on_d0 {
        if sday == Some(d0) {
            p.new += 1;
        } else if active & 2 != 0 {
            p.returning += 1;
        } else {
            p.resurrecting += 1;
        }
    } else if active & 2 != 0 {
        p.dormant_lifecycle += 1;
    }
    if let (Some(sday), Some(s)) = (sday, s) {
        let mature = (d0 - 13..=d0 - 7).contains(&sday);
        let recent = s > t - D30;
        if mature || recent {
            c.cfg.read_ms(&u.ms, ms);
        }
        if mature {
            p.mature += 1;
            let end = s + 7 * DAY;
            if c.cfg.act_idx.iter().all(|&i| match ms[i] {
                Some(m) => m < end && m <= t,
                None => false,
            }) {
                p.activated += 1;
            }
            if u.days
                .0
                .iter()
                .any(|&(d, m)| d > sday && m.get() < end && m.get() <= t)
            {
                p.returned += 1;
            }
        }
        if recent {
            if let Some(m) = ms[c.cfg.value_idx] {
                if m <= t {
                    p.ttfv.push(dur(m, s));
                }
            }
            for (&step, &i) in c.cfg.step_canon.iter().zip(&c.cfg.step_idx) {
                if let Some(m) = ms[i] {
                    if m <= t {
                        match p.funnel.iter_mut().find(|x| x.0 == step) {
                            Some(x) => x.1 += 1,
                            None => p.funnel.push((step, 1)),
                        }
                    }
                }
            }
        }
        for (n, idx) in [(1, 0), (7, 1), (30, 2)] {
            if (d0 - n - 7..=d0 - n - 1).contains(&sday) {
                p.ret_cohort[idx] += 1;
                if is_active(sday + n) {
                    p.ret_kept[idx] += 1;
                }
            }
        }
    }
    if !u.rare().features.is_empty() {
        let lo = d0 - 29;
        for (name, fl) in &u.rare().features {
            if let Some(last) = max_below(fl.0, &fl.1, t) {
                if dc.day(py, last)? >= lo {
                    *p.features.entry(name.as_str()) += 1;
                }
            }
        }
    }
    if u.last.get().is_some() || !u.lastp.is_empty() {
        if let Some(last) = max_below(u.last.get(), &u.lastp, t) {
            let age = t - last - D14; // the dormant signal is at last + 14d
            if (0..H24).contains(&age) {
                p.sig24[SIG_DORMANT] += 1;
                if age < H1 {
                    p.sig1[SIG_DORMANT] += 1;
                }
            }
        }
    }
    if !u.rare().facts.is_empty() {
        let lo24 = t - H24;
        for &(ts, code) in &u.rare().facts {
            if lo24 < ts && ts <= t {
                match code {
                    F_CLICK => p.clicks += 1,
                    F_IMPRESSION => p.impressions += 1,
                    F_CANCEL => {
                        p.sig24[SIG_CANCEL] += 1;
                        if ts > t - H1 {
                            p.sig1[SIG_CANCEL] += 1;
                        }
                    }
                    _ => p.social[(code - F_SOCIAL) as usize] += 1,
                }
            }
        }
    }
    for (ts, sv, score, tp) in &u.rare().answers {
        let age = t - ts;
        if (0..D30).contains(&age) {
            // Partial.add_answer
            let (sv, score) = (*sv, *score);
            p.surveys.add(sv, score, age);
            if let Some(tp) = tp {
                let e = p.by_tp.entry(tp.as_str());
                e.0 += 1;
                e.1.add(sv, score, age);
            }
            if age < H24 {
                let sig = if sv == SV_NPS && score <= 6 {
                    Some(SIG_NPS)
                } else if sv == SV_CSAT && score <= 2 {
                    Some(SIG_CSAT)
                } else {
                    None
                };
                if let Some(sig) = sig {
                    p.sig24[sig] += 1;
                    if age < H1 {
                        p.sig1[sig] += 1;
                    }
                }
            }
        }
    }
    if !u.rare().sessions.is_empty() {
        let lo24 = t - H24;
        for st in u.rare().sessions.values() {
            let end = st[1];
            if end != NONE && lo24 < end && end <= t {
                p.sessions += 1;
                let start = st[0];
                if start != NONE && start <= t {
                    let d = dur(end, start);
                    p.session_dur.add(d);
                    p.session_dur_n += 1;
                    p.session_durs.push(d);
                }
                let (a, b) = (st[2], st[3]);
                if a != NONE && a <= t && (b == NONE || b > t) {
                    p.bounces += 1;
                }
            }
        }
    }
    if !u.rare().tickets.is_empty() {
        let (lo24, lo7) = (t - H24, t - D7);
        for tk in u.rare().tickets.values() {
            let Some(o) = tk[0] else { continue };
            if o > t {
                continue;
            }
            if o > lo24 {
                p.tickets_opened += 1;
            }
            match tk[1] {
                Some(r) if r <= t => {
                    if r > lo7 {
                        let d = dur(r, o);
                        p.resolution.add(d);
                        p.resolution_n += 1;
                        p.resolution_durs.push(d);
                    }
                }
                _ => p.open_tickets += 1,
            }
        }
    }
    if !u.rare().returns.is_empty() {
        let lo90 = t - D90;
        for r in u.rare().returns.values() {
            let r = r.get();
            if lo90 < r && r <= t {
                p.returns += 1;
            }
        }
    }
    Ok(())
}

/// `UserPartition.partial(t)` over `users`, as a dict of Partial fields (see the module's
/// doc); `counters` are (accepted, duplicates, rejected by reason).
#[allow(clippy::too_many_arguments)]
pub fn users_partial<'py>(
    py: Python<'py>,
    users: &crate::entities::Entities<User>,
    counters: (u64, u64, &[u64; 5]),
    cfg: &PartialCfg,
    n_social: usize,
    dc: &mut DayCalc,
    conv: &Conv,
    at: At,
) -> PyResult<Bound<'py, PyDict>> {
    let d0 = dc.day(py, at.t)?;
    let c = UserCtx { at, d0, cfg };
    let mut p = UserAcc::new(n_social);
    let mut ms = Vec::new();
    visit_prefetched(users.values(), prefetch_fields, prefetch_user, |u| {
        user_partial(py, &mut p, u, &c, dc, &mut ms)
    })?;
    // sorted by value, stably (UserPartition.partial sorts the three lists)
    let mut lists = [
        std::mem::take(&mut p.ttfv),
        std::mem::take(&mut p.session_durs),
        std::mem::take(&mut p.resolution_durs),
    ];
    for l in &mut lists {
        l.sort_by_key(|a| a.0);
    }
    let ttfv = durs_block(py, conv, &lists[0])?;
    p.to_dict(py, conv, cfg, counters, ttfv, &lists[1], &lists[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_ns_divides_exactly() {
        assert_eq!(INV_ODD_UNIT.wrapping_mul(1_953_125), 1);
        for ns in [
            0i64,
            1,
            -1,
            7,
            -7,
            86_400_000_000_000,
            i64::MAX,
            i64::MIN,
            123_456_789,
        ] {
            assert_eq!(whole_ns(ns as I * UNIT), Some(ns));
        }
        for d in [
            1 as I,
            -1,
            512,
            UNIT + 1,
            UNIT * 3 - 512,
            (i64::MAX as I + 1) * UNIT,
        ] {
            assert_eq!(whole_ns(d), None, "{d}");
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = (x as i64 as I) * (1 + (x % 3) as I) * 1_000;
            let want = if d % UNIT == 0 {
                i64::try_from(d / UNIT).ok()
            } else {
                None
            };
            assert_eq!(whole_ns(d), want, "{d}");
        }
    }
}
