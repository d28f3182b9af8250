//! The account partition's state machines: the Rust mirror of streams.engine.AccountPartition
//! (`fact`, expiry).

use crate::state::{
    push_tight, push_tight_thin, Account, Inst, Latest, Pending, When, K_CSAT, K_NONE, K_NPS,
    K_ORDER, K_SUB_CANCEL,
};
use crate::time::{Clock, DayCalc, D30, D90, I};
use crate::user::{note_activity, Fact};
use pyo3::prelude::*;

pub struct AcctPart {
    pub clock: Clock,
    pub accounts: crate::entities::Entities<Account>,
}

/// `AccountPartition.fact`.
pub fn apply_fact(
    py: Python<'_>,
    margin: I,
    fold_limit: Option<I>,
    dc: &mut DayCalc,
    ap: &mut AcctPart,
    f: &Fact<'_>,
) -> PyResult<()> {
    ap.clock.see(f.rts, margin, fold_limit);
    let fold = ap.clock.fold;
    let ts = f.ts;
    let a = match ap.accounts.get_mut(f.customer) {
        Some(a) => {
            if ts < a.first.get() {
                a.first = Inst::new(ts);
            }
            a
        }
        None => ap
            .accounts
            .get_or_insert_with(f.customer, || Account::new(ts)),
    };
    if f.act {
        let day = dc.day(py, ts)?;
        if !note_activity(&mut a.days, &mut a.last, day, ts, fold) {
            push_tight_thin(&mut a.pending.lastp, ts);
        }
    }
    match f.kind {
        K_NONE => {}
        K_ORDER => push_tight(&mut a.orders, (ts, f.value)),
        K_NPS | K_CSAT => {
            let key = (ts, -(f.value as i64));
            let nps = f.kind == K_NPS;
            if ts <= fold {
                let best = if nps { &mut a.nps } else { &mut a.csat };
                if best.get().is_none_or(|b| key > b) {
                    *best = Latest::of(Some(key));
                }
            } else {
                let p = &mut a.pending;
                push_tight_thin(if nps { &mut p.npsp } else { &mut p.csatp }, key);
            }
        }
        _ => {
            let ev = (ts, if f.kind == K_SUB_CANCEL { 1 } else { 0 });
            if ts <= fold - D30 {
                if a.sub.get().is_none_or(|b| ev > b) {
                    a.sub = Latest::of(Some(ev));
                }
            } else {
                push_tight_thin(&mut a.pending.subp, ev);
            }
        }
    }
    Ok(())
}

/// `AccountPartition.expire_account` as of F; `changed` is set when the state changed.
pub fn expire_account(
    py: Python<'_>,
    dc: &mut DayCalc,
    a: &mut Account,
    f: I,
    changed: &mut bool,
) -> PyResult<()> {
    let dcut = dc.day(py, f)? - 31;
    let n = a.days.0.len();
    a.days.retain_from(dcut);
    if a.days.0.len() != n {
        *changed = true;
    }
    expire_pending(
        &mut a.pending,
        &mut a.last,
        &mut a.nps,
        &mut a.csat,
        &mut a.sub,
        f,
        changed,
    );
    let cut = f - D90;
    let n = a.orders.len();
    a.orders.retain(|o| o.0 > cut);
    if a.orders.len() != n {
        *changed = true;
    }
    Ok(())
}

/// The pending lists' part of `expire_account`: what is at or before the fold (for
/// subscriptions, 30 days before it) moves into the customer's latest values.
fn expire_pending(
    p: &mut Pending,
    last: &mut When,
    nps: &mut Latest,
    csat: &mut Latest,
    sub: &mut Latest,
    f: I,
    changed: &mut bool,
) {
    if !p.lastp.is_empty() {
        for &x in &p.lastp {
            if x <= f && last.get().is_none_or(|l| x > l) {
                *last = When::of(Some(x));
            }
        }
        let n = p.lastp.len();
        p.lastp.retain(|&x| x > f);
        if p.lastp.len() != n {
            *changed = true;
        }
    }
    for (best, pend) in [(nps, &mut p.npsp), (csat, &mut p.csatp)] {
        if !pend.is_empty() {
            for &k in pend.iter() {
                if k.0 <= f && best.get().is_none_or(|b| k > b) {
                    *best = Latest::of(Some(k));
                }
            }
            let n = pend.len();
            pend.retain(|k| k.0 > f);
            if pend.len() != n {
                *changed = true;
            }
        }
    }
    if !p.subp.is_empty() {
        let cut = f - D30;
        for &ev in &p.subp {
            if ev.0 <= cut && sub.get().is_none_or(|b| ev > b) {
                *sub = Latest::of(Some(ev));
            }
        }
        let n = p.subp.len();
        p.subp.retain(|ev| ev.0 > cut);
        if p.subp.len() != n {
            *changed = true;
        }
    }
}
