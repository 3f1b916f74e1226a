//! Encoding openraft messages into [`RaftPayload`]s (format 1: bincode).

use raftcache_proto::raft::RaftPayload;
use raftcache_proto::PAYLOAD_FORMAT_BINCODE;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unsupported payload format {0}")]
    Format(u32),
    #[error("malformed payload: {0}")]
    Malformed(#[from] bincode::Error),
}

/// Serializes `value` as a format-1 payload.
pub fn encode<T: Serialize>(value: &T) -> RaftPayload {
    let data = bincode::serialize(value).expect("openraft and engine types always serialize");
    RaftPayload { format: PAYLOAD_FORMAT_BINCODE, data, target: 0, cluster_id: 0 }
}

/// Serializes a Raft message addressed to node `target` of cluster
/// `cluster_id`.
pub fn encode_to<T: Serialize>(value: &T, target: u64, cluster_id: u64) -> RaftPayload {
    RaftPayload { target, cluster_id, ..encode(value) }
}

/// Deserializes a payload.
pub fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, CodecError> {
    if payload.format != PAYLOAD_FORMAT_BINCODE {
        return Err(CodecError::Format(payload.format));
    }
    Ok(bincode::deserialize(&payload.data)?)
}

/// Deserializes bincode bytes that travel outside a [`RaftPayload`] (an
/// operation inside a forwarded batch).
pub fn decode_bytes<T: DeserializeOwned>(data: &[u8]) -> Result<T, CodecError> {
    Ok(bincode::deserialize(data)?)
}
