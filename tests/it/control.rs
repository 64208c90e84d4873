//! Central config control against the fake central server: identity, the
//! poll response table with its backoffs (under a scaled `TimeScale`), and
//! the poll thread's messages (apply, confirm edge after re-exec, watchdog
//! rollback, prompt stop).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, unbounded};
use hyp::control::client::{CentralClient, ConfigResponse};
use hyp::control::engine::{self, ApplyEngine, StageOutcome};
use hyp::control::identity::{self, Identity};
use hyp::control::poll::{PollContext, PollHandle, PollOutcome, PollReport, Poller};
use hyp::messages::{PassReason, PassRequest, PollEvent};
use hyp::paths::{Paths, Slot, TimeScale};
use serde_json::{Value, json};

use crate::fake_central::FakeCentral;
use crate::support::wait_until;

/// Timers shrink 1000x: the ladder's 30 s is 30 ms, a 5 s cadence is 5 ms.
const FAST: f64 = 1000.0;

struct Host {
    _dir: tempfile::TempDir,
    paths: Paths,
    scale: TimeScale,
}

impl Host {
    fn new(scale: f64) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = Paths::with_home(dir.path().join(".hyp"));
        let scale = TimeScale::parse(Some(&scale.to_string())).expect("scale");
        Host {
            _dir: dir,
            paths,
            scale,
        }
    }

    /// A seed like `hyp join` writes, plus a 5 s cadence.
    fn seed(&self, url: &str, token: Option<&str>) {
        let identity = match token {
            Some(token) => json!({"bootstrap_token": token}),
            None => json!({}),
        };
        let seed = json!({"version": 2, "plugins": [{"name": "@hypaware/central"}],
            "sinks": {"central": {"plugin": "@hypaware/central",
                "config": {"url": url, "identity": identity, "poll_interval_seconds": 5}}}});
        hyp::statefile::write(&self.paths.seed(), &seed).expect("write seed");
    }

    fn poller(&self) -> Poller {
        Poller::new(&self.paths, self.scale).expect("a usable central sink")
    }

    fn engine(&self) -> ApplyEngine {
        ApplyEngine::new(self.paths.clone(), self.scale)
    }

    fn identity(&self) -> Identity {
        hyp::statefile::read(&self.paths.identity())
            .ok()
            .expect("identity.json")
    }

    fn spawn(&self) -> (PollHandle, Receiver<PassRequest>, Receiver<PollEvent>) {
        let (passes, pass_inbox) = unbounded();
        let (events, event_inbox) = unbounded();
        let handle = PollHandle::spawn(PollContext {
            paths: self.paths.clone(),
            time_scale: self.scale,
            passes,
            events,
        })
        .expect("spawn the poll thread");
        (handle, pass_inbox, event_inbox)
    }
}

fn doc(url: &str, marker: &str) -> Value {
    json!({"version": 2,
        "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/otel", "config": {"marker": marker}}],
        "sinks": {"central": {"plugin": "@hypaware/central",
            "config": {"url": url, "identity": {}, "poll_interval_seconds": 5}}}})
}

fn scaled(host: &Host, secs: u64) -> Duration {
    host.scale.secs(secs)
}

fn rejected(report: &PollReport) -> &'static str {
    match report.outcome {
        PollOutcome::Rejected { error_kind } => error_kind,
        ref other => panic!("expected a rejection, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Identity

#[test]
fn bootstrap_persists_a_private_identity_and_is_reused() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    let mut engine = host.engine();
    let report = host.poller().poll_now(&mut engine);
    assert_eq!(report.outcome, PollOutcome::NotRegistered);
    let identity = host.identity();
    assert_eq!(identity.gateway_id, "gw-1");
    assert_eq!(identity.central_url.as_deref(), Some(server.url.as_str()));
    assert_eq!(
        identity.bootstrap_token_fp,
        Some(identity::token_fingerprint("test-token"))
    );
    assert!(identity.expires_at > 0);
    let mode = |path: &std::path::Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&host.paths.identity()), 0o600);
    assert_eq!(mode(&host.paths.identity_dir()), 0o700);
    let gets = server.requests_to("/v1/config");
    assert_eq!(
        gets[0]["headers"]["authorization"],
        format!("Bearer {}", identity.jwt)
    );
    assert!(
        gets[0]["headers"].get("if-none-match").is_none(),
        "seed mode sends no If-None-Match"
    );
    // A new process (new poller) loads the file instead of bootstrapping.
    host.poller().poll_now(&mut engine);
    assert_eq!(server.count("/v1/identity/bootstrap"), 1);
    assert_eq!(host.identity().jwt, identity.jwt);
}

