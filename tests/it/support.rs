//! The harness: a temporary home, a scrubbed environment, the real binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The development fake central, `examples/hyp-fake-central`.
pub fn fake_central_bin() -> PathBuf {
    example_bin("hyp-fake-central")
}

/// A cargo example's binary, `target/<profile>/examples/<name>` beside this
/// test executable (`target/<profile>/deps/it-<hash>`), built once per test
/// run. Integration tests get no `CARGO_BIN_EXE_` for an example, and
/// `cargo test --all-targets` compiles examples as test harnesses under
/// hashed names, so the binary may be missing or stale: `cargo build
/// --example` makes it for the same profile and target directory (a no-op
/// when it is fresh; cargo does not hold the build lock while tests run).
pub fn example_bin(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(bin) = built.get(name) {
        return bin.clone();
    }
    let bin = build_example(name);
    built.insert(name.to_string(), bin.clone());
    bin
}

fn build_example(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(profile) => profile,
        None => panic!("no profile name in {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "--example", name, "--profile", profile])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("run cargo build --example {name}: {err}"));
    assert!(
        output.status.success(),
        "cargo build --example {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// A private `HOME` (with `HYP_HOME` = `$HOME/.hyp`) for one test.
pub struct TestEnv {
    dir: tempfile::TempDir,
    vars: BTreeMap<String, String>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().expect("create a temporary home");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("create HOME");
        let mut vars = BTreeMap::new();
        vars.insert("HOME".to_string(), home.display().to_string());
        vars.insert(
            "HYP_HOME".to_string(),
            home.join(".hyp").display().to_string(),
        );
        vars.insert(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        );
        vars.insert("HYP_NO_GIT".to_string(), "1".to_string());
        vars.insert("NO_COLOR".to_string(), "1".to_string());
        TestEnv { dir, vars }
    }

    /// The temporary directory that holds `home/` and anything else a test makes.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `$HOME` as first set up (a test may later unset the variable).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `$HYP_HOME` as first set up.
    pub fn hyp_home(&self) -> PathBuf {
        self.home().join(".hyp")
    }

    /// `$HYP_HOME/hypaware`.
    pub fn state_root(&self) -> PathBuf {
        self.hyp_home().join("hypaware")
    }

    pub fn set_var(&mut self, key: &str, value: impl Into<String>) {
        self.vars.insert(key.to_string(), value.into());
    }

    pub fn remove_var(&mut self, key: &str) {
        self.vars.remove(key);
    }

    /// A `Command` for the real binary with exactly this environment.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command_of(Path::new(env!("CARGO_BIN_EXE_hyp")), args)
    }

    /// A `Command` for another build of hyp (an older one, to compare
    /// against) with exactly this environment.
    pub fn command_of<I, S>(&self, binary: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .envs(&self.vars)
            .stdin(Stdio::null());
        command
    }

    /// Run `hyp <args>` to completion.
    pub fn hyp<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<String> = args
            .into_iter()
            .map(|arg| arg.as_ref().to_string_lossy().into_owned())
            .collect();
        let output = self.command(&args).output().expect("run the hyp binary");
        Run {
            args,
            output,
            home: self.hyp_home(),
        }
    }

    /// Write `text` to `path` (relative paths are under the temp root).
    pub fn write(&self, path: impl AsRef<Path>, text: &str) -> PathBuf {
        let path = self.root().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&path, text).expect("write a fixture");
        path
    }
}

/// A finished run of the binary, with assertions that explain themselves.
pub struct Run {
    pub args: Vec<String>,
    pub output: Output,
    home: PathBuf,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Fail with the whole story (command, exit, stdout, stderr, files).
    pub fn explain(&self, what: &str) -> ! {
        panic!(
            "{what}\ncommand: hyp {}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- files under HYP_HOME\n{}",
            self.args.join(" "),
            self.output.status,
            self.stdout(),
            self.stderr(),
            list_tree(&self.home)
        )
    }

    pub fn assert_exit(self, expected: i32) -> Run {
        if self.code() != expected {
            self.explain(&format!("expected exit {expected}, got {}", self.code()));
        }
        self
    }

    pub fn assert_success(self) -> Run {
        self.assert_exit(0)
    }

    pub fn assert_stderr_contains(self, needle: &str) -> Run {
        if !self.stderr().contains(needle) {
            self.explain(&format!("stderr does not contain {needle:?}"));
        }
        self
    }

    pub fn assert_stdout_contains(self, needle: &str) -> Run {
        if !self.stdout().contains(needle) {
            self.explain(&format!("stdout does not contain {needle:?}"));
        }
        self
    }

    /// stdout parsed as exactly one JSON document.
    pub fn stdout_json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.output.stdout) {
            Ok(value) => value,
            Err(err) => self.explain(&format!("stdout is not one JSON document: {err}")),
        }
    }
}

/// Every path under `root`, one per line, for failure reports.
pub fn list_tree(root: &Path) -> String {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|entry| entry.path());
        for entry in entries {
            let path = entry.path();
            out.push(path.display().to_string());
            if path.is_dir() && !path.is_symlink() {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.join("\n")
}

/// Poll `condition` until it holds or `timeout` passes; the only way tests wait.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    while !condition() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A `hyp daemon run` of a test, started with the env's variables and
/// waited for (it holds its lock); killed on drop unless stopped.
pub struct TestDaemon(std::process::Child);

impl TestDaemon {
    pub fn start(env: &TestEnv, timeout: Duration) -> TestDaemon {
        let child = env
            .command(["daemon", "run"])
            .spawn()
            .expect("spawn the daemon");
        wait_until(timeout, "the daemon to hold its lock", || {
            env.hyp(["daemon", "status"]).code() == 0
        });
        TestDaemon(child)
    }

    /// Hold the daemon still (SIGSTOP, waited for until the kernel says it
    /// is stopped) while a test looks at what it would otherwise repair at
    /// once; [`TestDaemon::resume`] lets it go on.
    pub fn pause(&self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGSTOP) };
        let stat = format!("/proc/{}/stat", self.0.id());
        wait_until(Duration::from_secs(10), "the daemon to stop", || {
            std::fs::read_to_string(&stat).is_ok_and(|text| {
                text.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('T'))
            })
        });
    }

    pub fn resume(&self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGCONT) };
    }

    /// SIGTERM, and an orderly exit 0.
    pub fn stop(mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let status = self.0.wait().expect("wait for the daemon");
        assert_eq!(status.code(), Some(0), "the daemon exits 0 on SIGTERM");
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copy the tree at `from` into `to` (created), keeping symlinks as links,
/// so one prepared home can seed many tests' homes.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read a directory to copy") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("a file type");
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("read a link");
            std::os::unix::fs::symlink(link, &target).expect("copy a link");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}
