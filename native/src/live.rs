//! The live partitions (pyclasses `LiveUsers`, `LiveAccounts`): the Rust mirror of
//! `streams.live.LiveUserPartition.apply` and `LiveAccountPartition.apply`, one micro-batch per
//! call, with the partition's state and its meta counters held here (streams/native_live.py
//! keeps the Python `Meta` current from `meta()`).
//!
//! Python stays the one definition of validity: a record the hot path cannot decide with
//! certainty goes to the bridge (`Pipeline.decide`), whose answer (a rejection with its reason
//! and detail, or the decoded record) is applied here. A batch holding a value the core cannot
//! hold exactly (an instant finer than attoseconds) is refused before anything is applied:
//! the caller then moves the partition to the Python engine.

use crate::account::{apply_fact, expire_account, AcctPart};
use crate::account_partial::{accounts_partial, Rows};
use crate::aggregate::UserAgg;
use crate::bridge::{read_decision, Decided, OwnedAns, OwnedEv};
use crate::convert::{not_repr, Conv};
use crate::entities::Entities;
use crate::envelope::{Decoder, FUTURE, MAX_VALUE_BYTES, PRODUCT, SURVEY};
use crate::json::Scan;
use crate::messages::{read_batch, read_facts, FactRow, FactsOut};
use crate::partial::{users_partial, At, PartialCfg};
use crate::state::{Account, Inst, Key, Map, User, REASONS, SV_CSAT, SV_NPS};
use crate::time::{Clock, DayCalc, END_INSTANT, I, MIN_INSTANT, MS, SWEEP_EVERY, UNIT};
use crate::user::{
    apply_product, apply_survey, expire_user, ids_cut, setting, Ans, Ev, Fact, Kind, Rules, TInfo,
    UserPart,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySet, PyString, PyTuple};
use std::collections::HashSet;

const BAD_JSON: usize = 1;

