//! A user partition's partial at the worker's "now", kept current as records are applied, so
//! that /snapshot does not visit every user each time it is asked.
//!
//! The partial of a partition is the sum of its users' contributions (`partial::user_partial`
//! adds one user's). A user's contribution at T changes only when the user changes, or when T
//! passes one of the instants the scan compares T with: an event's instant, an instant plus a
//! window (1 h, 24 h, 7 d, 14 d, 30 d, 90 d), the user's signup plus 30 days; or when T enters
//! another day. So the aggregate holds the sum at `t`, and per user the first instant after
//! `t` at which its contribution may change (`horizon`). Asked at a later T of the same day, it
//!
//! - takes out the contribution of every user changed since `t` (computed at `t` from the
//!   user's state before the change: `touch`, called before a record is applied) and of every
//!   user whose horizon is at or before T (a min-heap of horizons);
//! - adds those users' contributions at T back, with their new horizons.
//!
//! The lists of durations are kept as sorted multisets, so they come out sorted, as the scan
//! sorts them. Anything else is answered by the scan (`partial::users_partial`): a T before
//! `t` (an as-of in the past) or finer than a nanosecond, a duration Python would hold as a
//! Fraction, and a T on another day, after a sweep, a removal or a load, which rebuild the
//! aggregate by a scan. The scan stays the reference: tests/unit/test_native_live.py compares
//! the two, and both with the Python engine, at instants that move forward between batches.

use crate::convert::Conv;
use crate::entities::Entities;
use crate::partial::{
    durs_block, max_below, user_partial, whole_ns, Dur, PartialCfg, UserAcc, UserCtx,
};
use crate::state::{Ms, User, NONE};
use crate::time::{DayCalc, D30, D7, D90, DAY, H24, HOUR, I, UNIT};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const D14: I = 14 * DAY;

/// After how many asks in a row at a T before `t` (answered by the scan) the aggregate is
/// rebuilt at that T: workers asking each other for partials at their own "now" are a few
/// milliseconds apart, which the scan answers; a clock set back for good rebuilds it.
const BEHIND_REBUILD: u32 = 8;

/// When more users than this share of the partition (and than `CHURN_MIN`) changed since the
/// last ask, keeping the sums costs more than the scan it saves (a backlog drained between two
/// scrapes touches most users): the sums are dropped, and asks scan while that many changes
/// come between two of them. The first ask after the churn ends builds the sums again (a
/// build costs what a scan does), so a backlog drained costs one slow ask, not several.
const CHURN_SHARE: usize = 4; // a quarter
/// Below this many changes the sums are kept whatever the share (a partition of a few hundred
/// users costs little either way). It was 50,000, which kept the sums of small partitions
/// however much they churned: live at 50,000 records/s over 12,000 users, every user changed
/// between two asks, and each change cost a contribution taken out as the record came and one
/// put back at the ask, where a scan costs one (decision 58).
const CHURN_MIN: usize = 500;

fn churn_limit(users: usize) -> usize {
    CHURN_MIN.max(users / CHURN_SHARE)
}

/// The earliest instant after `t` at which the contribution of `u` at `t` may change within
/// `t`'s day: every instant `user_partial` compares T with (an instant of the state, or one
/// plus a window), the first of those after `t`. I::MAX when none.
pub fn horizon(u: &User, t: I) -> I {
    let mut next = I::MAX;
    let mut see = |x: I| {
        if x > t && x < next {
            next = x;
        }
    };
    for &(_, m) in &u.days.0 {
        see(m.get());
    }
    if let Some(s) = u.signup.get() {
        see(s);
        see(s + D30);
    }
    for (_, m) in &u.ms {
        if let Ms::At(x) = m {
            see(x.get());
        }
    }
    for (f0, f1) in u.rare().features.values() {
        if let Some(x) = *f0 {
            see(x);
        }
        for &x in f1 {
            see(x);
        }
    }
    if let Some(x) = u.last.get() {
        see(x);
    }
    for &x in &u.lastp {
        see(x);
    }
    // the dormant signal: 14 days after the last activity at T, for 24 h (and its first hour)
    if let Some(l) = max_below(u.last.get(), &u.lastp, t) {
        see(l + D14);
        see(l + D14 + HOUR);
        see(l + D14 + H24);
    }
    for &(ts, _) in &u.rare().facts {
        see(ts);
        see(ts + HOUR);
        see(ts + H24);
    }
    for (ts, ..) in &u.rare().answers {
        for w in [0, HOUR, H24, D7, D30] {
            see(ts + w);
        }
    }
    for st in u.rare().sessions.values() {
        for &x in &st[..4] {
            if x != NONE {
                see(x);
            }
        }
        if st[1] != NONE {
            see(st[1] + H24);
        }
    }
    for tk in u.rare().tickets.values() {
        if let Some(o) = tk[0] {
            see(o);
            see(o + H24);
        }
        if let Some(r) = tk[1] {
            see(r);
            see(r + D7);
        }
    }
    for r in u.rare().returns.values() {
        see(r.get());
        see(r.get() + D90);
    }
    next
}

