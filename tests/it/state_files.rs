//! Issue 13: every state file, for each way it can be damaged (missing,
//! empty, cut in half, garbage bytes, valid JSON of the wrong shape, a
//! directory in its place). `hyp status` exits 0 with one JSON document and
//! a diagnostic naming the file (unless its absence is normal), and a joined
//! daemon with the damage boots, goes healthy, keeps working and stops
//! cleanly. Stray temp files of the atomic writer are removed at daemon boot,
//! and nothing else is.
//!
//! One table drives both: a row is a file, the damages it covers, what
//! status says and what the daemon does. Every case starts from a copy of a
//! home prepared once per test by a real join and a real daemon.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_central::FakeCentral;
use crate::history;
use crate::support::{TestEnv, copy_tree, list_tree, wait_until};

/// A poll every 0.05 s, a probation of 1.2 s, an export tick of 0.6 s.
const SCALE: &str = "100";
const WAIT: Duration = Duration::from_secs(30);

const LOCAL: &str = "hypaware-config.json";
const SEED: &str = "hypaware/config-control/seed.json";
/// The applied home's slots: the first apply copies the seed into slot a
/// and writes the served config to slot b, which `active` names.
const PREVIOUS_SLOT: &str = "hypaware/config-control/config.a.json";
const ACTIVE_SLOT: &str = "hypaware/config-control/config.b.json";
const APPLY_STATE: &str = "hypaware/config-control/state.json";
const CLIENT_ACTIONS: &str = "hypaware/config-control/client-actions.json";
const IDENTITY: &str = "hypaware/plugins/@hypaware/central/identity.json";
const STATUS: &str = "hypaware/run/status.json";
const PID: &str = "hypaware/run/hypaware.pid";
const CAPTURE: &str = "hypaware/run/capture.json";
const INSTALLATION: &str = "hypaware/installation.json";
const LOCAL_ONLY: &str = "hypaware/usage-policy/local-only.json";
const CLIENT_SYNC: &str = "hypaware/usage-policy/client-sync.json";
const HOLD: &str = "hypaware/usage-policy/first-sync-hold.json";
const ACTIVE_POINTER: &str = "hypaware/config-control/active";
const ACTIVE_ETAG: &str = "hypaware/config-control/config.b.etag";
const GENERATION: &str = "hypaware/cache/generation";
const FORWARD_DB: &str = "hypaware/plugins/@hypaware/central/sink-instances/central/forward.db";

/// One way to damage a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Missing,
    Empty,
    /// The valid file cut in half.
    Truncated,
    Garbage,
    /// Valid JSON of the wrong shape.
    Array,
    Number,
    Directory,
}

use Damage::{Array, Directory, Empty, Garbage, Missing, Number, Truncated};

/// Every damage of a JSON file but its absence.
const DAMAGED_JSON: &[Damage] = &[Empty, Truncated, Garbage, Array, Number, Directory];
/// The damages a daemon boots with (the issue asks for garbage and a
/// directory; the wrong shape and absence cost little more).
const DAEMON_DAMAGES: &[Damage] = &[Missing, Garbage, Array, Directory];

impl Damage {
    /// Put this damage where `path` is (a file, link or directory in the
    /// prepared home, replaced whole).
    fn apply(self, path: &Path) {
        let valid = fs::read(path).unwrap_or_default();
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).expect("remove a directory"),
            Ok(_) => fs::remove_file(path).expect("remove a file"),
            Err(_) => {}
        }
        fs::create_dir_all(path.parent().expect("a parent")).expect("create the parent");
        let bytes: &[u8] = match self {
            Missing => return,
            Directory => return fs::create_dir(path).expect("put a directory in place"),
            Empty => b"",
            Truncated => {
                assert!(valid.len() > 1, "{} has nothing to cut", path.display());
                &valid[..valid.len() / 2]
            }
            Garbage => b"\x00\xff\xfe garbage \x01\x7f{",
            Array => b"[1, 2, 3]\n",
            Number => b"42\n",
        };
        fs::write(path, bytes).expect("write the damage");
    }
}

/// Which prepared home a case starts from.
#[derive(Debug, Clone, Copy)]
enum Home {
    /// `hyp join` only: the seed is the central layer.
    Seeded,
    /// A daemon applied and confirmed a served config.
    Applied,
}

