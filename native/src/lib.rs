//! The compiled replay core of engagement-metrics: the Rust mirror of `streams.replay.Replayer`
//! and the state machines of `streams.engine` (UserPartition / AccountPartition ingest and expiry).
//!
//! Python stays the reference: records the hot path cannot decide with certainty (escapes,
//! non-ASCII, unknown fields, custom types, anything invalid) go to a Python bridge, which runs
//! the Python validation and hands back either a rejection (already reported) or the decoded
//! record, which is applied here. The snapshot is computed in Python from the exported state
//! (`UserPartition.partial`, `finalize`), so every metric has one definition. An input whose
//! value Rust cannot hold exactly (a timestamp with more than nine fractional digits) stops the
//! engine; the bridge then moves the whole state to the Python engine, which continues.

use pyo3::conversion::IntoPyObjectExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Neg;

mod json;
mod state;
mod time;

use json::{Scan, Val};
use state::{Account, Days, Key, Map, Ms, User, NONE};
use time::{parse_utc, DAY, END_MS, HOUR, I, MIN_MS, MS, NS, UNIT};

/// The fold point before any record (Python: -(10**30) ns).
const INIT_FOLD: I = -(10_i128.pow(37));

const H24: I = 24 * HOUR;
const D7: I = 7 * DAY;
const D30: I = 30 * DAY;
const D31: I = 31 * DAY;
const D90: I = 90 * DAY;
const FUTURE: I = HOUR;
const MAX_VALUE_BYTES: usize = 65536;

// streams/state.py
const F_CLICK: u8 = 0;
const F_IMPRESSION: u8 = 1;
const F_CANCEL: u8 = 2;
const F_SOCIAL: u8 = 3;
const SV_CSAT: u8 = 0;
const SV_NPS: u8 = 1;
const SV_CES: u8 = 2;
const K_NONE: u8 = 0;
const K_NPS: u8 = 1;
const K_CSAT: u8 = 2;
const K_SUB_START: u8 = 3;
const K_SUB_CANCEL: u8 = 4;
const K_ORDER: u8 = 5;
// streams/records.py REJECT_REASONS, in order
const REASONS: [&str; 5] = ["too_large", "bad_json", "schema", "future", "too_late"];

const PRODUCT: &str = "product-events";
const SURVEY: &str = "survey-answers";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    PageView,
    SessionStart,
    SessionEnd,
    FeatureUsed,
    Click,
    Impression,
    Social,
    Onboarding,
    Signup,
    Purchase,
    Return,
    TicketOpened,
    TicketResolved,
    SubCancelled,
    SubStarted,
    Other,
}

fn kind_of(t: &str) -> Kind {
    match t {
        "page_view" => Kind::PageView,
        "session_start" => Kind::SessionStart,
        "session_end" => Kind::SessionEnd,
        "feature_used" => Kind::FeatureUsed,
        "click" => Kind::Click,
        "impression" => Kind::Impression,
        "social_interaction" => Kind::Social,
        "onboarding_step" => Kind::Onboarding,
        "signup" => Kind::Signup,
        "purchase" => Kind::Purchase,
        "return" => Kind::Return,
        "ticket_opened" => Kind::TicketOpened,
        "ticket_resolved" => Kind::TicketResolved,
        "subscription_cancelled" => Kind::SubCancelled,
        "subscription_started" => Kind::SubStarted,
        _ => Kind::Other,
    }
}

#[derive(Clone, Copy)]
struct TInfo {
    kind: Kind,
    activity: bool,
    milestone: bool,
    known: bool, // a valid type (the catalogue's, or matching the type pattern)
}

struct Cfg {
    lateness: I,
    margin: I,
    fold_limit: I,
    n: usize,
    sweep_every: u64,
    inactive: HashSet<String>,
    milestones: HashSet<String>,
    known: HashSet<String>,
    steps: Map<Box<str>, Box<str>>, // funnel step -> "step:<step>"
    social: Vec<String>,
}

/// A product event, decoded and validated.
struct Ev<'a> {
    uid: &'a str,
    eid: &'a str,
    typ: &'a str,
    acct: Option<&'a str>,
    sid: Option<&'a str>,
    prop: Option<&'a str>, // feature | step | action | order_id | ticket_id, by type
    amount: f64,
    inst: I,
}

/// A survey answer, decoded and validated.
struct Ans<'a> {
    uid: &'a str,
    rid: &'a str,
    sv: u8,
    score: i64,
    acct: Option<&'a str>,
    tp: Option<&'a str>,
    inst: I,
}

/// An account fact (streams.engine.AccountFact).
struct Fact<'a> {
    customer: &'a str,
    ts: I,
    rts: I,
    act: bool,
    kind: u8,
    value: f64,
}

struct Clock {
    watermark: Option<I>,
    fold: I,
    last_sweep: Option<I>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            watermark: None,
            fold: INIT_FOLD,
            last_sweep: None,
        }
    }

    #[inline]
    fn see(&mut self, rts: I, margin: I, limit: I) {
        if self.watermark.is_none_or(|w| rts > w) {
            self.watermark = Some(rts);
            let f = (rts - margin).min(limit);
            if f > self.fold {
                self.fold = f;
            }
        }
    }

    /// `_Clock.maybe_sweep`'s decision (and its first-call bookkeeping).
    fn sweep_due(&mut self) -> bool {
        match self.last_sweep {
            None => {
                self.last_sweep = Some(self.fold);
                false
            }
            Some(l) => self.fold - l >= 6 * HOUR,
        }
    }
}

struct UserPart {
    clock: Clock,
    users: Map<Key, User>,
    accepted: u64,
    duplicates: u64,
    rejected: [u64; 5],
}

struct AcctPart {
    clock: Clock,
    accounts: Map<Key, Account>,
}

/// streams.timeutil.DayCalc: fixed offset inline, else the zone's offsets from Python, cached
/// per 15-minute slot exactly as DayCalc caches them.
struct DayCalc {
    fixed: Option<I>,
    py: Py<PyAny>,
    cache: Map<i64, Option<I>>,
}

