//! The records of a Kafka fetch read straight from the bytes the broker sent (record batch
//! format v2, KIP-98), for the intake (agents/raw_fetch.py): a `RecordRun` holds the fetch's
//! bytes and where each record's key and value are in them, so no Python object is made per
//! record between the fetch and the micro-batch messages the core writes (messages.rs
//! `encode_batches` reads runs as well as tuples).
//!
//! It reads what aiokafka's `PartitionRecords` would yield for a read_uncommitted consumer
//! (`raw_fetch._unpack_raw`): whole batches only (a fetch may end with a partial one), control
//! batches skipped, records before the fetch position skipped (a fetch may start inside a
//! batch), the log-append time when a batch says so, the CRC-32C checked. Anything else it
//! does not read itself (a compressed batch, an older magic, a CRC that does not match,
//! lengths that do not add up) makes it give up on the whole fetch, and aiokafka's own reader
//! runs, with its own errors. tests/unit/test_kafka_records.py compares the two.

use crate::crc::crc32c;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// A record's key or value in the fetch's bytes: (start, length), length -1 for null.
type Span = (u32, i32);

/// A record in the fetch's bytes: (offset, timestamp ms, key, value).
type Rec = (i64, i64, Span, Span);

/// The records of one partition's fetch: the bytes, and each record's offset, timestamp (ms),
/// key and value.
#[pyclass(frozen)]
pub struct RecordRun {
    buf: Py<PyBytes>,
    recs: Vec<Rec>,
}

impl RecordRun {
    /// (offset, timestamp, key, value) of each record, borrowed from the bytes.
    pub fn raw<'a>(
        &'a self,
        py: Python<'a>,
    ) -> impl Iterator<Item = (i64, i64, Option<&'a [u8]>, Option<&'a [u8]>)> + 'a {
        let b: &'a [u8] = self.buf.bind(py).as_bytes();
        self.recs
            .iter()
            .map(move |&(o, t, k, v)| (o, t, span(b, k), span(b, v)))
    }
}

fn span(b: &[u8], (start, len): Span) -> Option<&[u8]> {
    (len >= 0).then(|| &b[start as usize..start as usize + len as usize])
}

#[pymethods]
impl RecordRun {
    fn __len__(&self) -> usize {
        self.recs.len()
    }

    /// The offset of its last record.
    #[getter]
    fn last_offset(&self) -> i64 {
        self.recs.last().map_or(-1, |r| r.0)
    }

    /// Its records as `(offset, timestamp, key, value)` tuples (agents/raw_fetch.py `Raw`).
    fn records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (o, t, k, v) in self.raw(py) {
            let k = k.map(|x| PyBytes::new(py, x));
            let v = v.map(|x| PyBytes::new(py, x));
            out.append((o, t, k, v))?;
        }
        Ok(out)
    }
}

/// Not a fetch this reader takes: aiokafka's reader runs instead.
struct Other;

struct Rd<'a> {
    b: &'a [u8],
    i: usize,
}

