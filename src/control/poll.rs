//! The poll thread: owns the central client, the identity and the apply
//! engine; polls `GET /v1/config`, confirms probation, stages new configs and
//! answers the watchdog (reference config.md §4.3, contract §4).
//!
//! The thread is an actor ([`PollHandle`] owns its sender and join handle).
//! It never sleeps: it waits in one `select_biased!` on its inbox (stop and
//! watchdog win), the in-flight exchange and the next-poll timer. Each HTTP
//! exchange runs on a short-lived helper thread that owns the [`Session`]
//! while it runs, so `Stop` is honoured within its grace even when the server
//! hangs; a result that arrives within the grace is still handled (so a
//! mid-flight apply can commit).
//!
//! [`Poller`] is the synchronous core (one exchange plus its verdict); tests
//! drive it directly against the fake central server.
//!
//! **Invariant:** a transient failure (transport, timeout, 5xx, 429) is never
//! a verdict against a config; only the watchdog rolls back.

use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, after, never, select_biased};
use serde_json::json;

use crate::control::client::{
    CentralClient, ConfigResponse, MIN_REQUEST_DEADLINE, REQUEST_DEADLINE,
};
use crate::control::engine::{self, ApplyEngine, RollbackOutcome, StageOutcome};
use crate::control::identity::Credential;
use crate::control::sink::{self, CentralSink, SinkError};
use crate::messages::{PassReason, PassRequest, PollError, PollEvent, PollRecord};
use crate::paths::{Paths, TimeScale};

/// The failure ladder, unscaled seconds, by consecutive failures (1, 2, 3, 4+).
const LADDER_SECS: [u64; 4] = [30, 60, 120, 300];
/// A 404 waits at least this long (unscaled seconds).
const NOT_REGISTERED_SECS: u64 = 300;

/// What the poll thread needs from the daemon.
pub struct PollContext {
    pub paths: Paths,
    pub time_scale: TimeScale,
    /// Where the confirm edge goes (the worker's inbox).
    pub passes: Sender<PassRequest>,
    /// Where everything else for the main thread goes.
    pub events: Sender<PollEvent>,
}

/// What the handle tells the thread; the daemon gives these orders through
/// `PollHandle::watchdog_expired` and `PollHandle::stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    WatchdogExpired,
    Stop { grace: Duration },
}

/// The running poll thread. Dropping it without `stop` closes the inbox, so
/// the thread ends at its next wake-up without being joined.
pub struct PollHandle {
    orders: Sender<Order>,
    thread: JoinHandle<()>,
}

impl PollHandle {
    /// Start the poll thread. It polls at once, then on its cadence.
    pub fn spawn(context: PollContext) -> io::Result<PollHandle> {
        let (orders, inbox) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("poll".into())
            .spawn(move || PollActor::new(context).run(&inbox))?;
        Ok(PollHandle { orders, thread })
    }

    /// Ask the thread to roll back now (the watchdog fired).
    pub fn watchdog_expired(&self) {
        let _ = self.orders.send(Order::WatchdogExpired);
    }

    /// Stop and join. An in-flight poll gets `grace` to finish (and to
    /// commit what it fetched); after that it is abandoned.
    pub fn stop(self, grace: Duration) {
        let _ = self.orders.send(Order::Stop { grace });
        let _ = self.thread.join();
    }
}

// ---------------------------------------------------------------------------
// The synchronous core

/// The client side of one central server: who we are and how to reach it.
/// Moved into the helper thread for the length of one exchange.
pub struct Session {
    client: CentralClient,
    credential: Credential,
}

/// 30 s per request, scaled, but never under [`MIN_REQUEST_DEADLINE`].
pub fn request_deadline(time_scale: TimeScale) -> Duration {
    time_scale.scale(REQUEST_DEADLINE).max(MIN_REQUEST_DEADLINE)
}

/// The result of one exchange, after at most one refresh and retry.
#[derive(Debug, Clone, PartialEq)]
pub enum Exchange {
    Response(ConfigResponse),
    /// 401 again after a refresh.
    AuthFailed,
    /// No identity, a refresh failure or a transport error (incl. deadline).
    Failed {
        message: String,
    },
}

impl Session {
    pub fn new(paths: &Paths, sink: &CentralSink, time_scale: TimeScale) -> Session {
        let client = CentralClient::new(&sink.url, request_deadline(time_scale));
        Session {
            credential: Credential::new(paths, sink, &client),
            client,
        }
    }

