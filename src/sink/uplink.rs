//! The sending half of an export: one chunk at a time to central, each
//! made durable as an intent first and settled in one transaction when
//! central acknowledges it (contract §12 "Answers"):
//!
//! - 2xx: the rows join the sent ledger, the watermark moves, the intent
//!   is gone;
//! - 401: the credential is renewed once and the same body resent with
//!   the same id; a second 401 fails the export;
//! - 429/503: wait in place (a positive `Retry-After`, else 30/60/120/300 s)
//!   and resend, never starting a wait that would pass 300 s per chunk;
//! - 400/413/422: central stored nothing; the chunk is split until the
//!   refused rows stand alone in quarantine, and the rest is delivered;
//! - anything else fails the export, the intent kept for the next one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::chunk::{self, Chunk, PartHash, part_hash};
use super::store::{ForwardStore, Intent, IntentKind, TargetId, Watermark};
use super::{Failure, FailureKind, SIGNAL};
use crate::control::client::{CentralClient, IngestResponse};
use crate::control::identity::Credential;
use crate::paths::TimeScale;

/// The 429/503 ladder when no positive `Retry-After` is given, seconds.
const THROTTLE_LADDER_SECS: [u64; 4] = [30, 60, 120, 300];
/// Waiting for a throttled chunk stops before it would pass this.
const INLINE_WAIT_BUDGET: Duration = Duration::from_secs(300);

/// Rows, bytes and chunks of one export.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub rows_sent: u64,
    pub bytes_sent: u64,
    pub chunks: u64,
    pub rows_withheld: u64,
    pub rows_quarantined: u64,
    /// The last refusal that sent a row to quarantine: status and detail.
    pub last_refusal: Option<(u16, String)>,
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

/// One target's connection to central and its durable bookkeeping.
pub struct Uplink<'a> {
    pub store: &'a mut ForwardStore,
    pub target: TargetId,
    pub client: CentralClient,
    pub credential: Credential,
    pub installation_id: String,
    pub time_scale: TimeScale,
    pub stop: &'a AtomicBool,
    pub tally: Tally,
}