impl Rd<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Other> {
        let end = self.i.checked_add(n).ok_or(Other)?;
        let s = self.b.get(self.i..end).ok_or(Other)?;
        self.i = end;
        Ok(s)
    }

    /// A zigzag varint of up to 64 bits.
    fn varlong(&mut self) -> Result<i64, Other> {
        let mut x: u64 = 0;
        for shift in (0..64).step_by(7) {
            let c = *self.b.get(self.i).ok_or(Other)?;
            self.i += 1;
            x |= ((c & 0x7f) as u64) << shift;
            if c & 0x80 == 0 {
                return Ok((x >> 1) as i64 ^ -((x & 1) as i64));
            }
        }
        Err(Other)
    }

    fn varint(&mut self) -> Result<i32, Other> {
        i32::try_from(self.varlong()?).map_err(|_| Other)
    }

    /// A nullable byte string (length -1: null), as its span in the whole buffer.
    fn bytes(&mut self) -> Result<Span, Other> {
        let n = self.varint()?;
        if n < 0 {
            return if n == -1 { Ok((0, -1)) } else { Err(Other) };
        }
        let start = u32::try_from(self.i).map_err(|_| Other)?;
        self.take(n as usize)?;
        Ok((start, n))
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

// record batch v2: field offsets (Kafka's DefaultRecordBatch)
const LOG_OVERHEAD: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const RECORDS_COUNT: usize = 57;
const HEADER: usize = 61;
const COMPRESSION: i16 = 0x07;
const LOG_APPEND_TIME: i16 = 0x08;
const CONTROL: i16 = 0x20;

/// Every whole batch of `b`: the records at or after `next`, and the fetch position after them.
fn read(b: &[u8], mut next: i64, check_crc: bool) -> Result<(Vec<Rec>, i64), Other> {
    let mut recs = Vec::new();
    let mut pos = 0usize;
    // MemoryRecords.has_next: a whole batch is left
    while pos + LOG_OVERHEAD <= b.len() {
        let len = usize::try_from(be_i32(b, pos + 8)).map_err(|_| Other)?;
        let end = pos + LOG_OVERHEAD + len;
        if end > b.len() {
            break;
        }
        let batch = &b[pos..end];
        if batch.len() < HEADER || batch[MAGIC] != 2 {
            return Err(Other);
        }
        let attributes = i16::from_be_bytes([batch[ATTRIBUTES], batch[ATTRIBUTES + 1]]);
        if attributes & COMPRESSION != 0 {
            return Err(Other);
        }
        if check_crc {
            let want = u32::from_be_bytes(batch[CRC..CRC + 4].try_into().expect("4 bytes"));
            if crc32c(&batch[ATTRIBUTES..]) != want {
                return Err(Other); // aiokafka's reader raises CorruptRecordException
            }
        }
        let base = be_i64(batch, 0);
        let after = base + be_i32(batch, LAST_OFFSET_DELTA) as i64 + 1;
        if attributes & CONTROL != 0 {
            next = after;
            pos = end;
            continue;
        }
        let base_ts = be_i64(batch, BASE_TIMESTAMP);
        let append_ts = (attributes & LOG_APPEND_TIME != 0).then(|| be_i64(batch, MAX_TIMESTAMP));
        let count = be_i32(batch, RECORDS_COUNT);
        let mut r = Rd { b, i: pos + HEADER };
        for _ in 0..count {
            let size = usize::try_from(r.varint()?).map_err(|_| Other)?;
            let start = r.i;
            r.take(1)?; // attributes (unused)
            let ts_delta = r.varlong()?;
            let offset = base + r.varint()? as i64;
            let key = r.bytes()?;
            let value = r.bytes()?;
            let headers = r.varint()?;
            for _ in 0..headers {
                let k = r.bytes()?;
                if k.1 < 0 {
                    return Err(Other);
                }
                r.bytes()?;
            }
            if r.i != start + size {
                return Err(Other);
            }
            if offset < next {
                continue; // before the fetch position (a fetch starting inside a batch)
            }
            next = offset + 1;
            let ts = append_ts.unwrap_or(base_ts.wrapping_add(ts_delta));
            recs.push((offset, ts, key, value));
        }
        if r.i != end {
            return Err(Other);
        }
        next = after; // as aiokafka: the batch's next offset, whatever came before
        pos = end;
    }
    Ok((recs, next))
}

/// The records of one partition's fetch (the bytes aiokafka hands to `MemoryRecords`) at or
/// after the fetch position `next`: (a `RecordRun`, None when there is none, and the position
/// after them), or None when this reader does not take these bytes.
#[pyfunction]
pub fn read_record_batches(
    buf: &Bound<'_, PyBytes>,
    next: i64,
    check_crc: bool,
) -> PyResult<Option<(Option<RecordRun>, i64)>> {
    let Ok((recs, next)) = read(buf.as_bytes(), next, check_crc) else {
        return Ok(None);
    };
    let run = (!recs.is_empty()).then(|| RecordRun {
        buf: buf.clone().unbind(),
        recs,
    });
    Ok(Some((run, next)))
}

// ---- writing -----------------------------------------------------------------------------------

/// The fixed part of a record batch (v2) before its records: base offset 8, length 4, leader
/// epoch 4, magic 1, CRC 4, attributes 2, last offset delta 4, base and max timestamps 16,
/// producer id 8, producer epoch 2, base sequence 4, record count 4.
const BATCH_HEAD: usize = 61;

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64; // zigzag
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// A record to write: its key and value, either of them null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// One record's bytes after its length: attributes, timestamp delta 0, offset delta, key,
/// value, no headers.
fn record_body_len(delta: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> usize {
    let field = |f: Option<&[u8]>| match f {
        Some(b) => varint_len(b.len() as i64) + b.len(),
        None => 1,
    };
    1 + 1 + varint_len(delta) + field(key) + field(value) + 1
}

/// Record batches (v2, uncompressed, create time `timestamp_ms`, no producer id) holding
/// `records` in order, each batch under `max_bytes` unless one record alone is larger (as
/// aiokafka's builder, which takes a first record whatever its size). The producer sends them as
/// they are and the broker sets their offsets (agents/epoch.py `send_as_batches`).
pub fn write_batches(
    records: &[KeyValue<'_>],
    timestamp_ms: i64,
    max_bytes: usize,
) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        // how many records fit
        let (mut size, mut j) = (BATCH_HEAD, i);
        while j < records.len() {
            let (k, v) = records[j];
            let body = record_body_len((j - i) as i64, k, v);
            let rec = varint_len(body as i64) + body;
            if j > i && size + rec >= max_bytes {
                // (aiokafka's builder takes a record while the batch stays under the size)
                break;
            }
            size += rec;
            j += 1;
        }
        let mut b: Vec<u8> = Vec::with_capacity(size);
        b.extend_from_slice(&0i64.to_be_bytes()); // base offset (the broker's)
        b.extend_from_slice(&((size - 12) as i32).to_be_bytes()); // length after this field
        b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch (the broker's)
        b.push(2); // magic
        b.extend_from_slice(&0u32.to_be_bytes()); // CRC-32C, set below
        b.extend_from_slice(&0i16.to_be_bytes()); // attributes: none
        b.extend_from_slice(&((j - i - 1) as i32).to_be_bytes()); // last offset delta
        b.extend_from_slice(&timestamp_ms.to_be_bytes()); // base timestamp
        b.extend_from_slice(&timestamp_ms.to_be_bytes()); // max timestamp
        b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id: none
        b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        b.extend_from_slice(&((j - i) as i32).to_be_bytes()); // record count
        debug_assert_eq!(b.len(), BATCH_HEAD);
        for (n, &(k, v)) in records[i..j].iter().enumerate() {
            let body = record_body_len(n as i64, k, v);
            put_varint(&mut b, body as i64);
            b.push(0); // attributes
            put_varint(&mut b, 0); // timestamp delta
            put_varint(&mut b, n as i64); // offset delta
            for f in [k, v] {
                match f {
                    Some(x) => {
                        put_varint(&mut b, x.len() as i64);
                        b.extend_from_slice(x);
                    }
                    None => put_varint(&mut b, -1),
                }
            }
            put_varint(&mut b, 0); // headers
        }
        debug_assert_eq!(b.len(), size);
        let crc = crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        out.push((b, j - i));
        i = j;
    }
    out
}

/// `write_record_batches(records, timestamp_ms, max_bytes)`: [(batch bytes, record count)] of
/// `records` [(key or None, value or None)] (`write_batches`).
#[pyfunction]
#[pyo3(name = "write_record_batches")]
pub fn py_write_record_batches<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyList>,
    timestamp_ms: i64,
    max_bytes: usize,
) -> PyResult<Bound<'py, PyList>> {
    type Item<'py> = (Option<Bound<'py, PyBytes>>, Option<Bound<'py, PyBytes>>);
    let items: Vec<Item<'py>> = records.extract()?;
    let views: Vec<KeyValue<'_>> = items
        .iter()
        .map(|(k, v)| {
            (
                k.as_ref().map(|b| b.as_bytes()),
                v.as_ref().map(|b| b.as_bytes()),
            )
        })
        .collect();
    let out = PyList::empty(py);
    for (b, n) in write_batches(&views, timestamp_ms, max_bytes) {
        out.append((PyBytes::new(py, &b), n))?;
    }
    Ok(out)
}