/// Kafka's `Utils.murmur2` (streams.partitioner.murmur2), as a signed Java int.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let end4 = len & !3;
    for c in data[..end4].chunks_exact(4) {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rem = len & 3;
    if rem == 3 {
        h ^= (data[end4 + 2] as u32) << 16;
    }
    if rem >= 2 {
        h ^= (data[end4 + 1] as u32) << 8;
    }
    if rem >= 1 {
        h ^= data[end4] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// streams.partitioner.kafka_partition: `toPositive(murmur2(key)) % n`.
#[inline]
pub fn kafka_partition(key: &[u8], n: u32) -> u32 {
    ((murmur2(key) as u32) & 0x7fff_ffff) % n
}

/// The expiry bookkeeping both live metas share (streams.live._sweep_due).
#[derive(Clone, Copy)]
struct SweepMeta {
    swept: Option<I>,
    swept_at: i64,
    msg_offset: i64,
}

impl SweepMeta {
    /// `_sweep_due(meta, offset, fold, seen)`.
    fn due(&self, offset: i64, fold: I, seen: bool) -> Option<I> {
        if offset == self.swept_at && self.swept.is_some() {
            return self.swept;
        }
        if offset <= self.msg_offset || !seen {
            return None;
        }
        let s = fold.div_euclid(SWEEP_EVERY) * SWEEP_EVERY;
        if self.swept.is_some_and(|w| s <= w) {
            return None;
        }
        Some(s)
    }

    fn read(meta: &Bound<'_, PyAny>, conv: &Conv) -> PyResult<Self> {
        let get = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            match meta.getattr(name) {
                Ok(v) if !v.is_none() => Ok(Some(v)),
                _ => Ok(None),
            }
        };
        Ok(SweepMeta {
            swept: match get("swept")? {
                Some(v) => Some(conv.inst(&v)?),
                None => None,
            },
            swept_at: get("swept_at")?.map_or(Ok(-1), |v| v.extract())?,
            msg_offset: get("msg_offset")?.map_or(Ok(-1), |v| v.extract())?,
        })
    }
}

/// A record as the batch loop needs it, decided.
enum Dec<'a, 'py> {
    /// not an input topic: ignored
    Ignore,
    Reject(usize, Bound<'py, PyAny>),
    Product(Ev<'a>, TInfo),
    Survey(Ans<'a>),
}

/// A record decoded by the Python bridge.
enum Owned {
    Ev(OwnedEv),
    Ans(OwnedAns),
}

fn borrow_ev(o: &OwnedEv) -> Ev<'_> {
    Ev {
        uid: &o.uid,
        eid: &o.eid,
        acct: o.acct.as_deref(),
        sid: o.sid.as_deref(),
        prop: o.prop.as_deref(),
        amount: o.amount,
        inst: o.inst,
    }
}

fn borrow_ans(o: &OwnedAns) -> Ans<'_> {
    Ans {
        uid: &o.uid,
        rid: &o.rid,
        sv: o.sv,
        score: o.score,
        acct: o.acct.as_deref(),
        tp: o.tp.as_deref(),
        inst: o.inst,
    }
}

/// An event id added to a user (user, id, ts, product-events partition, offset) or dropped from
/// it (streams/live.py `IdChange`)
/// The room for event-id changes `take_id_writes` keeps between epochs (an epoch's worth at
/// live rates; a sweep's log, far longer, is given back).
const ID_LOG_KEPT: usize = 8192;

enum IdChange {
    Put(Key, Key, I, i64, i64),
    Drop(Key, Key),
}

/// A record's key or value: a Python object (records passed as a list of tuples) or bytes inside
/// a micro-batch message (`apply_encoded`), made a Python object only where it goes back out (a
/// dead letter, a forward, the bridge).
enum Blob<'a, 'py> {
    Py(Bound<'py, PyAny>),
    Raw(Option<&'a [u8]>),
}

impl<'a, 'py> Blob<'a, 'py> {
    fn is_none(&self) -> bool {
        match self {
            Blob::Py(o) => o.is_none(),
            Blob::Raw(b) => b.is_none(),
        }
    }

    /// The bytes, when it is bytes.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Blob::Py(o) => o.cast::<PyBytes>().ok().map(|b| b.as_bytes()),
            Blob::Raw(b) => *b,
        }
    }

    fn to_py(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self {
            Blob::Py(o) => o.clone(),
            Blob::Raw(Some(b)) => PyBytes::new(py, b).into_any(),
            Blob::Raw(None) => py.None().into_bound(py),
        }
    }
}

/// A message the core could not write (a str or bytes of 4 GiB or more: never from records the
/// envelope accepts).
fn unwritable(what: &str) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(format!("the core cannot encode {what}"))
}

/// A record of a micro-batch: (offset, record ts ms, key, value).
type Rec<'a, 'py> = (i64, i64, Blob<'a, 'py>, Blob<'a, 'py>);

/// Where the facts of a micro-batch go: lists of `Fact` tuples, or each account partition's
/// facts message (`FactsOut`).
enum FactSink<'py> {
    Tuples(Vec<Option<Bound<'py, PyList>>>),
    /// by account partition, and the partitions in the order their first fact came (the
    /// order of the lists' dict)
    Encoded(Vec<Option<FactsOut>>, Vec<usize>),
}

#[pyclass(unsendable)]
pub struct LiveUsers {
    dec: Decoder,
    dc: DayCalc,
    conv: Conv,
    bridge: Py<PyAny>,
    partition: u32,
    partitions: u32,
    account_partitions: u32,
    idle_seconds: f64,
    pcfg: PartialCfg,
    up: UserPart,
    /// source (topic, partition) of every id in `offs`, `srcw`, `heard` and users' `offs`
    srcs: Vec<(Box<str>, i64)>,
    /// meta.offs, meta.srcw and the wall time a source was last heard of, by source id
    offs: Vec<Option<i64>>,
    srcw: Vec<Option<i64>>,
    heard: Vec<Option<f64>>,
    sm: SweepMeta,
    #[pyo3(get)]
    sweeps: u64,
    /// the event ids added and dropped since the last `take_id_writes`, in order
    id_log: Vec<IdChange>,
    /// the partial at the latest "now" asked, kept current (aggregate.rs)
    agg: UserAgg,
    /// partials answered from `agg` (the others by a scan)
    #[pyo3(get)]
    aggregate_answers: u64,
}

impl LiveUsers {
    fn src(&mut self, topic: &str, part: i64) -> u32 {
        intern(
            &mut self.srcs,
            topic,
            part,
            &mut [&mut self.offs, &mut self.srcw],
            &mut self.heard,
        )
    }

    /// `LiveUserPartition.sweep_fold`.
    fn sweep_fold_at(&mut self, wall: Option<f64>) -> I {
        let mut low: Option<i64> = None;
        for (id, newest) in self.srcw.iter().enumerate() {
            let Some(newest) = *newest else { continue };
            if let Some(w) = wall {
                let heard = *self.heard[id].get_or_insert(w);
                if w - heard > self.idle_seconds {
                    continue;
                }
            }
            if low.is_none_or(|l| newest < l) {
                low = Some(newest);
            }
        }
        let fold = self.up.clock.fold;
        match low {
            None => fold,
            Some(l) => fold.min(l as I * MS - self.dec.rules.margin),
        }
    }

    /// `LiveUserPartition._sweep`: true when it swept.
    fn sweep(
        &mut self,
        py: Python<'_>,
        offset: i64,
        wall: Option<f64>,
        dirty: &mut HashSet<Key, ahash::RandomState>,
        deleted: &mut Vec<Key>,
    ) -> PyResult<bool> {
        let sf = self.sweep_fold_at(wall);
        let at = self.sm.due(offset, sf, self.up.clock.watermark.is_some());
        let mut swept = false;
        if let Some(at) = at {
            let f = at.min(self.up.clock.fold);
            let (rules, dc, log) = (&self.dec.rules, &mut self.dc, &mut self.id_log);
            let cut = ids_cut(rules, f);
            let mut err = None;
            self.agg.invalidate(); // users change and move
            self.up.users.retain(|uid, u| {
                for (eid, &ts) in u.ids.iter() {
                    if ts.get() < cut {
                        log.push(IdChange::Drop(uid.clone(), eid.clone()));
                    }
                }
                let mut changed = false;
                match expire_user(py, rules, dc, u, f, &mut changed) {
                    Ok(true) => {
                        dirty.remove(uid.as_str());
                        deleted.push(uid.clone());
                        false
                    }
                    Ok(false) => {
                        if changed && !dirty.contains(uid.as_str()) {
                            dirty.insert(uid.clone());
                        }
                        true
                    }
                    Err(e) => {
                        err = Some(e);
                        true
                    }
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
            self.sm.swept = Some(at);
            self.sm.swept_at = offset;
            self.sweeps += 1;
            swept = true;
        }
        if offset > self.sm.msg_offset {
            self.sm.msg_offset = offset;
        }
        Ok(swept)
    }

    /// One micro-batch (`LiveUserPartition.apply`). Returns (dead_letters, forwards {owner:
    /// [records]}, facts {account partition: [facts], or their facts message}, signals, dirty,
    /// deleted, swept, applied, skipped), or None, with nothing applied, when the batch holds a
    /// value the core cannot hold exactly. `kept_ts` gets the record timestamps of the records
    /// not forwarded (agents/users.py `note_applied`).
    #[allow(clippy::too_many_arguments)]
    fn apply_recs<'a, 'py>(
        &mut self,
        py: Python<'py>,
        topic: &str,
        part: i64,
        recs: Vec<Rec<'a, 'py>>,
        msg_offset: Option<i64>,
        fold_limit: Option<I>,
        wall: Option<f64>,
        facts_encoded: bool,
        mut kept_ts: Option<&mut Vec<i64>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let fold_limit = match fold_limit {
            Some(l) => Some(l.checked_mul(UNIT).ok_or_else(|| not_repr("fold limit"))?),
            None => None,
        };
        let dead_letters = PyList::empty(py);
        let forwards = PyDict::new(py);
        let facts = PyDict::new(py);
        // the facts of each account partition, once there are some
        let nq = self.account_partitions as usize;
        let mut sink = if facts_encoded {
            FactSink::Encoded((0..nq).map(|_| None).collect(), Vec::new())
        } else {
            FactSink::Tuples(vec![None; nq])
        };
        let signals = PyList::empty(py);
        let mut dirty: HashSet<Key, ahash::RandomState> = HashSet::default();
        let mut deleted: Vec<Key> = Vec::new();
        let (mut applied, mut skipped) = (0u64, 0u64);
        let mut swept = false;
        if recs.is_empty() {
            if let Some(m) = msg_offset {
                swept = self.sweep(py, m, wall, &mut dirty, &mut deleted)?;
            }
        } else {
            // 1. decide every record (pure: nothing is applied yet)
            let input = topic == PRODUCT || topic == SURVEY;
            let mut owned: Vec<Owned> = Vec::new();
            let mut decs: Vec<Dec<'_, 'py>> = Vec::with_capacity(recs.len());
            let mut slow: Vec<usize> = Vec::new(); // records the bridge decided, by index
            let bridge = self.bridge.bind(py).clone();
            for (i, (_, rts_ms, _, value)) in recs.iter().enumerate() {
                if value.is_none() {
                    decs.push(Dec::Reject(
                        BAD_JSON,
                        PyString::new(py, "empty value (a tombstone)").into_any(),
                    ));
                    continue;
                }
                if !input {
                    decs.push(Dec::Ignore);
                    continue;
                }
                let rts = *rts_ms as I * MS;
                if let Some(b) = value.bytes() {
                    if let Some(d) = self.fast(topic, b, rts) {
                        decs.push(d);
                        continue;
                    }
                }
                let res = bridge.call_method1("live", (topic, value.to_py(py), *rts_ms))?;
                let t = res.cast::<PyTuple>()?;
                match read_decision(t)? {
                    Some(Decided::Rejected(reason, ..)) => {
                        decs.push(Dec::Reject(reason, t.get_item(4)?));
                        continue;
                    }
                    Some(Decided::Product(o)) => owned.push(Owned::Ev(o)),
                    Some(Decided::Survey(o)) => owned.push(Owned::Ans(o)),
                    Some(Decided::Skipped) => {
                        decs.push(Dec::Ignore);
                        continue;
                    }
                    Some(Decided::Handover) | None => return Ok(None),
                }
                decs.push(Dec::Ignore); // replaced below, once `owned` stops growing
                slow.push(i);
            }
            for (k, &i) in slow.iter().enumerate() {
                decs[i] = match &owned[k] {
                    Owned::Ev(o) => {
                        let info = self.dec.info(&o.typ);
                        Dec::Product(borrow_ev(o), info)
                    }
                    Owned::Ans(o) => Dec::Survey(borrow_ans(o)),
                };
            }
            // 2. apply them (LiveUserPartition.apply's loop)
            let src = self.src(topic, part);
            let margin = self.dec.rules.margin;
            let mut counted = self.offs[src as usize].unwrap_or(-1);
            let mut fwd: Map<u32, Bound<'py, PyList>> = Map::default();
            let topic_s = PyString::new(py, topic);
            for ((offset, rts_ms, key, value), d) in recs.iter().zip(decs.iter()) {
                let (offset, rts_ms) = (*offset, *rts_ms);
                if let Some(k) = kept_ts.as_deref_mut() {
                    k.push(rts_ms); // taken back below if forwarded
                }
                let new = offset > counted;
                let rts = rts_ms as I * MS;
                let uid = match d {
                    Dec::Ignore => continue,
                    Dec::Reject(reason, detail) => {
                        if new {
                            self.up.clock.see(rts, margin, fold_limit);
                            self.up.rejected[*reason] += 1;
                            dead_letters.append((
                                REASONS[*reason],
                                detail,
                                topic,
                                part,
                                offset,
                                key.to_py(py),
                                rts_ms,
                                value.to_py(py),
                            ))?;
                            counted = offset;
                        }
                        continue;
                    }
                    Dec::Product(ev, _) => ev.uid,
                    Dec::Survey(ans) => ans.uid,
                };
                let owner = kafka_partition(uid.as_bytes(), self.partitions);
                if owner != self.partition {
                    if new {
                        let l = match fwd.get(&owner) {
                            Some(l) => l.clone(),
                            None => {
                                let l = PyList::empty(py);
                                forwards.set_item(owner, &l)?;
                                fwd.insert(owner, l.clone());
                                l
                            }
                        };
                        l.append((offset, rts_ms, key.to_py(py), value.to_py(py)))?;
                        if let Some(k) = kept_ts.as_deref_mut() {
                            k.pop();
                        }
                        counted = offset;
                    }
                    continue;
                }
                if let Some(u) = self.up.users.get(uid) {
                    if u.offs.iter().any(|&(s, o)| s == src && o >= offset) {
                        skipped += 1;
                        counted = counted.max(offset);
                        continue;
                    }
                }
                self.up.clock.see(rts, margin, fold_limit);
                self.agg
                    .touch(py, &self.up.users, uid, &self.pcfg, &mut self.dc)?;
                let (fact, signal) = match d {
                    Dec::Product(ev, info) => {
                        let f = apply_product(
                            py,
                            &self.dec.rules,
                            &mut self.dc,
                            *info,
                            &mut self.up,
                            ev,
                        )?;
                        let sig = (f.is_some() && info.kind == Kind::SubCancelled)
                            .then(|| ("cancellation", ev.acct.unwrap_or(ev.uid), ev.inst));
                        if f.is_some() {
                            self.id_log.push(IdChange::Put(
                                Key::from(ev.uid),
                                Key::from(ev.eid),
                                ev.inst,
                                part,
                                offset,
                            ));
                        }
                        (f, sig)
                    }
                    Dec::Survey(ans) => {
                        let f = apply_survey(&mut self.up, ans);
                        let name = match ans.sv {
                            SV_NPS if ans.score <= 6 => Some("nps_detractor"),
                            SV_CSAT if ans.score <= 2 => Some("csat_negative"),
                            _ => None,
                        };
                        let sig = match (f.is_some(), name) {
                            (true, Some(n)) => Some((n, ans.acct.unwrap_or(ans.uid), ans.inst)),
                            _ => None,
                        };
                        (f, sig)
                    }
                    _ => unreachable!(),
                };
                let u = self.up.users.get_mut(uid).expect("applied user");
                match u.offs.iter_mut().find(|x| x.0 == src) {
                    Some(x) => x.1 = offset,
                    None => u.offs.push((src, offset)),
                }
                if !dirty.contains(uid) {
                    dirty.insert(Key::from(uid));
                }
                applied += 1;
                let accepted = fact.is_some();
                if let Some(f) = &fact {
                    let q = kafka_partition(f.customer.as_bytes(), self.account_partitions);
                    match &mut sink {
                        FactSink::Tuples(lists) => {
                            let ft = self.fact_tuple(py, f, &topic_s, part, offset)?;
                            match &lists[q as usize] {
                                Some(l) => l.append(ft)?,
                                None => {
                                    let l = PyList::new(py, [ft])?;
                                    facts.set_item(q, &l)?;
                                    lists[q as usize] = Some(l);
                                }
                            }
                        }
                        FactSink::Encoded(outs, order) => {
                            let p = self.partition;
                            outs[q as usize]
                                .get_or_insert_with(|| {
                                    order.push(q as usize);
                                    FactsOut::new()
                                })
                                .push(f, topic, part, offset, p)
                                .map_err(|_| unwritable("a fact"))?;
                        }
                    }
                }
                if let Some((name, customer, inst)) = signal {
                    signals.append((
                        name,
                        customer,
                        self.conv.t(py, inst)?,
                        topic,
                        part,
                        offset,
                    ))?;
                }
                if new {
                    if accepted {
                        self.up.accepted += 1;
                    } else {
                        self.up.duplicates += 1;
                    }
                    counted = offset;
                }
            }
            let s = src as usize;
            self.offs[s] = Some(counted.max(self.offs[s].unwrap_or(-1)));
            let newest = recs.iter().map(|r| r.1).max().unwrap_or(0);
            if self.srcw[s].is_none_or(|w| newest > w) {
                self.srcw[s] = Some(newest);
            }
            if let Some(w) = wall {
                self.heard[s] = Some(w);
            }
            if let Some(m) = msg_offset {
                swept = self.sweep(py, m, wall, &mut dirty, &mut deleted)?;
            }
        }
        if let FactSink::Encoded(mut outs, order) = sink {
            for q in order {
                if let Some(o) = outs[q].take() {
                    let b = o.finish().map_err(|_| unwritable("a facts message"))?;
                    facts.set_item(q, PyBytes::new(py, &b))?;
                }
            }
        }
        let dirty_set = PySet::empty(py)?;
        for k in &dirty {
            dirty_set.add(k.as_str())?;
        }
        let deleted_set = PySet::empty(py)?;
        for k in &deleted {
            deleted_set.add(k.as_str())?;
        }
        Ok(Some(PyTuple::new(
            py,
            [
                dead_letters.into_any(),
                forwards.into_any(),
                facts.into_any(),
                signals.into_any(),
                dirty_set.into_any(),
                deleted_set.into_any(),
                swept.into_pyobject(py)?.to_owned().into_any(),
                applied.into_pyobject(py)?.into_any(),
                skipped.into_pyobject(py)?.into_any(),
            ],
        )?))
    }

    /// The hot path on a record value: Some when plainly valid and on time.
    fn fast<'a, 'py>(&mut self, topic: &str, v: &'a [u8], rts: I) -> Option<Dec<'a, 'py>> {
        if v.len() > MAX_VALUE_BYTES || !(v.is_ascii() || std::str::from_utf8(v).is_ok()) {
            return None;
        }
        let mut s = Scan::new(v);
        s.ws();
        let (lo, hi) = (rts - self.dec.rules.lateness, rts + FUTURE);
        let d = if topic == PRODUCT {
            let (ev, info) = self.dec.fast_product(&mut s)?;
            if !(lo..=hi).contains(&ev.inst) {
                return None;
            }
            Dec::Product(ev, info)
        } else {
            let ans = self.dec.fast_survey(&mut s)?;
            if !(lo..=hi).contains(&ans.inst) {
                return None;
            }
            Dec::Survey(ans)
        };
        s.at_end().then_some(d)
    }

    fn fact_tuple<'py>(
        &self,
        py: Python<'py>,
        f: &Fact<'_>,
        topic: &Bound<'py, PyString>,
        part: i64,
        offset: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        (
            f.customer,
            self.conv.t(py, f.ts)?,
            self.conv.t(py, f.rts)?, // the watermark: whole ns
            f.act,
            f.kind,
            f.value,
            topic,
            part,
            offset,
            self.partition,
        )
            .into_pyobject(py)
    }
}

/// T (a Python int or Fraction of nanoseconds) as the partial's scan takes it; None when the
/// core cannot hold it exactly or it is outside years 1-9999.
fn partial_at(conv: &Conv, t: &Bound<'_, PyAny>) -> PyResult<Option<At>> {
    match conv.inst(t) {
        Ok(x) if (MIN_INSTANT..END_INSTANT).contains(&x) => Ok(Some(At {
            t: x,
            frac: !t.is_instance_of::<pyo3::types::PyInt>(),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.is_instance_of::<crate::convert::NotRepresentable>(t.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The id of a source, added (with empty slots in `vecs`) when new.
fn intern<S: PartialEq + Copy>(
    srcs: &mut Vec<(Box<str>, S)>,
    topic: &str,
    s: S,
    vecs: &mut [&mut Vec<Option<i64>>],
    heard: &mut Vec<Option<f64>>,
) -> u32 {
    if let Some(i) = srcs.iter().position(|(t, p)| *p == s && &**t == topic) {
        return i as u32;
    }
    srcs.push((Box::from(topic), s));
    for v in vecs.iter_mut() {
        v.push(None);
    }
    heard.push(None);
    (srcs.len() - 1) as u32
}

#[pymethods]
impl LiveUsers {
    /// LiveUsers(settings, daycalc, bridge, restore_user, restore_account, fraction, partition,
    /// partitions, account_partitions)
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        settings: &Bound<'_, PyDict>,
        daycalc: Py<PyAny>,
        bridge: Py<PyAny>,
        restore_user: Py<PyAny>,
        restore_account: Py<PyAny>,
        fraction: Py<PyAny>,
        partition: u32,
        partitions: u32,
        account_partitions: u32,
    ) -> PyResult<Self> {
        if partitions == 0 || account_partitions == 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "the number of partitions must be >= 1",
            ));
        }
        let dec = Decoder::new(Rules::from_settings(settings)?);
        let n_social = dec.rules.social.len();
        Ok(LiveUsers {
            agg: UserAgg::new(n_social),
            aggregate_answers: 0,
            dec,
            dc: DayCalc::new(settings, daycalc)?,
            conv: Conv {
                restore_user,
                restore_account,
                fraction,
            },
            bridge,
            partition,
            partitions,
            account_partitions,
            idle_seconds: setting(settings, "idle_source_seconds")?.extract()?,
            pcfg: PartialCfg::from_settings(settings)?,
            up: UserPart {
                clock: Clock::new(),
                users: Entities::default(),
                accepted: 0,
                duplicates: 0,
                rejected: [0; 5],
            },
            srcs: Vec::new(),
            offs: Vec::new(),
            srcw: Vec::new(),
            heard: Vec::new(),
            sm: SweepMeta {
                swept: None,
                swept_at: -1,
                msg_offset: -1,
            },
            sweeps: 0,
            id_log: Vec::new(),
        })
    }

    /// The users ({uid: UserState}, or {uid: stored bytes} when `encoded`) and the meta (a
    /// streams.live.Meta, maybe without its newer fields) to start from; NotRepresentable when
    /// a value cannot be held exactly. False, with nothing kept, when stored bytes are not
    /// surely read here as the Python path reads them (native/src/decode.rs): decode them in
    /// Python and load those states.
    #[pyo3(signature = (users, meta, fold_limit=None, encoded=false))]
    fn load(
        &mut self,
        users: &Bound<'_, PyAny>,
        meta: &Bound<'_, PyAny>,
        fold_limit: Option<I>,
        encoded: bool,
    ) -> PyResult<bool> {
        let fold_limit = match fold_limit {
            Some(l) => Some(l.checked_mul(UNIT).ok_or_else(|| not_repr("fold limit"))?),
            None => None,
        };
        let conv = &self.conv;
        let mut srcs: Vec<(Box<str>, i64)> = Vec::new();
        let mut offs: Vec<Option<i64>> = Vec::new();
        let mut srcw: Vec<Option<i64>> = Vec::new();
        let mut heard: Vec<Option<f64>> = Vec::new();
        let mut intern_src = |t: &str, p: i64| -> u32 {
            intern(&mut srcs, t, p, &mut [&mut offs, &mut srcw], &mut heard)
        };
        let mut loaded: Entities<User> = Entities::default();
        if encoded {
            let users = users.cast::<PyDict>()?;
            for (k, v) in users.iter() {
                let b = v.cast::<PyBytes>()?;
                match crate::decode::user(b.as_bytes(), &mut intern_src) {
                    Ok(u) => loaded.insert(Key::from(k.extract::<&str>()?), u),
                    Err(crate::decode::Unsure) => return Ok(false),
                }
            }
        } else {
            for item in users.call_method0("items")?.try_iter()? {
                let item = item?;
                let uid: String = item.get_item(0)?.extract()?;
                let u = conv.user_from_py(&item.get_item(1)?, &mut intern_src)?;
                loaded.insert(Key::from(uid.as_str()), u);
            }
        }
        let mut counters = (0u64, 0u64, [0u64; 5]);
        let mut offs_in: Vec<(String, i64, i64)> = Vec::new();
        let mut srcw_in: Vec<(String, i64, i64)> = Vec::new();
        counters.0 = meta.getattr("accepted")?.extract()?;
        counters.1 = meta.getattr("duplicates")?.extract()?;
        let rejected = meta.getattr("rejected")?;
        for (i, r) in REASONS.iter().enumerate() {
            counters.2[i] = rejected.get_item(*r)?.extract()?;
        }
        for (k, v) in meta.getattr("offs")?.cast::<PyDict>()?.iter() {
            offs_in.push((
                k.get_item(0)?.extract()?,
                k.get_item(1)?.extract()?,
                v.extract()?,
            ));
        }
        if let Ok(sw) = meta.getattr("srcw") {
            if !sw.is_none() {
                for (k, v) in sw.cast::<PyDict>()?.iter() {
                    srcw_in.push((
                        k.get_item(0)?.extract()?,
                        k.get_item(1)?.extract()?,
                        v.extract()?,
                    ));
                }
            }
        }
        let wm = meta.getattr("watermark")?;
        let sm = SweepMeta::read(meta, conv)?;
        let offs_ids: Vec<(usize, i64)> = offs_in
            .iter()
            .map(|(t, p, o)| (intern_src(t, *p) as usize, *o))
            .collect();
        let srcw_ids: Vec<(usize, i64)> = srcw_in
            .iter()
            .map(|(t, p, w)| (intern_src(t, *p) as usize, *w))
            .collect();
        for (id, o) in offs_ids {
            offs[id] = Some(o);
        }
        for (id, w) in srcw_ids {
            srcw[id] = Some(w);
        }
        // all read: keep it
        self.agg.invalidate();
        self.up.users = loaded;
        self.up.accepted = counters.0;
        self.up.duplicates = counters.1;
        self.up.rejected = counters.2;
        self.up.clock = Clock::new();
        if !wm.is_none() {
            // LiveUserPartition.__init__: see_record_ts(meta.watermark) under its fold limit
            let w: I = wm.extract()?;
            self.up
                .clock
                .see(w * UNIT, self.dec.rules.margin, fold_limit);
        }
        self.srcs = srcs;
        self.offs = offs;
        self.srcw = srcw;
        self.heard = heard;
        self.sm = sm;
        self.id_log.clear();
        Ok(true)
    }

    /// One micro-batch (`LiveUserPartition.apply`): records are (offset, record ts ms, key,
    /// value); `apply_recs` says what it returns. With `facts_encoded` each account partition's
    /// facts come as their facts message (bytes), else as lists of `Fact` tuples.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (topic, part, records, msg_offset, fold_limit, wall, facts_encoded=false))]
    fn apply_batch<'py>(
        &mut self,
        py: Python<'py>,
        topic: &str,
        part: i64,
        records: &Bound<'py, PyList>,
        msg_offset: Option<i64>,
        fold_limit: Option<I>,
        wall: Option<f64>,
        facts_encoded: bool,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let mut recs: Vec<Rec<'_, 'py>> = Vec::with_capacity(records.len());
        for r in records.iter() {
            recs.push(match r.cast::<PyTuple>() {
                Ok(t) => (
                    t.get_item(0)?.extract()?,
                    t.get_item(1)?.extract()?,
                    Blob::Py(t.get_item(2)?),
                    Blob::Py(t.get_item(3)?),
                ),
                Err(_) => (
                    // any other sequence of four
                    r.get_item(0)?.extract()?,
                    r.get_item(1)?.extract()?,
                    Blob::Py(r.get_item(2)?),
                    Blob::Py(r.get_item(3)?),
                ),
            });
        }
        self.apply_recs(
            py,
            topic,
            part,
            recs,
            msg_offset,
            fold_limit,
            wall,
            facts_encoded,
            None,
        )
    }

    /// A micro-batch message of `<app>-batches` (its bytes: messages.rs `read_batch`) of an
    /// input topic, its facts as facts messages: (topic, source partition, records, the record
    /// timestamps of the records not forwarded as an array of int64, `apply_batch`'s tuple).
    /// None, with nothing applied, when the message is not one the core reads (a forget
    /// request, a gap nudge, another encoding) or `apply_batch` would give None: the caller
    /// decodes it in Python and takes `apply_batch`'s path.
    #[pyo3(signature = (data, msg_offset, fold_limit, wall))]
    fn apply_encoded<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyBytes>,
        msg_offset: Option<i64>,
        fold_limit: Option<I>,
        wall: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Ok((topic, part, raw)) = read_batch(data.as_bytes()) else {
            return Ok(None);
        };
        if (topic != PRODUCT && topic != SURVEY) || raw.is_empty() {
            return Ok(None);
        }
        let n = raw.len();
        let recs: Vec<Rec<'_, 'py>> = raw
            .into_iter()
            .map(|(o, t, k, v)| (o, t, Blob::Raw(k), Blob::Raw(v)))
            .collect();
        let mut kept: Vec<i64> = Vec::with_capacity(n);
        let Some(res) = self.apply_recs(
            py,
            topic,
            part,
            recs,
            msg_offset,
            fold_limit,
            wall,
            true,
            Some(&mut kept),
        )?
        else {
            return Ok(None);
        };
        let ts: Vec<u8> = kept.iter().flat_map(|t| t.to_ne_bytes()).collect();
        Ok(Some(PyTuple::new(
            py,
            [
                PyString::new(py, topic).into_any(),
                part.into_pyobject(py)?.into_any(),
                n.into_pyobject(py)?.into_any(),
                PyBytes::new(py, &ts).into_any(),
                res.into_any(),
            ],
        )?))
    }

    /// (accepted, duplicates, rejected counts in REJECT_REASONS order, watermark ns or None,
    /// swept, swept_at, msg_offset, {source: offset}, {source: newest record ts ms}).
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let offs = PyDict::new(py);
        let srcw = PyDict::new(py);
        for (i, (t, p)) in self.srcs.iter().enumerate() {
            if let Some(o) = self.offs[i] {
                offs.set_item((&**t, *p), o)?;
            }
            if let Some(w) = self.srcw[i] {
                srcw.set_item((&**t, *p), w)?;
            }
        }
        (
            self.up.accepted,
            self.up.duplicates,
            self.up.rejected.to_vec(),
            self.up.clock.watermark.map(|w| w / UNIT),
            self.conv.ot(py, self.sm.swept)?,
            self.sm.swept_at,
            self.sm.msg_offset,
            offs,
            srcw,
        )
            .into_pyobject(py)
    }

    /// {source: the worker's clock when last heard of} (`LiveUserPartition._heard`).
    fn heard<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (i, (t, p)) in self.srcs.iter().enumerate() {
            if let Some(w) = self.heard[i] {
                d.set_item((&**t, *p), w)?;
            }
        }
        Ok(d)
    }

    /// F, the fold point (a Python instant).
    #[getter]
    fn fold<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.conv.t(py, self.up.clock.fold)
    }

    /// Where the users' heap goes: [(part, items, bytes)] (footprint.rs; walks every user).
    fn footprint(&self) -> Vec<(&'static str, usize, usize)> {
        let mut f = crate::footprint::Footprint::default();
        crate::footprint::users(&mut f, &self.up.users);
        f.add(
            "event-id changes not yet taken",
            self.id_log.len(),
            self.id_log.capacity() * std::mem::size_of::<IdChange>(),
        );
        f.0
    }

    #[getter]
    fn watermark(&self) -> Option<I> {
        self.up.clock.watermark.map(|w| w / UNIT)
    }

    #[pyo3(signature = (wall))]
    fn sweep_fold<'py>(
        &mut self,
        py: Python<'py>,
        wall: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let f = self.sweep_fold_at(wall);
        self.conv.t(py, f)
    }

    /// The partition's partial at T (`UserPartition.partial(t)`) computed here, as a dict of
    /// `streams.engine.Partial` fields (streams/native_live.py makes the Partial); None when T
    /// is not an instant the core holds (finer than attoseconds, or outside years 1-9999): the
    /// caller then computes it in Python on the exported state. From the sums kept current
    /// (aggregate.rs) when they can answer, else by a scan of every user; `scan=True` always
    /// scans (the tests compare the two).
    #[pyo3(signature = (t, scan=None))]
    fn partial<'py>(
        &mut self,
        py: Python<'py>,
        t: &Bound<'py, PyAny>,
        scan: Option<bool>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(at) = partial_at(&self.conv, t)? else {
            return Ok(None);
        };
        let up = &self.up;
        let counters = (up.accepted, up.duplicates, &up.rejected);
        let d0 = self.dc.day(py, at.t)?;
        if scan != Some(true)
            && self
                .agg
                .update(py, &up.users, &self.pcfg, &mut self.dc, at.t, at.frac, d0)?
        {
            self.aggregate_answers += 1;
            return self
                .agg
                .answer(py, &self.conv, &self.pcfg, counters)
                .map(Some);
        }
        users_partial(
            py,
            &up.users,
            counters,
            &self.pcfg,
            self.dec.rules.social.len(),
            &mut self.dc,
            &self.conv,
            at,
        )
        .map(Some)
    }

    fn __len__(&self) -> usize {
        self.up.users.len()
    }

    fn __contains__(&self, uid: &str) -> bool {
        self.up.users.contains_key(uid)
    }

    fn keys(&self) -> Vec<&str> {
        self.up.users.keys().map(|k| k.as_str()).collect()
    }

    /// One user as a streams.state.UserState (a copy), or None.
    fn get<'py>(&self, py: Python<'py>, uid: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.up.users.get(uid) {
            Some(u) => Ok(Some(self.conv.user_to_py(py, u, true, &self.srcs)?)),
            None => Ok(None),
        }
    }

    /// Remove a user; its state as a UserState, or None.
    fn pop<'py>(&mut self, py: Python<'py>, uid: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.agg.invalidate(); // the last user takes its position
        match self.up.users.remove(uid) {
            Some(u) => Ok(Some(self.conv.user_to_py(py, &u, true, &self.srcs)?)),
            None => Ok(None),
        }
    }

    /// {uid: UserState} of the given users (every user when None); unknown ones are left out.
    #[pyo3(signature = (keys=None))]
    fn export<'py>(
        &self,
        py: Python<'py>,
        keys: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        match keys {
            None => {
                for (k, u) in &self.up.users {
                    d.set_item(k.as_str(), self.conv.user_to_py(py, u, true, &self.srcs)?)?;
                }
            }
            Some(keys) => {
                for k in keys.try_iter()? {
                    let k = k?;
                    if let Some(u) = self.up.users.get(k.extract::<&str>()?) {
                        d.set_item(&k, self.conv.user_to_py(py, u, true, &self.srcs)?)?;
                    }
                }
            }
        }
        Ok(d)
    }

    /// {uid: the stored bytes of the user (streams.codec.encode_stored_user of its export: no ids), or None
    /// where Python must encode it} of the given users (every user when None); unknown ones
    /// are left out (native/src/codec.rs).
    #[pyo3(signature = (keys=None))]
    fn export_encoded<'py>(
        &self,
        py: Python<'py>,
        keys: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        crate::codec::users_encoded(py, &self.up.users, &self.srcs, keys)
    }

    /// An epoch's table writes of the users `keys` (an iterable of str): ([(key, bytes or
    /// None)], [(position, uid)] of the values left to Python) (native/src/codec.rs
    /// `entity_writes`, agents/epoch.py `entity_writes`).
    fn entity_writes<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        crate::codec::user_writes(py, &self.up.users, &self.srcs, keys)
    }

    /// The table writes [(key, value or None)] of the event ids added and dropped since the
    /// last call, in order (streams/codec.py `encode_id_changes` of
    /// `LiveUserPartition.take_id_changes`).
    fn take_id_writes<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for c in self.id_log.drain(..) {
            match c {
                IdChange::Put(u, e, ts, p, o) => out.append((
                    PyBytes::new(py, &crate::codec::id_key(u.as_str(), e.as_str())),
                    PyBytes::new(py, &crate::codec::id_value(ts, p, o)),
                ))?,
                IdChange::Drop(u, e) => out.append((
                    PyBytes::new(py, &crate::codec::id_key(u.as_str(), e.as_str())),
                    py.None(),
                ))?,
            }
        }
        // a sweep logs a drop for every expired id of the partition at once: give such a
        // log's room back rather than hold it until the next sweep
        self.id_log.shrink_to(ID_LOG_KEPT);
        Ok(out)
    }

    /// Put stored event ids [(key, value)] back into their users (agents/epoch.py
    /// `attach_ids`), logging the deletions of those that stay out; false, with some maybe put
    /// back, when one is not surely read here as the Python path reads it.
    fn load_ids(&mut self, items: &Bound<'_, PyAny>) -> PyResult<bool> {
        for item in items.try_iter()? {
            let item = item?;
            let k = item.get_item(0)?;
            let v = item.get_item(1)?;
            let (Ok(k), Ok(v)) = (k.cast::<PyBytes>(), v.cast::<PyBytes>()) else {
                return Ok(false);
            };
            let (Ok((uid, eid)), Ok((ts, part, off))) = (
                crate::decode::id_key(k.as_bytes()),
                crate::decode::id_value(v.as_bytes()),
            ) else {
                return Ok(false);
            };
            let src = self
                .srcs
                .iter()
                .position(|s| &*s.0 == PRODUCT && s.1 == part);
            let kept = match (self.up.users.get_mut(uid), src) {
                (Some(u), Some(src)) => {
                    let src = src as u32;
                    if u.offs.iter().any(|&(s, o)| s == src && o >= off) {
                        u.ids.insert(Key::from(eid), Inst::new(ts));
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if !kept {
                self.id_log
                    .push(IdChange::Drop(Key::from(uid), Key::from(eid)));
            }
        }
        Ok(true)
    }

    /// Dormant signals with instants in (since, until] (`LiveUserPartition.dormant_signals`
    /// without the mark): [(user, instant)], sorted by user.
    fn dormant<'py>(
        &self,
        py: Python<'py>,
        since: &Bound<'py, PyAny>,
        until: &Bound<'py, PyAny>,
        after: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
        let (since, until, after) = (
            self.conv.inst(since)?,
            self.conv.inst(until)?,
            self.conv.inst(after)?,
        );
        let (lo, hi) = (since - after, until - after);
        let mut out = Vec::new();
        for (uid, u) in &self.up.users {
            if u.last.get().is_none() && u.lastp.is_empty() {
                continue;
            }
            // _max_below(u.last, u.lastp, until)
            let mut best = u.last.get();
            for &p in &u.lastp {
                if p <= until && best.is_none_or(|b| p > b) {
                    best = Some(p);
                }
            }
            if let Some(last) = best {
                if lo < last && last <= hi {
                    out.push((uid.as_str().to_string(), last + after));
                }
            }
        }
        out.sort();
        out.into_iter()
            .map(|(u, x)| Ok((u, self.conv.t(py, x)?)))
            .collect()
    }
}

#[pyclass]
pub struct LiveAccounts {
    dc: DayCalc,
    conv: Conv,
    margin: I,
    ap: AcctPart,
    /// (topic, (partition, user partition)) of every source id in accounts' `offs`
    srcs: Vec<(Box<str>, (i64, i64))>,
    sm: SweepMeta,
    #[pyo3(get)]
    sweeps: u64,
    /// each customer's part of the partial, kept between asks (account_partial.rs): whatever
    /// changes a customer here marks its row
    rows: Rows,
}

impl LiveAccounts {
    fn flat_srcs(&self) -> Vec<(Box<str>, i64, i64)> {
        self.srcs
            .iter()
            .map(|(t, (p, v))| (t.clone(), *p, *v))
            .collect()
    }
}

impl LiveAccounts {
    /// `LiveAccountPartition.apply` on facts read: the customers to write.
    fn apply_rows<'py>(
        &mut self,
        py: Python<'py>,
        rows: &[FactRow<'_>],
        offset: Option<i64>,
        fold_limit: Option<I>,
    ) -> PyResult<Bound<'py, PySet>> {
        let fold_limit = match fold_limit {
            Some(l) => Some(l.checked_mul(UNIT).ok_or_else(|| not_repr("fold limit"))?),
            None => None,
        };
        let mut dirty: HashSet<Key, ahash::RandomState> = HashSet::default();
        let mut last_src: Option<(&str, i64, i64, u32)> = None;
        for r in rows {
            let id = match last_src {
                Some((t, p, v, id)) if p == r.part && v == r.via && t == r.topic => id,
                _ => {
                    let mut none = Vec::new();
                    let id = intern(&mut self.srcs, r.topic, (r.part, r.via), &mut [], &mut none);
                    last_src = Some((r.topic, r.part, r.via, id));
                    id
                }
            };
            let (customer, off) = (r.fact.customer, r.offset);
            if let Some(a) = self.ap.accounts.get(customer) {
                if a.offs.iter().any(|&(s, o)| s == id && o >= off) {
                    continue;
                }
            }
            apply_fact(
                py,
                self.margin,
                fold_limit,
                &mut self.dc,
                &mut self.ap,
                &r.fact,
            )?;
            let i = self
                .ap
                .accounts
                .position(customer)
                .expect("applied customer");
            self.rows.changed(i);
            let a = self.ap.accounts.at_mut(i);
            match a.offs.iter_mut().find(|x| x.0 == id) {
                Some(x) => x.1 = off,
                None => a.offs.push((id, off)),
            }
            if !dirty.contains(customer) {
                dirty.insert(Key::from(customer));
            }
        }
        if let Some(offset) = offset {
            let at = self.sm.due(
                offset,
                self.ap.clock.fold,
                self.ap.clock.watermark.is_some(),
            );
            if let Some(at) = at {
                let f = at.min(self.ap.clock.fold);
                for (i, (c, a)) in self.ap.accounts.iter_mut().enumerate() {
                    let mut changed = false;
                    expire_account(py, &mut self.dc, a, f, &mut changed)?;
                    if changed {
                        self.rows.changed(i);
                        if !dirty.contains(c.as_str()) {
                            dirty.insert(c.clone());
                        }
                    }
                }
                self.sm.swept = Some(at);
                self.sm.swept_at = offset;
                self.sweeps += 1;
            }
            if offset > self.sm.msg_offset {
                self.sm.msg_offset = offset;
            }
        }
        let out = PySet::empty(py)?;
        for k in &dirty {
            out.add(k.as_str())?;
        }
        Ok(out)
    }
}

