//! The daemon against the fake central, end to end (reference config.md §8):
//! seed boot and apply, re-exec under probation, confirm, chained revisions,
//! bad documents, probation expiry at runtime and at boot, rollback to the
//! seed, and a corrupt `state.json`. Real binary, real signals, real HTTP.

use std::fs;
use std::process::Child;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_central::FakeCentral;
use crate::support::{TestEnv, wait_until};

/// Probation is at least 120 s; at this scale it lasts 3 s, a poll 0.125 s.
const SCALE: &str = "40";
const WAIT: Duration = Duration::from_secs(30);

struct Fleet {
    env: TestEnv,
    central: FakeCentral,
    daemon: Option<Child>,
}

impl Fleet {
    /// A fake central serving nothing yet, and a host joined to it.
    fn joined() -> Fleet {
        Fleet::joined_to(FakeCentral::start(), TestEnv::new())
    }

    fn joined_to(central: FakeCentral, mut env: TestEnv) -> Fleet {
        env.set_var("HYP_TIME_SCALE", SCALE);
        env.hyp(["join", &central.url, "test-token"])
            .assert_success();
        Fleet {
            env,
            central,
            daemon: None,
        }
    }

    /// A fleet document whose central sink points at the fake server.
    fn document(&self, note: &str) -> Value {
        json!({
            "version": 2,
            "plugins": [{"name": "@hypaware/central"}, {"name": "@acme/marker", "config": {"note": note}}],
            "sinks": {"central": {"plugin": "@hypaware/central",
                      "config": {"url": self.central.url, "identity": {}, "poll_interval_seconds": 5}}}
        })
    }

    fn start_daemon(&mut self) -> u32 {
        let child = self
            .env
            .command(["daemon", "run"])
            .spawn()
            .expect("spawn the daemon");
        let pid = child.id();
        self.daemon = Some(child);
        wait_until(WAIT, "the daemon to hold its lock", || {
            self.env.hyp(["daemon", "status"]).code() == 0
        });
        pid
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("wait for the daemon");
        assert_eq!(status.code(), Some(0), "the daemon exits 0 on SIGTERM");
    }

    fn status(&self) -> Value {
        self.env
            .hyp(["status", "--json"])
            .assert_success()
            .stdout_json()
    }

    fn remote(&self, key: &str) -> Value {
        self.status()["remote_config"][key].clone()
    }

    fn wait_confirmed(&self, etag: &str) {
        wait_until(WAIT, &format!("{etag} confirmed"), || {
            let remote = self.status()["remote_config"].clone();
            remote["running_etag"] == etag && remote["probation"].is_null()
        });
    }

    fn wait_probation(&self, etag: &str) {
        wait_until(WAIT, &format!("{etag} under probation"), || {
            self.remote("probation")["etag"] == etag
        });
    }

    fn log(&self) -> String {
        fs::read_to_string(self.env.state_root().join("logs/daemon.log")).unwrap_or_default()
    }

    fn count_events(&self, event: &str) -> usize {
        self.log()
            .matches(&format!("\"event\":\"{event}\""))
            .count()
    }

