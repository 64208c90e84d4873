//! The client-action status rows shared by `hyp status` and `hyp actions`:
//! one row per (kind, request key) from the union of the marker store and
//! the targets the config declares. A marker always wins; a declared target
//! without a marker is `pending` or `n/a` through the same gate
//! `desired()` uses (`backfill_handler::targets`), so `pending` is a
//! promise the reconciler will act. Read-only: nothing here writes or
//! creates a file.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::actions::backfill_handler::{self, KIND as BACKFILL};
use crate::actions::store::{Marker, MarkerDoc, MarkerStore};
use crate::config::EffectiveConfig;
use crate::paths::Paths;
use crate::sanitize::clean as clean_line;

/// The state a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RowState {
    #[serde(rename = "done")]
    Done,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "refused")]
    Refused,
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl RowState {
    pub fn name(self) -> &'static str {
        match self {
            RowState::Done => "done",
            RowState::Failed => "failed",
            RowState::Refused => "refused",
            RowState::Running => "running",
            RowState::Pending => "pending",
            RowState::NotApplicable => "n/a",
        }
    }
}

/// One row, in the JSON key order of the reference (`kind`, `request_key`,
/// `state`, `rows`, `at`, `reason`, `last_attempt`, `attempts`) plus this
/// implementation's `next_attempt`, `pid` and `since`. Values are raw (not
/// sanitised); text rendering sanitises.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRow {
    pub kind: String,
    pub request_key: String,
    pub state: RowState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// The rows of this host, or `None` when nothing applies (status renders
/// `client_actions: null`). Any read problem counts as an empty store.
pub fn collect(paths: &Paths, config: &EffectiveConfig) -> Option<Vec<ActionRow>> {
    let doc = MarkerStore::new(paths).read_lenient();
    let mut rows = derive(&doc, config)?;
    for row in rows.iter_mut().filter(|row| row.state == RowState::Done) {
        if let Some(marker) = doc.marker(&row.kind, &row.request_key)
            && row.kind == BACKFILL
            && !backfill_handler::imported_into_current_cache(paths, marker)
        {
            let health = crate::cache::health::probe(&paths.cache_db());
            let what = if health.is_sound() {
                "the cache was replaced since this import".to_string()
            } else {
                health.to_string()
            };
            row.state = RowState::Pending;
            row.reason = Some(format!(
                "{what} ({} rows at {}): the daemon imports again at its next pass",
                row.rows.map_or("?".to_string(), |rows| rows.to_string()),
                row.at.as_deref().unwrap_or("?")
            ));
            row.rows = None;
            row.at = None;
        }
    }
    Some(rows)
}

/// [`collect`] from an already-read store.
pub fn derive(doc: &MarkerDoc, config: &EffectiveConfig) -> Option<Vec<ActionRow>> {
    // kind -> request key -> Some(runs) when declared.
    let mut table: BTreeMap<String, BTreeMap<String, Option<bool>>> = BTreeMap::new();
    for kind in doc.kinds() {
        let keys = table.entry(kind.clone()).or_default();
        for key in doc.keys(&kind) {
            keys.entry(key).or_insert(None);
        }
    }
    for target in backfill_handler::targets(config) {
        if config.has_central_layer || target.explicit_block {
            table.entry(BACKFILL.to_string()).or_default().insert(
                target.provider.plugin.to_string(),
                Some(target.policy.runs_on_join()),
            );
        }
    }
    let rows: Vec<ActionRow> = table
        .into_iter()
        .flat_map(|(kind, keys)| {
            keys.into_iter()
                .map(move |(key, declared)| match doc.marker(&kind, &key) {
                    Some(marker) => row_from_marker(&kind, &key, marker),
                    None => {
                        let runs = declared.unwrap_or(false);
                        let state = if runs && config.has_central_layer {
                            RowState::Pending
                        } else {
                            RowState::NotApplicable
                        };
                        bare_row(&kind, &key, state)
                    }
                })
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

fn bare_row(kind: &str, key: &str, state: RowState) -> ActionRow {
    ActionRow {
        kind: kind.to_string(),
        request_key: key.to_string(),
        state,
        rows: None,
        at: None,
        reason: None,
        last_attempt: None,
        attempts: None,
        next_attempt: None,
        pid: None,
        since: None,
    }
}

fn row_from_marker(kind: &str, key: &str, marker: &Marker) -> ActionRow {
    let text = |name: &str| {
        marker
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_string)
    };
    let number = |name: &str| {
        let value = marker.get(name)?;
        value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n as u64)
        })
    };
    match marker.get("status").and_then(Value::as_str) {
        Some("failed") => ActionRow {
            reason: text("reason"),
            last_attempt: text("last_attempt"),
            attempts: number("attempts"),
            next_attempt: text("next_attempt"),
            ..bare_row(kind, key, RowState::Failed)
        },
        Some("refused") => ActionRow {
            reason: text("reason"),
            at: text("at"),
            ..bare_row(kind, key, RowState::Refused)
        },
        Some("running") => ActionRow {
            pid: number("pid"),
            since: text("started_at"),
            attempts: number("attempts"),
            ..bare_row(kind, key, RowState::Running)
        },
        _ => ActionRow {
            rows: number("rows"),
            at: text("at"),
            ..bare_row(kind, key, RowState::Done)
        },
    }
}

/// One row for people, values sanitised:
/// `backfill @hypaware/claude  [done]  (42 rows, at 2026-06-25T00:00:00.000Z)`.
pub fn render_text(row: &ActionRow) -> String {
    let clean = |value: &str| clean_line(value, 200);
    let head = format!(
        "{} {}  [{}]",
        clean(&row.kind),
        clean(&row.request_key),
        row.state.name()
    );
    let mut bits: Vec<String> = Vec::new();
    match row.state {
        RowState::Done => {
            bits.extend(row.rows.map(|rows| format!("{rows} rows")));
            bits.extend(row.at.as_deref().map(|at| format!("at {}", clean(at))));
        }
        RowState::Failed => {
            bits.extend(row.reason.as_deref().map(clean));
            bits.extend(
                row.last_attempt
                    .as_deref()
                    .map(|at| format!("last attempt {}", clean(at))),
            );
            bits.extend(
                row.attempts
                    .map(|n| format!("{n} attempt{}", if n == 1 { "" } else { "s" })),
            );
            bits.extend(
                row.next_attempt
                    .as_deref()
                    .map(|at| format!("next attempt {}", clean(at))),
            );
        }
        RowState::Running => {
            bits.extend(row.pid.map(|pid| format!("pid {pid}")));
            bits.extend(
                row.since
                    .as_deref()
                    .map(|at| format!("since {}", clean(at))),
            );
        }
        RowState::Refused => {
            let hint = format!(
                "run 'hyp actions retry {} {}' after fixing the cause",
                clean(&row.kind),
                clean(&row.request_key)
            );
            return match row.reason.as_deref().map(clean) {
                Some(reason) if !reason.is_empty() => format!("{head}  ({reason})  {hint}"),
                _ => format!("{head}  {hint}"),
            };
        }
        RowState::Pending => bits.extend(row.reason.as_deref().map(clean)),
        RowState::NotApplicable => {}
    }
    if bits.is_empty() {
        head
    } else {
        format!("{head}  ({})", bits.join(", "))
    }
}

#[cfg(test)]
mod tests;