#[test]
fn a_new_token_or_url_rebootstraps_and_a_bare_url_change_is_refused() {
    let server = FakeCentral::start();
    server.identity(json!({"tokens": ["tok-a", "tok-b"]}));
    let host = Host::new(FAST);
    host.seed(&server.url, Some("tok-a"));
    let mut engine = host.engine();
    host.poller().poll_now(&mut engine);
    let first = host.identity();
    // Re-join with another token: the fingerprint differs.
    host.seed(&server.url, Some("tok-b"));
    host.poller().poll_now(&mut engine);
    assert_eq!(server.count("/v1/identity/bootstrap"), 2);
    let second = host.identity();
    assert_ne!(second.jwt, first.jwt);
    assert_eq!(
        second.bootstrap_token_fp,
        Some(identity::token_fingerprint("tok-b"))
    );
    // Re-pointed URL without a token: refused before any GET is sent there.
    let other = FakeCentral::start();
    host.seed(&other.url, None);
    let report = host.poller().poll_now(&mut engine);
    assert_eq!(rejected(&report), "config_poll_error");
    assert_eq!(other.requests().len(), 0, "no request reaches the new URL");
    assert_eq!(host.identity().jwt, second.jwt);
}

#[test]
fn a_jwt_inside_its_last_day_is_refreshed_before_the_poll() {
    let server = FakeCentral::start();
    server.identity(json!({"expires_in": 3600}));
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    let mut engine = host.engine();
    let mut poller = host.poller();
    poller.poll_now(&mut engine);
    let bootstrapped = host.identity();
    poller.poll_now(&mut engine);
    assert_eq!(server.count("/v1/identity/refresh"), 1);
    let refreshed = host.identity();
    assert_ne!(refreshed.jwt, bootstrapped.jwt);
    assert_eq!(refreshed.central_url, bootstrapped.central_url);
    assert_eq!(
        refreshed.bootstrap_token_fp,
        bootstrapped.bootstrap_token_fp
    );
    let last_get = server.requests_to("/v1/config").pop().unwrap();
    assert_eq!(
        last_get["headers"]["authorization"],
        format!("Bearer {}", refreshed.jwt)
    );
}

#[test]
fn a_failed_bootstrap_is_retried_on_the_ladder() {
    let server = FakeCentral::start();
    server.identity(json!({"reject_bootstrap": 403}));
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    let mut engine = host.engine();
    let mut poller = host.poller();
    let report = poller.poll_now(&mut engine);
    assert_eq!(rejected(&report), "config_poll_error");
    assert_eq!(report.next_delay, scaled(&host, 30));
    assert!(!host.paths.identity().exists());
    server.identity(json!({"reject_bootstrap": null}));
    let report = poller.poll_now(&mut engine);
    assert_eq!(report.outcome, PollOutcome::NotRegistered);
    assert_eq!(server.count("/v1/identity/bootstrap"), 2);
}

// ---------------------------------------------------------------------------
// The response table

#[test]
fn unauthorized_refreshes_and_retries_exactly_once() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    server.serve("rev-1", &doc(&server.url, "one"));
    let mut engine = host.engine();
    let mut poller = host.poller();
    // Expired tokens: 401, refresh, the retry succeeds and applies.
    poller.poll_now(&mut engine); // bootstrap + first apply
    let mut engine = host.engine();
    engine.confirm_poll();
    server.expire_tokens();
    server.clear_requests();
    let report = poller.poll_now(&mut engine);
    assert_eq!(report.outcome, PollOutcome::Confirming { stage: None });
    let paths: Vec<Value> = server
        .requests()
        .iter()
        .map(|request| json!([request["path"], request["status"]]))
        .collect();
    assert_eq!(
        paths,
        vec![
            json!(["/v1/config", 401]),
            json!(["/v1/identity/refresh", 200]),
            json!(["/v1/config", 304])
        ]
    );
    // 401 twice: one refresh, no confirm, the ladder.
    server.fail(json!({"kind": "status", "status": 401, "count": 2}));
    server.clear_requests();
    let report = poller.poll_now(&mut engine);
    assert_eq!(rejected(&report), "config_poll_auth_failed");
    assert_eq!(report.next_delay, scaled(&host, 30));
    assert_eq!(server.count("/v1/identity/refresh"), 1);
    assert_eq!(server.count("/v1/config"), 2);
}