#[pymethods]
impl LiveAccounts {
    #[new]
    fn new(
        settings: &Bound<'_, PyDict>,
        daycalc: Py<PyAny>,
        restore_user: Py<PyAny>,
        restore_account: Py<PyAny>,
        fraction: Py<PyAny>,
    ) -> PyResult<Self> {
        let rules = Rules::from_settings(settings)?;
        Ok(LiveAccounts {
            dc: DayCalc::new(settings, daycalc)?,
            conv: Conv {
                restore_user,
                restore_account,
                fraction,
            },
            margin: rules.margin,
            ap: AcctPart {
                clock: Clock::new(),
                accounts: Entities::default(),
            },
            srcs: Vec::new(),
            sm: SweepMeta {
                swept: None,
                swept_at: -1,
                msg_offset: -1,
            },
            sweeps: 0,
            rows: Rows::default(),
        })
    }

    /// The customers ({customer: AccountState}) and the meta (a streams.live.AccountMeta) to
    /// start from.
    #[pyo3(signature = (accounts, meta, fold_limit=None, encoded=false))]
    fn load(
        &mut self,
        accounts: &Bound<'_, PyAny>,
        meta: &Bound<'_, PyAny>,
        fold_limit: Option<I>,
        encoded: bool,
    ) -> PyResult<bool> {
        let fold_limit = match fold_limit {
            Some(l) => Some(l.checked_mul(UNIT).ok_or_else(|| not_repr("fold limit"))?),
            None => None,
        };
        let conv = &self.conv;
        let mut srcs: Vec<(Box<str>, (i64, i64))> = Vec::new();
        let mut none: Vec<Option<f64>> = Vec::new();
        let mut intern_src =
            |t: &str, p: i64, v: i64| -> u32 { intern(&mut srcs, t, (p, v), &mut [], &mut none) };
        let mut loaded: Entities<Account> = Entities::default();
        if encoded {
            let accounts = accounts.cast::<PyDict>()?;
            for (k, v) in accounts.iter() {
                let b = v.cast::<PyBytes>()?;
                match crate::decode::account(b.as_bytes(), &mut intern_src) {
                    Ok(a) => loaded.insert(Key::from(k.extract::<&str>()?), a),
                    Err(crate::decode::Unsure) => return Ok(false),
                }
            }
        } else {
            for item in accounts.call_method0("items")?.try_iter()? {
                let item = item?;
                let c: String = item.get_item(0)?.extract()?;
                let a = conv.account_from_py(&item.get_item(1)?, &mut intern_src)?;
                loaded.insert(Key::from(c.as_str()), a);
            }
        }
        let wm = meta.getattr("watermark")?;
        let sm = SweepMeta::read(meta, conv)?;
        self.ap.accounts = loaded;
        self.rows.clear();
        self.ap.clock = Clock::new();
        if !wm.is_none() {
            let w: I = wm.extract()?;
            self.ap.clock.see(w * UNIT, self.margin, fold_limit);
        }
        self.srcs = srcs;
        self.sm = sm;
        Ok(true)
    }

