//! Codecs: how keys and values become bytes on a topic and back.
//!
//! Neither direction panics: a payload that does not decode, or a value that does not encode, is
//! a [`CodecError`] with the reason, and the engine sends the record to the dead-letter topic.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a codec could not encode a value or decode a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CodecError {
    /// The codec's name ([`Codec::name`]).
    pub codec: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl CodecError {
    /// An error of `codec`, saying `message`.
    pub fn new(codec: &'static str, message: impl Into<String>) -> Self {
        CodecError {
            codec,
            message: message.into(),
        }
    }
}

/// Encodes and decodes values of type `T`.
pub trait Codec<T>: Send + Sync + 'static {
    /// The codec's name, for messages.
    fn name(&self) -> &'static str;
    /// Encodes a value, or says why it cannot be encoded.
    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError>;
    /// Decodes a payload, or says why it cannot be decoded.
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// The smallest buffer [`Json`] starts an encoding with.
const MIN_ENCODED_SIZE: usize = 64;
/// The largest buffer [`Json`] starts an encoding with: a rare large value does not make every
/// later encoding reserve as much.
const MAX_ENCODED_SIZE: usize = 64 * 1024;

/// JSON, via serde.
pub struct Json<T> {
    /// The buffer an encoding starts with: half again the size of a recent encoding, as the
    /// values of one topic tend to be alike, instead of growing one from 128 bytes (a sixth of
    /// the time of encoding a 240-byte Nexmark bid). One per codec, so a topic's keys and values
    /// keep hints of their own.
    size_hint: AtomicUsize,
    _type: PhantomData<fn() -> T>,
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Json {
            size_hint: AtomicUsize::new(128),
            _type: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for Json<T> {
    fn name(&self) -> &'static str {
        "json"
    }
    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        // Serde types can still refuse JSON: a map whose keys are not strings, a custom
        // `Serialize` that fails.
        let hint = self.size_hint.load(Ordering::Relaxed);
        let mut bytes = Vec::with_capacity(hint);
        serde_json::to_writer(&mut bytes, value)
            .map_err(|e| CodecError::new("json", format!("not JSON: {e}")))?;
        // Half again as much, as the next value may be a little longer; written only when this
        // one outgrew the buffer or needed less than a third of it, so that values of a steady
        // size cost no write to a line that other threads read.
        let len = bytes.len();
        if len > hint || len < hint / 3 {
            let wanted = (len + len / 2).clamp(MIN_ENCODED_SIZE, MAX_ENCODED_SIZE);
            if wanted != hint {
                self.size_hint.store(wanted, Ordering::Relaxed);
            }
        }
        Ok(bytes)
    }
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        // A missing key or value decodes as JSON `null`, so `()` and `Option` types accept it.
        let bytes = if bytes.is_empty() { b"null" } else { bytes };
        json_from_slice(bytes).map_err(|e| CodecError::new("json", format!("invalid JSON: {e}")))
    }
}

/// `serde_json::from_slice`, faster: the bytes are checked as UTF-8 once, in one pass, and then
/// parsed as a `str`, whose strings need no check of their own (a quarter less time per Nexmark
/// bid). Bytes that are not UTF-8 are parsed as bytes, for `serde_json`'s error and its
/// position.
pub fn json_from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// UTF-8 text as it is (no quotes), for `String` keys and values.
#[derive(Default, Clone, Copy, Debug)]
pub struct Str;

impl Codec<String> for Str {
    fn name(&self) -> &'static str {
        "string"
    }
    fn encode(&self, value: &String) -> Result<Vec<u8>, CodecError> {
        Ok(value.as_bytes().to_vec())
    }
    fn decode(&self, bytes: &[u8]) -> Result<String, CodecError> {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| CodecError::new("string", format!("invalid UTF-8: {e}")))
    }
}

/// Bytes as they are.
#[derive(Default, Clone, Copy, Debug)]
pub struct Raw;

impl Codec<Vec<u8>> for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }
    fn encode(&self, value: &Vec<u8>) -> Result<Vec<u8>, CodecError> {
        Ok(value.clone())
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
}

/// Kafka's murmur2 hash, as the Java client's default partitioner computes it.
///
/// faustus routes keys to workers (and HTTP requests to processes) with it, so that the owner of
/// a key is a function of the key's bytes alone, the same in every process and every build.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition Kafka's Java client would choose for a key: `(murmur2(key) & 0x7fffffff) % n`.
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_from_slice_decodes_as_serde_json_does_and_reports_bad_bytes() {
        let text = b"{\"name\":\"caf\\u00e9 \xc3\xa9\",\"n\":[1,2]}";
        let fast: serde_json::Value = json_from_slice(text).unwrap();
        let plain: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(fast, plain);
        assert_eq!(fast["name"], "café é");
        // Not UTF-8 inside a string: the same error as serde_json's, with its position.
        let bad = b"{\"name\":\"\xff\"}";
        let fast = json_from_slice::<serde_json::Value>(bad).unwrap_err();
        let plain = serde_json::from_slice::<serde_json::Value>(bad).unwrap_err();
        assert_eq!(fast.to_string(), plain.to_string());
        assert!(fast.to_string().contains("line 1"), "{fast}");
        assert!(json_from_slice::<u64>(b"12 x").is_err());
    }

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from the Java client's own partitioner tests (Utils.murmur2).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn json_encodings_do_not_depend_on_the_sizes_encoded_before() {
        let codec = Json::<String>::default();
        for n in [0, 500, 3, 100_000, 10, 200, 201, 5, 70_000, 1] {
            let value = "x".repeat(n);
            let bytes = codec.encode(&value).unwrap();
            assert_eq!(bytes, serde_json::to_vec(&value).unwrap(), "{n} characters");
            assert_eq!(codec.decode(&bytes).unwrap(), value);
        }
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        let codec = Json::<(String, i64)>::default();
        let error = codec.decode(b"{not json").unwrap_err();
        assert_eq!(error.codec, "json");
        assert!(error.message.contains("invalid JSON"), "{error}");
        // A map with non-string keys has no JSON form: an error, not a panic.
        let map = Json::<std::collections::BTreeMap<(i32, i32), i32>>::default();
        let error = map.encode(&[((1, 2), 3)].into()).unwrap_err();
        assert!(error.message.contains("not JSON"), "{error}");
        assert_eq!(
            codec
                .decode(&codec.encode(&("a".into(), 3)).unwrap())
                .unwrap(),
            ("a".into(), 3)
        );
        assert!(Str.decode(&[0xff, 0xfe]).is_err());
    }
}
