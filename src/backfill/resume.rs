//! Continuing a history file where the last import stopped, so a capture
//! sweep reads about the bytes appended since, not the whole file, and
//! still writes exactly the rows a whole read would.
//!
//! A completed read leaves a [`ReadPoint`]: the offset just past its last
//! consumed line and a fingerprint of the bytes before it (`lines`). It
//! also leaves the state a continued read starts from: what the rows of
//! later lines depend on beyond those lines themselves. Per Claude session
//! (`claude::ClaudeState`): the first entrypoint and windowed cwd, the
//! client version, the earliest message time, and the expansion state
//! (`rows::ExpansionState`: next `message_index`, per-agent chain tail and
//! seen ids, tool-name map); per transcript the sort key of its last entry
//! and the window footprint. Per Codex rollout (`codex::CodexState`): the
//! header (first `session_meta`, stripped to the keys rows read, first
//! turn-context values, whether any id was native), the expansion state and
//! the window footprint. The cache writer stores both in `imported_files`
//! in the same transaction as the file's last rows ([`StoredResume`]); a
//! file that grew (larger than recorded) is continued from there.
//!
//! A whole read is the same code started from the empty state at offset 0,
//! so both paths share every rule of row building, and a continued read
//! counts items as a whole read would (a session with nothing new is an
//! item with no rows). Whenever a continued read cannot vouch for its rows
//! it gives way to a whole read, which is always right; [`Fallback`] lists
//! each case. Rows a whole read would build differently only for lines
//! already imported (a usage stamp that moves to a later block of the same
//! API message, a Codex turn's usage landing on an earlier carrier) need no
//! fallback: those rows are stored, and `INSERT OR IGNORE` on `part_id`
//! keeps them in both paths.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::lines::ReadPoint;
pub use crate::cache::writer::StoredResume;

/// Test and debug knob: set to `1`, every file that could be continued is
/// read whole instead (and still leaves a state for the next run).
pub const NO_RESUME_ENV: &str = "HYP_BACKFILL_NO_RESUME";

/// The layout of the stored state; another version is read whole.
const STATE_VERSION: u32 = 1;

/// Whether [`NO_RESUME_ENV`] turns continued reads off.
pub fn disabled_by_env() -> bool {
    std::env::var(NO_RESUME_ENV).is_ok_and(|value| value == "1")
}

/// The JSON document in `imported_files.resume_state`.
#[derive(Serialize, Deserialize)]
struct Envelope<S> {
    version: u32,
    provider: String,
    open_line: bool,
    state: S,
}

/// How backfill fills the cache's record of a file's resume point (the
/// record is the cache's; what its `state` holds is backfill's).
impl StoredResume {
    /// Store `state` of `provider` as continuing at `point`.
    pub fn new<S: Serialize>(provider: &str, point: &ReadPoint, state: &S) -> StoredResume {
        let envelope = Envelope {
            version: STATE_VERSION,
            provider: provider.to_string(),
            open_line: point.open_line,
            state,
        };
        StoredResume {
            offset: point.offset,
            fingerprint: point.fingerprint.clone(),
            state: serde_json::to_string(&envelope).unwrap_or_default(),
        }
    }

    /// The point and state, when they were stored by this layout for
    /// `provider`; anything else is read whole.
    pub fn decode<S: DeserializeOwned>(&self, provider: &str) -> Option<(ReadPoint, S)> {
        let envelope: Envelope<S> = serde_json::from_str(&self.state).ok()?;
        (envelope.version == STATE_VERSION && envelope.provider == provider).then(|| {
            (
                ReadPoint {
                    offset: self.offset,
                    fingerprint: self.fingerprint.clone(),
                    open_line: envelope.open_line,
                },
                envelope.state,
            )
        })
    }
}

/// Why a continued read gave way to a whole read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No state for this provider and layout (an older cache, another
    /// version).
    NoState,
    /// The bytes before the point are not the ones read (file replaced,
    /// rewritten, or shorter than the point).
    PrefixChanged,
    /// The unterminated tail imported last time was continued by more than
    /// its newline, so it was not a whole line.
    OpenLineExtended,
    /// The window no longer keeps exactly the earlier lines it kept (the
    /// lower bound passed one, or the bounds were changed): indexes and
    /// chains of new rows would differ.
    WindowMoved,
    /// A Claude line appended sorts before one already read: entries are
    /// stable-sorted by timestamp, so a whole read would place it earlier.
    EarlierLine,
    /// The Codex thread id changed (a `session_meta` arrived after messages
    /// whose fallback ids were made under the file-name id).
    ThreadChanged,
}

/// A set of message ids as 128-bit hashes (the first half of SHA-256,
/// stable across builds), written as one hex string: the stored state stays
/// compact and free of the ids' text. Two ids colliding would take 2^64
/// ids to expect once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSet(Vec<u128>);

/// One message id as stored in an [`IdSet`].
pub fn id_hash(id: &str) -> u128 {
    let digest = Sha256::digest(id.as_bytes());
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

impl IdSet {
    /// The set of `hashes`, sorted so equal sets store equal text.
    pub fn from_hashes(mut hashes: Vec<u128>) -> IdSet {
        hashes.sort_unstable();
        hashes.dedup();
        IdSet(hashes)
    }

    pub fn hashes(&self) -> &[u128] {
        &self.0
    }
}

impl Serialize for IdSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = Vec::with_capacity(self.0.len() * 32);
        for hash in &self.0 {
            for byte in hash.to_be_bytes() {
                text.push(HEX[usize::from(byte >> 4)]);
                text.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for IdSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IdSet, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() % 32 != 0 || !text.is_ascii() {
            return Err(serde::de::Error::custom(
                "an id set is 32 hex digits per id",
            ));
        }
        let hashes = (0..text.len())
            .step_by(32)
            .map(|start| u128::from_str_radix(&text[start..start + 32], 16))
            .collect::<Result<Vec<u128>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(IdSet(hashes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_state_round_trips_only_for_its_provider() {
        let point = ReadPoint {
            offset: 42,
            fingerprint: "ab".into(),
            open_line: true,
        };
        let ids = IdSet::from_hashes(vec![id_hash("b"), id_hash("a"), id_hash("a")]);
        let stored = StoredResume::new("claude", &point, &ids);
        assert_eq!(stored.offset, 42);
        assert_eq!(stored.decode::<IdSet>("claude"), Some((point, ids.clone())));
        assert_eq!(stored.decode::<IdSet>("codex"), None);
        assert_eq!(ids.hashes().len(), 2);
        let text = serde_json::to_string(&IdSet::from_hashes(vec![0xab, u128::MAX])).unwrap();
        assert_eq!(
            text,
            format!("\"{:032x}{:032x}\"", 0xab, u128::MAX),
            "32 lowercase hex digits per id"
        );
        let garbled = StoredResume {
            state: "{\"version\":1,\"provider\":\"claude\",\"open_line\":false,\"state\":\"xyz\"}"
                .into(),
            ..stored
        };
        assert_eq!(garbled.decode::<IdSet>("claude"), None);
    }
}