const SLOT: I = 900 * NS;
const SLOT_NS: I = SLOT / UNIT;

impl DayCalc {
    /// The zone's UTC offset at a whole-nanosecond instant (DayCalc.offset_ns).
    fn offset(&self, py: Python<'_>, inst_ns: I) -> PyResult<I> {
        Ok(self
            .py
            .bind(py)
            .call_method1("offset_ns", (inst_ns,))?
            .extract::<I>()?
            * UNIT)
    }

    #[inline]
    fn day(&mut self, py: Python<'_>, inst: I) -> PyResult<i64> {
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

/// CRC-32 (IEEE, as zlib.crc32): streams.replay.stable_hash.
fn crc32(s: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in s {
        c = t[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

// field names of envelopes and records, as small codes (`key_code`)
const F_TOPIC: u8 = 1;
const F_TS: u8 = 2;
const F_PAYLOAD: u8 = 3;
const F_KEY: u8 = 4;
const F_PARTITION: u8 = 5;
const F_OFFSET: u8 = 6;
const F_EVENT_ID: u8 = 7;
const F_TYPE: u8 = 8;
const F_USER_ID: u8 = 9;
const F_ACCOUNT_ID: u8 = 10;
const F_SESSION_ID: u8 = 11;
const F_PROPS: u8 = 12;
const F_RESPONSE_ID: u8 = 13;
const F_SURVEY: u8 = 14;
const F_SCORE: u8 = 15;
const F_TOUCHPOINT: u8 = 16;
const F_COMMENT: u8 = 17;

/// The code of a known field name (0 for any other): one length-and-first-byte dispatch and one
/// comparison, instead of a comparison per name.
#[inline]
fn key_code(k: &str) -> u8 {
    let b = k.as_bytes();
    let (code, lit): (u8, &[u8]) = match (b.len(), b.first().copied().unwrap_or(0)) {
        (5, b't') => (F_TOPIC, b"topic"),
        (2, b't') => (F_TS, b"ts"),
        (7, b'p') => (F_PAYLOAD, b"payload"),
        (3, b'k') => (F_KEY, b"key"),
        (9, b'p') => (F_PARTITION, b"partition"),
        (6, b'o') => (F_OFFSET, b"offset"),
        (8, b'e') => (F_EVENT_ID, b"event_id"),
        (4, b't') => (F_TYPE, b"type"),
        (7, b'u') => (F_USER_ID, b"user_id"),
        (10, b'a') => (F_ACCOUNT_ID, b"account_id"),
        (10, b's') => (F_SESSION_ID, b"session_id"),
        (5, b'p') => (F_PROPS, b"props"),
        (11, b'r') => (F_RESPONSE_ID, b"response_id"),
        (6, b's') => (F_SURVEY, b"survey"),
        (5, b's') => (F_SCORE, b"score"),
        (10, b't') => (F_TOUCHPOINT, b"touchpoint"),
        (7, b'c') => (F_COMMENT, b"comment"),
        _ => return 0,
    };
    if b == lit {
        code
    } else {
        0
    }
}

/// A replay envelope (streams.replay.Envelope).
struct Env<'a> {
    topic: Cow<'a, str>,
    ts: I,
    payload: Payload<'a>,
    key: Option<Cow<'a, str>>,
    partition: Option<i64>,
    offset: Option<i64>,
}

/// An envelope's payload: decoded in place by the hot path, or as text.
enum Payload<'a> {
    Null,
    /// a plainly valid record read in place (time not checked yet), and the outer string's span
    Product(Ev<'a>, TInfo, usize, usize),
    Survey(Ans<'a>, usize, usize),
    Text(Cow<'a, str>),
}

fn nul<const ESC: bool>(s: &mut Scan<'_, ESC>) -> Option<()> {
    match s.scalar(false)? {
        Val::Null => Some(()),
        _ => None,
    }
}

/// A name (1-128 characters) in ASCII: the hot path leaves other text to Python, which counts
/// code points.
#[inline]
fn is_name(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.is_ascii()
}

/// The hot path's pre-check of a value: small enough to never be `too_large` (4 bytes per
/// character at most). (Arrays and nesting beyond flat props are refused by the scanner.)
#[inline]
fn plain_payload(p: &str) -> bool {
    p.len() * 4 <= MAX_VALUE_BYTES
}

/// streams.recordspec.TYPE_PATTERN: `[a-z][a-z0-9_]{0,63}`.
fn type_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

fn ts_instant(v: Val<'_>) -> Option<I> {
    match v {
        Val::Int(ms) if (MIN_MS..END_MS).contains(&ms) => Some(ms as I * MS),
        Val::Str(s) => parse_utc(s),
        _ => None,
    }
}

#[inline]
fn get_user<'m>(users: &'m mut Map<Key, User>, uid: &str) -> &'m mut User {
    users.entry(Key::from(uid)).or_default()
}

fn note_activity(
    days: &mut Days,
    last: &mut Option<I>,
    lastp: &mut Vec<I>,
    day: i64,
    ts: I,
    fold: I,
) {
    days.note(day, ts);
    if ts <= fold {
        if last.is_none_or(|l| ts > l) {
            *last = Some(ts);
        }
    } else {
        lastp.push(ts);
    }
}

fn milestone(u: &mut User, key: &str, ts: I) {
    match u.signup {
        None => match u.ms.get_mut(key) {
            Some(Ms::List(v)) => v.push(ts),
            Some(m) => *m = Ms::List(vec![ts]), // not reachable: no instant before a signup
            None => {
                u.ms.insert(Key::from(key), Ms::List(vec![ts]));
            }
        },
        Some(s) => {
            if ts >= s {
                match u.ms.get_mut(key) {
                    Some(Ms::At(c)) => {
                        if ts < *c {
                            *c = ts;
                        }
                    }
                    Some(m) => *m = Ms::At(ts), // not reachable: lists end at the signup
                    None => {
                        u.ms.insert(Key::from(key), Ms::At(ts));
                    }
                }
            }
        }
    }
}

fn session_step(s: &mut [I; 5], kind: Kind, ts: I) {
    match kind {
        Kind::PageView => {
            let (a, b) = (s[2], s[3]);
            if a == NONE {
                s[2] = ts;
            } else if ts < a {
                s[2] = ts;
                s[3] = a;
            } else if b == NONE || ts < b {
                s[3] = ts;
            }
        }
        Kind::SessionStart => {
            if s[0] == NONE {
                s[0] = ts;
            }
        }
        _ => {
            if s[1] == NONE {
                s[1] = ts;
            }
        }
    }
}

/// `UserPartition.product`: None for a duplicate, else the account fact to emit.
fn apply_product<'a>(
    py: Python<'_>,
    cfg: &Cfg,
    dc: &mut DayCalc,
    info: TInfo,
    up: &mut UserPart,
    ev: &Ev<'a>,
) -> PyResult<Option<Fact<'a>>> {
    let fold = up.clock.fold;
    let wm = up.clock.watermark.unwrap_or(0);
    let u = get_user(&mut up.users, ev.uid);
    let ts = ev.inst;
    match u.ids.entry(Key::from(ev.eid)) {
        std::collections::hash_map::Entry::Occupied(_) => return Ok(None),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(ts);
        }
    }
    if info.activity {
        let day = dc.day(py, ts)?;
        note_activity(&mut u.days, &mut u.last, &mut u.lastp, day, ts, fold);
    }
    let mut kind = K_NONE;
    let mut value = 0.0;
    if info.milestone {
        milestone(u, ev.typ, ts);
    }
    match info.kind {
        Kind::PageView | Kind::SessionStart | Kind::SessionEnd => {
            let sid = ev.sid.unwrap_or("");
            match u.sessions.get_mut(sid) {
                Some(s) => {
                    if ts > s[4] {
                        s[4] = ts;
                    }
                    session_step(s, info.kind, ts);
                }
                None => {
                    let mut s = [NONE, NONE, NONE, NONE, ts];
                    session_step(&mut s, info.kind, ts);
                    u.sessions.insert(Key::from(sid), s);
                }
            }
        }
        Kind::FeatureUsed => {
            let name = ev.prop.unwrap_or("");
            match u.features.get_mut(name) {
                None => {
                    let f = if ts <= fold {
                        (Some(ts), Vec::new())
                    } else {
                        (None, vec![ts])
                    };
                    u.features.insert(Key::from(name), f);
                }
                Some(f) => {
                    if ts <= fold {
                        if f.0.is_none_or(|x| ts > x) {
                            f.0 = Some(ts);
                        }
                    } else {
                        f.1.push(ts);
                    }
                }
            }
        }
        Kind::Click => u.facts.push((ts, F_CLICK)),
        Kind::Impression => u.facts.push((ts, F_IMPRESSION)),
        Kind::Social => {
            let action = ev.prop.unwrap_or("");
            let i = cfg.social.iter().position(|a| a == action).unwrap_or(0);
            u.facts.push((ts, F_SOCIAL + i as u8));
        }
        Kind::Onboarding => {
            if let Some(key) = cfg.steps.get(ev.prop.unwrap_or("")) {
                milestone(u, key, ts);
            }
        }
        Kind::Signup => {
            if u.signup.is_none() {
                u.signup = Some(ts);
                u.ms.retain(|_, m| match m {
                    Ms::List(v) => match v.iter().filter(|&&x| x >= ts).min() {
                        Some(&first) => {
                            *m = Ms::At(first);
                            true
                        }
                        None => false,
                    },
                    Ms::At(_) => true,
                });
            }
        }
        Kind::Purchase => {
            let oid = ev.prop.unwrap_or("");
            if !u.orders.contains_key(oid) {
                u.orders.insert(Key::from(oid), ts);
                kind = K_ORDER;
                value = ev.amount;
            }
        }
        Kind::Return => {
            let oid = ev.prop.unwrap_or("");
            if !u.returns.contains_key(oid) {
                u.returns.insert(Key::from(oid), ts);
            }
        }
        Kind::TicketOpened | Kind::TicketResolved => {
            let tid = ev.prop.unwrap_or("");
            let i = if info.kind == Kind::TicketOpened {
                0
            } else {
                1
            };
            match u.tickets.get_mut(tid) {
                Some(tk) => {
                    if tk[i].is_none() {
                        tk[i] = Some(ts);
                    }
                }
                None => {
                    let mut tk = [None, None];
                    tk[i] = Some(ts);
                    u.tickets.insert(Key::from(tid), tk);
                }
            }
        }
        Kind::SubCancelled => {
            u.facts.push((ts, F_CANCEL));
            kind = K_SUB_CANCEL;
        }
        Kind::SubStarted => kind = K_SUB_START,
        Kind::Other => {}
    }
    Ok(Some(Fact {
        customer: ev.acct.unwrap_or(ev.uid),
        ts,
        rts: wm,
        act: info.activity,
        kind,
        value,
    }))
}

/// `UserPartition.survey`.
fn apply_survey<'a>(up: &mut UserPart, ans: &Ans<'a>) -> Option<Fact<'a>> {
    let wm = up.clock.watermark.unwrap_or(0);
    let u = get_user(&mut up.users, ans.uid);
    if u.resp.contains_key(ans.rid) {
        return None;
    }
    let ts = ans.inst;
    u.resp.insert(Key::from(ans.rid), ts);
    u.answers
        .push((ts, ans.sv, ans.score, ans.tp.map(Key::from)));
    let kind = match ans.sv {
        SV_NPS => K_NPS,
        SV_CSAT => K_CSAT,
        _ => K_NONE,
    };
    Some(Fact {
        customer: ans.acct.unwrap_or(ans.uid),
        ts,
        rts: wm,
        act: false,
        kind,
        value: ans.score as f64,
    })
}

