//! The replay engine (the pyclass `Engine`): the Rust mirror of `streams.replay.Replayer`
//! over every partition of a replay, fed lines of a replay file.

use crate::account::{apply_fact, expire_account, AcctPart};
use crate::bridge::{read_decision, reason_index, Decided};
use crate::convert::Conv;
use crate::crc::crc32;
use crate::entities::Entities;
use crate::envelope::{Decoder, Payload, FUTURE, PRODUCT, SURVEY};
use crate::json::Scan;
use crate::state::Map;
use crate::time::{Clock, DayCalc, I, MS, UNIT};
use crate::user::{
    apply_product, apply_survey, expire_user, Ans, Ev, Fact, Rules, TInfo, UserPart,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::borrow::Cow;

/// What a replay adds to the rules.
struct Cfg {
    fold_limit: I,
    n: usize,
    sweep_every: u64,
}

#[pyclass(unsendable)]
pub struct Engine {
    cfg: Cfg,
    dec: Decoder,
    users: Vec<UserPart>,
    accts: Vec<AcctPart>,
    offsets: Map<Box<str>, Map<i64, i64>>,
    #[pyo3(get)]
    lines: u64,
    #[pyo3(get)]
    skipped: u64,
    #[pyo3(get)]
    redelivered: u64,
    dc: DayCalc,
    bridge: Py<PyAny>,
    conv: Conv,
    carry: Vec<u8>,
    rest: Option<Vec<u8>>,
}

impl Engine {
    #[inline]
    fn pidx(&self, key: &str) -> usize {
        if self.cfg.n == 1 {
            0
        } else {
            (crc32(key.as_bytes()) as usize) % self.cfg.n
        }
    }

    fn route_fact(&mut self, py: Python<'_>, f: &Fact<'_>) -> PyResult<()> {
        let i = self.pidx(f.customer);
        apply_fact(
            py,
            self.dec.rules.margin,
            Some(self.cfg.fold_limit),
            &mut self.dc,
            &mut self.accts[i],
            f,
        )
    }

    fn product(&mut self, py: Python<'_>, ev: &Ev<'_>, info: TInfo, rts: I) -> PyResult<()> {
        let i = self.pidx(ev.uid);
        let up = &mut self.users[i];
        up.clock
            .see(rts, self.dec.rules.margin, Some(self.cfg.fold_limit));
        match apply_product(py, &self.dec.rules, &mut self.dc, info, up, ev)? {
            Some(f) => {
                up.accepted += 1;
                self.route_fact(py, &f)
            }
            None => {
                up.duplicates += 1;
                Ok(())
            }
        }
    }

    fn survey(&mut self, py: Python<'_>, ans: &Ans<'_>, rts: I) -> PyResult<()> {
        let i = self.pidx(ans.uid);
        let up = &mut self.users[i];
        up.clock
            .see(rts, self.dec.rules.margin, Some(self.cfg.fold_limit));
        match apply_survey(up, ans) {
            Some(f) => {
                up.accepted += 1;
                self.route_fact(py, &f)
            }
            None => {
                up.duplicates += 1;
                Ok(())
            }
        }
    }

    /// `Pipeline.reject`: counted in the partition of the record key (its stable hash).
    fn reject(&mut self, reason: usize, key_hash: Option<u32>, rts_ms: Option<I>) {
        let i = match key_hash {
            Some(h) if self.cfg.n > 1 => h as usize % self.cfg.n,
            _ => 0,
        };
        let up = &mut self.users[i];
        if let Some(r) = rts_ms {
            up.clock
                .see(r * MS, self.dec.rules.margin, Some(self.cfg.fold_limit));
        }
        up.rejected[reason] += 1;
    }

    fn maybe_sweep(&mut self, py: Python<'_>) -> PyResult<()> {
        for i in 0..self.users.len() {
            if self.users[i].clock.sweep_due() {
                let up = &mut self.users[i];
                let f = up.clock.fold;
                up.clock.last_sweep = Some(f);
                let mut err = None;
                let (cfg, dc) = (&self.dec.rules, &mut self.dc);
                up.users
                    .retain(|_, u| match expire_user(py, cfg, dc, u, f, &mut false) {
                        Ok(empty) => !empty,
                        Err(e) => {
                            err = Some(e);
                            true
                        }
                    });
                if let Some(e) = err {
                    return Err(e);
                }
            }
        }
        for i in 0..self.accts.len() {
            if self.accts[i].clock.sweep_due() {
                let ap = &mut self.accts[i];
                let f = ap.clock.fold;
                ap.clock.last_sweep = Some(f);
                for a in ap.accounts.values_mut() {
                    expire_account(py, &mut self.dc, a, f, &mut false)?;
                }
            }
        }
        Ok(())
    }

    /// The redelivery rule of `Replayer.line`: Err(()) for a redelivered record, else what to
    /// restore if the line is handed over.
    fn redelivery(
        &mut self,
        topic: &str,
        part: Option<i64>,
        off: Option<i64>,
    ) -> Result<Option<(Option<i64>, i64)>, ()> {
        let (Some(part), Some(off)) = (part, off) else {
            return Ok(None);
        };
        if !self.offsets.contains_key(topic) {
            self.offsets.insert(Box::from(topic), Map::default());
        }
        let m = self.offsets.get_mut(topic).unwrap();
        let prev = m.get(&part).copied();
        if prev.is_some_and(|p| off <= p) {
            self.redelivered += 1;
            return Err(());
        }
        m.insert(part, off);
        Ok(Some((prev, part)))
    }

    /// Undo `redelivery` and the line count: the line goes to the Python engine.
    fn undo(&mut self, topic: &str, undo: Option<(Option<i64>, i64)>) -> bool {
        if let Some((prev, part)) = undo {
            let m = self.offsets.get_mut(topic).unwrap();
            match prev {
                Some(p) => m.insert(part, p),
                None => m.remove(&part),
            };
        }
        self.lines -= 1;
        false
    }

    /// One line; false when the line must be handed over to the Python engine (nothing of it
    /// has been applied, and `lines` is as before it).
    fn process_line(&mut self, py: Python<'_>, line: &[u8]) -> PyResult<bool> {
        self.lines += 1;
        if self.cfg.sweep_every > 0 && self.lines.is_multiple_of(self.cfg.sweep_every) {
            self.maybe_sweep(py)?;
        }
        let Some(env) = self.dec.parse_envelope(line) else {
            return self.bridged_line(py, line);
        };
        let topic: &str = &env.topic;
        let Ok(undo) = self.redelivery(topic, env.partition, env.offset) else {
            return Ok(true);
        };
        if topic != PRODUCT && topic != SURVEY {
            self.skipped += 1;
            return Ok(true);
        }
        let rts = env.ts * MS;
        let (lo, hi) = (rts - self.dec.rules.lateness, rts + FUTURE);
        let payload = env.payload;
        if let Payload::Text(p) = &payload {
            match self.dec.fast_text(topic, p) {
                Some(Payload::Product(ev, info, ..)) if (lo..=hi).contains(&ev.inst) => {
                    return self.product(py, &ev, info, rts).map(|_| true);
                }
                Some(Payload::Survey(ans, ..)) if (lo..=hi).contains(&ans.inst) => {
                    return self.survey(py, &ans, rts).map(|_| true);
                }
                _ => {}
            }
        }
        // the hot path: plainly valid and on time (Pipeline.product_value)
        let span = match &payload {
            Payload::Product(ev, info, a, b) => {
                if (lo..=hi).contains(&ev.inst) {
                    return self.product(py, ev, *info, rts).map(|_| true);
                }
                Some((*a, *b))
            }
            Payload::Survey(ans, a, b) => {
                if (lo..=hi).contains(&ans.inst) {
                    return self.survey(py, ans, rts).map(|_| true);
                }
                Some((*a, *b))
            }
            _ => None,
        };
        // the Python bridge decides (streams.replay.Replayer._envelope / Pipeline.record)
        let text: Option<Cow<'_, str>> = match (&payload, span) {
            (Payload::Text(p), _) => Some(Cow::Borrowed(p)),
            (Payload::Null, _) => None,
            (_, Some((a, b))) if b > a => Some(
                Scan::line(&line[a..b])
                    .any_str()
                    .ok_or_else(|| PyValueError::new_err("engagement_native: payload unescape"))?,
            ),
            (_, _) => {
                return Err(PyValueError::new_err(
                    "engagement_native: payload text lost",
                ));
            }
        };
        let bridge = self.bridge.clone_ref(py);
        let res = bridge.bind(py).call_method1(
            "record",
            (
                topic,
                env.key.as_deref(),
                text.as_deref(),
                env.ts,
                env.partition,
                env.offset,
            ),
        )?;
        self.decided(py, res.cast::<PyTuple>()?, topic, undo, rts)
    }

    /// A line whose envelope the scanner refused: Python decodes it (`Replayer.line`), and the
    /// key and payload stay Python objects (they may hold lone surrogates).
    fn bridged_line(&mut self, py: Python<'_>, line: &[u8]) -> PyResult<bool> {
        let bridge = self.bridge.clone_ref(py);
        let res = bridge
            .bind(py)
            .call_method1("envelope", (PyBytes::new(py, line),))?;
        let t = res.cast::<PyTuple>()?;
        let code: i64 = t.get_item(0)?.extract()?;
        if code == 0 {
            return Ok(true);
        }
        if code == 1 {
            let reason = reason_index(&t.get_item(1)?.extract::<String>()?)?;
            self.reject(reason, None, None);
            return Ok(true);
        }
        let (Ok(topic), Ok(ts), Ok(part), Ok(off)) = (
            t.get_item(1)?.extract::<String>(),
            t.get_item(2)?.extract::<I>(),
            t.get_item(5)?.extract::<Option<i64>>(),
            t.get_item(6)?.extract::<Option<i64>>(),
        ) else {
            self.lines -= 1;
            return Ok(false);
        };
        let Ok(undo) = self.redelivery(&topic, part, off) else {
            return Ok(true);
        };
        if topic != PRODUCT && topic != SURVEY {
            self.skipped += 1;
            return Ok(true);
        }
        let res = bridge.bind(py).call_method1(
            "record",
            (&topic, t.get_item(4)?, t.get_item(3)?, ts, part, off),
        )?;
        self.decided(py, res.cast::<PyTuple>()?, &topic, undo, ts * MS)
    }

    /// Apply the bridge's decision on a record.
    fn decided(
        &mut self,
        py: Python<'_>,
        t: &Bound<'_, PyTuple>,
        topic: &str,
        undo: Option<(Option<i64>, i64)>,
        rts: I,
    ) -> PyResult<bool> {
        match read_decision(t)? {
            Some(Decided::Skipped) => self.skipped += 1,
            Some(Decided::Rejected(reason, key_hash, rts_ms)) => {
                self.reject(reason, key_hash, rts_ms)
            }
            Some(Decided::Product(o)) => {
                let info = self.dec.info(&o.typ);
                let ev = Ev {
                    uid: &o.uid,
                    eid: &o.eid,
                    acct: o.acct.as_deref(),
                    sid: o.sid.as_deref(),
                    prop: o.prop.as_deref(),
                    amount: o.amount,
                    inst: o.inst,
                };
                self.product(py, &ev, info, rts)?;
            }
            Some(Decided::Survey(o)) => {
                let ans = Ans {
                    uid: &o.uid,
                    rid: &o.rid,
                    sv: o.sv,
                    score: o.score,
                    acct: o.acct.as_deref(),
                    tp: o.tp.as_deref(),
                    inst: o.inst,
                };
                self.survey(py, &ans, rts)?;
            }
            Some(Decided::Handover) | None => return Ok(self.undo(topic, undo)),
        }
        Ok(true)
    }
}

