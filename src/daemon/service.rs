//! The systemd unit `hypaware.service`: render it, write or remove it, and
//! drive `systemctl`. A user unit (the default) lives under
//! `$XDG_CONFIG_HOME/systemd/user/` (default `~/.config/...`) and is driven
//! with `systemctl --user`; a system unit (`--system`, for a root-run fleet)
//! lives in `/etc/systemd/system/`, runs as root from boot and is driven
//! with plain `systemctl`.
//!
//! The unit runs `<current_exe> daemon run --foreground` with `HYP_HOME`
//! pinned (and `HYP_CONFIG`, `CLAUDE_CONFIG_DIR`, `CODEX_HOME`,
//! `SSL_CERT_FILE`, `SSL_CERT_DIR` when set at install time), so the service
//! works on the same state, and trusts the same central, as the shell that
//! installed it. `HYP_SERVICE_MANAGER` overrides the manager: `none` means
//! there is none (containers, CI), a path names a `systemctl` stand-in (tests);
//! `HYP_SYSTEM_UNIT_DIR` moves the system unit's directory (tests).
//! A missing manager is reported, never fatal for writing the unit.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::paths::{PathSource, Paths};

pub const UNIT_NAME: &str = "hypaware.service";

/// Where systemd reads system units written by an administrator.
const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// Where logind marks a user whose manager runs without a login session.
const LINGER_DIR: &str = "/var/lib/systemd/linger";

/// Which service manager runs the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitScope {
    /// The installing user's manager (`systemctl --user`): the daemon runs as
    /// that user, from their first login (or boot, when they linger).
    User,
    /// The system manager (`systemctl`): the daemon runs as root from boot,
    /// for a fleet whose hosts run their AI clients as root.
    System,
}

impl UnitScope {
    /// The directory the unit file goes in.
    pub fn unit_dir(self) -> Result<PathBuf, ServiceError> {
        match self {
            UnitScope::User => unit_dir(),
            UnitScope::System => Ok(std::env::var_os("HYP_SYSTEM_UNIT_DIR")
                .filter(|value| !value.is_empty())
                .map_or_else(|| PathBuf::from(SYSTEM_UNIT_DIR), PathBuf::from)),
        }
    }

    /// `systemctl`'s flag for this manager, if any.
    fn manager_flag(self) -> Option<&'static str> {
        match self {
            UnitScope::User => Some("--user"),
            UnitScope::System => None,
        }
    }

    /// How people name the unit: `systemd user unit` or `systemd system unit`.
    pub fn label(self) -> &'static str {
        match self {
            UnitScope::User => "systemd user unit",
            UnitScope::System => "systemd system unit",
        }
    }

    /// The `systemctl` command line people type for this manager.
    pub fn systemctl_command(self) -> &'static str {
        match self {
            UnitScope::User => "systemctl --user",
            UnitScope::System => "systemctl",
        }
    }
}