/// What `hyp status` says about the damaged file.
#[derive(Debug, Clone, Copy)]
enum Says {
    /// A diagnostic of this kind and severity whose message names the file.
    Diagnostic(&'static str, &'static str),
    /// Nothing names the file: its absence is normal, for this reason.
    Nothing(&'static str),
}

/// What a daemon with the damage does besides booting, going healthy and
/// stopping on SIGTERM with exit 0.
#[derive(Debug, Clone, Copy)]
struct Carries {
    /// Its requests still reach central (else the damage leaves it without
    /// a central layer, and a reload shows it alive).
    polls: bool,
    /// The event it logs about the damage, if it reads the file at all.
    logs: Option<&'static str>,
}

const POLLS: Carries = Carries {
    polls: true,
    logs: None,
};

const fn polls_and_logs(event: &'static str) -> Carries {
    Carries {
        polls: true,
        logs: Some(event),
    }
}

const fn idle_and_logs(event: &'static str) -> Carries {
    Carries {
        polls: false,
        logs: Some(event),
    }
}

struct Case {
    file: &'static str,
    home: Home,
    damages: &'static [Damage],
    status: Says,
    daemon: Carries,
}

const fn case(
    file: &'static str,
    damages: &'static [Damage],
    status: Says,
    daemon: Carries,
) -> Case {
    Case {
        file,
        home: Home::Applied,
        damages,
        status,
        daemon,
    }
}

const WARNING: &str = "warning";
const ERROR: &str = "error";

/// Every state file under `$HYP_HOME` (the paths module's list), by damage.
/// Severity: an error when the damage stops the host from polling,
/// applying, importing or exporting until someone acts; a warning when the
/// next write replaces the file or only what status shows suffers.
#[rustfmt::skip]
const CASES: &[Case] = &[
    case(LOCAL, &[Missing], Says::Nothing("the local layer is optional on a joined host"), POLLS),
    case(LOCAL, DAMAGED_JSON, Says::Diagnostic("config_local_unreadable", WARNING), polls_and_logs("config.layer_unreadable")),
    Case {
        home: Home::Seeded,
        ..case(SEED, &[Missing], Says::Nothing("with no seed and no slot the host is not joined"), Carries { polls: false, logs: None })
    },
    Case {
        home: Home::Seeded,
        ..case(SEED, DAMAGED_JSON, Says::Diagnostic("config_central_unreadable", ERROR), idle_and_logs("config.layer_unreadable"))
    },
    case(PREVIOUS_SLOT, &[Missing], Says::Nothing("the previous slot is only a rollback target; a first config that came without a seed leaves none"), POLLS),
    case(PREVIOUS_SLOT, &[Empty, Truncated, Garbage, Array, Number], Says::Diagnostic("remote_config_slot_unreadable", WARNING), POLLS),
    case(PREVIOUS_SLOT, &[Directory], Says::Diagnostic("remote_config_slot_unreadable", ERROR), POLLS),
    case(ACTIVE_SLOT, &[Missing, Empty, Truncated, Garbage, Array, Number, Directory], Says::Diagnostic("config_central_unreadable", ERROR), idle_and_logs("config.layer_unreadable")),
    case(APPLY_STATE, &[Missing], Says::Nothing("no probation, rollback or bad etag to remember"), POLLS),
    case(APPLY_STATE, &[Empty, Truncated, Garbage, Array, Number], Says::Diagnostic("remote_config_state_unreadable", WARNING), polls_and_logs("config.state_unreadable")),
    case(APPLY_STATE, &[Directory], Says::Diagnostic("remote_config_state_unreadable", ERROR), polls_and_logs("config.state_unreadable")),
    case(CLIENT_ACTIONS, &[Missing], Says::Nothing("no client action has run yet"), POLLS),
    // An empty store reads as empty without a log line (actions::store).
    case(CLIENT_ACTIONS, &[Empty], Says::Diagnostic("client_actions_unreadable", WARNING), POLLS),
    case(CLIENT_ACTIONS, &[Truncated, Garbage, Array, Number], Says::Diagnostic("client_actions_unreadable", WARNING), polls_and_logs("client_action.store_corrupt")),
    case(CLIENT_ACTIONS, &[Directory], Says::Diagnostic("client_actions_unreadable", ERROR), polls_and_logs("client_action.recovery_failed")),
    case(IDENTITY, &[Missing], Says::Diagnostic("identity_missing", ERROR), POLLS),
    case(IDENTITY, DAMAGED_JSON, Says::Diagnostic("identity_unreadable", ERROR), polls_and_logs("central.identity_unusable")),
    case(STATUS, &[Missing], Says::Nothing("no daemon has run here"), POLLS),
    // The daemon writes status.json without reading it.
    case(STATUS, &[Empty, Truncated, Garbage, Array, Number], Says::Diagnostic("daemon_status_unreadable", WARNING), POLLS),
    case(STATUS, &[Directory], Says::Diagnostic("daemon_status_unreadable", WARNING), polls_and_logs("daemon.status_write_failed")),
    case(PID, &[Missing], Says::Nothing("no daemon runs"), POLLS),
    case(PID, &[Empty, Truncated, Garbage, Array, Number], Says::Diagnostic("daemon_status_unreadable", WARNING), POLLS),
    case(PID, &[Directory], Says::Diagnostic("daemon_status_unreadable", WARNING), polls_and_logs("daemon.pid_file_write_failed")),
    case(CAPTURE, &[Missing], Says::Nothing("no capture sweep has run yet"), POLLS),
    case(CAPTURE, DAMAGED_JSON, Says::Diagnostic("capture_record_unreadable", WARNING), POLLS),
    case(INSTALLATION, &[Missing], Says::Nothing("the next join or daemon start makes one"), POLLS),
    case(INSTALLATION, DAMAGED_JSON, Says::Diagnostic("installation_unreadable", WARNING), polls_and_logs("installation.unreadable")),
    case(LOCAL_ONLY, &[Missing], Says::Nothing("no directory is marked local-only"), POLLS),
    case(LOCAL_ONLY, DAMAGED_JSON, Says::Diagnostic("usage_policy_unreadable", ERROR), POLLS),
    case(CLIENT_SYNC, &[Missing], Says::Nothing("no client is opted out"), POLLS),
    case(CLIENT_SYNC, DAMAGED_JSON, Says::Diagnostic("usage_policy_unreadable", ERROR), POLLS),
    case(HOLD, &[Missing], Says::Nothing("no first-sync hold"), POLLS),
    case(HOLD, DAMAGED_JSON, Says::Diagnostic("first_sync_hold_unreadable", WARNING), POLLS),
    // Not JSON, but state all the same.
    case(ACTIVE_POINTER, &[Missing, Empty, Garbage, Directory], Says::Diagnostic("remote_config_pointer_unreadable", ERROR), idle_and_logs("config.active_pointer_unreadable")),
    case(ACTIVE_ETAG, &[Missing], Says::Nothing("a slot copied from the seed has none; the daemon applies central's config again"), POLLS),
    case(ACTIVE_ETAG, &[Empty, Garbage], Says::Diagnostic("remote_config_etag_unreadable", WARNING), POLLS),
    case(ACTIVE_ETAG, &[Directory], Says::Diagnostic("remote_config_etag_unreadable", ERROR), POLLS),
    case(GENERATION, &[Missing], Says::Nothing("the next import writes one (and imports again, as into a new cache)"), POLLS),
    case(GENERATION, &[Empty, Garbage], Says::Diagnostic("cache_generation_unreadable", WARNING), POLLS),
    case(GENERATION, &[Directory], Says::Diagnostic("cache_generation_unreadable", ERROR), POLLS),
    case(FORWARD_DB, &[Missing], Says::Nothing("no export has run; the next one creates it"), POLLS),
    case(FORWARD_DB, &[Empty], Says::Diagnostic("forward_state_unreadable", WARNING), POLLS),
    case(FORWARD_DB, &[Truncated, Garbage, Directory], Says::Diagnostic("forward_state_unreadable", ERROR), POLLS),
];

/// The fake central and the two prepared homes every case copies.
struct Fleet {
    central: FakeCentral,
    seeded: TestEnv,
    applied: TestEnv,
}

impl Fleet {
    /// Join two hosts; on one a daemon applies and confirms `rev-1`,
    /// imports Claude's (empty) history, and writes its capture record and
    /// forward state. Then every state file it did not make is added in a
    /// valid form, and the log is removed, so each case's log is its own.
    fn prepare() -> Fleet {
        let central = FakeCentral::start();
        let seeded = host_env();
        seeded
            .hyp(["join", &central.url, "test-token"])
            .assert_success();
        let applied = host_env();
        applied
            .hyp(["join", &central.url, "test-token"])
            .assert_success();
        central.serve("rev-1", &fleet_document(&central.url));
        let mut daemon = Daemon::start(&applied);
        daemon.wait_for("the applied home to settle", || {
            let report = applied.hyp(["status", "--json"]).stdout_json();
            report["remote_config"]["running_etag"] == "rev-1"
                && report["remote_config"]["probation"].is_null()
                && report["client_actions"][0]["state"] == "done"
                && applied.hyp_home().join(CAPTURE).exists()
                && applied.hyp_home().join(FORWARD_DB).exists()
                // The export child has closed forward.db: a WAL copied into
                // the cases would be deleted by status's read-only open of
                // an emptied forward.db, as if status wrote.
                && !applied.hyp_home().join(format!("{FORWARD_DB}-wal")).exists()
        });
        daemon.stop("the preparing daemon");
        let write = |relative: &str, value: Value| {
            fs::write(applied.hyp_home().join(relative), value.to_string()).expect("write a file")
        };
        write(LOCAL, json!({"version": 2}));
        write(LOCAL_ONLY, json!({"version": 2, "entries": []}));
        write(HOLD, json!({"deadline_ms": 1}));
        fs::write(applied.hyp_home().join(PID), b"{\"pid\": 1}\n").expect("write a pid file");
        fs::remove_dir_all(applied.state_root().join("logs")).expect("remove the logs");
        assert_eq!(
            fs::read_link(applied.hyp_home().join(ACTIVE_POINTER)).expect("an active slot"),
            Path::new("config.b.json"),
            "the table's slot names"
        );
        for case in CASES {
            let home = match case.home {
                Home::Seeded => &seeded,
                Home::Applied => &applied,
            };
            assert!(
                fs::symlink_metadata(home.hyp_home().join(case.file)).is_ok(),
                "{} is in the prepared home:\n{}",
                case.file,
                list_tree(&home.hyp_home())
            );
        }
        // Undamaged, status names no state file: every diagnostic a case
        // finds is the damage's.
        for home in [&seeded, &applied] {
            let report = home.hyp(["status", "--json"]).stdout_json();
            let kinds: Vec<String> = diagnostics(&report)
                .iter()
                .filter_map(|diagnostic| diagnostic["kind"].as_str().map(str::to_string))
                .filter(|kind| !matches!(kind.as_str(), "daemon_not_running" | "identity_missing"))
                .collect();
            assert!(
                kinds.is_empty(),
                "an undamaged home names {kinds:?}: {report:#}"
            );
        }
        Fleet {
            central,
            seeded,
            applied,
        }
    }

