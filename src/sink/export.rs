//! One export of one central sink instance, in the exporting process (the
//! daemon's `hyp sync --scheduled` child, or `hyp sync`), under the
//! instance's export lock:
//!
//! 1. the pending intent, if a crash or a failure left one, is sent again
//!    byte for byte before anything else;
//! 2. with `--retry-quarantined`, quarantined rows are offered again;
//! 3. rows after the watermark are read in sequence order, withheld rows
//!    skipped, and each chunk is made durable as an intent, sent, and
//!    settled (ledger, watermark, totals) in one transaction when central
//!    acknowledges it. A refused chunk is split until the refused rows
//!    stand alone in quarantine, so one bad row never holds back the rest.
//!
//! The watermark is trusted only for the cache it was written against (its
//! generation, and the part hash of the row at its sequence). Any other
//! cache restarts the scan from its first row, with each row checked
//! against the sent-row ledger, so rows central already has are never sent
//! to it again, even after the cache was deleted and filled anew.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use serde_json::json;

use super::cache_view::CacheView;
use super::chunk::{self, Chunk, PartHash, part_hash};
use super::privacy::Privacy;
use super::store::{
    ExportError, ExportState, ForwardStore, Intent, IntentKind, TargetId, Watermark,
};
use super::wire::{self, ColumnKind};
use super::{Failure, FailureKind, InstanceReport, SIGNAL, SyncStatus};
use crate::control::client::{CentralClient, IngestResponse, MIN_REQUEST_DEADLINE};
use crate::control::identity::Credential;
use crate::control::sink::CentralSink;
use crate::event_log;
use crate::paths::{Paths, TimeScale};
use crate::time::iso_ms;

/// The deadline of one ingest request, unscaled: a 4 MiB body on a slow
/// link needs more than the config poll's 30 s.
const INGEST_DEADLINE: Duration = Duration::from_secs(120);
/// The 429/503 ladder when no positive `Retry-After` is given, seconds.
const THROTTLE_LADDER_SECS: [u64; 4] = [30, 60, 120, 300];
/// Waiting for a throttled chunk stops before it would pass this.
const INLINE_WAIT_BUDGET: Duration = Duration::from_secs(300);
/// Rows read from the cache per query.
const READ_BATCH: i64 = 2000;
/// Column positions in a row read by [`CacheView`] (rowid first).
const CLIENT_NAME: usize = 1 + 11;
const CWD: usize = 1 + 12;
const PART_ID: usize = 1 + 35;

/// What an export is asked to do beyond the rows after the watermark.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    pub time_scale: TimeScale,
    /// Offer quarantined rows again first.
    pub retry_quarantined: bool,
}

/// Rows, bytes and chunks of one export.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    rows_sent: u64,
    bytes_sent: u64,
    chunks: u64,
    rows_withheld: u64,
    rows_quarantined: u64,
}

/// Run one export of `sink` (the caller holds its export lock) and record
/// its outcome for status and the daemon's schedule.
pub fn run(
    paths: &Paths,
    sink: &CentralSink,
    options: ExportOptions,
    stop: &AtomicBool,
) -> InstanceReport {
    let dir = paths.sink_instance_dir(&sink.name);
    let mut store = match ForwardStore::open(&dir) {
        Ok(store) => store,
        Err(err) => {
            let failure = Failure::new(FailureKind::State, None, err.to_string());
            return InstanceReport::failed(&sink.name, &failure, 0);
        }
    };
    let mut state = store.export_state().unwrap_or_default();
    let mut tally = Tally::default();
    let outcome = Export::start(paths, sink, &mut store, options, stop).and_then(|mut export| {
        state.target_id = Some(export.target);
        let result = export.run(options.retry_quarantined);
        tally = export.tally;
        result.map(|()| export.pending())
    });
    let now = jiff::Timestamp::now();
    let (result, pending_rows) = match outcome {
        Ok(pending) => (Ok(()), pending),
        Err(failure) => {
            let pending = state
                .target_id
                .map_or(0, |target| pending_rows(paths, &store, target));
            (Err(failure), pending)
        }
    };
    record_outcome(&mut state, &result, &tally, now, options.time_scale, paths);
    if let Err(err) = store.set_export_state(&state) {
        event_log::error(
            "central.forward.state_write_failed",
            json!({"hyp_sink_instance": sink.name, "message": err.to_string()}),
        );
    }
    report(&sink.name, &result, &tally, pending_rows)
}