/// Variables copied from the installing environment into the unit when set.
const PASSED_THROUGH: [&str; 4] = [
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Everything `install` writes, and `--dry-run` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPlan {
    pub scope: UnitScope,
    pub unit_dir: PathBuf,
    pub unit_path: PathBuf,
    pub executable: PathBuf,
    pub hyp_home: PathBuf,
    pub config_path: PathBuf,
    pub daemon_log: PathBuf,
    pub content: String,
}

#[derive(Debug)]
pub enum ServiceError {
    NoHome,
    /// A system unit is written and removed by root only.
    NeedsRoot {
        unit_path: PathBuf,
        action: &'static str,
    },
    CurrentExe(io::Error),
    Write {
        path: PathBuf,
        source: io::Error,
    },
    Remove {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::NoHome => write!(
                f,
                "cannot find the systemd user unit directory: set HOME or XDG_CONFIG_HOME"
            ),
            ServiceError::NeedsRoot { unit_path, action } => write!(
                f,
                "--system {action} {} and needs root: run it with sudo, or without --system for a user unit",
                unit_path.display()
            ),
            ServiceError::CurrentExe(err) => {
                write!(f, "cannot find the path of the running hyp binary: {err}")
            }
            ServiceError::Write { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
            ServiceError::Remove { path, source } => {
                write!(f, "cannot remove {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ServiceError {}

/// `$XDG_CONFIG_HOME/systemd/user` (absolute values only, as the XDG spec
/// says), else `$HOME/.config/systemd/user`.
pub fn unit_dir() -> Result<PathBuf, ServiceError> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let config_home = match non_empty("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => PathBuf::from(non_empty("HOME").ok_or(ServiceError::NoHome)?).join(".config"),
    };
    Ok(config_home.join("systemd").join("user"))
}

/// Whether a unit is installed, the user's or the system's.
pub fn is_installed() -> bool {
    installed_scope().is_some()
}

/// The unit `hyp daemon start`, `stop` and `restart` drive: the user unit
/// when one is installed, else the system unit (a root-run fleet's), whose
/// `Restart=always` would otherwise undo a stop made by signal.
pub fn installed_scope() -> Option<UnitScope> {
    [UnitScope::User, UnitScope::System]
        .into_iter()
        .find(|scope| {
            scope
                .unit_dir()
                .is_ok_and(|dir| dir.join(UNIT_NAME).is_file())
        })
}

/// Whether the installed unit runs the daemon for `paths`' `HYP_HOME` (a
/// unit without a `HYP_HOME` line is taken to serve any).
pub fn serves(paths: &Paths) -> bool {
    let Some(content) = installed_scope()
        .and_then(|scope| scope.unit_dir().ok())
        .and_then(|dir| fs::read_to_string(dir.join(UNIT_NAME)).ok())
    else {
        return false;
    };
    match unit_environment(&content, "HYP_HOME") {
        Some(home) => Path::new(&home) == paths.home(),
        None => true,
    }
}

/// What `install` would write, from the running binary and `paths`. The
/// binary's path is canonical, so the unit names the installed file itself,
/// not a link or a relative path that means something else to systemd.
pub fn plan(paths: &Paths, scope: UnitScope) -> Result<UnitPlan, ServiceError> {
    let executable = std::env::current_exe().map_err(ServiceError::CurrentExe)?;
    let executable = fs::canonicalize(&executable).unwrap_or(executable);
    let unit_dir = scope.unit_dir()?;
    let mut environment = vec![("HYP_HOME".to_string(), paths.home().as_os_str().to_owned())];
    if paths.local_config().source != PathSource::Default {
        environment.push((
            "HYP_CONFIG".to_string(),
            paths.local_config().path.as_os_str().to_owned(),
        ));
    }
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name).filter(|value| !value.is_empty()) {
            environment.push((name.to_string(), value));
        }
    }
    Ok(UnitPlan {
        scope,
        unit_path: unit_dir.join(UNIT_NAME),
        unit_dir,
        content: render_unit(scope, &executable, &environment),
        executable,
        hyp_home: paths.home().to_path_buf(),
        config_path: paths.local_config().path.clone(),
        daemon_log: paths.daemon_log(),
    })
}

/// The unit file's text. `KillMode=mixed` sends SIGTERM to the daemon alone
/// (it stops its own child) and SIGKILL to leftovers only at the end;
/// `TimeoutStopSec` leaves room for the daemon's bounded 15 s shutdown. Exit
/// 75 (a failed staged restart) is relaunched by `Restart=always`. A system
/// unit names `User=root` so systemd sets `HOME` (the history roots default
/// under it), waits for the network at boot, and is wanted by
/// `multi-user.target`; a user unit by `default.target`.
pub fn render_unit(
    scope: UnitScope,
    executable: &Path,
    environment: &[(String, OsString)],
) -> String {
    let mut text = String::from("[Unit]\nDescription=HypAware host agent (hyp daemon)\n");
    if scope == UnitScope::System {
        text.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    text.push_str("\n[Service]\nType=simple\n");
    if scope == UnitScope::System {
        text.push_str("User=root\n");
    }
    text.push_str(&format!(
        "ExecStart={} daemon run --foreground\n",
        exec_word(&executable.to_string_lossy())
    ));
    for (name, value) in environment {
        text.push_str(&format!(
            "Environment={}\n",
            quoted(&format!("{name}={}", value.to_string_lossy()))
        ));
    }
    text.push_str("Restart=always\nRestartSec=5\nKillMode=mixed\nTimeoutStopSec=20\n\n[Install]\n");
    text.push_str(match scope {
        UnitScope::User => "WantedBy=default.target\n",
        UnitScope::System => "WantedBy=multi-user.target\n",
    });
    text
}

/// One `ExecStart` word: bare when it holds only safe characters, else
/// quoted. `%` (specifiers) and `$` (variable expansion) are escaped by
/// doubling in both cases.
fn exec_word(word: &str) -> String {
    let safe = |ch: char| ch.is_ascii_alphanumeric() || "_-./:=@+".contains(ch);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        quoted(word).replace('$', "$$")
    }
}

/// `"…"` with `\` and `"` escaped and `%` doubled (systemd specifiers).
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

/// The value of `Environment="NAME=value"` in a unit written by [`render_unit`].
pub fn unit_environment(content: &str, name: &str) -> Option<String> {
    content.lines().find_map(|line| {
        let assignment = line.trim().strip_prefix("Environment=")?;
        let inner = assignment.strip_prefix('"')?.strip_suffix('"')?;
        let value = inner.strip_prefix(name)?.strip_prefix('=')?;
        Some(
            value
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
                .replace("%%", "%"),
        )
    })
}

/// Write the unit atomically (temp file, fsync, rename, fsync), mode 0644.
pub fn write_unit(plan: &UnitPlan) -> Result<(), ServiceError> {
    let wrap = |source: io::Error| ServiceError::Write {
        path: plan.unit_path.clone(),
        source,
    };
    fs::create_dir_all(&plan.unit_dir).map_err(wrap)?;
    crate::statefile::write_atomic(&plan.unit_path, plan.content.as_bytes(), 0o644).map_err(wrap)
}

/// Remove the unit file at `path`; `Ok(false)` when there was none.
pub fn remove_unit(path: &Path) -> Result<bool, ServiceError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ServiceError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A system unit is root's to write and remove: the clear error before
/// anything is touched, instead of a permission error halfway.
pub fn require_root(
    scope: UnitScope,
    unit_path: &Path,
    action: &'static str,
) -> Result<(), ServiceError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    match scope {
        UnitScope::System if euid != 0 => Err(ServiceError::NeedsRoot {
            unit_path: unit_path.to_path_buf(),
            action,
        }),
        _ => Ok(()),
    }
}

/// The cargo build directory `executable` lives in (`target/` beside a
/// `Cargo.toml`, or any directory cargo tagged with `CACHEDIR.TAG`): a unit
/// pointing there breaks on the next `cargo clean` or rebuild.
pub fn build_tree_of(executable: &Path) -> Option<PathBuf> {
    executable.ancestors().skip(1).find_map(|dir| {
        let beside_manifest = dir.file_name().is_some_and(|name| name == "target")
            && dir
                .parent()
                .is_some_and(|parent| parent.join("Cargo.toml").is_file());
        let tagged_by_cargo =
            fs::read_to_string(dir.join("CACHEDIR.TAG")).is_ok_and(|tag| tag.contains("cargo"));
        (beside_manifest || tagged_by_cargo).then(|| dir.to_path_buf())
    })
}

/// The name of the user running hyp: their `/etc/passwd` entry (what logind
/// names the linger file after), else `USER` or `LOGNAME` (users from a
/// directory service). Read by hand: a static glibc binary cannot load NSS
/// modules for `getpwuid`.
pub fn login_name() -> Option<String> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let from_passwd = fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| passwd_name(&passwd, uid));
    from_passwd.or_else(|| {
        ["USER", "LOGNAME"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    })
}

/// The name of `uid` in `/etc/passwd`'s text.
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid = fields.nth(1)?.parse::<u32>().ok()?;
        (entry_uid == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Whether logind keeps `user`'s manager running without a login session
/// (`loginctl enable-linger`): without it a user unit starts at their first
/// login and stops at their last logout.
pub fn lingers(user: &str) -> bool {
    lingers_in(Path::new(LINGER_DIR), user)
}

fn lingers_in(linger_dir: &Path, user: &str) -> bool {
    linger_dir.join(user).exists()
}

/// The owner of `path`, or of its nearest existing ancestor, when that is
/// not root.
pub fn owner_other_than_root(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let owner = path
        .ancestors()
        .find_map(|dir| fs::metadata(dir).ok())?
        .uid();
    (owner != 0).then_some(owner)
}

/// Why a `systemctl` call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemctlError {
    /// There is no usable service manager of that scope here (no binary, no
    /// bus, or `HYP_SERVICE_MANAGER=none`).
    Unavailable { scope: UnitScope, reason: String },
    /// The manager ran and refused.
    Failed {
        scope: UnitScope,
        action: String,
        detail: String,
    },
}

impl fmt::Display for SystemctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemctlError::Unavailable { scope, reason } => {
                let which = match scope {
                    UnitScope::User => "user",
                    UnitScope::System => "system",
                };
                write!(f, "no systemd {which} manager is available ({reason})")
            }
            SystemctlError::Failed {
                scope,
                action,
                detail,
            } => {
                write!(
                    f,
                    "failed to {} {action}: {detail}",
                    scope.systemctl_command()
                )
            }
        }
    }
}