    /// A fresh host whose `$HYP_HOME` is a copy of a prepared one.
    fn copy(&self, home: Home) -> TestEnv {
        let template = match home {
            Home::Seeded => &self.seeded,
            Home::Applied => &self.applied,
        };
        let env = host_env();
        copy_tree(&template.hyp_home(), &env.hyp_home());
        env
    }
}

/// A host with empty history roots at the test's time scale.
fn host_env() -> TestEnv {
    let mut env = TestEnv::new();
    history::use_history(&mut env);
    env.set_var("HYP_TIME_SCALE", SCALE);
    fs::create_dir_all(history::claude_root(&env).join("projects"))
        .expect("create the history root");
    env
}

/// Central plus Claude, polled every 5 s (0.05 s at `SCALE`).
fn fleet_document(url: &str) -> Value {
    json!({
        "version": 2,
        "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/claude"}],
        "sinks": {"central": {"plugin": "@hypaware/central",
                  "config": {"url": url, "identity": {}, "poll_interval_seconds": 5}}}
    })
}

fn diagnostics(report: &Value) -> Vec<Value> {
    report["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A `hyp daemon run` under test, its stderr kept in `daemon.stderr`
/// beside the home; killed on drop unless stopped.
struct Daemon<'env> {
    env: &'env TestEnv,
    child: Option<Child>,
    pid: u32,
}

impl<'env> Daemon<'env> {
    fn start(env: &'env TestEnv) -> Daemon<'env> {
        let stderr =
            fs::File::create(env.root().join("daemon.stderr")).expect("create the stderr file");
        let child = env
            .command(["daemon", "run"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the daemon");
        Daemon {
            env,
            pid: child.id(),
            child: Some(child),
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.env.root().join("daemon.stderr")).unwrap_or_default()
    }

    /// [`wait_until`] `condition`, failing at once should the daemon end.
    fn wait_for(&mut self, what: &str, mut condition: impl FnMut() -> bool) {
        let env = self.env;
        let child = self.child.as_mut().expect("a running daemon");
        wait_until(WAIT, what, || {
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                panic!(
                    "{what}: the daemon ended ({status})\n--- stderr\n{}\n--- log\n{}",
                    fs::read_to_string(env.root().join("daemon.stderr")).unwrap_or_default(),
                    fs::read_to_string(env.state_root().join("logs/daemon.log"))
                        .unwrap_or_default()
                );
            }
            condition()
        });
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid as i32, signal) };
    }

    /// SIGTERM; the exit must be 0 and nothing may have panicked.
    fn stop(mut self, what: &str) {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("a running daemon");
        let status = child.wait().expect("wait for the daemon");
        let stderr = self.stderr();
        assert_eq!(
            status.code(),
            Some(0),
            "{what} exits 0 on SIGTERM: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The events of the daemon log, in order.
fn log_events(env: &TestEnv) -> Vec<Value> {
    fs::read_to_string(env.state_root().join("logs/daemon.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn count_events(env: &TestEnv, event: &str) -> usize {
    log_events(env)
        .iter()
        .filter(|line| line["event"] == event)
        .count()
}

#[test]
fn status_names_every_damaged_state_file_and_exits_0() {
    let fleet = Fleet::prepare();
    for case in CASES {
        for &damage in case.damages {
            let env = fleet.copy(case.home);
            let path = env.hyp_home().join(case.file);
            damage.apply(&path);
            let label = format!("{} {damage:?}", case.file);
            let before = list_tree(env.root());
            let run = env.hyp(["status", "--json"]).assert_success();
            let report = run.stdout_json();
            let shown = path.display().to_string();
            let naming: Vec<Value> = diagnostics(&report)
                .into_iter()
                .filter(|diagnostic| {
                    diagnostic["message"]
                        .as_str()
                        .is_some_and(|message| message.contains(&shown))
                })
                .collect();
            match case.status {
                Says::Diagnostic(kind, severity) => {
                    let found = naming.iter().any(|diagnostic| {
                        diagnostic["kind"] == kind && diagnostic["severity"] == severity
                    });
                    if !found {
                        run.explain(&format!(
                            "{label}: no {severity} {kind} naming {shown}: {:#}",
                            report["diagnostics"]
                        ));
                    }
                }
                Says::Nothing(why) => {
                    if !naming.is_empty() {
                        run.explain(&format!("{label} is normal ({why}), yet: {naming:#?}"));
                    }
                }
            }
            let text = env.hyp(["status"]).assert_success();
            assert!(
                !run.stderr().contains("panicked") && !text.stderr().contains("panicked"),
                "{label}"
            );
            assert_eq!(
                list_tree(env.root()),
                before,
                "{label}: status created nothing"
            );
        }
    }
}

#[test]
fn a_joined_daemon_carries_on_past_every_damaged_state_file() {
    let fleet = Fleet::prepare();
    for case in CASES {
        for &damage in case
            .damages
            .iter()
            .filter(|damage| DAEMON_DAMAGES.contains(damage))
        {
            let env = fleet.copy(case.home);
            damage.apply(&env.hyp_home().join(case.file));
            let label = format!("{} {damage:?}", case.file);
            let requests = fleet.central.requests().len();
            let mut daemon = Daemon::start(&env);
            daemon.wait_for(&format!("{label}: daemon.healthy"), || {
                count_events(&env, "daemon.healthy") > 0
            });
            if case.file == STATUS && damage == Directory {
                assert!(
                    count_events(&env, "daemon.status_write_failed") > 0,
                    "{label}"
                );
            } else {
                // A served config applied again (a damaged etag) restarts
                // the daemon in place: healthy again after it.
                let pid = daemon.pid;
                daemon.wait_for(&format!("{label}: status.json healthy"), || {
                    let status: Value = fs::read(env.hyp_home().join(STATUS))
                        .ok()
                        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                        .unwrap_or_default();
                    status["state"] == "healthy" && status["pid"] == pid
                });
            }
            if case.daemon.polls {
                daemon.wait_for(&format!("{label}: a request at central"), || {
                    fleet.central.requests().len() > requests
                });
            } else {
                daemon.signal(libc::SIGHUP);
                daemon.wait_for(&format!("{label}: a reload"), || {
                    count_events(&env, "daemon.reloaded") > 0
                });
            }
            if let Some(event) = case.daemon.logs {
                daemon.wait_for(&format!("{label}: {event} logged"), || {
                    count_events(&env, event) > 0
                });
            }
            daemon.wait_for(&format!("{label}: the lock held"), || {
                env.hyp(["daemon", "status"]).code() == 0
            });
            daemon.stop(&label);
        }
    }
}

/// Every directory the atomic writer writes into, in the applied home.
fn writer_dirs(env: &TestEnv) -> Vec<PathBuf> {
    let state = env.state_root();
    [
        "",
        "config-control",
        "run",
        "plugins/@hypaware/central",
        "usage-policy",
        "cache",
        "plugins/@hypaware/central/sink-instances/central",
    ]
    .iter()
    .map(|dir| state.join(dir))
    .collect()
}

/// `<file>.<pid>.<12 letters or digits>.tmp`, the atomic writer's staging
/// directory.
fn temp_name(pid: u32, salt: &str) -> String {
    format!("state.json.{pid}.{salt}.tmp")
}

#[test]
fn daemon_boot_removes_stray_temps_of_dead_writers_and_its_own_pid_only() {
    let fleet = Fleet::prepare();
    let env = fleet.copy(Home::Applied);
    let dirs = writer_dirs(&env);
    let mut reaped = std::process::Command::new("true")
        .spawn()
        .expect("spawn a process to outlive");
    let dead = reaped.id();
    reaped.wait().expect("reap it");
    let alive = std::process::id();
    // What a writer killed mid-write leaves: its staging directory, with
    // atomicwrites' temp directory and half a file inside.
    let plant = |name: &str| {
        for dir in &dirs {
            let inner = dir.join(name).join(".atomicwriteX1y2Z3");
            fs::create_dir_all(&inner).expect("plant a staging directory");
            fs::write(inner.join("tmpfile.tmp"), b"{\"half\": ").expect("plant a temp file");
        }
    };
    let present = |name: &str| dirs.iter().filter(|dir| dir.join(name).exists()).count();
    let kept = [
        "notes.tmp".to_string(),
        temp_name(alive, "0123456789ab"),
        temp_name(dead, "0123456789a-"),
    ];
    for name in &kept {
        plant(name);
    }
    let dead_temp = temp_name(dead, "0123456789AB");
    plant(&dead_temp);

    // A cold boot removes the dead writer's temps.
    let mut daemon = Daemon::start(&env);
    daemon.wait_for("daemon.healthy", || {
        count_events(&env, "daemon.healthy") == 1
    });
    assert_eq!(present(&dead_temp), 0, "{}", list_tree(&env.hyp_home()));
    let removed: Vec<Value> = log_events(&env)
        .into_iter()
        .filter(|line| line["event"] == "daemon.stray_temps_removed")
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["count"], dirs.len());

    // A staged restart is an exec with the same pid: its own temps go too.
    let own_temp = temp_name(daemon.pid, "abcdefabcdef");
    plant(&own_temp);
    plant(&dead_temp);
    daemon.signal(libc::SIGUSR1);
    daemon.wait_for("a second daemon.healthy", || {
        count_events(&env, "daemon.healthy") == 2
    });
    assert_eq!(present(&own_temp), 0, "{}", list_tree(&env.hyp_home()));
    assert_eq!(present(&dead_temp), 0);
    assert_eq!(count_events(&env, "daemon.stray_temps_removed"), 2);
    for name in &kept {
        assert_eq!(present(name), dirs.len(), "{name} is kept");
    }
    daemon.stop("the daemon");
}
