//! The messages the live worker's stages pass each other through Kafka, written and read here
//! so that a record or a fact on the hot path never becomes a Python object in between:
//!
//! - a micro-batch of `<app>-batches` (streams/codec.py `encode_batch` / `decode_batch`): the
//!   version byte, then [topic, partition, [[offset, record ts ms, key, value], ...]]; the intake
//!   cuts a fetch into micro-batches (streams/codec.py `chunks`) and writes them with
//!   `encode_batches`, and the users stage hands a message's bytes to `LiveUsers.apply_encoded`;
//! - a facts message of `<app>-account-facts` (`encode_facts` / `decode_facts_message`): the
//!   version byte, then [0, [fact, ...]], a fact being [customer, ts, record ts ns, activity,
//!   kind, value, topic, partition, offset, user partition]; `LiveUsers` writes them with
//!   `FactsOut`, `LiveAccounts.apply_encoded` reads them with `read_facts`.
//!
//! The writers give the bytes msgspec gives for the same values (tests/unit/test_native_messages.py
//! compares them); the readers give up (`Unsure`) on anything they are not sure to read as
//! streams/codec.py would (another version, a forget message, a str where bytes belong, trailing
//! bytes): the caller then decodes the message in Python, the reference path.

use crate::codec::{Out, Unsure as Unwritable, FORMAT_VERSION, W};
use crate::decode::{Rd, Unsure, R};
use crate::kafka::RecordRun;
use crate::time::UNIT;
use crate::user::Fact;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

/// A record of a micro-batch: (offset, record ts ms, key, value).
pub type RawRec<'a> = (i64, i64, Option<&'a [u8]>, Option<&'a [u8]>);

/// streams/codec.py `_FACTS`: the tag of a facts message (a forget message is tagged 1).
const FACTS_TAG: i128 = 0;
/// streams/codec.py `chunks`: what a record adds to a micro-batch's size besides its key and value.
const RECORD_OVERHEAD: usize = 32;

/// One micro-batch message (`encode_batch(Batch(topic, partition, records))`).
fn encode_batch(topic: &str, partition: i64, recs: &[RawRec<'_>]) -> Result<Vec<u8>, Unwritable> {
    let size: usize = recs
        .iter()
        .map(|r| r.2.map_or(0, <[u8]>::len) + r.3.map_or(0, <[u8]>::len) + 24)
        .sum();
    let mut o = Out(Vec::with_capacity(size + topic.len() + 16));
    o.0.extend_from_slice(&[FORMAT_VERSION, 0x93]);
    o.str(topic)?;
    o.int(partition as i128);
    o.array(recs.len())?;
    for &(offset, ts, key, value) in recs {
        o.0.push(0x94);
        o.int(offset as i128);
        o.int(ts as i128);
        o.bin(key)?;
        o.bin(value)?;
    }
    Ok(o.0)
}

/// `[encode_batch(Batch(topic, partition, chunk)) for chunk in chunks(records)]` (streams/codec.py,
/// whose `MAX_BATCH_RECORDS` and `MAX_BATCH_BYTES` it is given), `records` being tuples or the
/// `RecordRun`s of a fetch; None when a record is not an (int, int, bytes or None, bytes or
/// None) tuple, for the caller to take the Python path.
#[pyfunction]
#[pyo3(name = "encode_batches")]
pub fn py_encode_batches<'py>(
    py: Python<'py>,
    topic: &str,
    partition: i64,
    records: &Bound<'py, PyList>,
    max_records: usize,
    max_bytes: usize,
) -> PyResult<Option<Vec<Bound<'py, PyBytes>>>> {
    // runs of a fetch read by the core (kafka.rs): their records borrowed from the fetch's bytes
    if records
        .iter()
        .next()
        .is_some_and(|r| r.cast::<RecordRun>().is_ok())
    {
        let mut runs: Vec<Bound<'py, RecordRun>> = Vec::with_capacity(records.len());
        for r in records.iter() {
            let Ok(run) = r.cast_into::<RecordRun>() else {
                return Ok(None);
            };
            runs.push(run);
        }
        let recs: Vec<RawRec<'_>> = runs.iter().flat_map(|r| r.get().raw(py)).collect();
        return Ok(chunked(py, topic, partition, &recs, max_records, max_bytes));
    }
    let mut held: Vec<(i64, i64, Bound<'py, PyAny>, Bound<'py, PyAny>)> =
        Vec::with_capacity(records.len());
    for r in records.iter() {
        let Ok(t) = r.cast::<PyTuple>() else {
            return Ok(None);
        };
        if t.len() != 4 {
            return Ok(None);
        }
        let (Ok(offset), Ok(ts)) = (
            t.get_item(0)?.extract::<i64>(),
            t.get_item(1)?.extract::<i64>(),
        ) else {
            return Ok(None);
        };
        held.push((offset, ts, t.get_item(2)?, t.get_item(3)?));
    }
    fn blob<'b>(x: &'b Bound<'_, PyAny>) -> Option<Option<&'b [u8]>> {
        if x.is_none() {
            Some(None)
        } else {
            x.cast::<PyBytes>().ok().map(|b| Some(b.as_bytes()))
        }
    }
    let mut recs: Vec<RawRec<'_>> = Vec::with_capacity(held.len());
    for (offset, ts, key, value) in &held {
        let (Some(k), Some(v)) = (blob(key), blob(value)) else {
            return Ok(None);
        };
        recs.push((*offset, *ts, k, v));
    }
    Ok(chunked(py, topic, partition, &recs, max_records, max_bytes))
}

