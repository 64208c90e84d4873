//! Git identity for Claude sessions recorded before the hook captured it:
//! `git -C <cwd> config --get remote.origin.url` and `rev-parse
//! --show-toplevel`, each with a 2 s deadline, memoised per cwd for the run,
//! skipped entirely under `HYP_NO_GIT=1`. Never `head_sha`: today's HEAD is
//! not the session's.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::identity::redact_credentials;

const GIT_TIMEOUT: Duration = Duration::from_secs(2);

/// What git said about one directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRepo {
    pub remote: Option<String>,
    pub root: Option<String>,
}

/// Per-run memo of derivations, shared by the parse workers.
#[derive(Debug)]
pub struct GitLookup {
    enabled: bool,
    memo: Mutex<HashMap<String, Arc<OnceLock<GitRepo>>>>,
}

impl GitLookup {
    /// Disabled when `HYP_NO_GIT=1`.
    pub fn from_env() -> GitLookup {
        let disabled = std::env::var("HYP_NO_GIT").is_ok_and(|value| value == "1");
        GitLookup {
            enabled: !disabled,
            memo: Mutex::new(HashMap::new()),
        }
    }

    pub fn disabled() -> GitLookup {
        GitLookup {
            enabled: false,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// The repo at `cwd` (derived at most once per run).
    pub fn repo(&self, cwd: &str) -> GitRepo {
        if !self.enabled {
            return GitRepo::default();
        }
        let slot = match self.memo.lock() {
            Ok(mut memo) => memo.entry(cwd.to_string()).or_default().clone(),
            Err(_) => return GitRepo::default(),
        };
        slot.get_or_init(|| derive(cwd)).clone()
    }
}

fn derive(cwd: &str) -> GitRepo {
    if !std::path::Path::new(cwd).is_dir() {
        return GitRepo::default();
    }
    GitRepo {
        remote: git_output(cwd, &["config", "--get", "remote.origin.url"])
            .map(|url| redact_credentials(&url)),
        root: git_output(cwd, &["rev-parse", "--show-toplevel"]),
    }
}

/// Trimmed stdout of `git -C cwd args...`, `None` on failure, empty output
/// or the deadline.
fn git_output(cwd: &str, args: &[&str]) -> Option<String> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(cwd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + GIT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = reader.join().ok()?;
    let trimmed = text.trim();
    (status?.success() && !trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_lookup_derives_nothing() {
        assert_eq!(GitLookup::disabled().repo("/"), GitRepo::default());
    }

    #[test]
    fn a_directory_outside_any_repo_has_no_remote() {
        let dir = tempfile::tempdir().unwrap();
        let lookup = GitLookup {
            enabled: true,
            memo: Mutex::new(HashMap::new()),
        };
        let repo = lookup.repo(&dir.path().display().to_string());
        assert_eq!(repo.remote, None);
    }
}