    /// One facts message (`LiveAccountPartition.apply`): the customers to write, or None, with
    /// nothing applied, when a fact holds a value the core cannot hold exactly.
    #[pyo3(signature = (facts, offset, fold_limit))]
    fn apply_facts<'py>(
        &mut self,
        py: Python<'py>,
        facts: &Bound<'py, PyAny>,
        offset: Option<i64>,
        fold_limit: Option<I>,
    ) -> PyResult<Option<Bound<'py, PySet>>> {
        // 1. read every fact (an instant the core cannot hold: nothing is applied)
        let items: Vec<Bound<'py, PyAny>> = facts.try_iter()?.collect::<PyResult<_>>()?;
        // the Python objects the rows borrow their strs from, then the rows
        let mut strs: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = Vec::with_capacity(items.len());
        let mut rows: Vec<FactRow<'_>> = Vec::with_capacity(items.len());
        for f in &items {
            let t = f.cast::<PyTuple>().ok();
            let get = |i: usize| match t {
                Some(t) => t.get_item(i),
                None => f.get_item(i),
            };
            let ts = match self.conv.inst(&get(1)?) {
                Ok(ts) => ts,
                Err(e) if e.is_instance_of::<crate::convert::NotRepresentable>(py) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            let rts: I = get(2)?.extract()?;
            strs.push((get(0)?, get(6)?));
            rows.push(FactRow {
                fact: Fact {
                    customer: "",
                    ts,
                    rts: rts
                        .checked_mul(UNIT)
                        .ok_or_else(|| not_repr("a record ts"))?,
                    act: get(3)?.extract()?,
                    kind: get(4)?.extract()?,
                    value: get(5)?.extract()?,
                },
                topic: "",
                part: get(7)?.extract()?,
                offset: get(8)?.extract()?,
                via: get(9)?.extract()?,
            });
        }
        for (r, (customer, topic)) in rows.iter_mut().zip(strs.iter()) {
            r.fact.customer = customer.cast::<PyString>()?.to_str()?;
            r.topic = topic.cast::<PyString>()?.to_str()?;
        }
        // 2. apply them
        self.apply_rows(py, &rows, offset, fold_limit).map(Some)
    }

    /// A facts message's bytes (messages.rs `read_facts`): `apply_facts` without making a
    /// Python object per fact. None, with nothing applied, when the message is not one the core
    /// reads (a forget request, another encoding, a value it cannot hold): the caller decodes
    /// it in Python and takes `apply_facts`' path.
    #[pyo3(signature = (data, offset, fold_limit))]
    fn apply_encoded<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyBytes>,
        offset: Option<i64>,
        fold_limit: Option<I>,
    ) -> PyResult<Option<Bound<'py, PySet>>> {
        let Ok(rows) = read_facts(data.as_bytes()) else {
            return Ok(None);
        };
        self.apply_rows(py, &rows, offset, fold_limit).map(Some)
    }

    /// (watermark ns or None, swept, swept_at, msg_offset).
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (
            self.ap.clock.watermark.map(|w| w / UNIT),
            self.conv.ot(py, self.sm.swept)?,
            self.sm.swept_at,
            self.sm.msg_offset,
        )
            .into_pyobject(py)
    }

    #[getter]
    fn fold<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.conv.t(py, self.ap.clock.fold)
    }

    #[getter]
    fn watermark(&self) -> Option<I> {
        self.ap.clock.watermark.map(|w| w / UNIT)
    }

    /// `AccountPartition.partial(t)` computed here (see `LiveUsers.partial`): from the rows
    /// kept between asks, or (`scan`) from every customer's state.
    #[pyo3(signature = (t, scan=false))]
    fn partial<'py>(
        &mut self,
        py: Python<'py>,
        t: &Bound<'py, PyAny>,
        scan: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(at) = partial_at(&self.conv, t)? else {
            return Ok(None);
        };
        let rows = (!scan).then_some(&mut self.rows);
        accounts_partial(py, &self.ap.accounts, rows, &mut self.dc, at).map(Some)
    }

    /// The health of `customers` at T (`agents.health.health_entry`'s inputs): a list of
    /// (customer, health, recency, frequency, sentiment, at risk) of those that exist at T, or
    /// None when T is not held exactly here.
    fn health_entries<'py>(
        &mut self,
        py: Python<'py>,
        customers: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(at) = partial_at(&self.conv, t)? else {
            return Ok(None);
        };
        crate::account_partial::health_entries(py, &self.ap.accounts, customers, &mut self.dc, at)
            .map(Some)
    }

    /// Where the customers' heap goes: [(part, items, bytes)] (footprint.rs; walks every
    /// customer).
    fn footprint(&self) -> Vec<(&'static str, usize, usize)> {
        let mut f = crate::footprint::Footprint::default();
        crate::footprint::accounts(&mut f, &self.ap.accounts);
        f.0
    }

    /// How many customers the asks so far read from their rows (not from their state).
    #[getter]
    fn rows_reused(&self) -> u64 {
        self.rows.reused
    }

    fn __len__(&self) -> usize {
        self.ap.accounts.len()
    }

    fn __contains__(&self, c: &str) -> bool {
        self.ap.accounts.contains_key(c)
    }

    fn keys(&self) -> Vec<&str> {
        self.ap.accounts.keys().map(|k| k.as_str()).collect()
    }

    fn get<'py>(&self, py: Python<'py>, c: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.ap.accounts.get(c) {
            Some(a) => Ok(Some(self.conv.account_to_py(py, a, &self.flat_srcs())?)),
            None => Ok(None),
        }
    }

    fn pop<'py>(&mut self, py: Python<'py>, c: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let srcs = self.flat_srcs();
        let i = self.ap.accounts.position(c);
        match self.ap.accounts.remove(c) {
            Some(a) => {
                if let Some(i) = i {
                    self.rows.removed(i, self.ap.accounts.len());
                }
                Ok(Some(self.conv.account_to_py(py, &a, &srcs)?))
            }
            None => Ok(None),
        }
    }

    #[pyo3(signature = (keys=None))]
    fn export<'py>(
        &self,
        py: Python<'py>,
        keys: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let srcs = self.flat_srcs();
        let d = PyDict::new(py);
        match keys {
            None => {
                for (k, a) in &self.ap.accounts {
                    d.set_item(k.as_str(), self.conv.account_to_py(py, a, &srcs)?)?;
                }
            }
            Some(keys) => {
                for k in keys.try_iter()? {
                    let k = k?;
                    if let Some(a) = self.ap.accounts.get(k.extract::<&str>()?) {
                        d.set_item(&k, self.conv.account_to_py(py, a, &srcs)?)?;
                    }
                }
            }
        }
        Ok(d)
    }

    /// {customer: the stored bytes of the customer (streams.codec.encode_account of its
    /// export), or None where Python must encode it} of the given customers (every one when
    /// None); unknown ones are left out (native/src/codec.rs).
    #[pyo3(signature = (keys=None))]
    fn export_encoded<'py>(
        &self,
        py: Python<'py>,
        keys: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        crate::codec::accounts_encoded(py, &self.ap.accounts, &self.srcs, keys)
    }

    /// An epoch's table writes of the customers `keys`, as `LiveUsers.entity_writes`.
    fn entity_writes<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        crate::codec::account_writes(py, &self.ap.accounts, &self.srcs, keys)
    }
}

/// Kafka's murmur2 of `key` (streams.partitioner.murmur2), for the tests.
#[pyfunction(name = "murmur2")]
pub fn py_murmur2(key: &[u8]) -> i32 {
    murmur2(key)
}

/// streams.partitioner.kafka_partition.
#[pyfunction(name = "kafka_partition")]
pub fn py_kafka_partition(key: &[u8], n: u32) -> PyResult<u32> {
    if n < 1 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "the number of partitions must be >= 1, not {n}"
        )));
    }
    Ok(kafka_partition(key, n))
}