/// `recs` cut as streams/codec.py `chunks` cuts them, each micro-batch encoded.
fn chunked<'py>(
    py: Python<'py>,
    topic: &str,
    partition: i64,
    recs: &[RawRec<'_>],
    max_records: usize,
    max_bytes: usize,
) -> Option<Vec<Bound<'py, PyBytes>>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0usize;
    for (i, r) in recs.iter().enumerate() {
        let n = r.3.map_or(0, <[u8]>::len) + r.2.map_or(0, <[u8]>::len) + RECORD_OVERHEAD;
        if i > start && (i - start >= max_records || size + n > max_bytes) {
            let Ok(b) = encode_batch(topic, partition, &recs[start..i]) else {
                return None;
            };
            out.push(PyBytes::new(py, &b));
            start = i;
            size = 0;
        }
        size += n;
    }
    if start < recs.len() {
        let Ok(b) = encode_batch(topic, partition, &recs[start..]) else {
            return None;
        };
        out.push(PyBytes::new(py, &b));
    }
    Some(out)
}

/// A micro-batch message read (`decode_batch`): its topic, source partition and records,
/// borrowed from the message.
pub fn read_batch(b: &[u8]) -> R<(&str, i64, Vec<RawRec<'_>>)> {
    let mut r = Rd { b, i: 0 };
    match b.first() {
        Some(&FORMAT_VERSION) => r.i = 1,
        Some(0x93) => {} // a release before the version byte
        _ => return Err(Unsure),
    }
    if r.array()? != 3 {
        return Err(Unsure);
    }
    let topic = r.str()?;
    let partition = r.i64()?;
    let n = r.array()?;
    let mut recs = Vec::with_capacity(n);
    for _ in 0..n {
        if r.array()? != 4 {
            return Err(Unsure);
        }
        let (offset, ts) = (r.i64()?, r.i64()?);
        recs.push((offset, ts, r.bin_or_nil()?, r.bin_or_nil()?));
    }
    if r.i != b.len() {
        return Err(Unsure);
    }
    Ok((topic, partition, recs))
}

/// The facts of one account partition in one micro-batch, as their message
/// (`encode_facts(facts)`).
pub struct FactsOut {
    body: Out,
    n: usize,
}

impl FactsOut {
    pub fn new() -> Self {
        FactsOut {
            body: Out(Vec::with_capacity(256)),
            n: 0,
        }
    }

    /// `(customer, ts, record ts ns, activity, kind, value, topic, partition, offset, user
    /// partition)`: `LiveUsers::fact_tuple` in the codec
    pub fn push(&mut self, f: &Fact<'_>, topic: &str, part: i64, offset: i64, upart: u32) -> W {
        let o = &mut self.body;
        o.0.push(0x9a);
        o.str(f.customer)?;
        o.t(f.ts);
        o.t(f.rts);
        o.0.push(if f.act { 0xc3 } else { 0xc2 });
        o.int(f.kind as i128);
        o.float(f.value);
        o.str(topic)?;
        o.int(part as i128);
        o.int(offset as i128);
        o.int(upart as i128);
        self.n += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<Vec<u8>, Unwritable> {
        let mut o = Out(Vec::with_capacity(self.body.0.len() + 8));
        o.0.extend_from_slice(&[FORMAT_VERSION, 0x92, FACTS_TAG as u8]);
        o.array(self.n)?;
        o.0.extend_from_slice(&self.body.0);
        Ok(o.0)
    }
}

/// A fact read from a facts message (`LiveAccounts::apply_facts`' reading of a `Fact` tuple):
/// the fact, and where it came from.
pub struct FactRow<'a> {
    pub fact: Fact<'a>,
    pub topic: &'a str,
    pub part: i64,
    pub offset: i64,
    /// the user partition that sent it
    pub via: i64,
}

/// A facts message's facts (`decode_facts_message`); `Unsure` for a forget message and for
/// anything the Python path may read differently.
pub fn read_facts(b: &[u8]) -> R<Vec<FactRow<'_>>> {
    if b.first() != Some(&FORMAT_VERSION) {
        return Err(Unsure);
    }
    let mut r = Rd { b, i: 1 };
    if r.array()? != 2 || r.int()? != FACTS_TAG {
        return Err(Unsure);
    }
    let n = r.array()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if r.array()? != 10 {
            return Err(Unsure);
        }
        out.push(FactRow {
            fact: Fact {
                customer: r.str()?,
                ts: r.t()?,
                rts: r.int()?.checked_mul(UNIT).ok_or(Unsure)?,
                act: r.bool()?,
                kind: u8::try_from(r.int()?).map_err(|_| Unsure)?,
                value: r.float()?,
            },
            topic: r.str()?,
            part: r.i64()?,
            offset: r.i64()?,
            via: r.i64()?,
        });
    }
    if r.i != b.len() {
        return Err(Unsure);
    }
    Ok(out)
}
