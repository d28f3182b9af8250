//! CRC-32 checksums, reflected, with all-ones initial value and final xor: IEEE's polynomial
//! (zlib's `crc32`: streams.replay.stable_hash, the replay's partition of a record) and
//! Castagnoli's (CRC-32C: Kafka's record batches, kafka.rs), the latter with SSE 4.2's
//! instruction where the CPU has it.

use std::sync::OnceLock;

const IEEE: u32 = 0xEDB8_8320;
const CASTAGNOLI: u32 = 0x82F6_3B78;

fn table(poly: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
        }
        *e = c;
    }
    t
}

fn by_table(t: &[u32; 256], data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = t[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// CRC-32 (IEEE, as zlib.crc32).
pub fn crc32(data: &[u8]) -> u32 {
    static T: OnceLock<[u32; 256]> = OnceLock::new();
    by_table(T.get_or_init(|| table(IEEE)), data)
}

/// CRC-32C (Castagnoli), as Kafka's record batches carry it.
pub fn crc32c(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE 4.2, checked above
            return unsafe { crc32c_sse42(data) };
        }
    }
    crc32c_table(data)
}

fn crc32c_table(data: &[u8]) -> u32 {
    static T: OnceLock<[u32; 256]> = OnceLock::new();
    by_table(T.get_or_init(|| table(CASTAGNOLI)), data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c: u64 = 0xffff_ffff;
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        c = _mm_crc32_u64(c, u64::from_le_bytes(ch.try_into().expect("8 bytes")));
    }
    let mut c = c as u32;
    for &x in chunks.remainder() {
        c = _mm_crc32_u8(c, x);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli_in_both_forms() {
        // the check values (RFC 3720; zlib): "123456789" -> 0xE3069283, 0xCBF43926
        assert_eq!(crc32c_table(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 999, 1000] {
            assert_eq!(crc32c(&data[..n]), crc32c_table(&data[..n]), "{n}");
        }
    }
}
