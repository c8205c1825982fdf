//! How a record's payload is kept in `record_bodies.value`: as received, or as one zstd
//! frame when it is larger than `--compress-payloads-above` and compressing it saves bytes.
//!
//! `record_bodies.codec` (migration 0015) says which: rows written before it read as
//! [`Codec::Plain`] through the column's default, so old index files keep reading without a
//! rewrite. Every reader of a body (detail, raw download, replay, search, purge erase,
//! reclaim) decodes through here, so what leaves the dashboard is the original bytes.
//!
//! A trained dictionary per topic (zstd::dict) is measured by `bench --suite index` and not
//! wired in yet (docs/performance.md has what it would save); it would be a codec of its own,
//! so rows stored with this one keep reading.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;

use sqlx::SqlitePool;

use crate::error::{Error, Result};

/// The default of `--compress-payloads-above`, bytes: below it a zstd frame's own overhead
/// and a small payload's lack of repetition leave little to save.
pub const DEFAULT_COMPRESS_ABOVE: usize = 512;

/// zstd level 3 (zstd's default): level 1 saved visibly less on JSON for a small gain in
/// speed, and compression costs well under the store's own time per record at 3.
const LEVEL: i32 = 3;

/// The largest payload a stored frame may claim to decode to. Kafka's own limits stay far
/// below it; a corrupt frame header claiming more is refused instead of allocated.
const MAX_DECODED_BYTES: u64 = 1 << 30;

/// How a body is stored (`record_bodies.codec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// The bytes as received.
    Plain,
    /// One zstd frame, without a dictionary, with its content size in the header and a
    /// checksum at its end.
    Zstd,
}

impl Codec {
    /// The value of `record_bodies.codec`.
    pub fn as_column(self) -> i64 {
        match self {
            Codec::Plain => 0,
            Codec::Zstd => 1,
        }
    }

    /// The codec a `record_bodies.codec` value names.
    pub fn from_column(v: i64) -> Result<Codec> {
        match v {
            0 => Ok(Codec::Plain),
            1 => Ok(Codec::Zstd),
            other => Err(corrupt(&format!("unknown codec {other}"))),
        }
    }
}

/// A payload as it is to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// How `stored` is to be read back.
    pub codec: Codec,
    /// The compressed frame, or None to store the original bytes as they are.
    pub compressed: Option<Vec<u8>>,
}

impl Encoded {
    /// The bytes to store for `original` (the value this was encoded from).
    pub fn bytes<'a>(&'a self, original: Option<&'a [u8]>) -> Option<&'a [u8]> {
        match &self.compressed {
            Some(frame) => Some(frame),
            None => original,
        }
    }
}

const PLAIN: Encoded = Encoded {
    codec: Codec::Plain,
    compressed: None,
};

thread_local! {
    /// One compression context per thread, reused: making one per payload costs more than
    /// compressing a 1 KiB payload.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// One decompression context per thread, reused for the same reason.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// How to store `value`: compressed when it is longer than `above` bytes (0 = never) and the
/// frame is smaller than the payload, as received otherwise.
pub fn encode(value: Option<&[u8]>, above: usize) -> Encoded {
    let Some(value) = value else { return PLAIN };
    if above == 0 || value.len() <= above {
        return PLAIN;
    }
    let frame = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(LEVEL).ok().and_then(|mut c| {
                // 4 bytes a frame, so that a damaged body is an error, never other bytes.
                c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                    .ok()?;
                Some(c)
            });
        }
        c.as_mut().and_then(|c| c.compress(value).ok())
    });
    match frame {
        Some(frame) if frame.len() < value.len() => Encoded {
            codec: Codec::Zstd,
            compressed: Some(frame),
        },
        // Incompressible (already compressed, random), or zstd refused: keep it as it came.
        _ => PLAIN,
    }
}

/// The error for a body that cannot be read back, said for a user.
fn corrupt(detail: &str) -> Error {
    Error::Internal(format!(
        "The stored payload of this record cannot be decoded ({detail}); the index file may be damaged: re-index the topic to restore it."
    ))
}

/// The original payload from a stored body and its `record_bodies.codec`.
pub fn decode(stored: Option<Vec<u8>>, codec: i64) -> Result<Option<Vec<u8>>> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    match Codec::from_column(codec)? {
        Codec::Plain => Ok(Some(stored)),
        Codec::Zstd => decode_frame(&stored).map(Some),
    }
}