/// `x` in whole nanoseconds, rounded up (i64::MAX for I::MAX): T (whole nanoseconds) is at or
/// after x exactly when it is at or after this.
fn ceil_ns(x: I) -> i64 {
    if x == I::MAX {
        return i64::MAX;
    }
    let q = x.div_euclid(UNIT) + I::from(x.rem_euclid(UNIT) != 0);
    q.clamp(i64::MIN as I, i64::MAX as I) as i64
}

/// A multiset of durations (attoseconds), sorted: (duration, count) in order, and the changes
/// since, merged in (one sort of the changes, one pass over both) when the multiset is read or
/// when the changes outgrow it. Read at every ask, a sorted list is walked at memory speed
/// where a search tree of a million users' durations took ~10 ms of each /snapshot; and a
/// user's contribution taken out and added back as T passes its horizon cancels in the merge.
#[derive(Default)]
struct Durations {
    sorted: Vec<(I, i64)>,
    changes: Vec<(I, i64)>,
}

impl Durations {
    #[inline]
    fn add(&mut self, d: I, sign: i64) {
        self.changes.push((d, sign));
        if self.changes.len() > self.sorted.len().max(4096) {
            self.settle();
        }
    }

    /// Merge the changes into the sorted list (counts that come to zero leave it).
    fn settle(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        self.changes.sort_unstable_by_key(|c| c.0);
        let (a, b) = (&self.sorted, &self.changes);
        let mut out: Vec<(I, i64)> = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let k = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.0.min(y.0),
                (Some(x), None) => x.0,
                (None, Some(y)) => y.0,
                (None, None) => unreachable!(),
            };
            let mut n = 0;
            while i < a.len() && a[i].0 == k {
                n += a[i].1;
                i += 1;
            }
            while j < b.len() && b[j].0 == k {
                n += b[j].1;
                j += 1;
            }
            if n != 0 {
                out.push((k, n));
            }
        }
        self.sorted = out;
        self.changes.clear();
    }

    /// The durations as `partial::durs_block` gives them, in one pass over the multiset: the
    /// bytes of their nanoseconds (each is whole: a sum holding a finer one does not answer).
    fn block<'py>(&mut self, py: Python<'py>, conv: &Conv) -> PyResult<Bound<'py, PyAny>> {
        self.settle();
        let mut bytes: Vec<u8> = Vec::with_capacity(self.sorted.len() * 8);
        for &(d, n) in &self.sorted {
            let Some(ns) = whole_ns(d) else {
                return durs_block(py, conv, &self.to_vec());
            };
            for _ in 0..n.max(0) {
                bytes.extend_from_slice(&ns.to_ne_bytes());
            }
        }
        Ok(PyBytes::new(py, &bytes).into_any())
    }

    fn settled(&mut self) -> &Self {
        self.settle();
        self
    }

    /// The durations in order (after `settle`).
    fn to_vec(&self) -> Vec<Dur> {
        debug_assert!(self.changes.is_empty());
        let mut v = Vec::new();
        for &(d, n) in &self.sorted {
            debug_assert!(n > 0, "a duration taken out more often than added");
            for _ in 0..n.max(0) {
                v.push((d, false));
            }
        }
        v
    }
}

/// The partial of a user partition at `t`, kept current (see the module's doc).
pub struct UserAgg {
    /// false until built, and after whatever moves or replaces users (a sweep, a removal, a
    /// load): the next ask at a "now" rebuilds it
    valid: bool,
    t: I,
    d0: i64,
    /// users at positions below n are in `sum`, except those `dirty`
    n: usize,
    /// taken out of `sum` (changed, or past their horizon): added back at the next ask
    dirty: Vec<bool>,
    dirty_list: Vec<u32>,
    /// per position: the horizon (whole ns, rounded up)
    until: Vec<i64>,
    /// per position: the earliest entry for it in `heap` (i64::MAX: none)
    queued: Vec<i64>,
    heap: BinaryHeap<Reverse<(i64, u32)>>,
    sum: UserAcc,
    ttfv: Durations,
    session_durs: Durations,
    resolution_durs: Durations,
    /// durations Python holds as Fractions in `sum` (then the scan answers: it lists them in
    /// the order Python does)
    frac: i64,
    behind: u32,
    /// without sums: the changes since the last ask (a scan answers while they are many)
    churn: usize,
    scratch: UserAcc,
    ms: Vec<Option<I>>,
}

