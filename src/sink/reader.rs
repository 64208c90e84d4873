//! The reading half of an export: rows after the watermark, in sequence
//! order, into chunks. Withheld rows are counted and skipped; with a ledger
//! check (a replaced cache), rows central already has are skipped too. Each
//! chunk settles everything up to its last row read, so withheld and
//! already-sent rows after its last line are passed with it.
//!
//! It runs on its own thread during an export, one chunk ahead of the
//! uplink, so reading and serialising the next chunk overlaps sending this
//! one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::types::ValueRef;

use super::cache_view::CacheView;
use super::chunk::{Chunk, PartHash, part_hash};
use super::privacy::Privacy;
use super::store::{ForwardStore, TargetId};
use super::wire::{self, ColumnKind};
use super::{Failure, FailureKind};

/// Rows read from the cache per query.
const READ_BATCH: i64 = 2000;
/// Column positions in a row read by [`CacheView::scan`] (rowid first).
const CLIENT_NAME: usize = 1 + 11;
const CWD: usize = 1 + 12;
const PART_ID: usize = 1 + 35;

/// A chunk read from the cache: its rows, and the last sequence it settles.
#[derive(Debug)]
pub struct Filled {
    pub chunk: Chunk,
    pub to_seq: i64,
    pub to_part_hash: PartHash,
}

/// Where rows central already has are looked up (a replaced cache).
pub struct LedgerCheck {
    store: ForwardStore,
    target: TargetId,
}

impl LedgerCheck {
    /// A reading connection of its own on the instance's `forward.db`.
    pub fn open(dir: &Path, target: TargetId) -> Result<LedgerCheck, Failure> {
        let store = ForwardStore::open_reader(dir).map_err(Failure::state)?;
        Ok(LedgerCheck { store, target })
    }

    /// Whether central already has the row: acknowledged, or refused and
    /// kept in quarantine.
    fn has(&self, hash: &PartHash) -> Result<bool, Failure> {
        Ok(self
            .store
            .is_sent(self.target, hash)
            .map_err(Failure::state)?
            || self
                .store
                .is_quarantined(self.target, hash)
                .map_err(Failure::state)?)
    }
}

/// Reads chunk after chunk from `after` on.
pub struct ChunkReader<'a> {
    pub cache: &'a CacheView,
    pub privacy: &'a Privacy,
    pub kinds: &'a [ColumnKind; 56],
    pub ledger: Option<LedgerCheck>,
    /// The last sequence handed out (the next chunk starts after it).
    pub after: i64,
    pub stop: &'a AtomicBool,
    /// Rows withheld so far.
    pub withheld: u64,
}

impl ChunkReader<'_> {
    /// The next chunk, `None` at the end of the cache. A chunk may be empty
    /// when every row it passed was withheld or already sent.
    pub fn next_chunk(&mut self) -> Result<Option<Filled>, Failure> {
        let mut chunk = Chunk::with_room();
        let mut last: Option<(i64, PartHash)> = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(Failure::interrupted());
            }
            let mut read = 0;
            let mut ledger_error = None;
            let (privacy, kinds, ledger) = (self.privacy, self.kinds, &self.ledger);
            let (after, withheld) = (&mut self.after, &mut self.withheld);
            self.cache
                .scan(*after, READ_BATCH, |seq, values| {
                    read += 1;
                    *after = seq;
                    let part_id = text(values[PART_ID]);
                    let hash = part_hash(&part_id);
                    last = Some((seq, hash));
                    let (cwd, client) = (text(values[CWD]), text(values[CLIENT_NAME]));
                    if privacy.withholds(Some(&cwd), Some(&client)) {
                        *withheld += 1;
                        return true;
                    }
                    if let Some(ledger) = ledger {
                        match ledger.has(&hash) {
                            Ok(true) => return true,
                            Ok(false) => {}
                            Err(failure) => {
                                ledger_error = Some(failure);
                                return false;
                            }
                        }
                    }
                    chunk.push(seq, &part_id, hash, |out| {
                        wire::append_line(out, kinds, &values[1..])
                    });
                    !chunk.is_full()
                })
                .map_err(|message| Failure::new(FailureKind::Cache, None, message))?;
            if let Some(failure) = ledger_error {
                return Err(failure);
            }
            if chunk.is_full() || read < READ_BATCH {
                chunk.seal();
                return Ok(last.map(|(to_seq, to_part_hash)| Filled {
                    chunk,
                    to_seq,
                    to_part_hash,
                }));
            }
        }
    }
}

fn text(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        ValueRef::Integer(number) => number.to_string(),
        _ => String::new(),
    }
}
