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

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::json;

use super::cache_view::CacheView;
use super::chunk::{self, Chunk};
use super::privacy::Privacy;
use super::reader::{ChunkReader, Filled, LedgerCheck};
use super::store::{ExportError, ExportState, ForwardStore, TargetId, Watermark};
use super::uplink::{Tally, Uplink};
use super::wire::{self, ColumnKind};
use super::{Failure, FailureKind, InstanceReport, SyncStatus};
use crate::control::client::{CentralClient, MIN_REQUEST_DEADLINE};
use crate::control::identity::Credential;
use crate::control::sink::CentralSink;
use crate::paths::{Paths, TimeScale};
use crate::time::iso_ms;

/// The deadline of one ingest request, unscaled: a 4 MiB body on a slow
/// link needs more than the config poll's 30 s.
const INGEST_DEADLINE: Duration = Duration::from_secs(120);

/// The `last_error` kind of rows central refused (400, 413, 422).
const REFUSED: &str = "refused";

/// What an export is asked to do beyond the rows after the watermark.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    pub time_scale: TimeScale,
    /// Offer quarantined rows again first.
    pub retry_quarantined: bool,
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
        state.target_id = Some(export.uplink.target);
        let result = export.run(options.retry_quarantined);
        tally = std::mem::take(&mut export.uplink.tally);
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
    let quarantined = state
        .target_id
        .and_then(|target| store.totals(target).ok())
        .is_some_and(|totals| totals.rows_quarantined > 0);
    record_outcome(
        &mut state,
        &result,
        &tally,
        quarantined,
        now,
        options.time_scale,
        paths,
    );
    if let Err(err) = store.set_export_state(&state) {
        crate::event!(
            Error,
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
        crate::event!(Warn, "central.forward.failed", log_fields);
    } else {
        crate::event!(Info, "central.forward.export", log_fields);
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
        elapsed: None,
    }
}

