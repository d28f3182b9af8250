//! What the Python bridge decides for a record the hot path left to it (streams/native.py
//! `_Bridge.record`), read back into Rust.

use crate::state::REASONS;
use crate::time::I;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// What the Python bridge decided for a record.
pub enum Decided {
    Skipped,
    Rejected(usize, Option<u32>, Option<I>),
    Product(OwnedEv),
    Survey(OwnedAns),
    Handover,
}

pub struct OwnedEv {
    pub uid: String,
    pub eid: String,
    pub typ: String,
    pub acct: Option<String>,
    pub sid: Option<String>,
    pub prop: Option<String>,
    pub amount: f64,
    pub inst: I,
}

pub struct OwnedAns {
    pub uid: String,
    pub rid: String,
    pub sv: u8,
    pub score: i64,
    pub acct: Option<String>,
    pub tp: Option<String>,
    pub inst: I,
}

pub fn reason_index(r: &str) -> PyResult<usize> {
    REASONS
        .iter()
        .position(|x| *x == r)
        .ok_or_else(|| PyValueError::new_err(format!("unknown reject reason {r:?}")))
}

/// Reads the bridge's answer; None when a value does not fit (a hand-over).
pub fn read_decision(t: &Bound<'_, PyTuple>) -> PyResult<Option<Decided>> {
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
