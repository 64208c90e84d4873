//! `hyp daemon`: the real binary as a daemon, real signals, its pid, status
//! and log files, and the service commands against a stand-in `systemctl`.

use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{TestEnv, list_tree, wait_until};

const BOOT: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(30);

/// A `TestEnv` that never reaches the machine's real service manager.
fn daemon_env() -> TestEnv {
    let mut env = TestEnv::new();
    env.set_var("HYP_SERVICE_MANAGER", "none");
    env
}

/// A daemon started with `hyp daemon run`; killed if a test fails midway.
struct RunningDaemon {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    state_root: PathBuf,
    status: Option<ExitStatus>,
}

impl RunningDaemon {
    fn start(env: &TestEnv) -> RunningDaemon {
        let daemon = RunningDaemon::spawn(env, &["daemon", "run", "--foreground"]);
        daemon.wait_healthy();
        daemon
    }

    fn spawn(env: &TestEnv, args: &[&str]) -> RunningDaemon {
        let out = env.root().join(format!("daemon-{}.out", unique()));
        let err = env.root().join(format!("daemon-{}.err", unique()));
        let child = env
            .command(args)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .expect("spawn hyp daemon run");
        RunningDaemon {
            child,
            out,
            err,
            state_root: env.state_root(),
            status: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status_json(&self) -> Value {
        read_json(&self.state_root.join("run/status.json"))
    }

    fn pid_json(&self) -> Value {
        read_json(&self.state_root.join("run/hypaware.pid"))
    }

    fn wait_healthy(&self) {
        let pid = self.pid();
        wait_until(BOOT, "status.json to say healthy for this pid", || {
            let status = self.status_json();
            status["state"] == "healthy" && status["pid"] == pid
        });
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until(EXIT, "the daemon to exit", || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        let status = status.expect("exited");
        self.status = Some(status);
        status
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Lifecycle lines (`daemon: running`, `daemon: stopped`) are for
    /// people, so on stderr (issue 14.6).
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn explain(&self, what: &str) -> String {
        format!(
            "{what}\n--- stdout\n{}\n--- stderr\n{}\n--- log\n{}\n--- files\n{}",
            self.stdout(),
            std::fs::read_to_string(&self.err).unwrap_or_default(),
            self.log(),
            list_tree(&self.state_root)
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state_root.join("logs/daemon.log")).unwrap_or_default()
    }

    fn log_events(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|line| line["event"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The JSON at `path`, or `null` while it is missing or being replaced.
fn read_json(path: &std::path::Path) -> Value {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

#[test]
fn a_second_daemon_exits_1_naming_the_first() {
    let env = daemon_env();
    let first = RunningDaemon::start(&env);
    env.hyp(["daemon", "run"])
        .assert_exit(1)
        .assert_stderr_contains(&format!(
            "hyp daemon run: already running (pid {})",
            first.pid()
        ));
    assert_eq!(
        first.pid_json()["pid"],
        first.pid(),
        "the pid file is untouched"
    );
}

#[test]
fn a_stale_pid_file_is_ignored_and_replaced() {
    let env = daemon_env();
    env.write(
        env.state_root().join("run/hypaware.pid"),
        "{\"pid\": 999999, \"run_id\": \"old\", \"started_at\": \"x\", \"mode\": \"foreground\"}",
    );
    env.hyp(["daemon", "status"])
        .assert_exit(3)
        .assert_stderr_contains("stale pid file");
    let daemon = RunningDaemon::start(&env);
    let pid_file = daemon.pid_json();
    assert_eq!(pid_file["pid"], daemon.pid());
    assert_eq!(pid_file["mode"], "foreground");
    assert!(pid_file["run_id"].as_str().unwrap().starts_with("daemon-"));
    assert!(pid_file["started_at"].as_str().unwrap().ends_with('Z'));
}

fn assert_stops_cleanly_on(signal: libc::c_int) {
    let env = daemon_env();
    let mut daemon = RunningDaemon::start(&env);
    daemon.signal(signal);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", daemon.explain("exit code"));
    let status_json = daemon.status_json();
    assert_eq!(
        status_json["state"],
        "stopped",
        "{}",
        daemon.explain("state")
    );
    assert!(status_json["stopped_at"].is_string());
    assert!(
        !env.state_root().join("run/hypaware.pid").exists(),
        "{}",
        daemon.explain("pid file removed")
    );
    assert!(daemon.stderr().contains("daemon: stopped"));
    let events = daemon.log_events();
    for event in [
        "daemon.starting",
        "daemon.healthy",
        "daemon.stopping",
        "daemon.stopped",
    ] {
        assert!(
            events.iter().any(|seen| seen == event),
            "{}",
            daemon.explain(event)
        );
    }
    env.hyp(["daemon", "status"])
        .assert_exit(3)
        .assert_stdout_contains("daemon: not running");
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    assert_stops_cleanly_on(libc::SIGTERM);
}

#[test]
fn sigint_stops_cleanly_with_exit_0() {
    assert_stops_cleanly_on(libc::SIGINT);
}

#[test]
fn sighup_reloads_and_keeps_running() {
    let env = daemon_env();
    let daemon = RunningDaemon::start(&env);
    daemon.signal(libc::SIGHUP);
    wait_until(BOOT, "a daemon.reload log line", || {
        daemon
            .log_events()
            .iter()
            .any(|event| event == "daemon.reloaded")
    });
    assert!(
        daemon
            .log_events()
            .iter()
            .any(|event| event == "daemon.reload_requested")
    );
    wait_until(BOOT, "status.json to record the reload", || {
        daemon.status_json()["last_reload_at"].is_string()
    });
    assert_eq!(daemon.status_json()["state"], "healthy");
    env.hyp(["daemon", "status"]).assert_success();
}

#[test]
fn a_second_sigterm_during_shutdown_exits_at_once() {
    let mut env = daemon_env();
    // Hold the drain far past the test's patience (and past the 14 s budget,
    // whose expiry would exit 1, not 143).
    env.set_var("HYP_DEBUG_DRAIN_DELAY_MS", "600000");
    let mut daemon = RunningDaemon::start(&env);
    daemon.signal(libc::SIGTERM);
    wait_until(BOOT, "status.json to say stopping", || {
        daemon.status_json()["state"] == "stopping"
    });
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit();
    assert_eq!(
        status.code(),
        Some(143),
        "{}",
        daemon.explain("forced exit code")
    );
    let status_json = daemon.status_json();
    assert_eq!(status_json["state"], "stopped");
    assert!(
        status_json["warnings"]
            .to_string()
            .contains("second SIGTERM"),
        "{}",
        daemon.explain("forced-exit warning")
    );
    assert!(!env.state_root().join("run/hypaware.pid").exists());
}

/// Regression: a SIGTERM in the window between `execve` and the new image's
/// handlers used to take the default action and kill the daemon.
#[test]
fn a_sigterm_during_the_exec_of_a_staged_restart_waits_for_the_new_image() {
    let mut env = daemon_env();
    env.set_var("HYP_DEBUG_EXEC_DELAY_MS", "500");
    let mut daemon = RunningDaemon::start(&env);
    daemon.signal(libc::SIGUSR1);
    wait_until(Duration::from_secs(20), "the exec to start", || {
        daemon
            .log_events()
            .iter()
            .any(|event| event == "daemon.exec")
    });
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", daemon.explain("exit code"));
    let starts = daemon
        .log_events()
        .iter()
        .filter(|event| *event == "daemon.starting")
        .count();
    assert_eq!(starts, 2, "the new image booted, then stopped in order");
    assert_eq!(daemon.status_json()["state"], "stopped");
}

#[test]
fn shutdown_is_bounded_by_the_scaled_budget() {
    let mut env = daemon_env();
    env.set_var("HYP_DEBUG_DRAIN_DELAY_MS", "600000");
    env.set_var("HYP_TIME_SCALE", "100");
    let mut daemon = RunningDaemon::start(&env);
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit();
    assert_eq!(
        status.code(),
        Some(1),
        "{}",
        daemon.explain("overran exit code")
    );
    let status_json = daemon.status_json();
    assert_eq!(status_json["state"], "stopped");
    assert!(status_json["warnings"].to_string().contains("overran"));
    assert!(
        daemon
            .log_events()
            .iter()
            .any(|event| event == "daemon.shutdown_overran")
    );
}

#[test]
fn daemon_status_exits_3_when_not_running_and_0_with_json_when_running() {
    let env = daemon_env();
    env.hyp(["daemon", "status"])
        .assert_exit(3)
        .assert_stdout_contains("daemon: not running");
    let json = env
        .hyp(["daemon", "status", "--json"])
        .assert_exit(3)
        .stdout_json();
    assert_eq!(json["running"], false);
    assert_eq!(json["pid"], Value::Null);

    let daemon = RunningDaemon::start(&env);
    env.hyp(["daemon", "status"])
        .assert_success()
        .assert_stdout_contains(&format!("daemon: running (pid={})", daemon.pid()));
    let json = env
        .hyp(["daemon", "status", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(json["running"], true);
    assert_eq!(json["pid"], daemon.pid());
    assert_eq!(json["state"], "healthy");
    assert_eq!(json["status"]["run_id"], daemon.pid_json()["run_id"]);
    assert_eq!(json["pid_file"]["state"], "ok");
}

#[test]
fn a_malformed_pid_file_is_explained_not_fatal() {
    let env = daemon_env();
    env.write(env.state_root().join("run/hypaware.pid"), "{not json");
    env.hyp(["daemon", "status"])
        .assert_exit(3)
        .assert_stdout_contains("daemon: not running")
        .assert_stderr_contains("pid file is malformed");
    let json = env
        .hyp(["daemon", "status", "--json"])
        .assert_exit(3)
        .stdout_json();
    assert_eq!(json["pid_file"]["state"], "malformed");
    env.hyp(["daemon", "stop"])
        .assert_success()
        .assert_stderr_contains("daemon: not running");
    // The daemon replaces it.
    let daemon = RunningDaemon::start(&env);
    assert_eq!(daemon.pid_json()["pid"], daemon.pid());
}

#[test]
fn daemon_stop_stops_a_running_daemon() {
    let env = daemon_env();
    env.hyp(["daemon", "stop"])
        .assert_success()
        .assert_stderr_contains("daemon: not running");
    let mut daemon = RunningDaemon::start(&env);
    env.hyp(["daemon", "stop"])
        .assert_success()
        .assert_stderr_contains("daemon: stopped");
    assert_eq!(daemon.wait_exit().code(), Some(0));
    assert_eq!(daemon.status_json()["state"], "stopped");
}

#[test]
fn restart_without_a_service_restarts_in_place_or_refuses_before_stopping() {
    let env = daemon_env();
    let mut daemon = RunningDaemon::start(&env);
    let first_run = daemon.pid_json()["run_id"].clone();
    env.hyp(["daemon", "restart"])
        .assert_success()
        .assert_stderr_contains("daemon: restarted");
    assert_ne!(daemon.pid_json()["run_id"], first_run, "a new run");
    assert_eq!(daemon.pid_json()["pid"], daemon.pid(), "the same process");
    env.hyp(["daemon", "status"]).assert_success();
    env.hyp(["daemon", "stop"]).assert_success();
    assert_eq!(daemon.wait_exit().code(), Some(0));
    // Nothing runs and nothing can start it: refused, nothing changed.
    env.hyp(["daemon", "restart"])
        .assert_exit(1)
        .assert_stderr_contains("hyp daemon run");
    env.hyp(["daemon", "status"]).assert_exit(3);
    let json = env.hyp(["daemon", "status", "--json"]).stdout_json();
    assert_eq!(json["state"], "not_running");
    let status = env.hyp(["status", "--json"]).assert_success().stdout_json();
    assert_eq!(status["daemon"]["state"], "not_running");
}

#[test]
fn a_staged_restart_execs_in_place_with_the_same_pid() {
    let env = daemon_env();
    let mut daemon = RunningDaemon::start(&env);
    let first_run = daemon.pid_json()["run_id"].clone();
    daemon.signal(libc::SIGUSR1);
    wait_until(BOOT, "a new run id in the pid file", || {
        let pid_file = daemon.pid_json();
        pid_file["run_id"].is_string() && pid_file["run_id"] != first_run
    });
    assert_eq!(daemon.pid_json()["pid"], daemon.pid(), "exec keeps the pid");
    daemon.wait_healthy();
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    let events = daemon.log_events();
    assert!(
        events.iter().any(|event| event == "daemon.exec"),
        "{}",
        daemon.explain("exec")
    );
    assert_eq!(
        events
            .iter()
            .filter(|event| *event == "daemon.starting")
            .count(),
        2,
        "{}",
        daemon.explain("two boots")
    );
    // The new image holds the lock again: a second daemon is still refused.
    env.hyp(["daemon", "run"]).assert_exit(1);
    daemon.signal(libc::SIGTERM);
    assert_eq!(
        daemon.wait_exit().code(),
        Some(0),
        "{}",
        daemon.explain("exit")
    );
    assert!(daemon.stderr().contains("daemon: restarting"));
}

#[test]
fn running_pid_and_reach_running_daemon_find_the_lock_holder() {
    let env = daemon_env();
    let paths = hyp::paths::Paths::with_home(env.hyp_home());
    assert_eq!(hyp::daemon::running_pid(&paths), None);
    assert_eq!(
        hyp::daemon::reach_running_daemon(&paths),
        hyp::daemon::Reached::NotRunning
    );
    let daemon = RunningDaemon::start(&env);
    assert_eq!(hyp::daemon::running_pid(&paths), Some(daemon.pid()));
    assert_eq!(
        hyp::daemon::reach_running_daemon(&paths),
        hyp::daemon::Reached::Signalled { pid: daemon.pid() }
    );
    wait_until(BOOT, "the reload the SIGHUP asked for", || {
        daemon
            .log_events()
            .iter()
            .any(|event| event == "daemon.reloaded")
    });
}

#[test]
fn a_bad_time_scale_exits_2_before_anything() {
    let mut env = daemon_env();
    env.set_var("HYP_TIME_SCALE", "fast");
    let run = env
        .hyp(["daemon", "run"])
        .assert_exit(2)
        .assert_stderr_contains("HYP_TIME_SCALE");
    assert!(
        !env.state_root().join("run").exists(),
        "{}",
        run.stderr() + &list_tree(&env.hyp_home())
    );
}

#[test]
fn an_idle_daemon_uses_no_cpu() {
    let env = daemon_env();
    let daemon = RunningDaemon::start(&env);
    let before = cpu_ticks(daemon.pid());
    observe_for(Duration::from_millis(1500));
    let after = cpu_ticks(daemon.pid());
    // A busy loop burns ~150 ticks in this window (100 Hz); idle burns ~0.
    assert!(
        after - before <= 10,
        "idle daemon used {} clock ticks",
        after - before
    );
}

/// A measurement window (not synchronisation): the daemon is left alone
/// while its CPU time is observed.
fn observe_for(window: Duration) {
    std::thread::sleep(window);
}

/// utime + stime of `pid` in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, so the 12th and 13th after it.
    let after_name = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn install_dry_run_prints_a_unit_that_honours_hyp_home() {
    let env = daemon_env();
    let run = env
        .hyp(["daemon", "install", "--dry-run"])
        .assert_success()
        .assert_stdout_contains("daemon run --foreground")
        .assert_stdout_contains(&format!(
            "Environment=\"HYP_HOME={}\"",
            env.hyp_home().display()
        ))
        .assert_stdout_contains("hypaware.service");
    let unit = env.home().join(".config/systemd/user/hypaware.service");
    assert!(run.stdout().contains(&unit.display().to_string()));
    assert!(!unit.exists(), "a dry run writes nothing");
}

#[test]
fn install_pins_the_history_roots_and_ca_trust_of_the_installing_shell() {
    let mut env = daemon_env();
    env.set_var("CODEX_HOME", "/srv/codex");
    env.set_var("SSL_CERT_FILE", "/etc/fleet/ca.pem");
    env.set_var("SSL_CERT_DIR", "");
    let run = env
        .hyp(["daemon", "install", "--dry-run"])
        .assert_success()
        .assert_stdout_contains("Environment=\"CODEX_HOME=/srv/codex\"")
        .assert_stdout_contains("Environment=\"SSL_CERT_FILE=/etc/fleet/ca.pem\"");
    assert!(
        !run.stdout().contains("SSL_CERT_DIR"),
        "empty counts as unset"
    );
    assert!(
        !run.stdout().contains("CLAUDE_CONFIG_DIR"),
        "unset stays unset"
    );
}

#[test]
fn install_honours_xdg_config_home() {
    let mut env = daemon_env();
    let xdg = env.root().join("xdg");
    env.set_var("XDG_CONFIG_HOME", xdg.display().to_string());
    env.hyp(["daemon", "install"]).assert_success();
    assert!(xdg.join("systemd/user/hypaware.service").is_file());
}

#[test]
fn install_without_a_service_manager_writes_the_unit_and_says_how_to_start() {
    let env = daemon_env();
    let unit = env.home().join(".config/systemd/user/hypaware.service");
    env.hyp(["daemon", "install"])
        .assert_success()
        .assert_stderr_contains("no systemd user manager is available")
        .assert_stderr_contains("hyp daemon run");
    let content = std::fs::read_to_string(&unit).expect("unit written");
    assert!(content.contains(&format!("HYP_HOME={}", env.hyp_home().display())));
    env.hyp(["daemon", "start"])
        .assert_exit(1)
        .assert_stderr_contains("hyp daemon start: cannot start hypaware.service");
    env.hyp(["daemon", "uninstall", "--dry-run"])
        .assert_success();
    assert!(unit.exists());
    env.hyp(["daemon", "uninstall"])
        .assert_success()
        .assert_stderr_contains("Daemon removed");
    assert!(!unit.exists());
    env.hyp(["daemon", "uninstall"])
        .assert_success()
        .assert_stderr_contains("daemon: no service installed");
    env.hyp(["daemon", "start"])
        .assert_exit(1)
        .assert_stderr_contains("service not installed");
}

#[test]
fn install_and_uninstall_drive_systemctl_user() {
    let mut env = daemon_env();
    let calls = env.root().join("systemctl.calls");
    let fake = env.write(
        "bin/fake-systemctl",
        &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", calls.display()),
    );
    make_executable(&fake);
    env.set_var("HYP_SERVICE_MANAGER", fake.display().to_string());
    env.hyp(["daemon", "install"])
        .assert_success()
        .assert_stderr_contains("Daemon installed (systemd unit: hypaware.service)");
    env.hyp(["daemon", "restart"])
        .assert_success()
        .assert_stderr_contains("daemon: restarted");
    env.hyp(["daemon", "uninstall"]).assert_success();
    let recorded = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        recorded.lines().collect::<Vec<_>>(),
        [
            "--user daemon-reload",
            "--user enable hypaware.service",
            "--user restart hypaware.service",
            "--user restart hypaware.service",
            "--user stop hypaware.service",
            "--user disable hypaware.service",
            "--user daemon-reload",
        ]
    );
}

#[test]
fn a_failing_service_manager_is_an_error_and_the_unit_stays() {
    let mut env = daemon_env();
    let fake = env.write(
        "bin/fake-systemctl",
        "#!/bin/sh\necho 'Unit file is masked.' >&2\nexit 1\n",
    );
    make_executable(&fake);
    env.set_var("HYP_SERVICE_MANAGER", fake.display().to_string());
    env.hyp(["daemon", "install"])
        .assert_exit(1)
        .assert_stderr_contains(
            "hyp daemon install: failed to systemctl --user daemon-reload: Unit file is masked.",
        );
    assert!(
        env.home()
            .join(".config/systemd/user/hypaware.service")
            .is_file()
    );
}

fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn logs_prints_the_last_lines() {
    let env = daemon_env();
    env.hyp(["daemon", "logs"])
        .assert_success()
        .assert_stderr_contains("no daemon log yet");
    let lines: String = (1..=80).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    env.write(env.state_root().join("logs/daemon.log"), &lines);
    let run = env.hyp(["daemon", "logs"]).assert_success();
    let stdout = run.stdout();
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed.len(), 50);
    assert_eq!(printed[0], "{\"n\":31}");
    let run = env.hyp(["daemon", "logs", "-n", "2"]).assert_success();
    assert_eq!(run.stdout(), "{\"n\":79}\n{\"n\":80}\n");
}

#[test]
fn logs_are_readable_by_default_and_raw_with_json() {
    let env = daemon_env();
    let lines = concat!(
        r#"{"ts":"2026-12-04T10:02:03.456Z","level":"warn","event":"config.rollback","pid":9,"run_id":"r","config_etag":"rev-2","hyp_reason":"probation expired"}"#,
        "\n",
        r#"{"ts":"2026-12-04T10:02:04.000Z","level":"info","event":"daemon.stopped","pid":9,"run_id":"r"}"#,
        "\n",
    );
    env.write(env.state_root().join("logs/daemon.log"), lines);
    let run = env.hyp(["daemon", "logs"]).assert_success();
    assert_eq!(
        run.stdout(),
        "2026-12-04T10:02:03Z warn  config.rollback  config_etag=rev-2 hyp_reason=\"probation expired\"\n\
         2026-12-04T10:02:04Z info  daemon.stopped\n"
    );
    let run = env.hyp(["daemon", "logs", "--json"]).assert_success();
    assert_eq!(run.stdout(), lines);
}

#[test]
fn bare_daemon_prints_its_help() {
    let env = daemon_env();
    env.hyp(["daemon"])
        .assert_success()
        .assert_stdout_contains("Usage: hyp daemon");
    env.hyp(["daemon", "run", "--bogus"])
        .assert_exit(2)
        .assert_stderr_contains("hyp daemon run: unknown flag --bogus");
}

#[test]
fn logs_follow_prints_appended_lines_across_rotation() {
    let env = daemon_env();
    let log = env.state_root().join("logs/daemon.log");
    env.write(&log, "{\"n\":1}\n{\"n\":2}\n");
    let mut follower = RunningDaemon::spawn(&env, &["daemon", "logs", "-f", "-n", "1"]);
    wait_until(BOOT, "the last existing line", || {
        follower.stdout() == "{\"n\":2}\n"
    });
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, b"{\"n\":3}\n").unwrap();
    wait_until(BOOT, "the appended line", || {
        follower.stdout().ends_with("{\"n\":3}\n")
    });
    std::fs::rename(&log, log.with_extension("log.1")).unwrap();
    env.write(&log, "{\"n\":4}\n");
    wait_until(BOOT, "the first line of the rotated log", || {
        follower.stdout().ends_with("{\"n\":4}\n")
    });
    assert_eq!(follower.stdout(), "{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n");
    follower.signal(libc::SIGTERM);
    follower.wait_exit();
}

#[test]
fn start_with_a_daemon_already_running_says_so() {
    let env = daemon_env();
    let daemon = RunningDaemon::start(&env);
    env.hyp(["daemon", "start"])
        .assert_success()
        .assert_stderr_contains(&format!("daemon: already running (pid={})", daemon.pid()));
}

#[test]
fn sigterm_during_a_restart_drain_stops_instead_of_exec() {
    let mut env = daemon_env();
    // A drain long enough to signal into, well inside the 14 s budget.
    env.set_var("HYP_DEBUG_DRAIN_DELAY_MS", "5000");
    let mut daemon = RunningDaemon::start(&env);
    daemon.signal(libc::SIGUSR1);
    wait_until(BOOT, "status.json to say restarting", || {
        daemon.status_json()["state"] == "restarting"
    });
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", daemon.explain("exit code"));
    let events = daemon.log_events();
    assert!(
        events
            .iter()
            .any(|event| event == "daemon.restart_cancelled"),
        "{}",
        daemon.explain("restart cancelled")
    );
    assert!(!events.iter().any(|event| event == "daemon.exec"));
    assert_eq!(daemon.status_json()["state"], "stopped");
    assert!(!env.state_root().join("run/hypaware.pid").exists());
}

#[test]
fn a_staged_restart_whose_exec_fails_exits_75() {
    let env = daemon_env();
    // A copy of the binary that is deleted while it runs, as an upgrade
    // might: exec of the vanished path fails.
    let copy = env.root().join("bin/hyp-copy");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_hyp"), &copy).unwrap();
    let template = env.command(["daemon", "run"]);
    let out = env.root().join("copy.out");
    let mut command = std::process::Command::new(&copy);
    command
        .args(["daemon", "run"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::null());
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    let child = spawn_retrying_busy_text(&mut command);
    let mut daemon = RunningDaemon {
        child,
        out,
        err: env.root().join("copy.err"),
        state_root: env.state_root(),
        status: None,
    };
    daemon.wait_healthy();
    std::fs::remove_file(&copy).unwrap();
    daemon.signal(libc::SIGUSR1);
    let status = daemon.wait_exit();
    assert_eq!(
        status.code(),
        Some(75),
        "{}",
        daemon.explain("exec failure exit")
    );
    let status_json = daemon.status_json();
    assert_eq!(status_json["state"], "stopped");
    assert!(status_json["warnings"].to_string().contains("cannot exec"));
    assert!(
        daemon
            .log_events()
            .iter()
            .any(|event| event == "daemon.exec_failed")
    );
    assert!(!env.state_root().join("run/hypaware.pid").exists());
}

/// A freshly copied binary can be briefly "text file busy" while another
/// test thread forks with its write descriptor open; try again then.
fn spawn_retrying_busy_text(command: &mut std::process::Command) -> Child {
    let mut spawned = None;
    wait_until(BOOT, "the copied binary to spawn", || {
        match command.spawn() {
            Ok(child) => {
                spawned = Some(child);
                true
            }
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) => false,
            Err(err) => panic!("spawn the copied binary: {err}"),
        }
    });
    spawned.expect("spawned")
}