impl std::error::Error for SystemctlError {}

/// Run `systemctl --user <args>` (or the `HYP_SERVICE_MANAGER` stand-in).
pub fn systemctl(args: &[&str]) -> Result<(), SystemctlError> {
    systemctl_in(UnitScope::User, args)
}

/// Run `systemctl [--user] <args>` for `scope`'s manager (or the
/// `HYP_SERVICE_MANAGER` stand-in).
pub fn systemctl_in(scope: UnitScope, args: &[&str]) -> Result<(), SystemctlError> {
    let program = match std::env::var_os("HYP_SERVICE_MANAGER").filter(|value| !value.is_empty()) {
        Some(value) if value == "none" => {
            return Err(SystemctlError::Unavailable {
                scope,
                reason: "HYP_SERVICE_MANAGER=none".into(),
            });
        }
        Some(program) => program,
        None => OsString::from("systemctl"),
    };
    let action = args.join(" ");
    let output = Command::new(&program)
        .args(scope.manager_flag())
        .args(args)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(SystemctlError::Unavailable {
                scope,
                reason: format!("{} not found", program.to_string_lossy()),
            });
        }
        Err(err) => {
            return Err(SystemctlError::Unavailable {
                scope,
                reason: format!("cannot run {}: {err}", program.to_string_lossy()),
            });
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detail = stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| match output.status.code() {
            Some(code) => format!("exit {code}"),
            None => "killed by a signal".to_string(),
        });
    if means_no_manager(&stderr) {
        Err(SystemctlError::Unavailable {
            scope,
            reason: detail,
        })
    } else {
        Err(SystemctlError::Failed {
            scope,
            action,
            detail,
        })
    }
}

