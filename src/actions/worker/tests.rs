//! The worker thread end to end with fake `hyp` programs: a boot pass runs
//! the child, requests coalesce, failures do not wedge it, the retry timer
//! fires, shutdown interrupts a child and leaves nothing behind, and boot
//! recovery turns `running` markers into `failed`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crossbeam_channel::unbounded;
use serde_json::{Value, json};

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    paths: Paths,
}

impl Fixture {
    /// A home whose local config enables `@hypaware/claude`.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path().join("hyp-home"));
        std::fs::create_dir_all(paths.home()).unwrap();
        std::fs::create_dir_all(dir.path().join("calls")).unwrap();
        std::fs::write(
            &paths.local_config().path,
            r#"{"version": 2, "plugins": [{"name": "@hypaware/claude"}]}"#,
        )
        .unwrap();
        Fixture { dir, paths }
    }

    /// A fake `hyp` that records each call as `calls/<n>.args` (with `$n`
    /// set for `body`) and writes its pid to `calls/<n>.pid`.
    fn fake_hyp(&self, body: &str) -> PathBuf {
        let calls = self.dir.path().join("calls");
        let path = self.dir.path().join("fake-hyp");
        let script = format!(
            "#!/bin/sh\ncalls='{}'\nn=$(ls \"$calls\" | grep -c args)\nn=$((n+1))\n\
             echo $$ > \"$calls/$n.pid\"\nprintf '%s\\n' \"$@\" > \"$calls/$n.args\"\n{body}\n",
            calls.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn release_file(&self) -> PathBuf {
        self.dir.path().join("release")
    }

    fn calls(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("calls"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".args"))
            .count()
    }

    fn child_pid(&self, call: usize) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join(format!("calls/{call}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn spawn(&self, exe: PathBuf, time_scale: TimeScale) -> (Sender<PassRequest>, WorkerHandle) {
        let (sender, inbox) = unbounded();
        let setup = WorkerSetup {
            paths: self.paths.clone(),
            time_scale,
            exe,
            env: vec![("PATH".into(), std::env::var_os("PATH").unwrap_or_default())],
            clock: system_clock(),
            extra_handlers: Vec::new(),
            exports: None,
        };
        (sender, WorkerHandle::spawn_with(setup, inbox).unwrap())
    }

    fn marker(&self) -> Value {
        MarkerStore::new(&self.paths).read_lenient().as_value()["backfill"]["@hypaware/claude"]
            .clone()
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn request(sender: &Sender<PassRequest>, reason: PassReason) {
    sender.send(PassRequest { reason }).unwrap();
}

fn confirmed() -> PassReason {
    PassReason::Confirmed { etag: "e1".into() }
}

/// Whether any non-zombie process is in process group `pgid`.
fn group_has_live_members(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        let Some(close) = stat.rfind(')') else {
            return false;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X")
    })
}

#[test]
fn a_boot_pass_runs_the_child_and_records_done() {
    let fixture = Fixture::new();
    let exe = fixture.fake_hyp(r#"echo '{"providers":[{"rows_written":3}]}'"#);
    let (sender, worker) = fixture.spawn(exe, TimeScale::REAL);
    request(&sender, PassReason::Boot);
    wait_until("the done marker", || fixture.marker()["status"] == "done");
    assert_eq!(fixture.marker()["rows"], 3);
    drop(sender);
    worker.shutdown(Instant::now() + Duration::from_secs(5));
}

#[test]
fn requests_during_a_pass_coalesce_into_one_rerun() {
    let fixture = Fixture::new();
    let release = fixture.release_file();
    // Always fails, so every pass that retries failed units spawns again;
    // the first call blocks until released.
    let exe = fixture.fake_hyp(&format!(
        "if [ \"$n\" = 1 ]; then while [ ! -f '{}' ]; do sleep 0.02; done; fi\nexit 1",
        release.display()
    ));
    let (sender, worker) = fixture.spawn(exe, TimeScale::REAL);
    let stats = worker.stats();
    request(&sender, confirmed());
    wait_until("the first child", || fixture.calls() == 1);
    for _ in 0..3 {
        request(&sender, confirmed());
    }
    request(&sender, PassReason::Reload);
    std::fs::write(&release, "").unwrap();
    wait_until("the worker to settle", || {
        stats.is_idle() && stats.passes() >= 2
    });
    assert_eq!(stats.passes(), 2, "exactly one rerun");
    assert_eq!(fixture.calls(), 2);
    assert_eq!(fixture.marker()["attempts"], 2);
    drop(sender);
    worker.shutdown(Instant::now() + Duration::from_secs(5));
}

#[test]
fn a_failing_pass_does_not_wedge_the_worker() {
    let fixture = Fixture::new();
    let exe = fixture.fake_hyp("exit 0");
    let store_path = fixture.paths.client_actions();
    std::fs::create_dir_all(&store_path).unwrap();
    let (sender, worker) = fixture.spawn(exe, TimeScale::REAL);
    let stats = worker.stats();
    request(&sender, PassReason::Boot);
    wait_until("the failed pass", || stats.passes() == 1);
    assert_eq!(fixture.calls(), 0);
    std::fs::remove_dir(&store_path).unwrap();
    request(&sender, PassReason::Boot);
    wait_until("the done marker", || fixture.marker()["status"] == "done");
    drop(sender);
    worker.shutdown(Instant::now() + Duration::from_secs(5));
}

#[test]
fn the_retry_timer_runs_a_pass_when_a_failed_unit_comes_due() {
    let fixture = Fixture::new();
    let exe =
        fixture.fake_hyp("if [ \"$n\" -ge 3 ]; then echo '{\"providers\":[]}'; exit 0; fi\nexit 4");
    // 60 s x 2^(n-1) x jitter / 600 = 0.1 s, 0.2 s, ...
    let (sender, worker) = fixture.spawn(exe, TimeScale::parse(Some("600")).unwrap());
    request(&sender, PassReason::Reload);
    wait_until("two retries and success", || {
        fixture.marker()["status"] == "done"
    });
    assert_eq!(fixture.calls(), 3);
    assert_eq!(fixture.marker()["rows"], 0);
    drop(sender);
    worker.shutdown(Instant::now() + Duration::from_secs(5));
}

#[test]
fn a_reload_pass_respects_next_attempt() {
    let fixture = Fixture::new();
    let exe = fixture.fake_hyp("exit 1");
    let (sender, worker) = fixture.spawn(exe, TimeScale::REAL);
    let stats = worker.stats();
    request(&sender, PassReason::Boot);
    wait_until("the first pass", || stats.passes() == 1 && stats.is_idle());
    request(&sender, PassReason::Reload);
    wait_until("the reload pass", || stats.passes() == 2 && stats.is_idle());
    assert_eq!(fixture.calls(), 1, "backoff holds on reload");
    request(&sender, confirmed());
    wait_until("the confirm pass", || {
        stats.passes() == 3 && stats.is_idle()
    });
    assert_eq!(fixture.calls(), 2, "a confirm edge retries at once");
    drop(sender);
    worker.shutdown(Instant::now() + Duration::from_secs(5));
}

#[test]
fn shutdown_interrupts_a_child_that_ignores_sigterm_and_leaves_nothing_behind() {
    let fixture = Fixture::new();
    let exe = fixture.fake_hyp("trap '' TERM\nsleep 600 &\nwait");
    // Grace 10 s / 20 = 0.5 s.
    let (sender, worker) = fixture.spawn(exe, TimeScale::parse(Some("20")).unwrap());
    request(&sender, PassReason::Boot);
    wait_until("the running marker with its pid", || {
        fixture.marker()["pid"].as_u64().is_some() && fixture.child_pid(1).is_some()
    });
    let pid = fixture.marker()["pid"].as_u64().unwrap() as u32;
    assert_eq!(fixture.child_pid(1), Some(pid));
    assert_eq!(fixture.marker()["status"], "running");
    drop(sender);
    let deadline = Instant::now() + Duration::from_secs(10);
    worker.shutdown(deadline);
    assert!(Instant::now() <= deadline + Duration::from_millis(100));
    let marker = fixture.marker();
    assert_eq!(marker["status"], "failed");
    assert_eq!(marker["reason"], "interrupted by daemon shutdown");
    assert_eq!(marker["attempts"], 1);
    wait_until("the child group to vanish", || !group_has_live_members(pid));
}

#[test]
fn shutdown_lets_a_child_stop_cleanly_on_sigterm() {
    let fixture = Fixture::new();
    let exe = fixture.fake_hyp("trap 'exit 143' TERM\nwhile :; do sleep 0.05; done");
    let (sender, worker) = fixture.spawn(exe, TimeScale::REAL);
    request(&sender, PassReason::Boot);
    wait_until("the child pid", || {
        fixture.marker()["pid"].as_u64().is_some()
    });
    let pid = fixture.marker()["pid"].as_u64().unwrap() as u32;
    drop(sender);
    worker.shutdown(Instant::now() + Duration::from_secs(15));
    assert_eq!(fixture.marker()["reason"], "interrupted by daemon shutdown");
    wait_until("the child group to vanish", || !group_has_live_members(pid));
}

#[test]
fn an_idle_worker_stops_at_once() {
    let fixture = Fixture::new();
    let (sender, worker) = fixture.spawn(fixture.fake_hyp("exit 0"), TimeScale::REAL);
    drop(sender);
    worker.shutdown(Instant::now() + Duration::from_secs(5));
    assert_eq!(fixture.calls(), 0);
}

fn spawn_group_leader(program: &Path, args: &[&str]) -> std::process::Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn recovery_kills_a_surviving_child_and_marks_it_interrupted() {
    let fixture = Fixture::new();
    let exe = fixture.fake_hyp("sleep 600");
    let mut survivor = spawn_group_leader(&exe, &["backfill", "claude", "--json"]);
    wait_until("the survivor to start", || fixture.calls() == 1);
    let store = MarkerStore::new(&fixture.paths);
    let started = json!({"backfill": {
        "@hypaware/claude": {"status": "running", "request_key": "@hypaware/claude",
                             "pid": survivor.id(), "started_at": "2026-06-25T00:00:00.000Z",
                             "attempts": 2},
        "@hypaware/codex": {"status": "done", "request_key": "@hypaware/codex", "future": 1}
    }});
    crate::statefile::write(store.path(), &started).unwrap();
    recover_at_boot(&fixture.paths);
    let status = survivor.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let doc = store.read().unwrap().as_value();
    let marker = &doc["backfill"]["@hypaware/claude"];
    assert_eq!(marker["status"], "failed");
    assert_eq!(marker["reason"], "interrupted");
    assert_eq!(marker["attempts"], 3);
    assert!(marker.get("next_attempt").is_none());
    assert_eq!(
        doc["backfill"]["@hypaware/codex"],
        json!({"status": "done", "request_key": "@hypaware/codex", "future": 1})
    );
}

#[test]
fn recovery_never_kills_an_unrelated_process_with_a_recycled_pid() {
    let fixture = Fixture::new();
    let mut unrelated = spawn_group_leader(Path::new("/bin/sh"), &["-c", "sleep 600; exit 0"]);
    let store = MarkerStore::new(&fixture.paths);
    crate::statefile::write(
        store.path(),
        &json!({"backfill": {"k": {"status": "running", "request_key": "k", "pid": unrelated.id(), "attempts": 0}}}),
    )
    .unwrap();
    recover_at_boot(&fixture.paths);
    assert!(unrelated.try_wait().unwrap().is_none(), "still running");
    assert_eq!(
        store.read().unwrap().as_value()["backfill"]["k"]["reason"],
        "interrupted"
    );
    assert_eq!(
        store.read().unwrap().as_value()["backfill"]["k"]["attempts"],
        1
    );
    crate::actions::child::signal_group(unrelated.id(), libc::SIGKILL);
    unrelated.wait().unwrap();
}

#[test]
fn recovery_without_running_markers_writes_nothing() {
    let fixture = Fixture::new();
    recover_at_boot(&fixture.paths);
    assert!(!fixture.paths.client_actions().exists());
    assert!(!fixture.paths.client_actions_lock().exists());
}