/// `AccountPartition.fact`.
fn apply_fact(
    py: Python<'_>,
    cfg: &Cfg,
    dc: &mut DayCalc,
    ap: &mut AcctPart,
    f: &Fact<'_>,
) -> PyResult<()> {
    ap.clock.see(f.rts, cfg.margin, cfg.fold_limit);
    let fold = ap.clock.fold;
    let ts = f.ts;
    let a = match ap.accounts.get_mut(f.customer) {
        Some(a) => {
            if ts < a.first {
                a.first = ts;
            }
            a
        }
        None => ap
            .accounts
            .entry(Key::from(f.customer))
            .or_insert_with(|| Account::new(ts)),
    };
    if f.act {
        let day = dc.day(py, ts)?;
        note_activity(&mut a.days, &mut a.last, &mut a.lastp, day, ts, fold);
    }
    match f.kind {
        K_NONE => {}
        K_ORDER => a.orders.push((ts, f.value)),
        K_NPS | K_CSAT => {
            let key = (ts, -(f.value as i64));
            let (best, pending) = if f.kind == K_NPS {
                (&mut a.nps, &mut a.npsp)
            } else {
                (&mut a.csat, &mut a.csatp)
            };
            if ts <= fold {
                if best.is_none_or(|b| key > b) {
                    *best = Some(key);
                }
            } else {
                pending.push(key);
            }
        }
        _ => {
            let ev = (ts, if f.kind == K_SUB_CANCEL { 1 } else { 0 });
            if ts <= fold - D30 {
                if a.sub.is_none_or(|b| ev > b) {
                    a.sub = Some(ev);
                }
            } else {
                a.subp.push(ev);
            }
        }
    }
    Ok(())
}

