//! The compiled replay core of engagement-metrics: the Rust mirror of `streams.replay.Replayer`
//! and the state machines of `streams.engine` (UserPartition / AccountPartition ingest and expiry).
//!
//! Python stays the reference: records the hot path cannot decide with certainty (escapes,
//! non-ASCII, unknown fields, custom types, anything invalid) go to a Python bridge, which runs
//! the Python validation and hands back either a rejection (already reported) or the decoded
//! record, which is applied here. In replay, the snapshot is computed in Python from the exported
//! state (`UserPartition.partial`, `finalize`); the live partitions compute their partials at T
//! here (partial.rs and account_partial.rs, the mirror of `UserPartition.partial` /
//! `AccountPartition.partial`, checked against them by tests/unit/test_native_partial.py) and
//! `finalize` stays Python's. An input whose value Rust cannot hold exactly (a timestamp with
//! more than nine fractional digits) stops the engine; the bridge then moves the whole state to
//! the Python engine, which continues.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

mod account;
mod account_partial;
mod aggregate;
mod bridge;
mod codec;
mod convert;
mod crc;
mod decode;
mod entities;
mod envelope;
mod footprint;
mod heap;
mod json;
mod kafka;
mod live;
mod messages;
mod names;
mod partial;
mod replay;
mod small_map;
mod state;
mod time;
mod user;

use time::{END_MS, MIN_MS, UNIT};

/// What the core restates by hand from streams/ (codes, slot orders, limits, topic names), as
/// module constants: streams/native.py checks them against the Python definitions at import.
fn add_contract(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use state::*;
    for (name, v) in [
        ("F_CLICK", F_CLICK),
        ("F_IMPRESSION", F_IMPRESSION),
        ("F_CANCEL", F_CANCEL),
        ("F_SOCIAL", F_SOCIAL),
        ("SV_CSAT", SV_CSAT),
        ("SV_NPS", SV_NPS),
        ("SV_CES", SV_CES),
        ("K_NONE", K_NONE),
        ("K_NPS", K_NPS),
        ("K_CSAT", K_CSAT),
        ("K_SUB_START", K_SUB_START),
        ("K_SUB_CANCEL", K_SUB_CANCEL),
        ("K_ORDER", K_ORDER),
    ] {
        m.add(name, v)?;
    }
    m.add("REJECT_REASONS", PyTuple::new(m.py(), REASONS)?)?;
    m.add("USER_SLOTS", PyTuple::new(m.py(), USER_SLOTS)?)?;
    m.add("ACCOUNT_SLOTS", PyTuple::new(m.py(), ACCOUNT_SLOTS)?)?;
    m.add("PRODUCT_EVENTS", envelope::PRODUCT)?;
    m.add("SURVEY_ANSWERS", envelope::SURVEY)?;
    m.add("MAX_VALUE_BYTES", envelope::MAX_VALUE_BYTES)?;
    m.add("FUTURE_NS", envelope::FUTURE / UNIT)?;
    m.add("INIT_FOLD_NS", convert::INIT_FOLD_NS)?;
    m.add("SWEEP_EVERY_NS", time::SWEEP_EVERY / UNIT)?;
    m.add("CODEC_FORMAT_VERSION", codec::FORMAT_VERSION)?;
    m.add("CODEC_TOPICS", PyTuple::new(m.py(), codec::TOPICS)?)?;
    m.add("CODEC_EXT_BIG_INT", codec::EXT_BIG_INT)?;
    m.add("CODEC_EXT_FRACTION", codec::EXT_FRACTION)?;
    m.add("CODEC_ID_PREFIX", codec::ID_PREFIX)?;
    m.add("CODEC_ENTITY_PREFIX", codec::ENTITY_PREFIX)?;
    Ok(())
}

#[pymodule]
fn engagement_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<replay::Engine>()?;
    m.add_class::<live::LiveUsers>()?;
    m.add_class::<live::LiveAccounts>()?;
    m.add_function(wrap_pyfunction!(live::py_murmur2, m)?)?;
    m.add_function(wrap_pyfunction!(messages::py_encode_batches, m)?)?;
    m.add_function(wrap_pyfunction!(kafka::read_record_batches, m)?)?;
    m.add_function(wrap_pyfunction!(kafka::py_write_record_batches, m)?)?;
    m.add_class::<kafka::RecordRun>()?;
    m.add_function(wrap_pyfunction!(partial::py_sum_terms, m)?)?;
    m.add_function(wrap_pyfunction!(heap::heap_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(live::py_kafka_partition, m)?)?;
    m.add(
        "NotRepresentable",
        m.py().get_type::<convert::NotRepresentable>(),
    )?;
    m.add("MIN_MS", MIN_MS)?;
    m.add("END_MS", END_MS)?;
    add_contract(m)?;
    Ok(())
}