#[test]
fn failures_climb_the_ladder_and_a_good_poll_resets_it() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    server.serve("rev-1", &doc(&server.url, "one"));
    let mut engine = host.engine();
    let mut poller = host.poller();
    server.fail(json!({"kind": "status", "status": 500, "count": 5}));
    let delays: Vec<Duration> = (0..5)
        .map(|_| {
            let report = poller.poll_now(&mut engine);
            assert_eq!(rejected(&report), "config_poll_http_error");
            assert_eq!(report.http_status, Some(500));
            report.next_delay
        })
        .collect();
    let expected: Vec<Duration> = [30, 60, 120, 300, 300]
        .iter()
        .map(|secs| scaled(&host, *secs))
        .collect();
    assert_eq!(delays, expected);
    let report = poller.poll_now(&mut engine);
    assert!(matches!(
        report.outcome,
        PollOutcome::Confirming {
            stage: Some(StageOutcome::Applied { .. })
        }
    ));
    assert_eq!(report.consecutive_failures, 0);
    assert_eq!(report.next_delay, scaled(&host, 5), "the sink's cadence");
}

#[test]
fn throttling_honours_only_a_positive_retry_after() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    let mut engine = host.engine();
    let mut poller = host.poller();
    server.fail(json!({"kind": "status", "status": 429, "retry_after": "7"}));
    let report = poller.poll_now(&mut engine);
    assert_eq!(rejected(&report), "config_poll_throttled");
    assert_eq!(report.next_delay, scaled(&host, 7));
    server.fail(json!({"kind": "status", "status": 503, "retry_after": "0"}));
    let report = poller.poll_now(&mut engine);
    assert_eq!(
        report.next_delay,
        scaled(&host, 60),
        "0 falls back to the ladder"
    );
    server.fail(json!({"kind": "status", "status": 503, "retry_after": "soon"}));
    let report = poller.poll_now(&mut engine);
    assert_eq!(report.next_delay, scaled(&host, 120));
}

#[test]
fn not_registered_waits_at_least_five_minutes() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    let mut engine = host.engine();
    let report = host.poller().poll_now(&mut engine);
    assert_eq!(report.outcome, PollOutcome::NotRegistered);
    assert_eq!(report.http_status, Some(404));
    assert_eq!(report.next_delay, scaled(&host, 300));
}

/// Apply rev-1 over the seed and restart: probation for rev-1 is active.
fn under_probation(server: &FakeCentral, host: &Host) {
    host.seed(&server.url, Some("test-token"));
    server.serve("rev-1", &doc(&server.url, "one"));
    let report = host.poller().poll_now(&mut host.engine());
    assert!(
        matches!(
            report.outcome,
            PollOutcome::Confirming {
                stage: Some(StageOutcome::Applied { .. })
            }
        ),
        "{report:?}"
    );
    assert!(engine::active_probation(&host.paths).is_some());
}

#[test]
fn only_a_304_or_a_good_200_confirms_probation() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    under_probation(&server, &host);
    let mut engine = host.engine();
    let mut poller = host.poller();
    let cases = [
        (json!({"kind": "garbage"}), "config_invalid_json"),
        (json!({"kind": "no_etag"}), "config_missing_etag"),
        (json!({"kind": "oversized"}), "config_document_too_large"),
        (
            json!({"kind": "oversized", "chunked": true}),
            "config_document_too_large",
        ),
        (
            json!({"kind": "status", "status": 503}),
            "config_poll_throttled",
        ),
        (
            json!({"kind": "status", "status": 500}),
            "config_poll_http_error",
        ),
    ];
    for (spec, kind) in cases {
        server.fail(spec.clone());
        let report = poller.poll_now(&mut engine);
        assert_eq!(rejected(&report), kind, "{spec}");
        assert_eq!(report.confirmed, None, "{spec} must not confirm");
    }
    server.fail(json!({"kind": "status", "status": 404}));
    assert_eq!(poller.poll_now(&mut engine).confirmed, None);
    assert!(engine::active_probation(&host.paths).is_some());
    assert!(
        engine::read_state(&host.paths).bad_etag.is_none(),
        "transient failures are no verdict"
    );
    // The running etag goes out as If-None-Match; the 304 confirms, once.
    let report = poller.poll_now(&mut engine);
    assert_eq!(report.confirmed.as_deref(), Some("rev-1"));
    let last_get = server.requests_to("/v1/config").pop().unwrap();
    assert_eq!(last_get["headers"]["if-none-match"], "rev-1");
    assert_eq!(last_get["status"], 304);
    assert_eq!(poller.poll_now(&mut engine).confirmed, None);
    assert!(engine::active_probation(&host.paths).is_none());
}