/// `UserPartition.expire_user` as of F: true when nothing is left.
fn expire_user(py: Python<'_>, cfg: &Cfg, dc: &mut DayCalc, u: &mut User, f: I) -> PyResult<bool> {
    let ids_cut = f - cfg.lateness - HOUR;
    u.ids.retain(|_, v| *v >= ids_cut);
    u.resp.retain(|_, v| *v >= ids_cut);
    u.facts.retain(|x| x.0 > f - H24);
    u.answers.retain(|x| x.0 > f - D30);
    if !u.lastp.is_empty() {
        for &x in &u.lastp {
            if x <= f && u.last.is_none_or(|l| x > l) {
                u.last = Some(x);
            }
        }
        u.lastp.retain(|&x| x > f);
    }
    if !u.days.is_empty() {
        let dcut = dc.day(py, f)? - 31;
        u.days.retain_from(dcut);
    }
    if u.last.is_some_and(|l| l < f - D31) && u.lastp.is_empty() {
        u.last = None;
    }
    if !u.features.is_empty() {
        let cut = f - D31;
        u.features.retain(|_, fl| {
            if !fl.1.is_empty() {
                for &x in &fl.1 {
                    if x <= f && fl.0.is_none_or(|l| x > l) {
                        fl.0 = Some(x);
                    }
                }
                fl.1.retain(|&x| x > f);
            }
            !(fl.1.is_empty() && fl.0.is_none_or(|l| l < cut))
        });
    }
    if !u.ms.is_empty() {
        match u.signup {
            None => u.ms.retain(|_, m| match m {
                Ms::List(v) => {
                    v.retain(|&x| x >= ids_cut);
                    !v.is_empty()
                }
                Ms::At(_) => true, // not reachable before a signup
            }),
            Some(s) => {
                if s < f - D31 {
                    u.ms.clear();
                }
            }
        }
    }
    let cut = f - H24 - cfg.lateness;
    u.sessions.retain(|_, v| v[4] >= cut);
    let cut = f - D7 - cfg.lateness;
    u.tickets.retain(|_, v| v[1].is_none_or(|x| x >= cut));
    let cut = f - D90 - cfg.lateness;
    u.orders.retain(|_, v| *v >= cut);
    u.returns.retain(|_, v| *v >= cut);
    Ok(u.is_empty())
}

/// `AccountPartition.expire_account` as of F.
fn expire_account(py: Python<'_>, dc: &mut DayCalc, a: &mut Account, f: I) -> PyResult<()> {
    let dcut = dc.day(py, f)? - 31;
    a.days.retain_from(dcut);
    if !a.lastp.is_empty() {
        for &x in &a.lastp {
            if x <= f && a.last.is_none_or(|l| x > l) {
                a.last = Some(x);
            }
        }
        a.lastp.retain(|&x| x > f);
    }
    for (best, pend) in [(&mut a.nps, &mut a.npsp), (&mut a.csat, &mut a.csatp)] {
        if !pend.is_empty() {
            for &k in pend.iter() {
                if k.0 <= f && best.is_none_or(|b| k > b) {
                    *best = Some(k);
                }
            }
            pend.retain(|k| k.0 > f);
        }
    }
    if !a.subp.is_empty() {
        let cut = f - D30;
        for &ev in &a.subp {
            if ev.0 <= cut && a.sub.is_none_or(|b| ev > b) {
                a.sub = Some(ev);
            }
        }
        a.subp.retain(|ev| ev.0 > cut);
    }
    let cut = f - D90;
    a.orders.retain(|o| o.0 > cut);
    Ok(())
}

/// What the Python bridge decided for a record.
enum Decided {
    Skipped,
    Rejected(usize, Option<u32>, Option<I>),
    Product(OwnedEv),
    Survey(OwnedAns),
    Handover,
}

struct OwnedEv {
    uid: String,
    eid: String,
    typ: String,
    acct: Option<String>,
    sid: Option<String>,
    prop: Option<String>,
    amount: f64,
    inst: I,
}

struct OwnedAns {
    uid: String,
    rid: String,
    sv: u8,
    score: i64,
    acct: Option<String>,
    tp: Option<String>,
    inst: I,
}

fn reason_index(r: &str) -> PyResult<usize> {
    REASONS
        .iter()
        .position(|x| *x == r)
        .ok_or_else(|| PyValueError::new_err(format!("unknown reject reason {r:?}")))
}