impl UserAgg {
    pub fn new(n_social: usize) -> Self {
        UserAgg {
            valid: false,
            t: 0,
            d0: 0,
            n: 0,
            dirty: Vec::new(),
            dirty_list: Vec::new(),
            until: Vec::new(),
            queued: Vec::new(),
            heap: BinaryHeap::new(),
            sum: UserAcc::new(n_social),
            ttfv: Durations::default(),
            session_durs: Durations::default(),
            resolution_durs: Durations::default(),
            frac: 0,
            behind: 0,
            churn: 0,
            scratch: UserAcc::new(n_social),
            ms: Vec::new(),
        }
    }

    /// Forget the sums (users moved or were replaced): the next ask rebuilds them.
    pub fn invalidate(&mut self) {
        if self.valid {
            let n_social = self.sum.social_len();
            *self = UserAgg::new(n_social);
        }
    }

    /// The contribution of `u` at (t, d0) into `scratch`.
    fn contribution(
        &mut self,
        py: Python<'_>,
        u: &User,
        t: I,
        d0: i64,
        cfg: &PartialCfg,
        dc: &mut DayCalc,
    ) -> PyResult<()> {
        self.scratch.clear();
        let c = UserCtx {
            at: crate::partial::At { t, frac: false },
            d0,
            cfg,
        };
        user_partial(py, &mut self.scratch, u, &c, dc, &mut self.ms)
    }

    /// `sum += sign * scratch`, lists included.
    fn fold_scratch(&mut self, sign: i64) {
        self.sum.add_signed(&self.scratch, sign);
        let s = &self.scratch;
        for (list, set) in [
            (&s.ttfv, &mut self.ttfv),
            (&s.session_durs, &mut self.session_durs),
            (&s.resolution_durs, &mut self.resolution_durs),
        ] {
            for &(d, frac) in list {
                set.add(d, sign);
                if frac {
                    self.frac += sign;
                }
            }
        }
    }

    /// Before user `uid` changes: take its contribution at `t` out of the sum (once until the
    /// next ask).
    pub fn touch(
        &mut self,
        py: Python<'_>,
        users: &Entities<User>,
        uid: &str,
        cfg: &PartialCfg,
        dc: &mut DayCalc,
    ) -> PyResult<()> {
        if !self.valid {
            self.churn += 1;
            return Ok(());
        }
        let Some(pos) = users.position(uid) else {
            return Ok(()); // new: added at the next ask
        };
        if pos >= self.n || self.dirty[pos] {
            return Ok(());
        }
        if self.dirty_list.len() >= churn_limit(self.n) {
            let changed = self.dirty_list.len() + 1;
            self.invalidate();
            self.churn = changed;
            return Ok(());
        }
        self.take_out(py, users.at(pos), pos, cfg, dc)
    }

    fn take_out(
        &mut self,
        py: Python<'_>,
        u: &User,
        pos: usize,
        cfg: &PartialCfg,
        dc: &mut DayCalc,
    ) -> PyResult<()> {
        let (t, d0) = (self.t, self.d0);
        if let Err(e) = self.contribution(py, u, t, d0, cfg, dc) {
            self.invalidate();
            return Err(e);
        }
        self.fold_scratch(-1);
        self.dirty[pos] = true;
        self.dirty_list.push(pos as u32);
        Ok(())
    }