#[pymethods]
impl Engine {
    /// Engine(settings: dict, daycalc, bridge, restore_user, restore_account)
    #[new]
    fn new(
        settings: &Bound<'_, PyDict>,
        daycalc: Py<PyAny>,
        bridge: Py<PyAny>,
        restore_user: Py<PyAny>,
        restore_account: Py<PyAny>,
        fraction: Py<PyAny>,
    ) -> PyResult<Self> {
        let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
            settings
                .get_item(k)?
                .ok_or_else(|| PyValueError::new_err(format!("settings without {k}")))
        };
        let n: usize = get("partitions")?.extract()?;
        if n == 0 {
            return Err(PyValueError::new_err("partitions must be at least 1"));
        }
        let cfg = Cfg {
            fold_limit: get("fold_limit")?.extract::<I>()? * UNIT,
            n,
            sweep_every: get("sweep_every")?.extract()?,
        };
        Ok(Engine {
            cfg,
            dec: Decoder::new(Rules::from_settings(settings)?),
            users: (0..n)
                .map(|_| UserPart {
                    clock: Clock::new(),
                    users: Entities::default(),
                    accepted: 0,
                    duplicates: 0,
                    rejected: [0; 5],
                })
                .collect(),
            accts: (0..n)
                .map(|_| AcctPart {
                    clock: Clock::new(),
                    accounts: Entities::default(),
                })
                .collect(),
            offsets: Map::default(),
            lines: 0,
            skipped: 0,
            redelivered: 0,
            dc: DayCalc::new(settings, daycalc)?,
            bridge,
            conv: Conv {
                restore_user,
                restore_account,
                fraction,
            },
            carry: Vec::new(),
            rest: None,
        })
    }

    /// Feed a chunk of a replay file (lines end with b"\n"; a trailing partial line is kept for
    /// the next chunk). False when the engine stopped: `take_rest()` has the unprocessed input.
    fn feed(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<bool> {
        if self.rest.is_some() {
            return Err(PyValueError::new_err("the engine has handed over"));
        }
        let mut start = 0;
        if !self.carry.is_empty() {
            match memchr::memchr(b'\n', data) {
                None => {
                    self.carry.extend_from_slice(data);
                    return Ok(true);
                }
                Some(p) => {
                    let mut line = std::mem::take(&mut self.carry);
                    line.extend_from_slice(&data[..=p]);
                    if !self.process_line(py, &line)? {
                        line.extend_from_slice(&data[p + 1..]);
                        self.rest = Some(line);
                        return Ok(false);
                    }
                    start = p + 1;
                }
            }
        }
        while start < data.len() {
            match memchr::memchr(b'\n', &data[start..]) {
                Some(p) => {
                    let end = start + p + 1;
                    if !self.process_line(py, &data[start..end])? {
                        self.rest = Some(data[start..].to_vec());
                        return Ok(false);
                    }
                    start = end;
                }
                None => {
                    self.carry.extend_from_slice(&data[start..]);
                    break;
                }
            }
        }
        Ok(true)
    }

    /// Exactly one line (with or without its b"\n").
    fn line(&mut self, py: Python<'_>, raw: &[u8]) -> PyResult<bool> {
        if self.rest.is_some() {
            return Err(PyValueError::new_err("the engine has handed over"));
        }
        if !self.process_line(py, raw)? {
            self.rest = Some(raw.to_vec());
            return Ok(false);
        }
        Ok(true)
    }

    /// The end of the input: a kept partial line is processed as the last line.
    fn finish(&mut self, py: Python<'_>) -> PyResult<bool> {
        if self.rest.is_some() || self.carry.is_empty() {
            return Ok(self.rest.is_none());
        }
        let line = std::mem::take(&mut self.carry);
        if !self.process_line(py, &line)? {
            self.rest = Some(line);
            return Ok(false);
        }
        Ok(true)
    }

    /// After a hand-over: the input not processed (starting with the line that stopped it).
    fn take_rest<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.rest.take().unwrap_or_default())
    }

    /// The kept partial line, if any (the unprocessed end of the input so far).
    fn take_carry<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &std::mem::take(&mut self.carry))
    }

    /// The whole state as Python objects: {"users": [(users, accepted, duplicates, rejected,
    /// watermark, fold, last_sweep)], "accounts": [(accounts, watermark, fold, last_sweep)],
    /// "offsets": [(topic, partition, offset)], "lines", "skipped", "redelivered"}.
    /// Without ids, the dedupe ids are left out (a snapshot does not read them).
    fn export<'py>(&self, py: Python<'py>, with_ids: bool) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        let users = PyList::empty(py);
        for up in &self.users {
            let d = PyDict::new(py);
            for (k, u) in &up.users {
                d.set_item(k.as_str(), self.conv.user_to_py(py, u, with_ids, &[])?)?;
            }
            users.append((
                d,
                up.accepted,
                up.duplicates,
                up.rejected.to_vec(),
                self.conv.ot(py, up.clock.watermark)?,
                self.conv.t(py, up.clock.fold)?,
                self.conv.ot(py, up.clock.last_sweep)?,
            ))?;
        }
        let accts = PyList::empty(py);
        for ap in &self.accts {
            let d = PyDict::new(py);
            for (k, a) in &ap.accounts {
                d.set_item(k.as_str(), self.conv.account_to_py(py, a, &[])?)?;
            }
            accts.append((
                d,
                self.conv.ot(py, ap.clock.watermark)?,
                self.conv.t(py, ap.clock.fold)?,
                self.conv.ot(py, ap.clock.last_sweep)?,
            ))?;
        }
        let offsets = PyList::empty(py);
        for (topic, m) in &self.offsets {
            for (p, o) in m {
                offsets.append((&**topic, *p, *o))?;
            }
        }
        out.set_item("users", users)?;
        out.set_item("accounts", accts)?;
        out.set_item("offsets", offsets)?;
        out.set_item("lines", self.lines)?;
        out.set_item("skipped", self.skipped)?;
        out.set_item("redelivered", self.redelivered)?;
        Ok(out)
    }

    /// Tracked users and customers (for progress and the benchmark).
    fn sizes(&self) -> (usize, usize) {
        (
            self.users.iter().map(|p| p.users.len()).sum(),
            self.accts.iter().map(|p| p.accounts.len()).sum(),
        )
    }
}