/// Reads the bridge's answer; None when a value does not fit (a hand-over).
fn read_decision(t: &Bound<'_, PyTuple>) -> PyResult<Option<Decided>> {
    let code: i64 = t.get_item(0)?.extract()?;
    Ok(match code {
        0 => Some(Decided::Skipped),
        1 => {
            let reason = reason_index(&t.get_item(1)?.extract::<String>()?)?;
            let key: Option<u32> = t.get_item(2)?.extract()?;
            let rts: Option<I> = match t.get_item(3)?.extract() {
                Ok(v) => v,
                Err(_) => return Ok(None),
            };
            Some(Decided::Rejected(reason, key, rts))
        }
        2 => {
            let inst: I = match t.get_item(8)?.extract() {
                Ok(v) => v,
                Err(_) => return Ok(None),
            };
            Some(Decided::Product(OwnedEv {
                uid: t.get_item(1)?.extract()?,
                eid: t.get_item(2)?.extract()?,
                typ: t.get_item(3)?.extract()?,
                acct: t.get_item(4)?.extract()?,
                sid: t.get_item(5)?.extract()?,
                prop: t.get_item(6)?.extract()?,
                amount: t.get_item(7)?.extract()?,
                inst,
            }))
        }
        3 => {
            let inst: I = match t.get_item(7)?.extract() {
                Ok(v) => v,
                Err(_) => return Ok(None),
            };
            Some(Decided::Survey(OwnedAns {
                uid: t.get_item(1)?.extract()?,
                rid: t.get_item(2)?.extract()?,
                sv: t.get_item(3)?.extract()?,
                score: t.get_item(4)?.extract()?,
                acct: t.get_item(5)?.extract()?,
                tp: t.get_item(6)?.extract()?,
                inst,
            }))
        }
        _ => Some(Decided::Handover),
    })
}

#[pyclass(unsendable)]
pub struct Engine {
    cfg: Cfg,
    types: Map<Box<str>, TInfo>,
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
    restore_user: Py<PyAny>,
    restore_account: Py<PyAny>,
    fraction: Py<PyAny>, // attoseconds -> Python instant, when not whole nanoseconds
    carry: Vec<u8>,
    rest: Option<Vec<u8>>,
}

impl Engine {
    fn info(&mut self, t: &str) -> TInfo {
        if let Some(i) = self.types.get(t) {
            return *i;
        }
        let i = TInfo {
            kind: kind_of(t),
            activity: !self.cfg.inactive.contains(t),
            milestone: self.cfg.milestones.contains(t),
            known: self.cfg.known.contains(t) || type_ok(t),
        };
        if self.types.len() < 10_000 {
            self.types.insert(Box::from(t), i);
        }
        i
    }

    #[inline]
    fn pidx(&self, key: &str) -> usize {
        if self.cfg.n == 1 {
            0
        } else {
            (crc32(key.as_bytes()) as usize) % self.cfg.n
        }
    }