/// The original payload from a stored body, appended to `out`: a bulk replay decodes each
/// chunk's payloads straight into the chunk's one buffer, with no allocation per record.
pub fn decode_append(stored: &[u8], codec: i64, out: &mut Vec<u8>) -> Result<()> {
    match Codec::from_column(codec)? {
        Codec::Plain => out.extend_from_slice(stored),
        Codec::Zstd => {
            let start = out.len();
            out.resize(start + frame_content_size(stored)?, 0);
            if let Err(e) = decode_frame_into(stored, &mut out[start..]) {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The size a stored frame says it decodes to, refused above [`MAX_DECODED_BYTES`].
fn frame_content_size(frame: &[u8]) -> Result<usize> {
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_DECODED_BYTES => Ok(size as usize),
        Ok(Some(size)) => Err(corrupt(&format!("it claims {size} bytes"))),
        Ok(None) => Err(corrupt("its frame has no content size")),
        Err(_) => Err(corrupt("it is not a zstd frame")),
    }
}

/// One whole zstd frame, decoded.
fn decode_frame(frame: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0; frame_content_size(frame)?];
    decode_frame_into(frame, &mut out)?;
    Ok(out)
}

/// One whole zstd frame decoded into `out`, which is exactly its content size.
fn decode_frame_into(frame: &[u8], out: &mut [u8]) -> Result<()> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = zstd::bulk::Decompressor::new().ok();
        }
        let d = d
            .as_mut()
            .ok_or_else(|| corrupt("no zstd decompression context"))?;
        let written = d
            .decompress_to_buffer(frame, out)
            .map_err(|e| corrupt(&format!("zstd: {e}")))?;
        if written != out.len() {
            return Err(corrupt("it is shorter than its header says"));
        }
        Ok(())
    })
}

/// At most the first `max` bytes of the original payload (what search indexes, and a
/// listing's preview), decoding no more of a frame than that.
pub fn decode_prefix(stored: &[u8], codec: i64, max: usize) -> Result<Cow<'_, [u8]>> {
    match Codec::from_column(codec)? {
        Codec::Plain => Ok(Cow::Borrowed(&stored[..stored.len().min(max)])),
        Codec::Zstd => {
            let mut out = Vec::with_capacity(max.min(64 * 1024));
            zstd::stream::read::Decoder::with_buffer(stored)
                .map_err(|e| corrupt(&format!("zstd: {e}")))?
                .take(max as u64)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(&format!("zstd: {e}")))?;
            Ok(Cow::Owned(out))
        }
    }
}

/// The prefix search and purge erase index for a stored body: a body that cannot be decoded
/// is searched as if it had no payload (and logged), so one damaged row cannot stop the
/// search file from following the index. Both callers use this one function, so an entry
/// is always removed with the text it was made from.
pub fn search_prefix(stored: Option<&[u8]>, codec: i64, max: usize) -> Option<Cow<'_, [u8]>> {
    let stored = stored?;
    match decode_prefix(stored, codec, max) {
        Ok(prefix) => Some(prefix),
        Err(e) => {
            tracing::warn!(error = %e, "a stored payload is searched without its text");
            None
        }
    }
}

/// The threshold the indexer compresses above, as stored in the index file (0 = off).
pub async fn compress_above(pool: &SqlitePool) -> Result<usize> {
    let v: i64 = sqlx::query_scalar("SELECT compress_above FROM body_codec")
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(v).unwrap_or(0))
}