/// systemctl's ways of saying there is no user manager to talk to.
fn means_no_manager(stderr: &str) -> bool {
    [
        "Failed to connect to bus",
        "System has not been booted with systemd",
        "DBUS_SESSION_BUS_ADDRESS",
        "XDG_RUNTIME_DIR",
        "Failed to connect to user scope bus",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_daemon_with_hyp_home_pinned() {
        let unit = render_unit(
            UnitScope::User,
            Path::new("/opt/hyp/bin/hyp"),
            &[("HYP_HOME".into(), "/srv/state/.hyp".into())],
        );
        assert!(unit.contains("ExecStart=/opt/hyp/bin/hyp daemon run --foreground\n"));
        assert!(unit.contains("Environment=\"HYP_HOME=/srv/state/.hyp\"\n"));
        assert!(unit.contains("Restart=always\n"));
        assert!(unit.contains("WantedBy=default.target\n"));
        assert!(!unit.contains("User="), "a user unit runs as its user");
        assert_eq!(
            unit_environment(&unit, "HYP_HOME").as_deref(),
            Some("/srv/state/.hyp")
        );
        assert_eq!(unit_environment(&unit, "HYP_CONFIG"), None);
    }

    #[test]
    fn odd_paths_are_quoted_and_escaped() {
        let unit = render_unit(
            UnitScope::User,
            Path::new("/opt/my hyp/$x%y\"z"),
            &[("HYP_HOME".into(), "/a b/100%/\"q\"".into())],
        );
        assert!(
            unit.contains("ExecStart=\"/opt/my hyp/$$x%%y\\\"z\" daemon run --foreground\n"),
            "{unit}"
        );
        assert_eq!(
            unit_environment(&unit, "HYP_HOME").as_deref(),
            Some("/a b/100%/\"q\"")
        );
    }

    #[test]
    fn a_system_unit_runs_as_root_from_boot() {
        let unit = render_unit(
            UnitScope::System,
            Path::new("/usr/local/bin/hyp"),
            &[("HYP_HOME".into(), "/root/.hyp".into())],
        );
        assert!(
            unit.contains("\nUser=root\nExecStart=/usr/local/bin/hyp daemon run --foreground\n")
        );
        assert!(unit.contains("After=network-online.target\n"));
        assert!(unit.contains("WantedBy=multi-user.target\n"));
        assert!(!unit.contains("default.target"));
        assert_eq!(
            unit_environment(&unit, "HYP_HOME").as_deref(),
            Some("/root/.hyp")
        );
    }

    #[test]
    fn a_binary_under_cargo_target_is_in_a_build_tree() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("hyp");
        fs::create_dir_all(project.join("target/release")).unwrap();
        fs::write(project.join("Cargo.toml"), "[package]\n").unwrap();
        let built = project.join("target/release/hyp");
        assert_eq!(build_tree_of(&built), Some(project.join("target")));
        let elsewhere = dir.path().join("build-out");
        fs::create_dir_all(elsewhere.join("x86_64-unknown-linux-gnu/release")).unwrap();
        fs::write(
            elsewhere.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55\n# created by cargo.\n",
        )
        .unwrap();
        let built = elsewhere.join("x86_64-unknown-linux-gnu/release/hyp");
        assert_eq!(build_tree_of(&built), Some(elsewhere));
        let installed = dir.path().join("usr/local/bin/hyp");
        fs::create_dir_all(dir.path().join("usr/local/target")).unwrap();
        assert_eq!(build_tree_of(&installed), None);
        assert_eq!(build_tree_of(Path::new("/usr/local/bin/hyp")), None);
    }

    #[test]
    fn the_login_name_comes_from_the_passwd_entry_of_the_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      broken line\n\
                      alice:x:1000:1000:Alice:/home/alice:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(passwd, 4242), None);
    }

    #[test]
    fn a_user_lingers_when_logind_has_their_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("alice"), "").unwrap();
        assert!(lingers_in(dir.path(), "alice"));
        assert!(!lingers_in(dir.path(), "bob"));
    }

    #[test]
    fn bus_errors_mean_no_manager() {
        assert!(means_no_manager(
            "Failed to connect to bus: No medium found\n"
        ));
        assert!(!means_no_manager("Unit hypaware.service not found.\n"));
    }
}