    /// The hot path's decision on a product event value: Some when plainly valid and on time.
    /// The envelope of a line, when it is plainly one: a UTF-8 JSON object with the known keys
    /// (payload, topic and ts required, each once, of the right JSON types) and unknown ones of
    /// plain scalar values (skipped, as the Python decoder skips them). A product event or
    /// survey answer payload after the topic is decoded in place, without unescaping it.
    fn parse_envelope<'a>(&mut self, line: &'a [u8]) -> Option<Env<'a>> {
        if !line.is_ascii() {
            std::str::from_utf8(line).ok()?;
        }
        let mut s = Scan::line(line);
        s.ws();
        if !s.eat(b'{') {
            return None;
        }
        let (mut topic, mut ts, mut payload, mut key, mut part, mut off) =
            (None::<Cow<'a, str>>, None, None, None, None, None);
        let mut seen = 0u8;
        s.ws();
        if s.eat(b'}') {
            return None;
        }
        loop {
            s.ws();
            let k = s.plain_str()?;
            s.ws();
            if !s.eat(b':') {
                return None;
            }
            s.ws();
            let bit = match key_code(k) {
                F_TOPIC => {
                    topic = Some(s.any_str()?);
                    1
                }
                F_TS => {
                    ts = Some(s.int()?);
                    2
                }
                F_PAYLOAD => {
                    payload = Some(if s.peek()? == b'n' {
                        nul(&mut s)?;
                        Payload::Null
                    } else {
                        let start = s.i;
                        match self.in_place(line, start, topic.as_deref(), s.has_ctl()) {
                            Some((p, end)) => {
                                s.i = end;
                                p
                            }
                            None => Payload::Text(s.any_str()?),
                        }
                    });
                    4
                }
                F_KEY => {
                    key = if s.peek()? == b'n' {
                        nul(&mut s)?;
                        None
                    } else {
                        Some(s.any_str()?)
                    };
                    8
                }
                F_PARTITION => {
                    part = if s.peek()? == b'n' {
                        nul(&mut s)?;
                        None
                    } else {
                        Some(s.int()?)
                    };
                    16
                }
                F_OFFSET => {
                    off = if s.peek()? == b'n' {
                        nul(&mut s)?;
                        None
                    } else {
                        Some(s.int()?)
                    };
                    32
                }
                _ => {
                    // an unknown field (kcat -J adds tstype, broker, headers...): skipped, as the
                    // Python decoder skips it, when it is a plain scalar
                    if s.peek()? == b'"' {
                        s.any_str()?;
                    } else {
                        s.scalar(false)?;
                    }
                    0
                }
            };
            if seen & bit != 0 {
                return None; // a repeated key
            }
            seen |= bit;
            s.ws();
            if s.eat(b',') {
                continue;
            }
            if s.eat(b'}') {
                break;
            }
            return None;
        }
        if !s.at_end() {
            return None;
        }
        Some(Env {
            topic: topic?,
            ts: ts? as I,
            payload: payload?,
            key,
            partition: part,
            offset: off,
        })
    }

    /// The payload string at `line[start]` (its opening quote) decoded in place when it is a
    /// plainly valid record of a known topic written with no escape but `\"`: the payload and
    /// the index after the string.
    fn in_place<'a>(
        &mut self,
        line: &'a [u8],
        start: usize,
        topic: Option<&str>,
        ctl: bool,
    ) -> Option<(Payload<'a>, usize)> {
        if ctl || line.get(start) != Some(&b'"') {
            return None;
        }
        let mut e = Scan::escaped(line, start + 1);
        e.ws();
        let p = match topic? {
            PRODUCT => {
                let (ev, info) = self.fast_product(&mut e)?;
                e.ws();
                Payload::Product(ev, info, start, e.i + 1)
            }
            SURVEY => {
                let ans = self.fast_survey(&mut e)?;
                e.ws();
                Payload::Survey(ans, start, e.i + 1)
            }
            _ => return None,
        };
        // the outer string ends here, and the value is small enough never to be too_large
        if e.peek() != Some(b'"') || (e.i - start) * 4 > MAX_VALUE_BYTES {
            return None;
        }
        Some((p, e.i + 1))
    }

    /// The hot path on a payload given as text (it had escapes): Some when plainly valid.
    fn fast_text<'a>(&mut self, topic: &str, p: &'a str) -> Option<Payload<'a>> {
        if !plain_payload(p) {
            return None;
        }
        let mut s = Scan::new(p.as_bytes());
        s.ws();
        let out = match topic {
            PRODUCT => {
                let (ev, info) = self.fast_product(&mut s)?;
                Payload::Product(ev, info, 0, 0)
            }
            SURVEY => Payload::Survey(self.fast_survey(&mut s)?, 0, 0),
            _ => return None,
        };
        s.at_end().then_some(out)
    }

    /// The hot path's decoding of a product event value (the object next in `s`): Some when
    /// plainly valid. The caller checks the end of the value, its size and the time.
    fn fast_product<'a, const ESC: bool>(
        &mut self,
        s: &mut Scan<'a, ESC>,
    ) -> Option<(Ev<'a>, TInfo)> {
        let (mut eid, mut typ, mut uid, mut ts, mut acct, mut sid, mut props) =
            (None, None, None, None, None, None, None);
        let mut seen = 0u8;
        s.fields(true, |k, v| {
            let bit = match (key_code(k), v) {
                (F_EVENT_ID, Val::Str(x)) => {
                    eid = Some(x);
                    1
                }
                (F_TYPE, Val::Str(x)) => {
                    typ = Some(x);
                    2
                }
                (F_USER_ID, Val::Str(x)) => {
                    uid = Some(x);
                    4
                }
                (F_TS, v @ (Val::Str(_) | Val::Int(_))) => {
                    ts = Some(v);
                    8
                }
                (F_ACCOUNT_ID, Val::Str(x)) => {
                    acct = Some(x);
                    16
                }
                (F_ACCOUNT_ID, Val::Null) => 16,
                (F_SESSION_ID, Val::Str(x)) => {
                    sid = Some(x);
                    32
                }
                (F_SESSION_ID, Val::Null) => 32,
                (F_PROPS, Val::Obj(a, b)) => {
                    props = Some((a, b));
                    64
                }
                (F_PROPS, Val::Null) => 64,
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            Some(())
        })?;
        let (eid, typ, uid) = (eid?, typ?, uid?);
        if !(is_name(eid) && is_name(uid) && acct.is_none_or(is_name) && sid.is_none_or(is_name)) {
            return None;
        }
        let info = self.info(typ);
        if !info.known {
            return None;
        }
        // the props each type needs (streams.records._check_product)
        let mut prop = None;
        let mut amount = 0.0;
        let mut pv: [(&str, Val<'_>); 8] = [("", Val::Null); 8];
        let mut np = 0;
        if let Some((a, _)) = props {
            let mut ps = s.at(a);
            ps.fields(false, |k, v| {
                if np == pv.len() {
                    return None;
                }
                pv[np] = (k, v);
                np += 1;
                Some(())
            })?;
        }
        let get = |name: &str| pv[..np].iter().find(|x| x.0 == name).map(|x| x.1);
        let name_prop = |name: &str| match get(name) {
            Some(Val::Str(x)) if is_name(x) => Some(x),
            _ => None,
        };
        match info.kind {
            Kind::PageView | Kind::SessionStart | Kind::SessionEnd => {
                sid?;
            }
            Kind::Onboarding => prop = Some(name_prop("step")?),
            Kind::FeatureUsed => prop = Some(name_prop("feature")?),
            Kind::Return | Kind::Purchase => {
                props?;
                prop = Some(name_prop("order_id")?);
                if info.kind == Kind::Purchase {
                    match get("amount")? {
                        Val::Int(v) if v >= 0 => amount = v as f64,
                        Val::Num(x) if !x.starts_with('-') => amount = x.parse().ok()?,
                        _ => return None,
                    }
                    if !amount.is_finite() {
                        return None;
                    }
                }
            }
            Kind::TicketOpened => {
                props?;
                prop = Some(name_prop("ticket_id")?);
                name_prop("category")?;
            }
            Kind::TicketResolved => {
                props?;
                prop = Some(name_prop("ticket_id")?);
            }
            Kind::Click | Kind::Impression => match get("placement") {
                None | Some(Val::Null) => {}
                Some(Val::Str(x)) if is_name(x) => {}
                _ => return None,
            },
            Kind::Social => match get("action") {
                Some(Val::Str(x)) if self.cfg.social.iter().any(|a| a == x) => prop = Some(x),
                _ => return None,
            },
            _ => {}
        }
        if matches!(info.kind, Kind::Onboarding | Kind::FeatureUsed) && props.is_none() {
            return None;
        }
        let inst = ts_instant(ts?)?;
        Some((
            Ev {
                uid,
                eid,
                typ,
                acct,
                sid,
                prop,
                amount,
                inst,
            },
            info,
        ))
    }

    /// The hot path's decision on a survey answer value.
    /// The hot path's decoding of a survey answer value (as `fast_product`).
    fn fast_survey<'a, const ESC: bool>(&self, s: &mut Scan<'a, ESC>) -> Option<Ans<'a>> {
        let (mut rid, mut survey, mut score, mut uid, mut ts, mut acct, mut tp) =
            (None, None, None, None, None, None, None);
        let mut seen = 0u8;
        s.fields(false, |k, v| {
            let bit = match (key_code(k), v) {
                (F_RESPONSE_ID, Val::Str(x)) => {
                    rid = Some(x);
                    1
                }
                (F_SURVEY, Val::Str(x)) => {
                    survey = Some(x);
                    2
                }
                (F_SCORE, Val::Int(x)) => {
                    score = Some(x);
                    4
                }
                (F_USER_ID, Val::Str(x)) => {
                    uid = Some(x);
                    8
                }
                (F_TS, v @ (Val::Str(_) | Val::Int(_))) => {
                    ts = Some(v);
                    16
                }
                (F_ACCOUNT_ID, Val::Str(x)) => {
                    acct = Some(x);
                    32
                }
                (F_ACCOUNT_ID, Val::Null) => 32,
                (F_TOUCHPOINT, Val::Str(x)) => {
                    tp = Some(x);
                    64
                }
                (F_TOUCHPOINT, Val::Null) => 64,
                (F_COMMENT, Val::Str(_) | Val::Esc | Val::Null) => 128,
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            Some(())
        })?;
        let (rid, survey, score, uid) = (rid?, survey?, score?, uid?);
        let (sv, lo, hi) = match survey {
            "csat" => (SV_CSAT, 1, 5),
            "nps" => (SV_NPS, 0, 10),
            "ces" => (SV_CES, 1, 7),
            _ => return None,
        };
        if !(lo..=hi).contains(&score) {
            return None;
        }
        if !(is_name(rid) && is_name(uid) && acct.is_none_or(is_name) && tp.is_none_or(is_name)) {
            return None;
        }
        let inst = ts_instant(ts?)?;
        Some(Ans {
            uid,
            rid,
            sv,
            score,
            acct,
            tp,
            inst,
        })
    }

    fn route_fact(&mut self, py: Python<'_>, f: &Fact<'_>) -> PyResult<()> {
        let i = self.pidx(f.customer);
        apply_fact(py, &self.cfg, &mut self.dc, &mut self.accts[i], f)
    }

    fn product(&mut self, py: Python<'_>, ev: &Ev<'_>, info: TInfo, rts: I) -> PyResult<()> {
        let i = self.pidx(ev.uid);
        let up = &mut self.users[i];
        up.clock.see(rts, self.cfg.margin, self.cfg.fold_limit);
        match apply_product(py, &self.cfg, &mut self.dc, info, up, ev)? {
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
        up.clock.see(rts, self.cfg.margin, self.cfg.fold_limit);
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
            up.clock.see(r * MS, self.cfg.margin, self.cfg.fold_limit);
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
                let (cfg, dc) = (&self.cfg, &mut self.dc);
                up.users
                    .retain(|_, u| match expire_user(py, cfg, dc, u, f) {
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
                    expire_account(py, &mut self.dc, a, f)?;
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
        let Some(env) = self.parse_envelope(line) else {
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
        let (lo, hi) = (rts - self.cfg.lateness, rts + FUTURE);
        let payload = env.payload;
        if let Payload::Text(p) = &payload {
            match self.fast_text(topic, p) {
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
                let info = self.info(&o.typ);
                let ev = Ev {
                    uid: &o.uid,
                    eid: &o.eid,
                    typ: &o.typ,
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

    /// A Python instant: whole nanoseconds as an int, else an exact Fraction.
    fn t<'py>(&self, py: Python<'py>, x: I) -> PyResult<Bound<'py, PyAny>> {
        if x == INIT_FOLD {
            return 10_i128.pow(30).neg().into_bound_py_any(py);
        }
        if x % UNIT == 0 {
            (x / UNIT).into_bound_py_any(py)
        } else {
            self.fraction.bind(py).call1((x,))
        }
    }

    fn ot<'py>(&self, py: Python<'py>, x: Option<I>) -> PyResult<Bound<'py, PyAny>> {
        match x {
            Some(v) => self.t(py, v),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// A list of instants, None when empty.
    fn tlist<'py>(&self, py: Python<'py>, v: &[I]) -> PyResult<Bound<'py, PyAny>> {
        if v.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        let items = v
            .iter()
            .map(|&x| self.t(py, x))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?.into_any())
    }

    /// A list of (instant, int) tuples, None when empty.
    fn pairs<'py, N: Copy + for<'a> IntoPyObject<'py>>(
        &self,
        py: Python<'py>,
        v: &[(I, N)],
    ) -> PyResult<Bound<'py, PyAny>> {
        if v.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        let items = v
            .iter()
            .map(|&(x, n)| PyTuple::new(py, [self.t(py, x)?, n.into_bound_py_any(py)?]))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?.into_any())
    }

    fn pair<'py>(&self, py: Python<'py>, v: Option<(I, i64)>) -> PyResult<Bound<'py, PyAny>> {
        match v {
            Some((x, n)) => {
                Ok(PyTuple::new(py, [self.t(py, x)?, n.into_bound_py_any(py)?])?.into_any())
            }
            None => Ok(py.None().into_bound(py)),
        }
    }

    fn day_dict<'py>(&self, py: Python<'py>, m: &Days) -> PyResult<Bound<'py, PyAny>> {
        if m.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        let d = PyDict::new(py);
        for (k, v) in &m.0 {
            d.set_item(*k, self.t(py, *v)?)?;
        }
        Ok(d.into_any())
    }

    fn str_dict<'py>(&self, py: Python<'py>, m: &Map<Key, I>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(k.as_str(), self.t(py, *v)?)?;
        }
        Ok(d)
    }

    fn str_dict_or_none<'py>(
        &self,
        py: Python<'py>,
        m: &Map<Key, I>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if m.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        Ok(self.str_dict(py, m)?.into_any())
    }

    fn user_to_py<'py>(
        &self,
        py: Python<'py>,
        u: &User,
        with_ids: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let none = || py.None().into_bound(py);
        let answers = if u.answers.is_empty() {
            none()
        } else {
            let items = u
                .answers
                .iter()
                .map(|(ts, sv, score, tp)| {
                    PyTuple::new(
                        py,
                        [
                            self.t(py, *ts)?,
                            sv.into_bound_py_any(py)?,
                            score.into_bound_py_any(py)?,
                            tp.as_ref().map(|k| k.as_str()).into_bound_py_any(py)?,
                        ],
                    )
                })
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        };
        let features = if u.features.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, (f0, f1)) in &u.features {
                d.set_item(
                    k.as_str(),
                    PyList::new(py, [self.ot(py, *f0)?, self.tlist(py, f1)?])?,
                )?;
            }
            d.into_any()
        };
        let ids = if with_ids {
            self.str_dict(py, &u.ids)?
        } else {
            PyDict::new(py)
        };
        let ms = if u.ms.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, m) in &u.ms {
                match m {
                    Ms::At(x) => d.set_item(k.as_str(), self.t(py, *x)?)?,
                    Ms::List(v) => d.set_item(k.as_str(), self.tlist(py, v)?)?,
                }
            }
            d.into_any()
        };
        let sessions = if u.sessions.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, s) in &u.sessions {
                let items = s
                    .iter()
                    .map(|&x| self.ot(py, (x != NONE).then_some(x)))
                    .collect::<PyResult<Vec<_>>>()?;
                d.set_item(k.as_str(), PyList::new(py, items)?)?;
            }
            d.into_any()
        };
        let tickets = if u.tickets.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, s) in &u.tickets {
                d.set_item(
                    k.as_str(),
                    PyList::new(py, [self.ot(py, s[0])?, self.ot(py, s[1])?])?,
                )?;
            }
            d.into_any()
        };
        // streams.state.UserState.__slots__ order (checked by streams/native.py)
        let values = PyTuple::new(
            py,
            [
                answers,
                self.day_dict(py, &u.days)?,
                self.pairs(py, &u.facts)?,
                features,
                ids.into_any(),
                self.ot(py, u.last)?,
                self.tlist(py, &u.lastp)?,
                ms,
                none(), // offs: live pipeline only
                self.str_dict_or_none(py, &u.orders)?,
                self.str_dict_or_none(py, &u.resp)?,
                self.str_dict_or_none(py, &u.returns)?,
                sessions,
                self.ot(py, u.signup)?,
                tickets,
            ],
        )?;
        self.restore_user.bind(py).call1(values)
    }

    fn account_to_py<'py>(&self, py: Python<'py>, a: &Account) -> PyResult<Bound<'py, PyAny>> {
        // streams.state.AccountState.__slots__ order
        let values = PyTuple::new(
            py,
            [
                self.pair(py, a.csat)?,
                self.pairs(py, &a.csatp)?,
                self.day_dict(py, &a.days)?,
                self.t(py, a.first)?,
                self.ot(py, a.last)?,
                self.tlist(py, &a.lastp)?,
                self.pair(py, a.nps)?,
                self.pairs(py, &a.npsp)?,
                py.None().into_bound(py), // offs: live pipeline only
                self.pairs(py, &a.orders)?,
                self.pair(py, a.sub)?,
                self.pairs(py, &a.subp)?,
            ],
        )?;
        self.restore_account.bind(py).call1(values)
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
        let steps: Vec<String> = get("funnel_steps")?.extract()?;
        let cfg = Cfg {
            lateness: get("lateness_ns")?.extract::<I>()? * UNIT,
            margin: get("margin_ns")?.extract::<I>()? * UNIT,
            fold_limit: get("fold_limit")?.extract::<I>()? * UNIT,
            n,
            sweep_every: get("sweep_every")?.extract()?,
            inactive: get("inactive_events")?.extract()?,
            milestones: get("milestones")?.extract()?,
            known: get("known_types")?.extract()?,
            steps: steps
                .iter()
                .map(|s| (Box::from(s.as_str()), Box::from(format!("step:{s}"))))
                .collect(),
            social: get("social_actions")?.extract()?,
        };
        let fixed: Option<I> = get("fixed_offset_ns")?
            .extract::<Option<I>>()?
            .map(|o| o * UNIT);
        Ok(Engine {
            cfg,
            types: Map::default(),
            users: (0..n)
                .map(|_| UserPart {
                    clock: Clock::new(),
                    users: Map::default(),
                    accepted: 0,
                    duplicates: 0,
                    rejected: [0; 5],
                })
                .collect(),
            accts: (0..n)
                .map(|_| AcctPart {
                    clock: Clock::new(),
                    accounts: Map::default(),
                })
                .collect(),
            offsets: Map::default(),
            lines: 0,
            skipped: 0,
            redelivered: 0,
            dc: DayCalc {
                fixed,
                py: daycalc,
                cache: Map::default(),
            },
            bridge,
            restore_user,
            restore_account,
            fraction,
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
                d.set_item(k.as_str(), self.user_to_py(py, u, with_ids)?)?;
            }
            users.append((
                d,
                up.accepted,
                up.duplicates,
                up.rejected.to_vec(),
                self.ot(py, up.clock.watermark)?,
                self.t(py, up.clock.fold)?,
                self.ot(py, up.clock.last_sweep)?,
            ))?;
        }
        let accts = PyList::empty(py);
        for ap in &self.accts {
            let d = PyDict::new(py);
            for (k, a) in &ap.accounts {
                d.set_item(k.as_str(), self.account_to_py(py, a)?)?;
            }
            accts.append((
                d,
                self.ot(py, ap.clock.watermark)?,
                self.t(py, ap.clock.fold)?,
                self.ot(py, ap.clock.last_sweep)?,
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

#[pymodule]
fn engagement_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add("MIN_MS", MIN_MS)?;
    m.add("END_MS", END_MS)?;
    Ok(())
}
