//! Chunks: the bounded NDJSON bodies one ingest request carries, and their
//! batch ids.
//!
//! A chunk holds at most [`MAX_ROWS`] rows and is closed once its bytes
//! (every line with its newline) reach [`MAX_BYTES`]; the check runs after
//! a row is added, so a body is at most 4 MiB plus one row, and a larger row
//! travels alone. A chunk remembers where each of its lines starts, so a
//! refused chunk can be split without being rebuilt.

use sha2::{Digest, Sha256};

use crate::hex::hex;

/// Rows per chunk, as the reference.
pub const MAX_ROWS: usize = 5000;
/// Bytes per chunk (lines plus newlines) before it closes, as the reference.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// The 16 bytes that identify a row by its `part_id` in the sent-row
/// ledger and the quarantine (a truncated SHA-256).
pub type PartHash = [u8; 16];

pub fn part_hash(part_id: &str) -> PartHash {
    let digest = Sha256::digest(part_id.as_bytes());
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

/// One row inside a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    /// The row's cache sequence (its rowid).
    pub seq: i64,
    pub part_id: String,
    pub hash: PartHash,
    /// Where its line starts in the body.
    pub start: usize,
}

/// An NDJSON body being filled, with its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk {
    pub body: Vec<u8>,
    pub rows: Vec<ChunkRow>,
    /// [`body_digest`] of the body, once [`Chunk::seal`] computed it.
    digest: Option<String>,
}

impl Chunk {
    /// An empty chunk whose body has room for a full one, so filling it
    /// never copies the body to grow it.
    pub fn with_room() -> Chunk {
        Chunk {
            body: Vec::with_capacity(MAX_BYTES + 256 * 1024),
            rows: Vec::with_capacity(MAX_ROWS),
            digest: None,
        }
    }

    /// Add one row (`hash` = [`part_hash`] of `part_id`) whose line, with
    /// its `\n`, `append` writes to the body.
    pub fn push(
        &mut self,
        seq: i64,
        part_id: &str,
        hash: PartHash,
        append: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.body.len();
        append(&mut self.body);
        debug_assert_eq!(self.body.last(), Some(&b'\n'));
        self.digest = None;
        self.rows.push(ChunkRow {
            seq,
            part_id: part_id.to_string(),
            hash,
            start,
        });
    }

    /// Compute the body's digest now (on the thread that filled it, so the
    /// sending thread does not have to).
    pub fn seal(&mut self) {
        self.digest = Some(body_digest(&self.body));
    }

    /// The body's digest (computed here unless [`Chunk::seal`] did).
    pub fn digest(&self) -> String {
        self.digest
            .clone()
            .unwrap_or_else(|| body_digest(&self.body))
    }

    /// Whether the chunk must be sent before another row is added.
    pub fn is_full(&self) -> bool {
        self.rows.len() >= MAX_ROWS || self.body.len() >= MAX_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows' part hashes, 16 bytes each, in order.
    pub fn part_hashes(&self) -> Vec<PartHash> {
        self.rows.iter().map(|row| row.hash).collect()
    }

    /// The two halves of a chunk of two or more rows (the lines are copied,
    /// unchanged).
    pub fn split(&self) -> (Chunk, Chunk) {
        let middle = self.rows.len() / 2;
        (self.slice(0..middle), self.slice(middle..self.rows.len()))
    }

    fn slice(&self, range: std::ops::Range<usize>) -> Chunk {
        let end_of = |index: usize| {
            self.rows
                .get(index)
                .map_or(self.body.len(), |row| row.start)
        };
        let (first, last) = (end_of(range.start), end_of(range.end));
        let rows = self.rows[range]
            .iter()
            .map(|row| ChunkRow {
                start: row.start - first,
                ..row.clone()
            })
            .collect();
        Chunk {
            body: self.body[first..last].to_vec(),
            rows,
            digest: None,
        }
    }
}

/// The `X-Hyp-Batch-Id` of a body sent from `position`: 32 lowercase hex
/// characters of SHA-256 over the installation id, the signal, the position
/// and the body's digest ([`body_digest`], so a body is hashed once). A
/// resend of a chunk carries the same id; two chunks differ in body or
/// position, and hosts that share a gateway id differ in their installation
/// ids.
pub fn batch_id(installation_id: &str, signal: &str, position: &str, body_digest: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [installation_id, signal, position, body_digest] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex(&hasher.finalize()[..16])
}

/// The lowercase hex SHA-256 of `body` (an intent's digest).
pub fn body_digest(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }

    /// Fill chunks from `lines` the way an export does.
    fn chunk_all(lines: impl Iterator<Item = String>) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut chunk = Chunk::default();
        for (seq, text) in lines.enumerate() {
            let part_id = format!("p{seq}");
            chunk.push(seq as i64 + 1, &part_id, part_hash(&part_id), |out| {
                line(out, &text)
            });
            if chunk.is_full() {
                chunks.push(std::mem::take(&mut chunk));
            }
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        chunks
    }

    #[test]
    fn short_lines_close_chunks_at_5000_rows() {
        let chunks = chunk_all((0..12_000).map(|n| format!("{{\"message_id\":\"m{n}\"}}")));
        let sizes: Vec<usize> = chunks.iter().map(|chunk| chunk.rows.len()).collect();
        assert_eq!(sizes, [5000, 5000, 2000]);
        let ids: std::collections::BTreeSet<String> = chunks
            .iter()
            .map(|chunk| {
                let digest = body_digest(&chunk.body);
                batch_id("inst", "proxy", &chunk.rows[0].seq.to_string(), &digest)
            })
            .collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn wide_lines_close_chunks_at_4_mib_plus_one_row() {
        let wide = "x".repeat(1024 * 1024 - 1);
        let chunks = chunk_all((0..10).map(|_| wide.clone()));
        assert!(chunks.len() >= 2);
        for chunk in &chunks {
            assert!(chunk.body.len() <= MAX_BYTES + wide.len() + 1);
        }
        assert_eq!(chunks.iter().map(|c| c.rows.len()).sum::<usize>(), 10);
        let huge = "y".repeat(MAX_BYTES + 10);
        let chunks = chunk_all(["a".to_string(), huge, "b".to_string()].into_iter());
        let sizes: Vec<usize> = chunks.iter().map(|chunk| chunk.rows.len()).collect();
        assert_eq!(sizes, [2, 1], "a huge row closes the chunk it lands in");
    }

    #[test]
    fn a_split_keeps_every_line_once() {
        let chunks = chunk_all((0..5).map(|n| format!("line-{n}")));
        let (left, right) = chunks[0].split();
        assert_eq!(left.body, b"line-0\nline-1\n");
        assert_eq!(right.body, b"line-2\nline-3\nline-4\n");
        assert_eq!(right.rows[0].start, 0);
        assert_eq!(right.rows[2].start, 14);
        assert_eq!(right.rows[2].seq, 5);
        let (single, rest) = right.split();
        assert_eq!((single.rows.len(), rest.rows.len()), (1, 2));
    }

    #[test]
    fn batch_ids_depend_on_body_position_and_installation() {
        let body = body_digest(b"{\"m\":0}\n");
        let id = batch_id("inst-a", "proxy", "g:0", &body);
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(id, batch_id("inst-a", "proxy", "g:0", &body));
        assert_ne!(id, batch_id("inst-b", "proxy", "g:0", &body));
        assert_ne!(id, batch_id("inst-a", "proxy", "g:5000", &body));
        let other = body_digest(b"{\"m\":1}\n");
        assert_ne!(id, batch_id("inst-a", "proxy", "g:0", &other));
    }
}
