//! The cache as an export reads it: read-only, in sequence (rowid) order.
//!
//! The sequence of a row is its SQLite rowid. It is allocated inside the
//! inserting transaction (the largest rowid plus one), and SQLite has one
//! writer at a time, so rows commit in sequence order whichever process
//! writes them (the daemon's children, `hyp backfill`), and every read sees
//! a prefix of the sequence. The cache never deletes or replaces a row
//! (`INSERT OR IGNORE`), so a sequence is never reused and the rowids are
//! dense: the rows after a watermark are `max(rowid) - watermark`.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use super::chunk::part_hash;
use super::store::Watermark;
use super::wire::{self, ColumnKind};
use crate::cache::schema::COLUMNS;

pub struct CacheView {
    conn: Connection,
    /// `cache/generation` (empty when the file is missing).
    pub generation: String,
    select_after: String,
}

impl CacheView {
    /// The cache for an export, `None` when there is none yet.
    pub fn open(db: &Path) -> Result<Option<CacheView>, String> {
        if !db.exists() {
            return Ok(None);
        }
        let conn = crate::cache::writer::open_read_only(db).map_err(|err| err.to_string())?;
        Ok(Some(CacheView::over(conn, db)))
    }

    /// The cache for `hyp status`, opened without creating anything.
    pub fn open_for_status(db: &Path) -> Option<CacheView> {
        if !db.exists() {
            return None;
        }
        let conn = crate::cache::query::open_snapshot(db).ok()?;
        Some(CacheView::over(conn, db))
    }

    fn over(conn: Connection, db: &Path) -> CacheView {
        CacheView {
            conn,
            generation: crate::cache::read_generation(db).unwrap_or_default(),
            select_after: format!(
                "SELECT rowid, {} FROM ai_gateway_messages WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                COLUMNS.join(", ")
            ),
        }
    }

    /// Whether `mark` was written against this cache: same generation, and
    /// the row at its sequence is the one it recorded.
    pub fn holds(&self, mark: &Watermark) -> bool {
        if mark.generation != self.generation {
            return false;
        }
        if mark.seq == 0 {
            return true;
        }
        let found: Option<String> = self
            .conn
            .query_row(
                "SELECT part_id FROM ai_gateway_messages WHERE rowid = ?1",
                params![mark.seq],
                |row| row.get(0),
            )
            .optional()
            .ok()
            .flatten();
        found.is_some_and(|part_id| Some(part_hash(&part_id)) == mark.part_hash)
    }

    /// The last sequence committed (0 for an empty cache).
    pub fn max_seq(&self) -> i64 {
        self.conn
            .query_row("SELECT max(rowid) FROM ai_gateway_messages", [], |row| {
                row.get::<_, Option<i64>>(0)
            })
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Where `mark` stands in this cache: its sequence, or 0 when it was
    /// written against another cache.
    pub fn settled_up_to(&self, mark: Option<&Watermark>) -> i64 {
        mark.filter(|mark| self.holds(mark))
            .map_or(0, |mark| mark.seq)
    }

    /// Rows after `mark`'s sequence, or every row when `mark` is not of
    /// this cache.
    pub fn rows_after(&self, mark: Option<&Watermark>) -> u64 {
        self.max_seq()
            .saturating_sub(self.settled_up_to(mark))
            .max(0) as u64
    }

    /// About how many wire bytes the rows after `after` make (the stored
    /// values, quotes and keys; escapes not counted), for a plan. Reads
    /// every such row.
    pub fn wire_bytes_after(&self, after: i64) -> u64 {
        let keys: usize = COLUMNS.iter().map(|name| name.len() + 4).sum::<usize>() + 1;
        let values: Vec<String> = COLUMNS
            .iter()
            .map(|name| format!("coalesce(length(CAST({name} AS BLOB)) + 2, 4)"))
            .collect();
        let sql = format!(
            "SELECT coalesce(sum({} + {keys}), 0) FROM ai_gateway_messages WHERE rowid > ?1",
            values.join(" + ")
        );
        self.conn
            .query_row(&sql, params![after], |row| row.get::<_, i64>(0))
            .map(|bytes| bytes.max(0) as u64)
            .unwrap_or(0)
    }

    /// Call `each(seq, values)` for up to `limit` rows after `after`, in
    /// order, while it returns true. `values[0]` is the rowid, then the 56
    /// columns.
    pub fn scan(
        &self,
        after: i64,
        limit: i64,
        mut each: impl FnMut(i64, &[ValueRef<'_>]) -> bool,
    ) -> Result<(), String> {
        let mut statement = self
            .conn
            .prepare_cached(&self.select_after)
            .map_err(read_error)?;
        let mut rows = statement.query(params![after, limit]).map_err(read_error)?;
        while let Some(row) = rows.next().map_err(read_error)? {
            let values = row_values(row)?;
            let ValueRef::Integer(seq) = values[0] else {
                continue;
            };
            if !each(seq, &values) {
                break;
            }
        }
        Ok(())
    }

    /// The sequence and wire line of the row with `part_id`, if cached.
    pub fn line_of(
        &self,
        part_id: &str,
        kinds: &[ColumnKind; 56],
    ) -> Result<Option<(i64, Vec<u8>)>, String> {
        let sql = format!(
            "SELECT rowid, {} FROM ai_gateway_messages WHERE part_id = ?1",
            COLUMNS.join(", ")
        );
        let mut statement = self.conn.prepare_cached(&sql).map_err(read_error)?;
        let mut rows = statement.query(params![part_id]).map_err(read_error)?;
        let Some(row) = rows.next().map_err(read_error)? else {
            return Ok(None);
        };
        let values = row_values(row)?;
        let ValueRef::Integer(seq) = values[0] else {
            return Ok(None);
        };
        let mut line = Vec::new();
        wire::append_line(&mut line, kinds, &values[1..]);
        Ok(Some((seq, line)))
    }
}

/// The rowid and the 56 columns of a row selected as `rowid, COLUMNS`.
fn row_values<'row>(row: &'row rusqlite::Row<'_>) -> Result<Vec<ValueRef<'row>>, String> {
    (0..=COLUMNS.len())
        .map(|index| row.get_ref(index).map_err(read_error))
        .collect()
}

fn read_error(err: rusqlite::Error) -> String {
    format!("cannot read the cache: {err}")
}
