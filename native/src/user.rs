//! The user partition's state machines: the Rust mirror of streams.engine.UserPartition
//! (`product`, `survey`, the sessions, milestones and expiry).

use crate::entities::Entities;
use crate::names::Name;
use crate::state::{
    push_tight, push_tight_thin, Days, Inst, Key, Map, Ms, User, When, F_CANCEL, F_CLICK,
    F_IMPRESSION, F_SOCIAL, K_CSAT, K_NONE, K_NPS, K_ORDER, K_SUB_CANCEL, K_SUB_START, NONE,
    SV_CSAT, SV_NPS,
};
use crate::time::{Clock, DayCalc, D30, D31, D7, D90, H24, HOUR, I, UNIT};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
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

pub fn kind_of(t: &str) -> Kind {
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
pub struct TInfo {
    pub kind: Kind,
    pub activity: bool,
    /// the milestone the type is, if any
    pub milestone: Option<Name>,
    pub known: bool, // a valid type (the catalogue's, or matching the type pattern)
}

/// What the engine reads of the configuration (streams.engine.UserPartition's attributes).
pub struct Rules {
    pub lateness: I,
    pub margin: I,
    pub inactive: HashSet<String>,
    /// each milestone event type's name
    pub milestones: HashMap<String, Name>,
    pub known: HashSet<String>,
    pub steps: Map<Box<str>, Name>, // funnel step -> "step:<step>"
    pub social: Vec<String>,
}

/// A setting of the dict Python passes (streams/native.py).
pub fn setting<'py>(settings: &Bound<'py, PyDict>, k: &str) -> PyResult<Bound<'py, PyAny>> {
    settings
        .get_item(k)?
        .ok_or_else(|| PyValueError::new_err(format!("settings without {k}")))
}

impl Rules {
    pub fn from_settings(settings: &Bound<'_, PyDict>) -> PyResult<Self> {
        let get = |k: &str| setting(settings, k);
        let steps: Vec<String> = get("funnel_steps")?.extract()?;
        Ok(Rules {
            lateness: get("lateness_ns")?.extract::<I>()? * UNIT,
            margin: get("margin_ns")?.extract::<I>()? * UNIT,
            inactive: get("inactive_events")?.extract()?,
            milestones: get("milestones")?
                .extract::<HashSet<String>>()?
                .into_iter()
                .map(|t| Ok((t.clone(), crate::names::intern_or_err(&t)?)))
                .collect::<PyResult<_>>()?,
            known: get("known_types")?.extract()?,
            steps: steps
                .iter()
                .map(|s| {
                    let name = crate::names::intern_or_err(&format!("step:{s}"))?;
                    Ok((Box::from(s.as_str()), name))
                })
                .collect::<PyResult<_>>()?,
            social: get("social_actions")?.extract()?,
        })
    }
}

/// A product event, decoded and validated.
pub struct Ev<'a> {
    pub uid: &'a str,
    pub eid: &'a str,
    pub acct: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub prop: Option<&'a str>, // feature | step | action | order_id | ticket_id, by type
    pub amount: f64,
    pub inst: I,
}

/// A survey answer, decoded and validated.
pub struct Ans<'a> {
    pub uid: &'a str,
    pub rid: &'a str,
    pub sv: u8,
    pub score: i64,
    pub acct: Option<&'a str>,
    pub tp: Option<&'a str>,
    pub inst: I,
}

/// An account fact (streams.engine.AccountFact).
pub struct Fact<'a> {
    pub customer: &'a str,
    pub ts: I,
    pub rts: I,
    pub act: bool,
    pub kind: u8,
    pub value: f64,
}

pub struct UserPart {
    pub clock: Clock,
    pub users: Entities<User>,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: [u64; 5],
}

#[inline]
pub fn get_user<'m>(users: &'m mut Entities<User>, uid: &str) -> &'m mut User {
    users.get_or_insert_with(uid, User::default)
}

/// Note an activity at `ts` (day `day`): false when it is after the fold, for the caller to
/// keep in its pending list.
#[must_use]
pub fn note_activity(days: &mut Days, last: &mut When, day: i64, ts: I, fold: I) -> bool {
    days.note(day, ts);
    if ts <= fold {
        if last.get().is_none_or(|l| ts > l) {
            *last = When::of(Some(ts));
        }
        true
    } else {
        false
    }
}