#[test]
fn a_newer_revision_during_probation_confirms_then_stages() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    under_probation(&server, &host);
    server.serve("rev-2", &doc(&server.url, "two"));
    let mut engine = host.engine();
    let report = host.poller().poll_now(&mut engine);
    assert_eq!(report.confirmed.as_deref(), Some("rev-1"));
    assert!(matches!(
        report.outcome,
        PollOutcome::Confirming { stage: Some(StageOutcome::Applied { ref etag, .. }) } if etag == "rev-2"
    ));
    let marker = engine::read_state(&host.paths).probation.unwrap();
    assert_eq!(marker.etag, "rev-2");
    assert_eq!(hyp::config::read_active_pointer(&host.paths), Some(Slot::A));
}

#[test]
fn a_bad_document_is_remembered_and_skipped() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    server.serve("rev-bad", &json!({"version": 1}));
    let mut engine = host.engine();
    let mut poller = host.poller();
    let report = poller.poll_now(&mut engine);
    assert!(matches!(
        report.outcome,
        PollOutcome::Confirming {
            stage: Some(StageOutcome::Failed(_))
        }
    ));
    assert_eq!(report.next_delay, scaled(&host, 5));
    assert!(host.paths.seed().exists(), "still in seed mode");
    let report = poller.poll_now(&mut engine);
    assert_eq!(
        report.outcome,
        PollOutcome::Confirming {
            stage: Some(StageOutcome::SkippedBadEtag)
        }
    );
}

#[test]
fn a_hung_server_hits_the_deadline_and_the_loop_carries_on() {
    let server = FakeCentral::start();
    // 30 s / 100 = 300 ms, raised to the 2 s floor.
    let host = Host::new(100.0);
    host.seed(&server.url, Some("test-token"));
    let mut engine = host.engine();
    let mut poller = host.poller();
    poller.poll_now(&mut engine); // bootstrap outside the stall
    server.fail(json!({"kind": "stall", "ms": 20_000}));
    let report = poller.poll_now(&mut engine);
    assert_eq!(rejected(&report), "config_poll_error");
    // The 404 before it was the first consecutive failure.
    assert_eq!(report.next_delay, scaled(&host, 60));
    assert_eq!(
        poller.poll_now(&mut engine).outcome,
        PollOutcome::NotRegistered
    );
}

#[test]
fn a_dead_server_is_a_transport_error() {
    let host = Host::new(FAST);
    let url = {
        let server = FakeCentral::start();
        server.url.clone()
    };
    host.seed(&url, Some("test-token"));
    let report = host.poller().poll_now(&mut host.engine());
    assert_eq!(rejected(&report), "config_poll_error");
}

#[test]
fn the_client_reads_a_document_at_exactly_the_cap() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    host.poller().poll_now(&mut host.engine());
    let jwt = host.identity().jwt;
    let client = CentralClient::new(&server.url, Duration::from_secs(10));
    server.fail(json!({"kind": "oversized", "bytes": 1024 * 1024}));
    match client.get_config(&jwt, None).expect("an answer") {
        ConfigResponse::Document { document, .. } => {
            assert_eq!(document.as_str().map(str::len), Some(1024 * 1024 - 2))
        }
        other => panic!("1 MiB exactly is accepted, got {other:?}"),
    }
    server.fail(json!({"kind": "oversized", "bytes": 1024 * 1024 + 1, "chunked": true}));
    assert!(matches!(
        client.get_config(&jwt, None),
        Ok(ConfigResponse::TooLarge { .. })
    ));
}

// ---------------------------------------------------------------------------
// The poll thread

/// The next event other than a poll record (each poll sends one).
fn next_event(events: &Receiver<PollEvent>) -> PollEvent {
    loop {
        let event = events
            .recv_timeout(Duration::from_secs(20))
            .expect("a poll event within 20 s");
        if !matches!(event, PollEvent::Polled(_)) {
            return event;
        }
    }
}

/// No event other than poll records is queued.
fn no_other_event(events: &Receiver<PollEvent>) -> bool {
    events
        .try_iter()
        .all(|event| matches!(event, PollEvent::Polled(_)))
}