    /// Make sure we hold a fresh JWT, then `GET /v1/config`; on 401 renew
    /// the credential and retry once.
    pub fn exchange(&mut self, running_etag: Option<&str>) -> Exchange {
        let failed = |message: String| Exchange::Failed { message };
        let jwt = match self.credential.jwt() {
            Ok(jwt) => jwt,
            Err(err) => return failed(err.to_string()),
        };
        match self.client.get_config(&jwt, running_etag) {
            Err(err) => return failed(err.to_string()),
            Ok(ConfigResponse::Unauthorized) => {}
            Ok(response) => return Exchange::Response(response),
        }
        if let Err(err) = self.credential.renew() {
            return failed(err.to_string());
        }
        let jwt = match self.credential.jwt() {
            Ok(jwt) => jwt,
            Err(err) => return failed(err.to_string()),
        };
        match self.client.get_config(&jwt, running_etag) {
            Err(err) => failed(err.to_string()),
            Ok(ConfigResponse::Unauthorized) => Exchange::AuthFailed,
            Ok(response) => Exchange::Response(response),
        }
    }
}

/// How one poll ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// 304 (`stage` = None) or a good 200 (`stage` = what the engine did).
    Confirming { stage: Option<StageOutcome> },
    /// 404: nothing registered for this machine.
    NotRegistered,
    /// Any other answer; `error_kind` names it as the reference logs it.
    Rejected { error_kind: &'static str },
}

/// What one poll did and when the next one is due.
#[derive(Debug, Clone, PartialEq)]
pub struct PollReport {
    pub outcome: PollOutcome,
    pub http_status: Option<u16>,
    /// The etag whose active probation this poll cleared (the confirm edge).
    pub confirmed: Option<String>,
    /// Scaled delay until the next poll.
    pub next_delay: Duration,
    pub consecutive_failures: u32,
    /// Why a rejected poll failed, for status and the log.
    pub message: Option<String>,
}

impl PollReport {
    /// The result a person reads in status: `ok`, `not_registered`, or the
    /// error kind of a rejected poll.
    pub fn result(&self) -> &'static str {
        match &self.outcome {
            PollOutcome::Confirming { .. } => "ok",
            PollOutcome::NotRegistered => "not_registered",
            PollOutcome::Rejected { error_kind } => error_kind,
        }
    }

    /// Whether this poll says central refused the credential or could not
    /// be reached (what degrades status after three in a row): neither a
    /// confirming poll, a 404, nor throttling.
    pub fn is_unreachable(&self) -> bool {
        matches!(&self.outcome, PollOutcome::Rejected { error_kind } if *error_kind != "config_poll_throttled")
    }
}

/// How the poll thread keeps its record ([`PollRecord`] is the message it
/// sends; the folding of a poll's report into it is the poll's own).
impl PollRecord {
    /// Fold in one poll's report, made at `now`.
    pub fn record(&mut self, report: &PollReport, now: SystemTime) {
        let at = crate::time::iso_system(now);
        self.last_poll_at = Some(at.clone());
        self.last_poll_result = Some(report.result().to_string());
        self.next_poll_at = now
            .checked_add(report.next_delay)
            .map(crate::time::iso_system);
        match &report.outcome {
            // Central answered with this machine's credential: reachable.
            PollOutcome::Confirming { .. } | PollOutcome::NotRegistered => {
                self.failing_polls = 0;
                self.failing_since = None;
            }
            PollOutcome::Rejected { error_kind } => {
                if report.is_unreachable() {
                    self.failing_polls = self.failing_polls.saturating_add(1);
                    self.failing_since.get_or_insert_with(|| at.clone());
                }
                self.last_error = Some(PollError {
                    at,
                    kind: error_kind.to_string(),
                    http_status: report.http_status,
                    message: report
                        .message
                        .clone()
                        .unwrap_or_else(|| error_kind.replace('_', " ")),
                });
            }
        }
    }
}

/// Cadence and failure bookkeeping for one central sink.
pub struct Poller {
    paths: Paths,
    time_scale: TimeScale,
    sink: CentralSink,
    session: Option<Session>,
    consecutive_failures: u32,
}

impl Poller {
    /// A poller for the first central sink of the central layer.
    pub fn new(paths: &Paths, time_scale: TimeScale) -> Result<Poller, SinkError> {
        let document = engine::central_layer_document(paths).ok_or(SinkError::NoCentralSink)?;
        let sink = sink::with_join_token(paths, sink::first_central_sink(&document)?);
        Ok(Poller {
            paths: paths.clone(),
            time_scale,
            session: None,
            sink,
            consecutive_failures: 0,
        })
    }

