//! The systemd `--user` unit `hypaware.service`: render it, write or remove
//! it under `$XDG_CONFIG_HOME/systemd/user/` (default `~/.config/...`), and
//! drive `systemctl --user`.
//!
//! The unit runs `<current_exe> daemon run --foreground` with `HYP_HOME`
//! pinned (and `HYP_CONFIG`, `CLAUDE_CONFIG_DIR`, `CODEX_HOME`,
//! `SSL_CERT_FILE`, `SSL_CERT_DIR` when set at install time), so the service
//! works on the same state, and trusts the same central, as the shell that
//! installed it. `HYP_SERVICE_MANAGER` overrides the manager: `none` means
//! there is none (containers, CI), a path names a `systemctl` stand-in (tests).
//! A missing manager is reported, never fatal for writing the unit.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::paths::{PathSource, Paths};

pub const UNIT_NAME: &str = "hypaware.service";

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
    CurrentExe(io::Error),
    Write { path: PathBuf, source: io::Error },
    Remove { path: PathBuf, source: io::Error },
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::NoHome => write!(
                f,
                "cannot find the systemd user unit directory: set HOME or XDG_CONFIG_HOME"
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

pub fn unit_path() -> Result<PathBuf, ServiceError> {
    Ok(unit_dir()?.join(UNIT_NAME))
}

pub fn is_installed() -> bool {
    unit_path().is_ok_and(|path| path.is_file())
}

/// Whether the installed unit runs the daemon for `paths`' `HYP_HOME` (a
/// unit without a `HYP_HOME` line is taken to serve any).
pub fn serves(paths: &Paths) -> bool {
    let Some(content) = unit_path()
        .ok()
        .and_then(|path| fs::read_to_string(path).ok())
    else {
        return false;
    };
    match unit_environment(&content, "HYP_HOME") {
        Some(home) => Path::new(&home) == paths.home(),
        None => true,
    }
}

/// What `install` would write, from the running binary and `paths`.
pub fn plan(paths: &Paths) -> Result<UnitPlan, ServiceError> {
    let executable = std::env::current_exe().map_err(ServiceError::CurrentExe)?;
    let executable = fs::canonicalize(&executable).unwrap_or(executable);
    let unit_dir = unit_dir()?;
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
        unit_path: unit_dir.join(UNIT_NAME),
        unit_dir,
        content: render_unit(&executable, &environment),
        executable,
        hyp_home: paths.home().to_path_buf(),
        config_path: paths.local_config().path.clone(),
        daemon_log: paths.daemon_log(),
    })
}

/// The unit file's text. `KillMode=mixed` sends SIGTERM to the daemon alone
/// (it stops its own child) and SIGKILL to leftovers only at the end;
/// `TimeoutStopSec` leaves room for the daemon's bounded 15 s shutdown. Exit
/// 75 (a failed staged restart) is relaunched by `Restart=always`.
pub fn render_unit(executable: &Path, environment: &[(String, OsString)]) -> String {
    let mut text = String::from(
        "[Unit]\nDescription=HypAware host agent (hyp daemon)\n\n[Service]\nType=simple\n",
    );
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
    text.push_str(
        "Restart=always\nRestartSec=5\nKillMode=mixed\nTimeoutStopSec=20\n\n[Install]\nWantedBy=default.target\n",
    );
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

/// Remove the unit file; `Ok(false)` when there was none.
pub fn remove_unit() -> Result<bool, ServiceError> {
    let path = unit_path()?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ServiceError::Remove { path, source }),
    }
}

/// Why a `systemctl --user` call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemctlError {
    /// There is no usable user service manager here (no binary, no user bus,
    /// or `HYP_SERVICE_MANAGER=none`).
    Unavailable { reason: String },
    /// The manager ran and refused.
    Failed { action: String, detail: String },
}

impl fmt::Display for SystemctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemctlError::Unavailable { reason } => {
                write!(f, "no systemd user manager is available ({reason})")
            }
            SystemctlError::Failed { action, detail } => {
                write!(f, "failed to systemctl --user {action}: {detail}")
            }
        }
    }
}

impl std::error::Error for SystemctlError {}

/// Run `systemctl --user <args>` (or the `HYP_SERVICE_MANAGER` stand-in).
pub fn systemctl(args: &[&str]) -> Result<(), SystemctlError> {
    let program = match std::env::var_os("HYP_SERVICE_MANAGER").filter(|value| !value.is_empty()) {
        Some(value) if value == "none" => {
            return Err(SystemctlError::Unavailable {
                reason: "HYP_SERVICE_MANAGER=none".into(),
            });
        }
        Some(program) => program,
        None => OsString::from("systemctl"),
    };
    let action = args.join(" ");
    let output = Command::new(&program)
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(SystemctlError::Unavailable {
                reason: format!("{} not found", program.to_string_lossy()),
            });
        }
        Err(err) => {
            return Err(SystemctlError::Unavailable {
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
        Err(SystemctlError::Unavailable { reason: detail })
    } else {
        Err(SystemctlError::Failed { action, detail })
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
            Path::new("/opt/hyp/bin/hyp"),
            &[("HYP_HOME".into(), "/srv/state/.hyp".into())],
        );
        assert!(unit.contains("ExecStart=/opt/hyp/bin/hyp daemon run --foreground\n"));
        assert!(unit.contains("Environment=\"HYP_HOME=/srv/state/.hyp\"\n"));
        assert!(unit.contains("Restart=always\n"));
        assert!(unit.contains("WantedBy=default.target\n"));
        assert_eq!(
            unit_environment(&unit, "HYP_HOME").as_deref(),
            Some("/srv/state/.hyp")
        );
        assert_eq!(unit_environment(&unit, "HYP_CONFIG"), None);
    }

    #[test]
    fn odd_paths_are_quoted_and_escaped() {
        let unit = render_unit(
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
    fn bus_errors_mean_no_manager() {
        assert!(means_no_manager(
            "Failed to connect to bus: No medium found\n"
        ));
        assert!(!means_no_manager("Unit hypaware.service not found.\n"));
    }
}