pub fn milestone(u: &mut User, key: Name, ts: I) {
    u.ms_some = true; // Python's `u.ms` is a dict from now on, maybe empty
    match u.signup.get() {
        None => match u.ms.get_mut(key) {
            Some(Ms::List(v)) => push_tight(v, ts),
            Some(m) => *m = Ms::List(vec![ts]), // not reachable: no instant before a signup
            None => {
                u.ms.insert(key, Ms::List(vec![ts]));
            }
        },
        Some(s) => {
            if ts >= s {
                match u.ms.get_mut(key) {
                    Some(Ms::At(c)) => {
                        if ts < c.get() {
                            *c = Inst::new(ts);
                        }
                    }
                    Some(m) => *m = Ms::At(Inst::new(ts)), // not reachable: lists end at the signup
                    None => {
                        u.ms.insert(key, Ms::At(Inst::new(ts)));
                    }
                }
            }
        }
    }
}

pub fn session_step(s: &mut [I; 5], kind: Kind, ts: I) {
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
pub fn apply_product<'a>(
    py: Python<'_>,
    cfg: &Rules,
    dc: &mut DayCalc,
    info: TInfo,
    up: &mut UserPart,
    ev: &Ev<'a>,
) -> PyResult<Option<Fact<'a>>> {
    let fold = up.clock.fold;
    let wm = up.clock.watermark.unwrap_or(0);
    let u = get_user(&mut up.users, ev.uid);
    let ts = ev.inst;
    if !u.ids.insert_if_absent(ev.eid, Inst::new(ts)) {
        return Ok(None);
    }
    if info.activity {
        let day = dc.day(py, ts)?;
        if !note_activity(&mut u.days, &mut u.last, day, ts, fold) {
            push_tight_thin(&mut u.lastp, ts);
        }
    }
    let mut kind = K_NONE;
    let mut value = 0.0;
    if let Some(name) = info.milestone {
        milestone(u, name, ts);
    }
    match info.kind {
        Kind::PageView | Kind::SessionStart | Kind::SessionEnd => {
            let sid = ev.sid.unwrap_or("");
            let sessions = &mut u.rare_mut().sessions;
            match sessions.get_mut(sid) {
                Some(s) => {
                    if ts > s[4] {
                        s[4] = ts;
                    }
                    session_step(s, info.kind, ts);
                }
                None => {
                    let mut s = [NONE, NONE, NONE, NONE, ts];
                    session_step(&mut s, info.kind, ts);
                    sessions.insert_new(Key::from(sid), s);
                }
            }
        }
        Kind::FeatureUsed => {
            let name = ev.prop.unwrap_or("");
            let features = &mut u.rare_mut().features;
            match features.get_mut(name) {
                None => {
                    let f = if ts <= fold {
                        (Some(ts), Vec::new())
                    } else {
                        (None, vec![ts])
                    };
                    features.insert_new(Key::from(name), f);
                }
                Some(f) => {
                    if ts <= fold {
                        if f.0.is_none_or(|x| ts > x) {
                            f.0 = Some(ts);
                        }
                    } else {
                        push_tight(&mut f.1, ts);
                    }
                }
            }
        }
        Kind::Click => push_tight(&mut u.rare_mut().facts, (ts, F_CLICK)),
        Kind::Impression => push_tight(&mut u.rare_mut().facts, (ts, F_IMPRESSION)),
        Kind::Social => {
            let action = ev.prop.unwrap_or("");
            let i = cfg.social.iter().position(|a| a == action).unwrap_or(0);
            push_tight(&mut u.rare_mut().facts, (ts, F_SOCIAL + i as u8));
        }
        Kind::Onboarding => {
            if let Some(&key) = cfg.steps.get(ev.prop.unwrap_or("")) {
                milestone(u, key, ts);
            }
        }
        Kind::Signup => {
            if u.signup.get().is_none() {
                u.signup = When::of(Some(ts));
                u.ms.retain(|_, m| match m {
                    Ms::List(v) => match v.iter().filter(|&&x| x >= ts).min() {
                        Some(&first) => {
                            *m = Ms::At(Inst::new(first));
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
            if u.rare_mut().orders.insert_if_absent(oid, Inst::new(ts)) {
                kind = K_ORDER;
                value = ev.amount;
            }
        }
        Kind::Return => {
            let oid = ev.prop.unwrap_or("");
            u.rare_mut().returns.insert_if_absent(oid, Inst::new(ts));
        }
        Kind::TicketOpened | Kind::TicketResolved => {
            let tid = ev.prop.unwrap_or("");
            let i = if info.kind == Kind::TicketOpened {
                0
            } else {
                1
            };
            let tickets = &mut u.rare_mut().tickets;
            match tickets.get_mut(tid) {
                Some(tk) => {
                    if tk[i].is_none() {
                        tk[i] = Some(ts);
                    }
                }
                None => {
                    let mut tk = [None, None];
                    tk[i] = Some(ts);
                    tickets.insert_new(Key::from(tid), tk);
                }
            }
        }
        Kind::SubCancelled => {
            push_tight(&mut u.rare_mut().facts, (ts, F_CANCEL));
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
pub fn apply_survey<'a>(up: &mut UserPart, ans: &Ans<'a>) -> Option<Fact<'a>> {
    let wm = up.clock.watermark.unwrap_or(0);
    let u = get_user(&mut up.users, ans.uid);
    let ts = ans.inst;
    let r = u.rare_mut();
    if !r.resp.insert_if_absent(ans.rid, Inst::new(ts)) {
        return None;
    }
    push_tight(
        &mut r.answers,
        (ts, ans.sv, ans.score, ans.tp.map(Key::from)),
    );
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

/// Retain in place and say whether anything went.
macro_rules! retain_changed {
    ($c:expr, $changed:expr, $f:expr) => {{
        let n = $c.len();
        $c.retain($f);
        if $c.len() != n {
            *$changed = true;
        }
    }};
}

/// The instant before which a sweep as of F drops event and response ids.
pub fn ids_cut(cfg: &Rules, f: I) -> I {
    f - cfg.lateness - HOUR
}

/// `UserPartition.expire_user` as of F: true when nothing is left. `changed` is set when the
/// state changed (the live sweep writes such users).
pub fn expire_user(
    py: Python<'_>,
    cfg: &Rules,
    dc: &mut DayCalc,
    u: &mut User,
    f: I,
    changed: &mut bool,
) -> PyResult<bool> {
    let ids_cut = ids_cut(cfg, f);
    retain_changed!(u.ids, changed, |_, v| v.get() >= ids_cut);
    if let Some(r) = u.rare.as_deref_mut() {
        retain_changed!(r.resp, changed, |_, v| v.get() >= ids_cut);
        retain_changed!(r.facts, changed, |x| x.0 > f - H24);
        retain_changed!(r.answers, changed, |x| x.0 > f - D30);
    }
    if !u.lastp.is_empty() {
        for &x in &u.lastp {
            if x <= f && u.last.get().is_none_or(|l| x > l) {
                u.last = When::of(Some(x));
            }
        }
        retain_changed!(u.lastp, changed, |&x| x > f);
    }
    if !u.days.is_empty() {
        let dcut = dc.day(py, f)? - 31;
        let n = u.days.0.len();
        u.days.retain_from(dcut);
        if u.days.0.len() != n {
            *changed = true;
        }
    }
    if u.last.get().is_some_and(|l| l < f - D31) && u.lastp.is_empty() {
        u.last = When::NONE;
        *changed = true;
    }
    if let Some(r) = u.rare.as_deref_mut().filter(|r| !r.features.is_empty()) {
        let cut = f - D31;
        retain_changed!(r.features, changed, |_, fl| {
            if !fl.1.is_empty() {
                for &x in &fl.1 {
                    if x <= f && fl.0.is_none_or(|l| x > l) {
                        fl.0 = Some(x);
                    }
                }
                let n = fl.1.len();
                fl.1.retain(|&x| x > f);
                if fl.1.len() != n {
                    *changed = true;
                }
            }
            !(fl.1.is_empty() && fl.0.is_none_or(|l| l < cut))
        });
    }
    if !u.ms.is_empty() {
        match u.signup.get() {
            None => {
                retain_changed!(u.ms, changed, |_, m| match m {
                    Ms::List(v) => {
                        let n = v.len();
                        v.retain(|&x| x >= ids_cut);
                        if v.len() != n {
                            *changed = true;
                        }
                        !v.is_empty()
                    }
                    Ms::At(_) => true, // not reachable before a signup
                });
                u.ms_some = !u.ms.is_empty();
            }
            Some(s) => {
                if s < f - D31 {
                    u.ms.clear();
                    u.ms_some = false;
                    *changed = true;
                }
            }
        }
    }
    if let Some(r) = u.rare.as_deref_mut() {
        let cut = f - H24 - cfg.lateness;
        retain_changed!(r.sessions, changed, |_, v| v[4] >= cut);
        let cut = f - D7 - cfg.lateness;
        retain_changed!(r.tickets, changed, |_, v| v[1].is_none_or(|x| x >= cut));
        let cut = f - D90 - cfg.lateness;
        retain_changed!(r.orders, changed, |_, v| v.get() >= cut);
        retain_changed!(r.returns, changed, |_, v| v.get() >= cut);
    }
    u.tidy();
    Ok(u.is_empty())
}