    pub fn sink(&self) -> &CentralSink {
        &self.sink
    }

    /// Take the session for an exchange (a fresh one if the last was lost).
    pub fn take_session(&mut self) -> Session {
        self.session
            .take()
            .unwrap_or_else(|| Session::new(&self.paths, &self.sink, self.time_scale))
    }

    pub fn return_session(&mut self, session: Session) {
        self.session = Some(session);
    }

    /// One whole poll on the calling thread.
    pub fn poll_now(&mut self, engine: &mut ApplyEngine) -> PollReport {
        let mut session = self.take_session();
        let exchange = session.exchange(engine.running_etag().as_deref());
        self.return_session(session);
        self.judge(exchange, engine)
    }

    /// Turn an exchange into confirm / stage / backoff (the response table).
    pub fn judge(&mut self, exchange: Exchange, engine: &mut ApplyEngine) -> PollReport {
        let interval = self.sink.poll_interval;
        let response = match exchange {
            Exchange::Response(response) => response,
            Exchange::AuthFailed => {
                return self.reject("config_poll_auth_failed", Some(401), None);
            }
            Exchange::Failed { message } => {
                return self.reject("config_poll_error", None, Some(message));
            }
        };
        let status = response.http_status();
        match response {
            ConfigResponse::NotModified => {
                let confirmed = engine.confirm_poll();
                self.consecutive_failures = 0;
                crate::event!(
                    Info,
                    "central.config.poll",
                    json!({"component": "central", "http_status": 304, "status": "ok"}),
                );
                self.report(
                    PollOutcome::Confirming { stage: None },
                    status,
                    confirmed,
                    interval,
                )
            }
            ConfigResponse::Document { etag, document } => {
                let confirmed = engine.confirm_poll();
                self.consecutive_failures = 0;
                let stage = engine.stage(&document, &etag);
                let mut fields = json!({"component": "central", "http_status": 200, "config_etag": etag,
                    "apply_action": stage.action(), "status": "ok"});
                if let StageOutcome::Failed(err) = &stage {
                    fields["error_kind"] = json!(err.kind());
                    fields["status"] = json!("error");
                }
                crate::event!(Info, "central.config.poll", fields);
                let outcome = PollOutcome::Confirming { stage: Some(stage) };
                self.report(outcome, status, confirmed, interval)
            }
            ConfigResponse::NotRegistered => {
                if self.consecutive_failures == 0 {
                    crate::event!(
                        Warn,
                        "central.config.poll",
                        json!({"component": "central", "http_status": 404, "status": "skipped", "hyp_reason": "no_config_registered_legacy"}),
                    );
                }
                self.consecutive_failures += 1;
                let delay = interval.max(Duration::from_secs(NOT_REGISTERED_SECS));
                self.report(PollOutcome::NotRegistered, status, None, delay)
            }
            ConfigResponse::Throttled {
                status,
                retry_after,
            } => {
                crate::event!(
                    Warn,
                    "central.config.poll",
                    json!({"component": "central", "error_kind": "config_poll_throttled", "http_status": status, "retry_after_seconds": retry_after}),
                );
                self.consecutive_failures += 1;
                let delay = match retry_after {
                    Some(secs) => Duration::from_secs(secs),
                    None => self.ladder(),
                };
                let outcome = PollOutcome::Rejected {
                    error_kind: "config_poll_throttled",
                };
                self.report(outcome, status, None, delay)
            }
            ConfigResponse::TooLarge { bytes } => {
                crate::event!(
                    Error,
                    "central.config.poll",
                    json!({"component": "central", "error_kind": "config_document_too_large", "http_status": 200, "body_bytes": bytes}),
                );
                self.reject_logged("config_document_too_large", status)
            }
            ConfigResponse::MissingEtag => self.reject("config_missing_etag", Some(status), None),
            ConfigResponse::InvalidJson => self.reject("config_invalid_json", Some(status), None),
            ConfigResponse::Unauthorized => {
                self.reject("config_poll_auth_failed", Some(status), None)
            }
            ConfigResponse::OtherStatus { status } => {
                self.reject("config_poll_http_error", Some(status), None)
            }
        }
    }