#[test]
fn apply_then_reexec_then_exactly_one_confirm_edge() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    host.seed(&server.url, Some("test-token"));
    server.serve("rev-1", &doc(&server.url, "one"));

    let (handle, passes, events) = host.spawn();
    let applied = next_event(&events);
    let PollEvent::Applied { etag, deadline } = applied else {
        panic!("expected Applied, got {applied:?}");
    };
    assert_eq!(etag, "rev-1");
    assert_eq!(
        Some(deadline),
        engine::active_probation(&host.paths).map(|p| p.deadline)
    );
    // After an apply the thread stops polling: no second GET.
    let gets_after_apply = server.count("/v1/config");
    handle.stop(Duration::from_millis(100));
    assert_eq!(server.count("/v1/config"), gets_after_apply);
    assert!(
        passes.try_recv().is_err(),
        "no edge without a cleared probation"
    );

    // "Re-exec": a fresh poll thread on the same home.
    let (handle, passes, events) = host.spawn();
    assert_eq!(
        next_event(&events),
        PollEvent::ProbationCleared {
            etag: "rev-1".into()
        }
    );
    let pass = passes
        .recv_timeout(Duration::from_secs(20))
        .expect("the confirm edge");
    assert_eq!(
        pass.reason,
        PassReason::Confirmed {
            etag: "rev-1".into()
        }
    );
    // Several more confirming polls: still exactly one edge.
    let seen = server.count("/v1/config");
    wait_until(Duration::from_secs(20), "three more polls", || {
        server.count("/v1/config") >= seen + 3
    });
    handle.stop(Duration::from_millis(100));
    assert!(passes.try_recv().is_err(), "exactly one confirm edge");
    assert!(no_other_event(&events));
    let last = server.requests_to("/v1/config").pop().unwrap();
    assert_eq!(last["headers"]["if-none-match"], "rev-1");
}

#[test]
fn the_watchdog_rolls_back_to_the_seed_and_says_so() {
    let server = FakeCentral::start();
    let host = Host::new(FAST);
    under_probation(&server, &host);
    server.fail(json!({"kind": "status", "status": 500, "count": 1000}));
    let deadline = engine::active_probation(&host.paths).unwrap().deadline;
    let (handle, passes, events) = host.spawn();
    wait_until(Duration::from_secs(20), "a failing poll", || {
        server.count("/v1/config") >= 2
    });
    wait_until(Duration::from_secs(20), "the probation deadline", || {
        SystemTime::now() >= deadline
    });
    handle.watchdog_expired();
    assert_eq!(
        next_event(&events),
        PollEvent::RolledBack {
            reason: "probation_expired".into()
        }
    );
    handle.stop(Duration::from_millis(100));
    assert!(passes.try_recv().is_err());
    assert_eq!(hyp::config::read_active_pointer(&host.paths), Some(Slot::A));
    assert_eq!(engine::running_etag(&host.paths), None);
    let state = engine::read_state(&host.paths);
    assert_eq!(state.bad_etag.unwrap().reason, "probation_expired");
    assert_eq!(state.last_rollback.unwrap().etag, "rev-1");
}

#[test]
fn an_early_watchdog_order_waits_for_the_deadline() {
    let server = FakeCentral::start();
    // 120 s probation / 20 = 6 s: long enough to act before it.
    let host = Host::new(20.0);
    under_probation(&server, &host);
    server.silence(true);
    let (handle, _passes, events) = host.spawn();
    handle.watchdog_expired();
    let deadline = engine::active_probation(&host.paths).unwrap().deadline;
    assert!(
        SystemTime::now() < deadline,
        "the order came before the deadline"
    );
    assert!(
        engine::active_probation(&host.paths).is_some(),
        "not rolled back early"
    );
    // The thread re-checks at the deadline by itself.
    assert_eq!(
        next_event(&events),
        PollEvent::RolledBack {
            reason: "probation_expired".into()
        }
    );
    assert!(SystemTime::now() >= deadline);
    server.silence(false);
    handle.stop(Duration::from_millis(100));
}

#[test]
fn stop_is_prompt_while_a_poll_hangs() {
    let server = FakeCentral::start();
    let host = Host::new(1.0);
    host.seed(&server.url, Some("test-token"));
    server.silence(true);
    let (handle, _passes, _events) = host.spawn();
    wait_until(Duration::from_secs(20), "a held request", || {
        server.count("/v1/identity/bootstrap") >= 1
    });
    let started = Instant::now();
    handle.stop(Duration::from_millis(200));
    // Not a speed assertion: without the grace the join would wait for the
    // 30 s request deadline.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn an_unusable_central_sink_idles_until_stopped() {
    let host = Host::new(FAST);
    let seed = json!({"version": 2, "sinks": {"central": {"plugin": "@hypaware/central",
        "config": {"url": "ftp://nowhere", "identity": {}}}}});
    hyp::statefile::write(&host.paths.seed(), &seed).unwrap();
    assert!(Poller::new(&host.paths, host.scale).is_err());
    let (handle, passes, events) = host.spawn();
    handle.watchdog_expired();
    handle.stop(Duration::from_millis(100));
    assert!(passes.try_recv().is_err());
    assert!(no_other_event(&events));
}
