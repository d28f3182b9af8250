//! Envelopes and records on the wire: the hot path's scanning and decoding of replay envelopes
//! (streams.replay.Envelope) and of product event / survey answer values (streams.records), for
//! the records it can decide with certainty; anything else goes to the Python bridge.

use crate::json::{Scan, Val};
use crate::state::{Map, SV_CES, SV_CSAT, SV_NPS};
use crate::time::{parse_utc, END_MS, HOUR, I, MIN_MS, MS};
use crate::user::{kind_of, Ans, Ev, Kind, Rules, TInfo};
use std::borrow::Cow;

pub const FUTURE: I = HOUR;
pub const MAX_VALUE_BYTES: usize = 65536;

pub const PRODUCT: &str = "product-events";
pub const SURVEY: &str = "survey-answers";

// field names of envelopes and records, as small codes (`key_code`)
pub const F_TOPIC: u8 = 1;
pub const F_TS: u8 = 2;
pub const F_PAYLOAD: u8 = 3;
pub const F_KEY: u8 = 4;
pub const F_PARTITION: u8 = 5;
pub const F_OFFSET: u8 = 6;
pub const F_EVENT_ID: u8 = 7;
pub const F_TYPE: u8 = 8;
pub const F_USER_ID: u8 = 9;
pub const F_ACCOUNT_ID: u8 = 10;
pub const F_SESSION_ID: u8 = 11;
pub const F_PROPS: u8 = 12;
pub const F_RESPONSE_ID: u8 = 13;
pub const F_SURVEY: u8 = 14;
pub const F_SCORE: u8 = 15;
pub const F_TOUCHPOINT: u8 = 16;
pub const F_COMMENT: u8 = 17;

/// The code of a known field name (0 for any other): one length-and-first-byte dispatch and one
/// comparison, instead of a comparison per name.
#[inline]
pub fn key_code(k: &str) -> u8 {
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
pub struct Env<'a> {
    pub topic: Cow<'a, str>,
    pub ts: I,
    pub payload: Payload<'a>,
    pub key: Option<Cow<'a, str>>,
    pub partition: Option<i64>,
    pub offset: Option<i64>,
}

/// An envelope's payload: decoded in place by the hot path, or as text.
pub enum Payload<'a> {
    Null,
    /// a plainly valid record read in place (time not checked yet), and the outer string's span
    Product(Ev<'a>, TInfo, usize, usize),
    Survey(Ans<'a>, usize, usize),
    Text(Cow<'a, str>),
}

pub fn nul<const ESC: bool>(s: &mut Scan<'_, ESC>) -> Option<()> {
    match s.scalar(false)? {
        Val::Null => Some(()),
        _ => None,
    }
}

/// A name (1-128 characters) in ASCII: the hot path leaves other text to Python, which counts
/// code points.
#[inline]
pub fn is_name(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.is_ascii()
}

/// The hot path's pre-check of a value: small enough to never be `too_large` (4 bytes per
/// character at most). (Arrays and nesting beyond flat props are refused by the scanner.)
#[inline]
pub fn plain_payload(p: &str) -> bool {
    p.len() * 4 <= MAX_VALUE_BYTES
}

/// streams.recordspec.TYPE_PATTERN: `[a-z][a-z0-9_]{0,63}`.
pub fn type_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

pub fn ts_instant(v: Val<'_>) -> Option<I> {
    match v {
        Val::Int(ms) if (MIN_MS..END_MS).contains(&ms) => Some(ms as I * MS),
        Val::Str(s) => parse_utc(s),
        _ => None,
    }
}

/// The hot path's decoder: the rules it validates against and a cache of event types.
pub struct Decoder {
    pub rules: Rules,
    types: Map<Box<str>, TInfo>,
}

impl Decoder {
    pub fn new(rules: Rules) -> Self {
        Decoder {
            rules,
            types: Map::default(),
        }
    }

    pub fn info(&mut self, t: &str) -> TInfo {
        if let Some(i) = self.types.get(t) {
            return *i;
        }
        let i = TInfo {
            kind: kind_of(t),
            activity: !self.rules.inactive.contains(t),
            milestone: self.rules.milestones.get(t).copied(),
            known: self.rules.known.contains(t) || type_ok(t),
        };
        if self.types.len() < 10_000 {
            self.types.insert(Box::from(t), i);
        }
        i
    }

    /// The hot path's decision on a product event value: Some when plainly valid and on time.
    /// The envelope of a line, when it is plainly one: a UTF-8 JSON object with the known keys
    /// (payload, topic and ts required, each once, of the right JSON types) and unknown ones of
    /// plain scalar values (skipped, as the Python decoder skips them). A product event or
    /// survey answer payload after the topic is decoded in place, without unescaping it.
    pub fn parse_envelope<'a>(&mut self, line: &'a [u8]) -> Option<Env<'a>> {
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
    pub fn in_place<'a>(
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
    pub fn fast_text<'a>(&mut self, topic: &str, p: &'a str) -> Option<Payload<'a>> {
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
    pub fn fast_product<'a, const ESC: bool>(
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
                Some(Val::Str(x)) if self.rules.social.iter().any(|a| a == x) => prop = Some(x),
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
    pub fn fast_survey<'a, const ESC: bool>(&self, s: &mut Scan<'a, ESC>) -> Option<Ans<'a>> {
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
}
