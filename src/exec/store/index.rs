//! The store's index (`index.json`): what the data file holds, where, and how to check it.

use super::layout::MatrixSpec;
use crate::model::{ModelProfile, Precision};
use serde::{Deserialize, Serialize};

pub const FORMAT_NAME: &str = "edgesim-weight-store";
/// Version 2: entries bound to the index by digests ([`super::binding`]), key ids instead of
/// key hashes.
pub const FORMAT_VERSION: u32 = 2;
pub const INDEX_FILE: &str = "index.json";
pub const DATA_FILE: &str = "weights.bin";
/// The stored model's profile (scaled), for experiments to name by path.
pub const MODEL_FILE: &str = "model.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreIndex {
    pub format: String,
    pub version: u32,
    /// The bundled model (or profile path) the store was made from.
    pub source_model: String,
    /// Factor the matrix dimensions were divided by (1: the real size).
    pub scale: u32,
    /// The model the weights have: the source profile scaled by `scale`.
    pub model: ModelProfile,
    /// Seed of the weight generator (ChaCha8Rng).
    pub seed: u64,
    /// How the weights were made.
    pub weights: String,
    pub group: u32,
    pub precisions: Vec<Precision>,
    pub data_file: String,
    pub data_bytes: u64,
    /// Every entry starts at a multiple of this, and reads are issued in multiples of it.
    pub alignment: u64,
    #[serde(default)]
    pub encryption: Option<EncryptionInfo>,
    /// Set when the dense FFNs are stored as neuron clusters of this many neurons (a store
    /// for neuron-level policies, `layout::stored_tensors_with_neurons`) instead of whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neuron_cluster: Option<u32>,
    /// The model file a real-model store was made from (a GGUF path), which the executor
    /// loads the attention and head from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_file: Option<String>,
    /// SHA-256 of that file when the store was written: a run checks it before trusting the
    /// file's attention and head to go with the store's FFN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_file_sha256: Option<String>,
    pub entries: Vec<StoreEntry>,
    /// Digests tying the index to its entries and `model.json` ([`super::binding`]); set
    /// when the store is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<super::binding::IndexBinding>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionInfo {
    pub cipher: String,
    pub chunk_bytes: u64,
    /// Where the key came from when the store was written (a stand-in for a TEE-held key).
    pub key_origin: String,
    /// The key's identifier ([`super::crypt::StoreKey::id`]), never the key.
    pub key_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreEntry {
    /// The tensor, as `TensorRef` displays it (`L3.E5`, `L0.attn`, `embedding`).
    pub tensor: String,
    pub precision: Precision,
    /// Offset in the data file (a multiple of `alignment`).
    pub offset: u64,
    /// Payload bytes: exactly the model geometry's bytes for the tensor at this precision.
    pub bytes: u64,
    /// Bytes on disk: the payload, plus the tags when encrypted.
    pub stored_bytes: u64,
    /// CRC-32 (IEEE) of the stored bytes.
    pub crc32: u32,
    pub matrices: Vec<MatrixSpec>,
}