    /// Bring the sums to T (on day d0); false when the scan must answer instead.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        py: Python<'_>,
        users: &Entities<User>,
        cfg: &PartialCfg,
        dc: &mut DayCalc,
        t: I,
        frac_t: bool,
        d0: i64,
    ) -> PyResult<bool> {
        if frac_t {
            return Ok(false);
        }
        if !self.valid {
            let churning = self.churn >= churn_limit(users.len());
            self.churn = 0;
            if churning {
                return Ok(false);
            }
        }
        let res = if !self.valid || d0 != self.d0 {
            self.rebuild(py, users, cfg, dc, t, d0)
        } else if t < self.t {
            self.behind += 1;
            if self.behind < BEHIND_REBUILD {
                return Ok(false);
            }
            self.rebuild(py, users, cfg, dc, t, d0)
        } else {
            self.advance(py, users, cfg, dc, t)
        };
        if let Err(e) = res {
            self.invalidate();
            return Err(e);
        }
        Ok(self.frac == 0)
    }

    fn rebuild(
        &mut self,
        py: Python<'_>,
        users: &Entities<User>,
        cfg: &PartialCfg,
        dc: &mut DayCalc,
        t: I,
        d0: i64,
    ) -> PyResult<()> {
        let n_social = self.sum.social_len();
        *self = UserAgg::new(n_social);
        let n = users.len();
        self.until = Vec::with_capacity(n);
        let mut entries = Vec::with_capacity(n);
        for (pos, u) in users.values().enumerate() {
            self.contribution(py, u, t, d0, cfg, dc)?;
            self.fold_scratch(1);
            let h = ceil_ns(horizon(u, t));
            self.until.push(h);
            if h != i64::MAX {
                entries.push(Reverse((h, pos as u32)));
            }
        }
        self.queued = self.until.clone();
        self.heap = BinaryHeap::from(entries);
        self.dirty = vec![false; n];
        self.n = n;
        self.t = t;
        self.d0 = d0;
        self.valid = true;
        Ok(())
    }

    fn advance(
        &mut self,
        py: Python<'_>,
        users: &Entities<User>,
        cfg: &PartialCfg,
        dc: &mut DayCalc,
        t: I,
    ) -> PyResult<()> {
        self.behind = 0;
        let t_ns = ceil_ns(t);
        // users past their horizon: out, at the old t
        while let Some(&Reverse((h, pos))) = self.heap.peek() {
            if h > t_ns {
                break;
            }
            self.heap.pop();
            let p = pos as usize;
            if p >= self.n || self.queued[p] != h {
                continue; // an entry since replaced by an earlier one
            }
            self.queued[p] = i64::MAX;
            if self.dirty[p] {
                continue;
            }
            if self.until[p] > t_ns {
                // its horizon moved later since this entry was queued
                self.queued[p] = self.until[p];
                self.heap.push(Reverse((self.until[p], pos)));
                continue;
            }
            self.take_out(py, users.at(p), p, cfg, dc)?;
        }
        // users added since: in at T
        let len = users.len();
        for pos in self.n..len {
            self.dirty.push(true);
            self.until.push(i64::MAX);
            self.queued.push(i64::MAX);
            self.dirty_list.push(pos as u32);
        }
        self.n = len;
        self.t = t;
        let d0 = self.d0;
        let list = std::mem::take(&mut self.dirty_list);
        for &pos in &list {
            let p = pos as usize;
            let u = users.at(p);
            self.contribution(py, u, t, d0, cfg, dc)?;
            self.fold_scratch(1);
            self.dirty[p] = false;
            let h = ceil_ns(horizon(u, t));
            self.until[p] = h;
            if h < self.queued[p] {
                self.queued[p] = h;
                self.heap.push(Reverse((h, pos)));
            }
        }
        self.dirty_list = list;
        self.dirty_list.clear();
        Ok(())
    }

    /// The partial at `t` as the scan's dict (`UserAcc::to_dict`).
    pub fn answer<'py>(
        &mut self,
        py: Python<'py>,
        conv: &Conv,
        cfg: &PartialCfg,
        counters: (u64, u64, &[u64; 5]),
    ) -> PyResult<Bound<'py, PyDict>> {
        self.sum.to_dict(
            py,
            conv,
            cfg,
            counters,
            self.ttfv.block(py, conv)?,
            &self.session_durs.settled().to_vec(),
            &self.resolution_durs.settled().to_vec(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn durations_hold_the_multiset_a_search_tree_holds() {
        // random adds and takes (each taken one added before, as the aggregate does), read
        // now and then: the same (duration, count) pairs, in order, as a BTreeMap's
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut d, mut reference) = (Durations::default(), BTreeMap::<I, i64>::new());
        let mut held: Vec<I> = Vec::new();
        for step in 0..60_000 {
            if held.is_empty() || next() % 3 != 0 {
                let v = (next() % 500) as I * UNIT;
                d.add(v, 1);
                *reference.entry(v).or_insert(0) += 1;
                held.push(v);
            } else {
                let v = held.swap_remove((next() % held.len() as u64) as usize);
                d.add(v, -1);
                let e = reference.get_mut(&v).expect("held");
                *e -= 1;
                if *e == 0 {
                    reference.remove(&v);
                }
            }
            if step % 997 == 0 {
                let want: Vec<(I, i64)> = reference.iter().map(|(&k, &n)| (k, n)).collect();
                assert_eq!(d.settled().sorted, want, "step {step}");
            }
        }
        let want: Vec<Dur> = reference
            .iter()
            .flat_map(|(&k, &n)| std::iter::repeat_n((k, false), n as usize))
            .collect();
        assert_eq!(d.settled().to_vec(), want);
    }
}