/// Fold one export's result into the instance's bookkeeping: a success
/// clears the failure streak; a failure counts, and sets when the daemon
/// may try again (a remembered `Retry-After` or ladder step, else 60 s
/// doubling to 5 min, jittered, all scaled). A refusal that quarantined
/// rows is the error shown while the quarantine (`quarantined`) holds rows.
fn record_outcome(
    state: &mut ExportState,
    result: &Result<(), Failure>,
    tally: &Tally,
    quarantined: bool,
    now: jiff::Timestamp,
    time_scale: TimeScale,
    paths: &Paths,
) {
    let now_text = iso_ms(now);
    state.last_export_at = Some(now_text.clone());
    match result {
        Ok(()) => {
            state.last_success_at = Some(now_text.clone());
            state.failures = 0;
            state.failing_since = None;
            state.next_attempt_at = None;
            match &tally.last_refusal {
                Some((status, detail)) => {
                    state.last_error = Some(ExportError {
                        at: now_text,
                        http_status: Some(*status),
                        kind: REFUSED.to_string(),
                        message: format!("central refused rows with {status} {detail}"),
                    });
                }
                None if quarantined
                    && state
                        .last_error
                        .as_ref()
                        .is_some_and(|error| error.kind == REFUSED) => {}
                None => state.last_error = None,
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

/// An export in progress: the cache and the rules that read it, and the
/// uplink that sends what they yield.
struct Export<'a> {
    uplink: Uplink<'a>,
    dir: std::path::PathBuf,
    privacy: Privacy,
    kinds: [ColumnKind; 56],
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
            uplink: Uplink {
                store,
                target,
                client,
                credential,
                installation_id,
                time_scale: options.time_scale,
                stop,
                tally: Tally::default(),
            },
            dir: paths.sink_instance_dir(&sink.name),
            privacy,
            kinds: wire::column_kinds(),
            mark: None,
            cache,
        })
    }

    fn run(&mut self, retry_quarantined: bool) -> Result<(), Failure> {
        self.uplink.replay_intent()?;
        if self.cache.is_none() {
            return Ok(());
        }
        if retry_quarantined {
            self.retry_quarantined()?;
        }
        let mut mark = self.trusted_watermark()?;
        if mark.ledger_check {
            self.uplink
                .store
                .index_sent(self.uplink.target)
                .map_err(Failure::state)?;
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

    /// The watermark, if it describes the cache on disk; else the start of
    /// this cache, checking each row against the ledger when the target
    /// has acknowledged rows before.
    fn trusted_watermark(&mut self) -> Result<Watermark, Failure> {
        let cache = self.cache.as_ref().expect("a cache is open");
        let (store, target) = (&mut *self.uplink.store, self.uplink.target);
        let stored = store.watermark(target).map_err(Failure::state)?;
        if let Some(mark) = stored.filter(|mark| cache.holds(mark)) {
            return Ok(mark);
        }
        let ledger_check = store.has_sent_rows(target).map_err(Failure::state)?;
        let mark = Watermark::start(&cache.generation, ledger_check);
        store.set_watermark(target, &mark).map_err(Failure::state)?;
        crate::event!(
            Info,
            "central.forward.watermark_reset",
            json!({"cache_generation": mark.generation, "ledger_check": ledger_check}),
        );
        Ok(mark)
    }

    /// Chunk after chunk from the watermark to the end of the cache: a
    /// reader thread fills the next chunk while this one is sent.
    fn send_after(&mut self, mark: &mut Watermark) -> Result<(), Failure> {
        let cache = self.cache.take().expect("a cache is open");
        let ledger = match mark.ledger_check {
            true => Some(LedgerCheck::open(&self.dir, self.uplink.target)?),
            false => None,
        };
        let (chunks, filled) = crossbeam_channel::bounded::<Result<Filled, Failure>>(1);
        let (privacy, kinds, stop) = (&self.privacy, &self.kinds, self.uplink.stop);
        let after = mark.seq;
        let uplink = &mut self.uplink;
        let (cache, withheld, result) = std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut reader = ChunkReader {
                    cache: &cache,
                    privacy,
                    kinds,
                    ledger,
                    after,
                    stop,
                    withheld: 0,
                };
                loop {
                    let next = reader.next_chunk().transpose();
                    let last = !matches!(next, Some(Ok(_)));
                    // A closed channel: the uplink stopped (done or failed).
                    let closed = next.is_some_and(|next| chunks.send(next).is_err());
                    if last || closed {
                        break;
                    }
                }
                let withheld = reader.withheld;
                (cache, withheld)
            });
            let result = send_filled(uplink, mark, &filled);
            // Closing the channel ends a reader still filling.
            drop(filled);
            let (cache, withheld) = reader.join().expect("the chunk reader does not panic");
            (cache, withheld, result)
        });
        self.cache = Some(cache);
        self.uplink.tally.rows_withheld += withheld;
        result
    }

    /// Offer every quarantined row still in the cache again, in chunks.
    fn retry_quarantined(&mut self) -> Result<(), Failure> {
        let quarantined = self
            .uplink
            .store
            .quarantined(self.uplink.target)
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
            let hash = chunk::part_hash(&row.part_id);
            chunk.push(seq, &row.part_id, hash, |out| out.extend_from_slice(&line));
            if chunk.is_full() {
                self.uplink.send_retry(std::mem::take(&mut chunk))?;
            }
        }
        if !chunk.is_empty() {
            self.uplink.send_retry(chunk)?;
        }
        Ok(())
    }
}

/// Send each filled chunk in order; a chunk of only withheld or
/// already-sent rows moves the watermark without a request.
fn send_filled(
    uplink: &mut Uplink<'_>,
    mark: &mut Watermark,
    filled: &crossbeam_channel::Receiver<Result<Filled, Failure>>,
) -> Result<(), Failure> {
    for next in filled {
        let Filled {
            chunk,
            to_seq,
            to_part_hash,
        } = next?;
        uplink.check_stop()?;
        if chunk.is_empty() {
            uplink.pass(mark, to_seq, to_part_hash)?;
        } else {
            uplink.send_rows(mark, chunk, to_seq, to_part_hash)?;
        }
    }
    Ok(())
}