    /// A failure: log it, count it, back off on the ladder.
    fn reject(
        &mut self,
        error_kind: &'static str,
        http_status: Option<u16>,
        message: Option<String>,
    ) -> PollReport {
        let failures = self.consecutive_failures + 1;
        match &message {
            Some(message) => crate::event!(
                Warn,
                "central.config.poll_failed",
                json!({"component": "central", "error_kind": error_kind, "consecutive_failures": failures, "message": message}),
            ),
            None => crate::event!(
                Warn,
                "central.config.poll",
                json!({"component": "central", "error_kind": error_kind, "http_status": http_status, "consecutive_failures": failures}),
            ),
        }
        let mut report = self.reject_logged(error_kind, http_status.unwrap_or(0));
        report.http_status = http_status;
        report.message = message.or_else(|| {
            http_status.map(|status| format!("central answered the config poll with HTTP {status}"))
        });
        report
    }

    fn reject_logged(&mut self, error_kind: &'static str, status: u16) -> PollReport {
        self.consecutive_failures += 1;
        let delay = self.ladder();
        self.report(PollOutcome::Rejected { error_kind }, status, None, delay)
    }

    /// 30/60/120/300 s by consecutive failures (unscaled).
    fn ladder(&self) -> Duration {
        let index = (self.consecutive_failures.clamp(1, 4) - 1) as usize;
        Duration::from_secs(LADDER_SECS[index])
    }

    fn report(
        &self,
        outcome: PollOutcome,
        status: u16,
        confirmed: Option<String>,
        delay: Duration,
    ) -> PollReport {
        PollReport {
            outcome,
            http_status: (status != 0).then_some(status),
            confirmed,
            next_delay: self.time_scale.scale(delay),
            consecutive_failures: self.consecutive_failures,
            message: None,
        }
    }
}

// ---------------------------------------------------------------------------
// The actor

/// Where the thread is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Polling on the cadence.
    Polling,
    /// The sink config is unusable: wait for orders only.
    Idle,
    /// Applied or rolled back: the daemon drains and re-execs; no more polls.
    Draining,
}

type InFlight = Receiver<(Session, Exchange)>;

struct PollActor {
    context: PollContext,
    engine: ApplyEngine,
    poller: Option<Poller>,
    phase: Phase,
    /// When an early watchdog order is checked again.
    watchdog_recheck: Option<Instant>,
    /// Every poll so far, folded (sent to main for `status.json`).
    record: PollRecord,
}

impl PollActor {
    fn new(context: PollContext) -> PollActor {
        let engine = ApplyEngine::new(context.paths.clone(), context.time_scale);
        let poller = match Poller::new(&context.paths, context.time_scale) {
            Ok(poller) => {
                crate::event!(
                    Info,
                    "central.poll_started",
                    json!({"component": "central", "central_url": poller.sink().url,
                        "poll_interval_seconds": poller.sink().poll_interval.as_secs()}),
                );
                Some(poller)
            }
            Err(err) => {
                crate::event!(
                    Error,
                    "central.sink_invalid",
                    json!({"component": "central", "message": err.to_string()}),
                );
                None
            }
        };
        let phase = if poller.is_some() {
            Phase::Polling
        } else {
            Phase::Idle
        };
        PollActor {
            context,
            engine,
            poller,
            phase,
            watchdog_recheck: None,
            record: PollRecord::default(),
        }
    }

    fn run(mut self, inbox: &Receiver<Order>) {
        let mut next_poll = Some(Instant::now() + self.first_poll_offset());
        let mut in_flight: Option<InFlight> = None;
        loop {
            if self.phase != Phase::Polling {
                next_poll = None;
                in_flight = None;
            }
            let timer = match (&in_flight, next_poll) {
                (None, Some(at)) => after(at.saturating_duration_since(Instant::now())),
                _ => never(),
            };
            let recheck = match self.watchdog_recheck {
                Some(at) => after(at.saturating_duration_since(Instant::now())),
                None => never(),
            };
            let exchange_done = in_flight.clone().unwrap_or_else(never);
            select_biased! {
                recv(inbox) -> order => match order {
                    Ok(Order::WatchdogExpired) => self.on_watchdog(),
                    Ok(Order::Stop { grace }) => {
                        self.finish_in_flight(in_flight.take(), grace);
                        return;
                    }
                    Err(_) => return,
                },
                recv(recheck) -> _ => self.on_watchdog(),
                recv(exchange_done) -> result => {
                    in_flight = None;
                    let delay = self.on_exchange(result.ok());
                    next_poll = Instant::now().checked_add(delay);
                },
                recv(timer) -> _ => {
                    next_poll = None;
                    in_flight = self.start_exchange();
                    if in_flight.is_none() {
                        let delay = self.on_exchange(None);
                        next_poll = Instant::now().checked_add(delay);
                    }
                },
            }
        }
    }