fn report(
    instance: &str,
    result: &Result<(), Failure>,
    tally: &Tally,
    pending_rows: u64,
) -> InstanceReport {
    let status = match result {
        Err(_) if tally.rows_sent > 0 || tally.rows_quarantined > 0 => SyncStatus::Partial,
        Err(_) => SyncStatus::Failed,
        Ok(()) if tally.rows_quarantined > 0 => SyncStatus::Partial,
        Ok(()) if tally.rows_sent > 0 => SyncStatus::Exported,
        Ok(()) => SyncStatus::NothingToSend,
    };
    let failure = result.as_ref().err();
    let log_fields = json!({
        "hyp_sink_instance": instance,
        "status": status.name(),
        "rows_sent": tally.rows_sent,
        "bytes_sent": tally.bytes_sent,
        "chunks": tally.chunks,
        "rows_withheld": tally.rows_withheld,
        "rows_quarantined": tally.rows_quarantined,
        "pending_rows": pending_rows,
        "error_kind": failure.map(|failure| failure.kind.name()),
        "message": failure.map(|failure| failure.message.clone()),
    });
    if failure.is_some() {
        event_log::warn("central.forward.failed", log_fields);
    } else {
        event_log::info("central.forward.export", log_fields);
    }
    InstanceReport {
        instance: instance.to_string(),
        status,
        rows_sent: tally.rows_sent,
        bytes_sent: tally.bytes_sent,
        chunks: tally.chunks,
        rows_withheld: tally.rows_withheld,
        rows_quarantined: tally.rows_quarantined,
        pending_rows,
        error: failure.map(|failure| failure.message.clone()),
        interrupted: failure.is_some_and(|failure| failure.kind == FailureKind::Interrupted),
    }
}

/// Fold one export's result into the instance's bookkeeping: a success
/// clears the failure streak; a failure counts, and sets when the daemon
/// may try again (a remembered `Retry-After` or ladder step, else 60 s
/// doubling to 5 min, jittered, all scaled).
fn record_outcome(
    state: &mut ExportState,
    result: &Result<(), Failure>,
    tally: &Tally,
    now: jiff::Timestamp,
    time_scale: TimeScale,
    paths: &Paths,
) {
    let now_text = iso_ms(now);
    state.last_export_at = Some(now_text.clone());
    match result {
        Ok(()) => {
            state.last_success_at = Some(now_text);
            state.failures = 0;
            state.failing_since = None;
            state.next_attempt_at = None;
            if tally.rows_quarantined == 0 {
                state.last_error = None;
            }
        }
        Err(failure) if failure.kind == FailureKind::Interrupted => {}
        Err(failure) => {
            state.failures = state.failures.saturating_add(1);
            state.failing_since.get_or_insert_with(|| now_text.clone());
            let wait = failure
                .retry_after
                .unwrap_or_else(|| backoff(paths, state.failures));
            let next = now.checked_add(time_scale.scale(wait)).unwrap_or(now);
            state.next_attempt_at = Some(iso_ms(next));
            state.last_error = Some(ExportError {
                at: now_text,
                http_status: failure.http_status,
                kind: failure.kind.name().to_string(),
                message: failure.message.clone(),
            });
        }
    }
}

/// 60 s doubling per consecutive failure, capped at 5 min, times a jitter
/// in [0.8, 1.2] fixed per host and failure count (unscaled).
fn backoff(paths: &Paths, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(8);
    let base = (60u64 << doublings).min(300);
    let seed = crate::control::membership::read_installation_id(paths).unwrap_or_default();
    let digest = chunk::part_hash(&format!("{seed}:export-backoff:{failures}"));
    let unit = f64::from(u16::from_le_bytes([digest[0], digest[1]])) / f64::from(u16::MAX);
    Duration::from_secs_f64(base as f64 * (0.8 + 0.4 * unit))
}

/// Rows after the target's watermark in the current cache, for a report
/// after a failure.
fn pending_rows(paths: &Paths, store: &ForwardStore, target: TargetId) -> u64 {
    let Ok(Some(cache)) = CacheView::open(&paths.cache_db()) else {
        return 0;
    };
    cache.rows_after(store.watermark(target).ok().flatten().as_ref())
}

/// How one body fared.
enum Delivery {
    Accepted,
    /// 400, 413 or 422: central stored none of it.
    Refused {
        status: u16,
        detail: String,
    },
}

