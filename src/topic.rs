//! Typed topics.

use std::sync::Arc;

use faustus_connectors::{Codec, CodecError, Json};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A Kafka topic whose records have keys of type `K` and values of type `V`.
///
/// Keys and values are JSON by default; choose other codecs with [`Topic::key_codec`] and
/// [`Topic::value_codec`] (e.g. [`crate::codec::Str`] for plain-text keys).
pub struct Topic<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) key: Arc<dyn Codec<K>>,
    pub(crate) value: Arc<dyn Codec<V>>,
    pub(crate) partitions: Option<i32>,
}

impl<K, V> Clone for Topic<K, V> {
    fn clone(&self) -> Self {
        Topic {
            name: Arc::clone(&self.name),
            key: Arc::clone(&self.key),
            value: Arc::clone(&self.value),
            partitions: self.partitions,
        }
    }
}

impl<K, V> Topic<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    /// A topic with JSON keys and values. If it does not exist, faustus creates it with the
    /// application's default partition count.
    pub fn new(name: impl Into<String>) -> Self {
        Topic {
            name: Arc::from(name.into()),
            key: Arc::new(Json::<K>::default()),
            value: Arc::new(Json::<V>::default()),
            partitions: None,
        }
    }
}

impl<K: 'static, V: 'static> Topic<K, V> {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the key codec.
    pub fn key_codec(mut self, codec: impl Codec<K>) -> Self {
        self.key = Arc::new(codec);
        self
    }

    /// Sets the value codec.
    pub fn value_codec(mut self, codec: impl Codec<V>) -> Self {
        self.value = Arc::new(codec);
        self
    }

    /// Sets the partition count used when faustus creates the topic.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Encodes a key.
    pub fn encode_key(&self, key: &K) -> Result<Vec<u8>, CodecError> {
        self.key.encode(key)
    }

    /// Encodes a value.
    pub fn encode_value(&self, value: &V) -> Result<Vec<u8>, CodecError> {
        self.value.encode(value)
    }

    /// Encodes a record's key and value (`None` for a tombstone); the error says which part
    /// failed and why.
    pub fn encode_record(
        &self,
        key: &K,
        value: Option<&V>,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), RecordError> {
        let key = self.encode_key(key).map_err(RecordError::Key)?;
        let value = value
            .map(|v| self.encode_value(v).map_err(RecordError::Value))
            .transpose()?;
        Ok((key, value))
    }

    /// Decodes a key.
    pub fn decode_key(&self, bytes: &[u8]) -> Result<K, CodecError> {
        self.key.decode(bytes)
    }

    /// Decodes a value.
    pub fn decode_value(&self, bytes: &[u8]) -> Result<V, CodecError> {
        self.value.decode(bytes)
    }

    /// Decodes a record's key and value (`None` for a tombstone); the error says which part
    /// failed and why.
    pub fn decode_record(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(K, Option<V>), RecordError> {
        let key = self
            .decode_key(key.unwrap_or_default())
            .map_err(RecordError::Key)?;
        let value = value
            .map(|v| self.decode_value(v).map_err(RecordError::Value))
            .transpose()?;
        Ok((key, value))
    }
}

/// Encodes a record given as text (a key, when there is one, and a value) by a topic's codecs:
/// each text is decoded as the codec's payload, so it must be that codec's form of a value of
/// the topic's type (JSON for [`Json`], the text itself for [`crate::codec::Str`]), and is
/// encoded again. The program's `send` command uses it.
pub(crate) type TextEncoder = Arc<
    dyn Fn(Option<&str>, &str) -> Result<(Option<Vec<u8>>, Vec<u8>), RecordError> + Send + Sync,
>;

impl<K: 'static, V: 'static> Topic<K, V> {
    /// This topic's [`TextEncoder`].
    pub(crate) fn text_encoder(&self) -> TextEncoder {
        let topic = self.clone();
        Arc::new(move |key, value| {
            let key = key
                .map(|k| {
                    let typed = topic.decode_key(k.as_bytes()).map_err(RecordError::Key)?;
                    topic.encode_key(&typed).map_err(RecordError::Key)
                })
                .transpose()?;
            let typed = topic
                .decode_value(value.as_bytes())
                .map_err(RecordError::Value)?;
            let value = topic.encode_value(&typed).map_err(RecordError::Value)?;
            Ok((key, value))
        })
    }
}

/// Why a record could not be decoded from, or encoded for, a topic: the reason a dead letter
/// carries in its `faustus.error.reason` header (the `Display` form).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The key.
    #[error("key: {0}")]
    Key(CodecError),
    /// The value.
    #[error("value: {0}")]
    Value(CodecError),
    /// A record with no value (a tombstone) where a value is required: in a stream topic.
    #[error("value: a tombstone (null value) in a stream topic")]
    Tombstone,
}