    /// The first poll waits for this host's splay offset within the poll
    /// interval (contract §13), so a fleet that boots or joins together
    /// does not reach central in the same second.
    fn first_poll_offset(&self) -> Duration {
        let Some(poller) = &self.poller else {
            return Duration::ZERO;
        };
        let installation = crate::control::membership::read_installation_id(&self.context.paths)
            .unwrap_or_default();
        let offset =
            crate::splay::offset(&installation, "config-poll", poller.sink().poll_interval);
        crate::event!(
            Debug,
            "central.poll_splay",
            json!({"component": "central", "offset_ms": offset.as_millis() as u64}),
        );
        self.context.time_scale.scale(offset)
    }

    /// Run one exchange on a helper thread; `None` if it could not start.
    fn start_exchange(&mut self) -> Option<InFlight> {
        let poller = self.poller.as_mut()?;
        let mut session = poller.take_session();
        let running_etag = self.engine.running_etag();
        let (done, result) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("poll-http".into())
            .spawn(move || {
                let exchange = session.exchange(running_etag.as_deref());
                let _ = done.send((session, exchange));
            });
        match spawned {
            Ok(_) => Some(result),
            Err(err) => {
                crate::event!(
                    Error,
                    "central.config.poll_failed",
                    json!({"component": "central", "error_kind": "config_poll_error", "message": format!("cannot start the poll: {err}")}),
                );
                None
            }
        }
    }

    /// Judge a finished exchange and emit the messages; returns the delay.
    fn on_exchange(&mut self, result: Option<(Session, Exchange)>) -> Duration {
        let Some(poller) = self.poller.as_mut() else {
            return Duration::MAX;
        };
        let exchange = match result {
            Some((session, exchange)) => {
                poller.return_session(session);
                exchange
            }
            None => Exchange::Failed {
                message: "the poll ended without an answer".into(),
            },
        };
        let report = poller.judge(exchange, &mut self.engine);
        self.record.record(&report, SystemTime::now());
        let _ = self
            .context
            .events
            .send(PollEvent::Polled(Box::new(self.record.clone())));
        if let Some(etag) = report.confirmed.clone() {
            let _ = self.context.passes.send(PassRequest {
                reason: PassReason::Confirmed { etag: etag.clone() },
            });
            let _ = self
                .context
                .events
                .send(PollEvent::ProbationCleared { etag });
        }
        if let PollOutcome::Confirming {
            stage: Some(StageOutcome::Applied { etag, deadline }),
        } = &report.outcome
        {
            crate::event!(
                Info,
                "daemon.restart_requested",
                json!({"component": "daemon", "hyp_reason": "config_applied", "config_etag": etag}),
            );
            let _ = self.context.events.send(PollEvent::Applied {
                etag: etag.clone(),
                deadline: *deadline,
            });
            self.phase = Phase::Draining;
        }
        report.next_delay
    }

    /// The watchdog fired. Roll back only a probation whose deadline has
    /// passed: an order that raced a confirm (or a chained apply's fresh
    /// probation) must not roll back the new config. A probation not yet
    /// due is re-checked by the thread itself at its deadline, so an early
    /// order is never lost.
    fn on_watchdog(&mut self) {
        self.watchdog_recheck = None;
        let Some(probation) = engine::active_probation(&self.context.paths) else {
            return;
        };
        if let Ok(remaining) = probation.deadline.duration_since(SystemTime::now())
            && !remaining.is_zero()
        {
            self.watchdog_recheck = Instant::now().checked_add(remaining);
            return;
        }
        match self.engine.expire_probation() {
            Some(RollbackOutcome::RolledBack { .. }) => {
                crate::event!(
                    Info,
                    "daemon.restart_requested",
                    json!({"component": "daemon", "hyp_reason": "probation_expired"}),
                );
                let _ = self.context.events.send(PollEvent::RolledBack {
                    reason: "probation_expired".into(),
                });
                self.phase = Phase::Draining;
            }
            Some(RollbackOutcome::NoTarget) | None => {}
        }
    }

    /// At stop: give an in-flight exchange `grace` to land, and handle it.
    fn finish_in_flight(&mut self, in_flight: Option<InFlight>, grace: Duration) {
        let Some(in_flight) = in_flight else { return };
        if self.phase != Phase::Polling {
            return;
        }
        if let Ok(result) = in_flight.recv_timeout(grace) {
            self.on_exchange(Some(result));
        }
    }
}
