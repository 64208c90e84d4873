//! What an export withholds (contract §12 "Privacy", reference
//! forward-sink.md §4.2), decided per row at every export so it also covers
//! rows cached before a marking:
//!
//! - a row whose `cwd` resolves to `local-only` or `ignore` (the nearest
//!   `.hypignore`, `S/usage-policy/local-only.json`);
//! - a row of a client opted out in `S/usage-policy/client-sync.json`, and a
//!   row with no client name while any client is opted out (fail closed).
//!
//! A withheld row stays queryable locally, is never sent, and the watermark
//! moves past it. A policy file that is present but unreadable or malformed
//! fails the export closed: nothing is sent until it is fixed.
//!
//! Unlike the reference, an opt-out holds even for a client the central
//! config configures: the person at the machine has the last word on what
//! leaves it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::backfill::usage_policy::{UsageClass, UsagePolicy};
use crate::paths::Paths;

/// A policy file that is present but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: PathBuf,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the usage policy {} is unreadable or malformed, so nothing is sent until it is fixed: correct or remove it",
            self.path.display()
        )
    }
}

impl std::error::Error for PolicyError {}

/// The withholding rules of one export.
#[derive(Debug)]
pub struct Privacy {
    directories: UsagePolicy,
    opted_out: BTreeSet<String>,
}

impl Privacy {
    /// Read both policy files; either one malformed fails the export.
    pub fn load(paths: &Paths) -> Result<Privacy, PolicyError> {
        let list = paths.local_only_list();
        let directories = UsagePolicy::load(&list).map_err(|_| PolicyError { path: list })?;
        let opted_out = opted_out_clients(&paths.client_sync())?;
        Ok(Privacy {
            directories,
            opted_out,
        })
    }

    /// Whether a row with this `cwd` and `client_name` stays on the machine.
    pub fn withholds(&self, cwd: Option<&str>, client_name: Option<&str>) -> bool {
        let client_out = match client_name.filter(|name| !name.is_empty()) {
            Some(name) => self.opted_out.contains(name),
            None => !self.opted_out.is_empty(),
        };
        client_out
            || cwd
                .filter(|cwd| !cwd.is_empty())
                .is_some_and(|cwd| self.directories.class(cwd) > UsageClass::Full)
    }
}

/// The clients `client-sync.json` opts out: entries whose class is
/// anything but `full` (an unknown class withholds). Missing means none.
fn opted_out_clients(path: &Path) -> Result<BTreeSet<String>, PolicyError> {
    let malformed = || PolicyError {
        path: path.to_path_buf(),
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(_) => return Err(malformed()),
    };
    let document: Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    let entries = document
        .get("entries")
        .and_then(Value::as_array)
        .ok_or_else(malformed)?;
    let mut opted_out = BTreeSet::new();
    for entry in entries {
        let source = entry
            .get("source")
            .and_then(Value::as_str)
            .ok_or_else(malformed)?;
        let class = entry.get("class").and_then(Value::as_str);
        if class != Some("full") {
            opted_out.insert(source.to_string());
        }
    }
    Ok(opted_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privacy(home: &Path) -> Result<Privacy, PolicyError> {
        Privacy::load(&Paths::with_home(home))
    }

    #[test]
    fn nothing_is_withheld_without_policy_files() {
        let dir = tempfile::tempdir().unwrap();
        let privacy = privacy(dir.path()).unwrap();
        assert!(!privacy.withholds(Some("/p/clean"), Some("claude")));
        assert!(!privacy.withholds(None, None));
    }

    #[test]
    fn local_only_directories_and_opted_out_clients_are_withheld() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path());
        let secret = dir.path().join("p/secret");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join(".hypignore"), "local-only\n").unwrap();
        std::fs::create_dir_all(paths.usage_policy_dir()).unwrap();
        std::fs::write(
            paths.client_sync(),
            r#"{"version":1,"entries":[{"source":"codex","class":"local-only"},{"source":"claude","class":"full"}]}"#,
        )
        .unwrap();
        let privacy = privacy(dir.path()).unwrap();
        let secret = secret.join("sub").display().to_string();
        assert!(privacy.withholds(Some(&secret), Some("claude")));
        assert!(!privacy.withholds(Some("/p/clean"), Some("claude")));
        assert!(privacy.withholds(Some("/p/clean"), Some("codex")));
        assert!(
            privacy.withholds(Some("/p/clean"), None),
            "no client name fails closed"
        );
        assert!(!privacy.withholds(Some(""), Some("claude")));
    }

    #[test]
    fn a_malformed_policy_file_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path());
        std::fs::create_dir_all(paths.usage_policy_dir()).unwrap();
        for bad in [
            "{not json",
            r#"{"version":1}"#,
            r#"{"entries":[{"class":"x"}]}"#,
        ] {
            std::fs::write(paths.client_sync(), bad).unwrap();
            let err = privacy(dir.path()).unwrap_err();
            assert_eq!(err.path, paths.client_sync(), "{bad}");
        }
        std::fs::remove_file(paths.client_sync()).unwrap();
        std::fs::write(paths.local_only_list(), "[").unwrap();
        assert_eq!(
            privacy(dir.path()).unwrap_err().path,
            paths.local_only_list()
        );
    }
}