impl Uplink<'_> {
    /// Send the intent a crash or failure left behind, byte for byte, with
    /// its batch id, before anything new.
    pub fn replay_intent(&mut self) -> Result<(), Failure> {
        let Some(intent) = self.store.intent(self.target).map_err(Failure::state)? else {
            return Ok(());
        };
        let Some(body) = self.store.intent_body(self.target, &intent) else {
            crate::event!(
                Warn,
                "central.forward.intent_lost",
                json!({"batch_id": intent.batch_id, "detail": "the intent's body file is missing or changed; its rows are sent again from the cache"}),
            );
            return self.forget_intent();
        };
        crate::event!(
            Info,
            "central.forward.replay",
            json!({"batch_id": intent.batch_id, "rows": intent.part_hashes.len(), "bytes": intent.bytes}),
        );
        match self.deliver(&body, &intent.batch_id)? {
            Delivery::Accepted => {
                let mark = self.store.watermark(self.target).map_err(Failure::state)?;
                let advance = mark
                    .filter(|mark| {
                        intent.kind == IntentKind::Rows
                            && mark.generation == intent.generation
                            && mark.seq == intent.from_seq
                    })
                    .map(|mark| Watermark {
                        seq: intent.to_seq,
                        part_hash: intent.to_part_hash,
                        ..mark
                    });
                self.settle(&intent, advance.as_ref())
            }
            // Nothing of it was stored: rows after the watermark are read
            // and split again; retried rows stay in quarantine.
            Delivery::Refused { .. } => self.forget_intent(),
        }
    }

    /// Send the rows of `(mark.seq, to_seq]` (a refusal splits them) and
    /// move `mark` past them.
    pub fn send_rows(
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
        let next = Watermark {
            seq: to_seq,
            part_hash: Some(to_part_hash),
            ..mark.clone()
        };
        match self.send(&intent, &chunk.body)? {
            Delivery::Accepted => {
                self.settle(&intent, Some(&next))?;
                *mark = next;
                Ok(())
            }
            Delivery::Refused { status, detail } => {
                self.forget_intent()?;
                if let [row] = chunk.rows.as_slice() {
                    self.quarantine(&row.part_id, status, &detail, Some(&next))?;
                    *mark = next;
                    return Ok(());
                }
                let (left, right) = chunk.split();
                let left_end = left.rows.last().expect("a split half has rows");
                let (left_seq, left_hash) = (left_end.seq, left_end.hash);
                self.send_rows(mark, left, left_seq, left_hash)?;
                self.send_rows(mark, right, to_seq, to_part_hash)
            }
        }
    }

    /// Move the watermark past rows that need no request (all withheld or
    /// already sent).
    pub fn pass(
        &mut self,
        mark: &mut Watermark,
        to_seq: i64,
        to_part_hash: PartHash,
    ) -> Result<(), Failure> {
        let next = Watermark {
            seq: to_seq,
            part_hash: Some(to_part_hash),
            ..mark.clone()
        };
        self.store
            .set_watermark(self.target, &next)
            .map_err(Failure::state)?;
        *mark = next;
        Ok(())
    }

    /// Offer quarantined rows again (a refused row stays, its attempts
    /// counted). The batch id carries the time: a refusal may or may not
    /// have entered the server's ledger.
    pub fn send_retry(&mut self, chunk: Chunk) -> Result<(), Failure> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let position = format!("retry:{now_ms}:{}", chunk.rows[0].part_id);
        let start = Watermark::start("", false);
        let intent = self.intent(IntentKind::Retry, &chunk, &position, &start, 0, [0; 16]);
        match self.send(&intent, &chunk.body)? {
            Delivery::Accepted => self.settle(&intent, None),
            Delivery::Refused { status, detail } => {
                self.forget_intent()?;
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
        let body_sha256 = chunk.digest();
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

    /// Make `intent` durable, then deliver its body.
    fn send(&mut self, intent: &Intent, body: &[u8]) -> Result<Delivery, Failure> {
        self.store
            .write_intent(self.target, intent, body)
            .map_err(Failure::state)?;
        self.deliver(body, &intent.batch_id)
    }

    fn forget_intent(&mut self) -> Result<(), Failure> {
        self.store
            .forget_intent(self.target)
            .map_err(Failure::state)
    }

    /// Central has the intent's rows: settle them and count them.
    fn settle(&mut self, intent: &Intent, advance: Option<&Watermark>) -> Result<(), Failure> {
        self.store
            .acknowledge(self.target, intent, advance)
            .map_err(Failure::state)?;
        self.tally.rows_sent += intent.part_hashes.len() as u64;
        self.tally.bytes_sent += intent.bytes;
        self.tally.chunks += 1;
        crate::event!(
            Debug,
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
        let hash = part_hash(part_id);
        self.store
            .quarantine(self.target, part_id, &hash, status, &message, advance)
            .map_err(Failure::state)?;
        self.tally.rows_quarantined += 1;
        self.tally.last_refusal = Some((status, detail.to_string()));
        crate::event!(
            Warn,
            "central.forward.quarantined",
            json!({"part_id": part_id, "http_status": status, "message": detail}),
        );
        Ok(())
    }

    /// POST one body until central takes it, refuses it, or the export
    /// must fail.
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
                    let ladder =
                        THROTTLE_LADDER_SECS[ladder_step.min(THROTTLE_LADDER_SECS.len() - 1)];
                    let delay = Duration::from_secs(retry_after.unwrap_or(ladder));
                    ladder_step += 1;
                    if waited + delay > INLINE_WAIT_BUDGET {
                        let mut failure = Failure::new(
                            FailureKind::Throttled,
                            Some(status),
                            format!(
                                "central is busy ({status}) and asks to wait {} s more, past the {} s an export waits per chunk",
                                delay.as_secs(),
                                INLINE_WAIT_BUDGET.as_secs()
                            ),
                        );
                        failure.retry_after = Some(delay);
                        return Err(failure);
                    }
                    crate::event!(
                        Debug,
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
            let slice = (deadline - now).min(Duration::from_millis(100));
            let _ = crossbeam_channel::after(slice).recv();
        }
    }

    pub fn check_stop(&self) -> Result<(), Failure> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(Failure::interrupted());
        }
        Ok(())
    }
}