/// Set the threshold new payloads are compressed above (0 = off); rows already stored keep
/// their codec. Kept in the index file so that every writer of it (the indexer, the
/// benches, tests) follows one setting without passing it through each call.
pub async fn set_compress_above(pool: &SqlitePool, bytes: usize) -> Result<()> {
    sqlx::query("UPDATE body_codec SET compress_above = ?")
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from(r#"{"id":"ord-1","items":["#);
        while s.len() < n {
            s.push_str(r#"{"sku":"A-100","qty":2,"note":"express delivery"},"#);
        }
        s.push_str("]}");
        s.into_bytes()
    }

    #[test]
    fn a_payload_above_the_threshold_round_trips_through_a_smaller_frame() {
        let original = json(4096);
        let e = encode(Some(&original), 512);
        assert_eq!(e.codec, Codec::Zstd);
        let frame = e.bytes(Some(&original)).unwrap().to_vec();
        assert!(frame.len() < original.len() / 4, "{} bytes", frame.len());
        assert_eq!(
            decode(Some(frame.clone()), e.codec.as_column()).unwrap(),
            Some(original.clone())
        );
        // Appended after what the buffer already holds, as a replay chunk's buffer is.
        let mut buffer = b"key".to_vec();
        decode_append(&frame, 1, &mut buffer).unwrap();
        assert_eq!(&buffer[..3], b"key");
        assert_eq!(&buffer[3..], original.as_slice());
    }

    #[test]
    fn binary_and_invalid_utf8_payloads_round_trip_exactly() {
        let mut original: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        original.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0x00, 0x80]);
        original.extend(std::iter::repeat_n(0u8, 2000));
        let e = encode(Some(&original), 512);
        assert_eq!(e.codec, Codec::Zstd);
        let stored = e.bytes(Some(&original)).unwrap().to_vec();
        assert_eq!(decode(Some(stored), 1).unwrap(), Some(original));
    }

    #[test]
    fn small_null_off_and_incompressible_payloads_are_kept_as_they_came() {
        let small = json(100);
        assert_eq!(encode(Some(&small), 512), PLAIN);
        assert_eq!(encode(None, 512), PLAIN);
        assert_eq!(encode(Some(&json(4096)), 0), PLAIN, "0 turns it off");
        // Noise (as already compressed or encrypted bytes are) does not shrink: stored as is.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert_eq!(encode(Some(&noise), 512), PLAIN);
        let long = json(4096);
        assert_eq!(encode(Some(&long[..600]), 600), PLAIN, "at the threshold");
        assert_eq!(
            encode(Some(&long[..601]), 600).codec,
            Codec::Zstd,
            "above it"
        );
    }

    #[test]
    fn rows_stored_before_compression_read_as_they_are() {
        // Codec 0 is the column's default for rows written before migration 0015, and a
        // stored body that happens to look like a zstd frame is not decoded.
        let frame = zstd::bulk::compress(b"hello hello hello", 3).unwrap();
        assert_eq!(decode(Some(frame.clone()), 0).unwrap(), Some(frame.clone()));
        assert_eq!(decode(None, 0).unwrap(), None);
        assert_eq!(decode_prefix(&frame, 0, 4).unwrap().as_ref(), &frame[..4]);
        assert_eq!(decode_prefix(b"ab", 0, 4).unwrap().as_ref(), b"ab");
    }

    #[test]
    fn a_corrupt_body_is_a_clear_error_not_a_panic() {
        let original = json(4096);
        let e = encode(Some(&original), 512);
        let mut frame = e.compressed.unwrap();
        let cases: Vec<Vec<u8>> = vec![
            b"not a frame at all".to_vec(),
            Vec::new(),
            frame[..frame.len() / 2].to_vec(),
            {
                let mid = frame.len() / 2;
                frame[mid] ^= 0xff;
                frame[mid + 1] ^= 0x55;
                frame.clone()
            },
        ];
        for (n, stored) in cases.into_iter().enumerate() {
            match decode(Some(stored.clone()), 1) {
                Err(Error::Internal(m)) => assert!(m.contains("cannot be decoded"), "{m}"),
                other => panic!("case {n}: {other:?}"),
            }
            // A failed append leaves the chunk's buffer as it was.
            let mut buffer = b"before".to_vec();
            assert!(decode_append(&stored, 1, &mut buffer).is_err(), "case {n}");
            assert_eq!(buffer, b"before", "case {n}");
            if !stored.is_empty() {
                assert!(decode_prefix(&stored, 1, 1 << 20).is_err(), "case {n}");
            }
        }
        assert!(matches!(decode(Some(vec![1]), 7), Err(Error::Internal(_))));
        assert_eq!(search_prefix(Some(b"garbage"), 1, 2048), None);
    }

    #[test]
    fn the_prefix_decodes_only_what_search_reads() {
        let original = json(50_000);
        let e = encode(Some(&original), 512);
        let frame = e.compressed.unwrap();
        assert_eq!(
            decode_prefix(&frame, 1, 2048).unwrap().as_ref(),
            &original[..2048]
        );
        assert_eq!(
            search_prefix(Some(&frame), 1, 160).unwrap().as_ref(),
            &original[..160]
        );
    }
}