/// A chunk read from the cache: its rows, and the last sequence it settles
/// (withheld and already-sent rows after its last line included).
struct Filled {
    chunk: Chunk,
    to_seq: i64,
    to_part_hash: PartHash,
}

struct Export<'a> {
    store: &'a mut ForwardStore,
    target: TargetId,
    client: CentralClient,
    credential: Credential,
    installation_id: String,
    privacy: Privacy,
    kinds: [ColumnKind; 56],
    time_scale: TimeScale,
    stop: &'a AtomicBool,
    tally: Tally,
    mark: Option<Watermark>,
    cache: Option<CacheView>,
}

impl<'a> Export<'a> {
    /// Everything an export needs before its first request: the policy
    /// (a malformed file fails closed here), the credential and the target.
    fn start(
        paths: &'a Paths,
        sink: &CentralSink,
        store: &'a mut ForwardStore,
        options: ExportOptions,
        stop: &'a AtomicBool,
    ) -> Result<Export<'a>, Failure> {
        let privacy = Privacy::load(paths)
            .map_err(|err| Failure::new(FailureKind::Policy, None, err.to_string()))?;
        let installation_id = crate::control::membership::installation_id(paths)
            .map_err(|err| Failure::new(FailureKind::State, None, err.to_string()))?;
        let deadline = options
            .time_scale
            .scale(INGEST_DEADLINE)
            .max(MIN_REQUEST_DEADLINE);
        let client = CentralClient::new(&sink.url, deadline);
        let mut credential = Credential::new(paths, sink, &client);
        credential
            .jwt()
            .map_err(|err| Failure::new(FailureKind::Identity, None, err.to_string()))?;
        let gateway_id = credential.gateway_id().unwrap_or_default().to_string();
        let target = store
            .target(&sink.url, &gateway_id)
            .map_err(Failure::state)?;
        let cache = CacheView::open(&paths.cache_db())
            .map_err(|message| Failure::new(FailureKind::Cache, None, message))?;
        Ok(Export {
            store,
            target,
            client,
            credential,
            installation_id,
            privacy,
            kinds: wire::column_kinds(),
            time_scale: options.time_scale,
            stop,
            tally: Tally::default(),
            mark: None,
            cache,
        })
    }

    fn run(&mut self, retry_quarantined: bool) -> Result<(), Failure> {
        self.replay_intent()?;
        if self.cache.is_none() {
            return Ok(());
        }
        if retry_quarantined {
            self.retry_quarantined()?;
        }
        let mut mark = self.trusted_watermark()?;
        if mark.ledger_check {
            self.store.index_sent(self.target).map_err(Failure::state)?;
        }
        let result = self.send_after(&mut mark);
        self.mark = Some(mark);
        result
    }

    /// Rows after the watermark in the current cache (0 without one).
    fn pending(&self) -> u64 {
        self.cache
            .as_ref()
            .map_or(0, |cache| cache.rows_after(self.mark.as_ref()))
    }

    /// Send the intent a crash or failure left behind, byte for byte, with
    /// its batch id, before anything new.
    fn replay_intent(&mut self) -> Result<(), Failure> {
        let Some(intent) = self.store.intent(self.target).map_err(Failure::state)? else {
            return Ok(());
        };
        let Some(body) = self.store.intent_body(self.target, &intent) else {
            event_log::warn(
                "central.forward.intent_lost",
                json!({"batch_id": intent.batch_id, "detail": "the intent's body file is missing or changed; its rows are sent again from the cache"}),
            );
            return self
                .store
                .forget_intent(self.target)
                .map_err(Failure::state);
        };
        event_log::info(
            "central.forward.replay",
            json!({"batch_id": intent.batch_id, "rows": intent.part_hashes.len(), "bytes": intent.bytes}),
        );
        match self.deliver(&body, &intent.batch_id)? {
            Delivery::Accepted => {
                let advance = match self.store.watermark(self.target).map_err(Failure::state)? {
                    Some(mark)
                        if intent.kind == IntentKind::Rows
                            && mark.generation == intent.generation
                            && mark.seq == intent.from_seq =>
                    {
                        Some(Watermark {
                            seq: intent.to_seq,
                            part_hash: intent.to_part_hash,
                            ..mark
                        })
                    }
                    _ => None,
                };
                self.settle(&intent, advance.as_ref())
            }
            // Nothing of it was stored: rows after the watermark are read
            // and split again; retried rows stay in quarantine.
            Delivery::Refused { .. } => self
                .store
                .forget_intent(self.target)
                .map_err(Failure::state),
        }
    }

    /// The watermark, if it describes the cache on disk; else the start of
    /// this cache, checking each row against the ledger when the target
    /// has acknowledged rows before.
    fn trusted_watermark(&mut self) -> Result<Watermark, Failure> {
        let cache = self.cache.as_ref().expect("a cache is open");
        let stored = self.store.watermark(self.target).map_err(Failure::state)?;
        if let Some(mark) = stored.filter(|mark| cache.holds(mark)) {
            return Ok(mark);
        }
        let ledger_check = self
            .store
            .has_sent_rows(self.target)
            .map_err(Failure::state)?;
        let mark = Watermark::start(&cache.generation, ledger_check);
        self.store
            .set_watermark(self.target, &mark)
            .map_err(Failure::state)?;
        event_log::info(
            "central.forward.watermark_reset",
            json!({"cache_generation": mark.generation, "ledger_check": ledger_check}),
        );
        Ok(mark)
    }

    /// Chunk after chunk from the watermark to the end of the cache.
    fn send_after(&mut self, mark: &mut Watermark) -> Result<(), Failure> {
        loop {
            self.check_stop()?;
            let Some(filled) = self.fill(mark)? else {
                return Ok(());
            };
            if filled.chunk.is_empty() {
                // Only withheld or already-sent rows: settled without a request.
                let next = Watermark {
                    seq: filled.to_seq,
                    part_hash: Some(filled.to_part_hash),
                    ..mark.clone()
                };
                self.store
                    .set_watermark(self.target, &next)
                    .map_err(Failure::state)?;
                *mark = next;
                continue;
            }
            self.send_rows(mark, filled.chunk, filled.to_seq, filled.to_part_hash)?;
        }
    }

    /// Read rows after `mark` until a chunk is full or the cache ends.
    /// `None` when there is no row after `mark`.
    fn fill(&mut self, mark: &Watermark) -> Result<Option<Filled>, Failure> {
        let mut chunk = Chunk::with_room();
        let mut last: Option<(i64, PartHash)> = None;
        let mut after = mark.seq;
        loop {
            self.check_stop()?;
            let cache = self.cache.as_ref().expect("a cache is open");
            let (store, privacy, kinds, tally) =
                (&*self.store, &self.privacy, &self.kinds, &mut self.tally);
            let target = self.target;
            let mut read = 0;
            let mut store_error = None;
            cache
                .scan(after, READ_BATCH, |seq, values| {
                    read += 1;
                    after = seq;
                    let part_id = text(values[PART_ID]);
                    let hash = part_hash(&part_id);
                    last = Some((seq, hash));
                    let withheld = privacy
                        .withholds(Some(&text(values[CWD])), Some(&text(values[CLIENT_NAME])));
                    if withheld {
                        tally.rows_withheld += 1;
                        return true;
                    }
                    if mark.ledger_check {
                        match already_central(store, target, &hash) {
                            Ok(true) => return true,
                            Ok(false) => {}
                            Err(failure) => {
                                store_error = Some(failure);
                                return false;
                            }
                        }
                    }
                    chunk.push(seq, &part_id, |out| {
                        wire::append_line(out, kinds, &values[1..])
                    });
                    !chunk.is_full()
                })
                .map_err(|message| Failure::new(FailureKind::Cache, None, message))?;
            if let Some(failure) = store_error {
                return Err(failure);
            }
            if chunk.is_full() || read < READ_BATCH {
                return Ok(last.map(|(to_seq, to_part_hash)| Filled {
                    chunk,
                    to_seq,
                    to_part_hash,
                }));
            }
        }
    }

    /// Send the rows of `(mark.seq, to_seq]`; a refusal splits them.
    fn send_rows(
        &mut self,
        mark: &mut Watermark,
        chunk: Chunk,
        to_seq: i64,
        to_part_hash: PartHash,
    ) -> Result<(), Failure> {
        let position = format!("rows:{}:{}:{}", mark.generation, mark.seq, to_seq);
        let intent = self.intent(
            IntentKind::Rows,
            &chunk,
            &position,
            mark,
            to_seq,
            to_part_hash,
        );
        self.store
            .write_intent(self.target, &intent, &chunk.body)
            .map_err(Failure::state)?;
        let next = Watermark {
            seq: to_seq,
            part_hash: Some(to_part_hash),
            ..mark.clone()
        };
        match self.deliver(&chunk.body, &intent.batch_id)? {
            Delivery::Accepted => {
                self.settle(&intent, Some(&next))?;
                *mark = next;
                Ok(())
            }
            Delivery::Refused { status, detail } => {
                self.store
                    .forget_intent(self.target)
                    .map_err(Failure::state)?;
                if let [row] = chunk.rows.as_slice() {
                    self.quarantine(&row.part_id, status, &detail, Some(&next))?;
                    *mark = next;
                    return Ok(());
                }
                let (left, right) = chunk.split();
                let left_end = left.rows.last().expect("a split half has rows");
                let (left_seq, left_hash) = (left_end.seq, part_hash(&left_end.part_id));
                self.send_rows(mark, left, left_seq, left_hash)?;
                self.send_rows(mark, right, to_seq, to_part_hash)
            }
        }
    }

    /// Offer every quarantined row still in the cache again, in chunks; a
    /// row refused again stays (its attempts counted).
    fn retry_quarantined(&mut self) -> Result<(), Failure> {
        let quarantined = self
            .store
            .quarantined(self.target)
            .map_err(Failure::state)?;
        let mut chunk = Chunk::default();
        for row in quarantined {
            let cache = self.cache.as_ref().expect("a cache is open");
            let found = cache
                .line_of(&row.part_id, &self.kinds)
                .map_err(|message| Failure::new(FailureKind::Cache, None, message))?;
            let Some((seq, line)) = found else {
                continue;
            };
            chunk.push(seq, &row.part_id, |out| out.extend_from_slice(&line));
            if chunk.is_full() {
                self.send_retry(std::mem::take(&mut chunk))?;
            }
        }
        if !chunk.is_empty() {
            self.send_retry(chunk)?;
        }
        Ok(())
    }

    fn send_retry(&mut self, chunk: Chunk) -> Result<(), Failure> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let position = format!("retry:{now_ms}:{}", chunk.rows[0].part_id);
        let start = Watermark::start("", false);
        let intent = self.intent(IntentKind::Retry, &chunk, &position, &start, 0, [0; 16]);
        self.store
            .write_intent(self.target, &intent, &chunk.body)
            .map_err(Failure::state)?;
        match self.deliver(&chunk.body, &intent.batch_id)? {
            Delivery::Accepted => self.settle(&intent, None),
            Delivery::Refused { status, detail } => {
                self.store
                    .forget_intent(self.target)
                    .map_err(Failure::state)?;
                if let [row] = chunk.rows.as_slice() {
                    return self.quarantine(&row.part_id, status, &detail, None);
                }
                let (left, right) = chunk.split();
                self.send_retry(left)?;
                self.send_retry(right)
            }
        }
    }

    fn intent(
        &self,
        kind: IntentKind,
        chunk: &Chunk,
        position: &str,
        mark: &Watermark,
        to_seq: i64,
        to_part_hash: PartHash,
    ) -> Intent {
        let body_sha256 = chunk::body_digest(&chunk.body);
        Intent {
            batch_id: chunk::batch_id(&self.installation_id, SIGNAL, position, &body_sha256),
            kind,
            generation: mark.generation.clone(),
            from_seq: mark.seq,
            to_seq,
            to_part_hash: Some(to_part_hash),
            bytes: chunk.body.len() as u64,
            body_sha256,
            part_hashes: chunk.part_hashes(),
        }
    }

    /// Central has the intent's rows: settle them and count them.
    fn settle(&mut self, intent: &Intent, advance: Option<&Watermark>) -> Result<(), Failure> {
        self.store
            .acknowledge(self.target, intent, advance)
            .map_err(Failure::state)?;
        self.tally.rows_sent += intent.part_hashes.len() as u64;
        self.tally.bytes_sent += intent.bytes;
        self.tally.chunks += 1;
        event_log::debug(
            "central.forward.chunk",
            json!({"hyp_sink_signal": SIGNAL, "hyp_dataset": crate::backfill::DATASET, "batch_id": intent.batch_id,
                   "chunk_index": self.tally.chunks - 1, "rows": intent.part_hashes.len(), "bytes": intent.bytes}),
        );
        Ok(())
    }

    fn quarantine(
        &mut self,
        part_id: &str,
        status: u16,
        detail: &str,
        advance: Option<&Watermark>,
    ) -> Result<(), Failure> {
        let message = format!("{status} {detail}");
        self.store
            .quarantine(
                self.target,
                part_id,
                &part_hash(part_id),
                status,
                &message,
                advance,
            )
            .map_err(Failure::state)?;
        self.tally.rows_quarantined += 1;
        event_log::warn(
            "central.forward.quarantined",
            json!({"part_id": part_id, "http_status": status, "message": detail}),
        );
        Ok(())
    }

    /// POST one body until central takes it, refuses it, or the export
    /// must fail: 401 renews the credential once; 429/503 wait in place
    /// within the inline budget; anything else fails.
    fn deliver(&mut self, body: &[u8], batch_id: &str) -> Result<Delivery, Failure> {
        let mut renewed = false;
        let mut waited = Duration::ZERO;
        let mut ladder_step = 0;
        loop {
            self.check_stop()?;
            let jwt = self
                .credential
                .jwt()
                .map_err(|err| Failure::new(FailureKind::Identity, None, err.to_string()))?;
            let answer = self
                .client
                .post_ingest(SIGNAL, &jwt, batch_id, body)
                .map_err(|err| Failure::new(FailureKind::Transport, None, err.to_string()))?;
            match answer {
                IngestResponse::Accepted { .. } => return Ok(Delivery::Accepted),
                IngestResponse::Refused { status, detail } => {
                    return Ok(Delivery::Refused { status, detail });
                }
                IngestResponse::Unauthorized if !renewed => {
                    renewed = true;
                    self.credential.renew().map_err(|err| {
                        Failure::new(FailureKind::Identity, Some(401), err.to_string())
                    })?;
                }
                IngestResponse::Unauthorized => {
                    return Err(Failure::new(
                        FailureKind::Unauthorized,
                        Some(401),
                        "central refused the credential again after a refresh (401): run 'hyp join <url> <token>' if it persists".into(),
                    ));
                }
                IngestResponse::Throttled {
                    status,
                    retry_after,
                } => {
                    let delay = Duration::from_secs(retry_after.unwrap_or_else(|| {
                        THROTTLE_LADDER_SECS[ladder_step.min(THROTTLE_LADDER_SECS.len() - 1)]
                    }));
                    ladder_step += 1;
                    if waited + delay > INLINE_WAIT_BUDGET {
                        let mut failure = Failure::new(
                            FailureKind::Throttled,
                            Some(status),
                            format!(
                                "central is busy ({status}) and asked to wait {} s more, past the {} s an export waits per chunk",
                                delay.as_secs(),
                                INLINE_WAIT_BUDGET.as_secs()
                            ),
                        );
                        failure.retry_after = Some(delay);
                        return Err(failure);
                    }
                    event_log::debug(
                        "central.forward.backpressure",
                        json!({"http_status": status, "retry_after_seconds": delay.as_secs(), "retry": ladder_step}),
                    );
                    self.wait(self.time_scale.scale(delay))?;
                    waited += delay;
                }
                IngestResponse::Failed { status, detail } => {
                    return Err(Failure::new(
                        FailureKind::ServerError,
                        Some(status),
                        format!("central answered {status} {detail}"),
                    ));
                }
            }
        }
    }

    /// Wait `duration`, or less when the export is asked to stop.
    fn wait(&self, duration: Duration) -> Result<(), Failure> {
        let deadline = Instant::now() + duration;
        loop {
            self.check_stop()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            // The stop flag is set from a signal handler, which cannot wake
            // a channel: look at it every 100 ms.
            let _ =
                crossbeam_channel::after((deadline - now).min(Duration::from_millis(100))).recv();
        }
    }

    fn check_stop(&self) -> Result<(), Failure> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(Failure::new(
                FailureKind::Interrupted,
                None,
                "interrupted; the chunk in flight is sent again first next time".into(),
            ));
        }
        Ok(())
    }
}

/// Whether central already has the row: in the sent ledger, or refused and
/// kept in quarantine (the ledger check of a replaced cache).
fn already_central(
    store: &ForwardStore,
    target: TargetId,
    hash: &PartHash,
) -> Result<bool, Failure> {
    Ok(store.is_sent(target, hash).map_err(Failure::state)?
        || store.is_quarantined(target, hash).map_err(Failure::state)?)
}

fn text(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        ValueRef::Integer(number) => number.to_string(),
        _ => String::new(),
    }
}