    fn daemon_pid_alive(&self) -> bool {
        self.env.hyp(["daemon", "status"]).code() == 0
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn seed_boot_applies_reexecs_and_confirms_once() {
    let mut fleet = Fleet::joined();
    fleet.central.serve("rev-1", &fleet.document("one"));
    let pid = fleet.start_daemon();
    fleet.wait_confirmed("rev-1");
    let status = fleet.status();
    assert_eq!(status["daemon"]["pid"], json!(pid), "re-exec keeps the pid");
    assert_eq!(status["config_layers"]["central_source"], "slot_b");
    assert!(
        !fleet
            .env
            .state_root()
            .join("config-control/seed.json")
            .exists(),
        "seed retired"
    );
    assert_eq!(fleet.count_events("config.applied"), 1);
    assert_eq!(fleet.count_events("config.probation_cleared"), 1);
    assert_eq!(fleet.count_events("daemon.exec"), 1);
    // Later 304s confirm nothing: still exactly one edge.
    let polls = fleet.central.count("/v1/config");
    wait_until(WAIT, "more polls", || {
        fleet.central.count("/v1/config") >= polls + 3
    });
    assert_eq!(fleet.count_events("config.probation_cleared"), 1);
    let requests = fleet.central.requests_to("/v1/config");
    let last = requests.last().expect("a poll");
    assert_eq!(last["headers"]["if-none-match"], "rev-1");
    assert!(
        last["headers"]["authorization"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Bearer ")
    );
    fleet.stop_daemon();
}

#[test]
fn an_https_central_signed_by_a_private_ca_is_trusted_through_ssl_cert_file() {
    let mut env = TestEnv::new();
    env.set_var(
        "SSL_CERT_FILE",
        FakeCentral::test_ca().display().to_string(),
    );
    let mut fleet = Fleet::joined_to(FakeCentral::start_tls(), env);
    assert!(fleet.central.url.starts_with("https://127.0.0.1:"));
    fleet.central.serve("rev-1", &fleet.document("one"));
    fleet.start_daemon();
    fleet.wait_confirmed("rev-1");
    assert_eq!(fleet.central.count("/v1/identity/bootstrap"), 1);
    fleet.stop_daemon();
}

#[test]
fn an_https_central_signed_by_an_unknown_ca_is_refused_with_what_to_do() {
    let mut env = TestEnv::new();
    // Neither variable is set: the system store, which lacks the test CA.
    env.remove_var("SSL_CERT_FILE");
    env.remove_var("SSL_CERT_DIR");
    let mut fleet = Fleet::joined_to(FakeCentral::start_tls(), env);
    fleet.central.serve("rev-1", &fleet.document("one"));
    fleet.start_daemon();
    wait_until(WAIT, "a refused certificate in the daemon log", || {
        fleet.count_events("central.config.poll_failed") >= 2
    });
    let log = fleet.log();
    assert!(
        log.contains("invalid peer certificate") && log.contains("point SSL_CERT_FILE at it"),
        "the log says why and what to do:\n{log}"
    );
    assert_eq!(fleet.central.count("/v1/identity/bootstrap"), 0);
    assert!(
        !fleet
            .env
            .state_root()
            .join("plugins/@hypaware/central/identity.json")
            .exists()
    );
    fleet.stop_daemon();
}

#[test]
fn chained_revisions_apply_and_a_bad_document_is_skipped() {
    let mut fleet = Fleet::joined();
    fleet.central.serve("rev-1", &fleet.document("one"));
    fleet.start_daemon();
    fleet.wait_confirmed("rev-1");

    fleet.central.serve("rev-bad", &json!({"version": 3}));
    wait_until(WAIT, "rev-bad remembered", || {
        fleet.remote("bad_etag")["etag"] == "rev-bad"
    });
    assert_eq!(fleet.remote("bad_etag")["reason"], "validation_failed");
    assert_eq!(fleet.remote("running_etag"), "rev-1");
    assert!(fleet.daemon_pid_alive());
    let applied = fleet.count_events("config.applied");

    fleet.central.serve("rev-2", &fleet.document("two"));
    fleet.wait_confirmed("rev-2");
    assert_eq!(fleet.count_events("config.applied"), applied + 1);
    let effective = fleet
        .env
        .hyp(["config", "show", "--central", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(effective["document"]["plugins"][1]["config"]["note"], "two");
    fleet.stop_daemon();
}

#[test]
fn probation_expiry_at_runtime_rolls_back_and_status_says_why() {
    let mut fleet = Fleet::joined();
    fleet.central.serve("rev-1", &fleet.document("one"));
    fleet.start_daemon();
    fleet.wait_confirmed("rev-1");
    fleet
        .central
        .serve_then_silence("rev-2", &fleet.document("two"));
    wait_until(WAIT, "rev-2 rolled back", || {
        fleet.remote("last_rollback")["reason"] == "probation_expired"
    });
    assert_eq!(fleet.remote("last_rollback")["etag"], "rev-2");
    assert_eq!(fleet.remote("running_etag"), "rev-1");
    assert_eq!(fleet.remote("bad_etag")["etag"], "rev-2");
    let text = fleet.env.hyp(["status"]).assert_success().stdout();
    assert!(text.contains("last rollback: rev-2"), "{text}");
    assert!(text.contains("remote_config_rolled_back"), "{text}");
    assert_eq!(
        fleet.status()["overall"],
        "healthy",
        "a rollback is a warning"
    );
    fleet.central.silence(false);
    assert!(fleet.daemon_pid_alive());
    fleet.stop_daemon();
}

#[test]
fn probation_expired_while_down_rolls_back_at_boot() {
    let mut fleet = Fleet::joined();
    fleet.central.serve("rev-1", &fleet.document("one"));
    fleet.start_daemon();
    fleet.wait_confirmed("rev-1");
    fleet
        .central
        .serve_then_silence("rev-2", &fleet.document("two"));
    fleet.wait_probation("rev-2");
    fleet.stop_daemon();
    let until = fleet.remote("probation")["until"]
        .as_str()
        .map(str::to_string);
    let until = until
        .and_then(|until| hyp::time::parse_iso(&until))
        .expect("a deadline");
    wait_until(WAIT, "the probation deadline to pass", || {
        jiff::Timestamp::now() > until
    });
    fleet.start_daemon();
    wait_until(WAIT, "the boot rollback", || {
        fleet.remote("last_rollback")["reason"] == "probation_expired"
    });
    assert_eq!(fleet.remote("running_etag"), "rev-1");
    assert!(fleet.remote("probation").is_null());
    fleet.central.silence(false);
    fleet.stop_daemon();
}

#[test]
fn a_first_apply_that_cannot_confirm_rolls_back_to_the_seed() {
    let mut fleet = Fleet::joined();
    fleet
        .central
        .serve_then_silence("rev-1", &fleet.document("one"));
    fleet.start_daemon();
    wait_until(WAIT, "rev-1 rolled back", || {
        fleet.remote("last_rollback")["reason"] == "probation_expired"
    });
    // The seed-boot apply copied the seed into slot A; rolling back points
    // there: the seed document, with no etag.
    let status = fleet.status();
    assert_eq!(
        status["config_layers"]["central_source"], "slot_a",
        "{status}"
    );
    assert!(status["remote_config"]["running_etag"].is_null());
    assert_eq!(
        status["config_layers"]["central_plugins"],
        json!(["@hypaware/central"])
    );
    fleet.central.silence(false);
    fleet.stop_daemon();
}

#[test]
fn a_corrupt_state_file_is_tolerated_at_boot() {
    let mut fleet = Fleet::joined();
    let control = fleet.env.state_root().join("config-control");
    fs::write(control.join("state.json"), b"{\"probation\": {\"etag\": ").unwrap();
    fleet.central.serve("rev-1", &fleet.document("one"));
    fleet.start_daemon();
    fleet.wait_confirmed("rev-1");
    assert!(fleet.daemon_pid_alive());
    fleet.stop_daemon();
}

#[test]
fn hyp_log_filters_the_daemon_log_by_module() {
    let mut env = TestEnv::new();
    env.set_var("HYP_LOG", "warn,hyp::control=debug");
    let mut fleet = Fleet::joined_to(FakeCentral::start(), env);
    fleet.central.serve("rev-1", &fleet.document("one"));
    fleet.start_daemon();
    fleet.wait_confirmed("rev-1");
    fleet.stop_daemon();
    // Debug lines of `hyp::control::*` (the poll's splay), its info lines
    // (the apply), and nothing below warn from anywhere else.
    assert!(
        fleet.count_events("central.poll_splay") >= 1,
        "{}",
        fleet.log()
    );
    assert!(fleet.count_events("config.applied") == 1, "{}", fleet.log());
    for quiet in ["daemon.starting", "daemon.healthy", "daemon.stopped"] {
        assert_eq!(fleet.count_events(quiet), 0, "{quiet}: {}", fleet.log());
    }
    for line in fleet.log().lines() {
        let line: Value = serde_json::from_str(line).expect("a JSON line");
        for key in ["ts", "level", "event", "pid", "run_id"] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
    }
}
