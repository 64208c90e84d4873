//! What `hyp config validate` checks, as data: the local layer (or the file
//! given with `--path`), and on a joined host the central layer and the
//! merge of the two. The CLI renders this; nothing here prints or writes.
//!
//! Rules: each layer gets the full validation the apply engine runs (shape,
//! cross-plugin, section validators of enabled entries). A missing local
//! layer is an error only when it was asked for by `--path` or when there is
//! no central layer (then there is nothing to validate at all). Drops of the
//! merge are reported but do not make the result invalid: central winning a
//! collision is the design, and boot never fails because of the local layer.

use std::path::PathBuf;

use serde_json::Value;

use crate::config::layers::{LayerReport, LayerSource, Layers, central_layer_path};
use crate::config::{ConfigError, EffectiveConfig, validate};
use crate::paths::Paths;

/// How one layer fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Loaded and valid.
    Ok,
    /// Failed to load, or loaded with validation errors.
    Invalid,
    /// No file, and none was required.
    Missing,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Invalid => "invalid",
            CheckStatus::Missing => "missing",
        }
    }
}

/// Whether a layer file that does not exist is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenMissing {
    Error,
    Fine,
}

/// One layer's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerCheck {
    pub layer: LayerReport,
    pub status: CheckStatus,
    /// Load errors or validation errors; empty when `status` is not `Invalid`.
    pub errors: Vec<ConfigError>,
}

impl LayerCheck {
    fn new(layer: LayerReport, when_missing: WhenMissing) -> LayerCheck {
        let (status, errors) = match &layer.outcome {
            Ok(document) => {
                let errors = validate::full_errors(document);
                let status = if errors.is_empty() {
                    CheckStatus::Ok
                } else {
                    CheckStatus::Invalid
                };
                (status, errors)
            }
            Err(_) if layer.is_missing() && when_missing == WhenMissing::Fine => {
                (CheckStatus::Missing, Vec::new())
            }
            Err(error) => (CheckStatus::Invalid, error.errors.clone()),
        };
        LayerCheck {
            layer,
            status,
            errors,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.status != CheckStatus::Invalid
    }

    /// `plugins[]` entries of the loaded document.
    pub fn plugin_count(&self) -> Option<usize> {
        let document = self.layer.document()?;
        Some(
            document
                .get("plugins")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        )
    }

    /// Sink instances of the loaded document.
    pub fn sink_count(&self) -> Option<usize> {
        let document = self.layer.document()?;
        Some(
            document
                .get("sinks")
                .and_then(Value::as_object)
                .map_or(0, |sinks| sinks.len()),
        )
    }
}

/// The whole verdict of `hyp config validate`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    pub local: LayerCheck,
    /// Whether the local path came from `--path`.
    pub local_from_flag: bool,
    /// `None` on a host that has not joined.
    pub central: Option<LayerCheck>,
    /// The merge, when a central layer exists.
    pub effective: Option<EffectiveConfig>,
}

impl ValidationReport {
    /// Check the local layer (`local_path` from `--path`, else the resolved
    /// local path) and, when the host has a central layer, that layer and
    /// the merge.
    pub fn collect(paths: &Paths, local_path: Option<PathBuf>) -> ValidationReport {
        let local_from_flag = local_path.is_some();
        let local_path = local_path.unwrap_or_else(|| paths.local_config().path.clone());
        let local = LayerReport::load(LayerSource::Local, local_path);
        let central =
            central_layer_path(paths).map(|(source, path)| LayerReport::load(source, path));
        let effective = central.as_ref().map(|central| {
            EffectiveConfig::from_layers(Layers {
                central: Some(central.clone()),
                local: Some(local.clone()),
            })
        });
        let local_when_missing = if local_from_flag || central.is_none() {
            WhenMissing::Error
        } else {
            WhenMissing::Fine
        };
        ValidationReport {
            local: LayerCheck::new(local, local_when_missing),
            local_from_flag,
            central: central.map(|central| LayerCheck::new(central, WhenMissing::Error)),
            effective,
        }
    }

    /// Valid when no checked layer is invalid.
    pub fn is_valid(&self) -> bool {
        self.local.is_valid() && self.central.as_ref().is_none_or(LayerCheck::is_valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Slot;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path().join("hyp"));
        std::fs::create_dir_all(paths.control_dir()).unwrap();
        (dir, paths)
    }

    const SEED: &str = r#"{"version": 2, "plugins": [{"name": "@hypaware/central"}],
        "sinks": {"central": {"plugin": "@hypaware/central", "config": {"url": "https://c", "identity": {}}}}}"#;

    #[test]
    fn a_missing_local_layer_is_an_error_only_when_not_joined() {
        let (_dir, paths) = fixture();
        let report = ValidationReport::collect(&paths, None);
        assert!(!report.is_valid());
        assert_eq!(report.local.errors[0].kind, "config_missing");
        assert!(report.central.is_none() && report.effective.is_none());

        std::fs::write(paths.seed(), SEED).unwrap();
        let report = ValidationReport::collect(&paths, None);
        assert!(report.is_valid());
        assert_eq!(report.local.status, CheckStatus::Missing);
        assert_eq!(report.central.as_ref().unwrap().status, CheckStatus::Ok);
        assert_eq!(report.central.as_ref().unwrap().plugin_count(), Some(1));

        let report = ValidationReport::collect(&paths, Some(paths.home().join("nope.json")));
        assert!(!report.is_valid(), "an explicit --path must exist");
    }

    #[test]
    fn section_errors_in_the_local_layer_make_it_invalid() {
        let (_dir, paths) = fixture();
        std::fs::write(
            &paths.local_config().path,
            r#"{"version": 2, "plugins": [{"name": "@hypaware/claude", "config": {"backfill": {"on_join": "no"}}}]}"#,
        )
        .unwrap();
        let report = ValidationReport::collect(&paths, None);
        assert_eq!(report.local.status, CheckStatus::Invalid);
        assert_eq!(report.local.errors[0].kind, "config_section_invalid");
    }

    #[test]
    fn a_broken_central_layer_is_invalid_and_the_merge_runs_on_local_alone() {
        let (_dir, paths) = fixture();
        std::fs::write(&paths.local_config().path, r#"{"version": 2}"#).unwrap();
        symlink("config.a.json", paths.active_pointer()).unwrap();
        let report = ValidationReport::collect(&paths, None);
        let central = report.central.as_ref().unwrap();
        assert_eq!(central.layer.source, LayerSource::from_slot(Slot::A));
        assert_eq!(central.errors[0].kind, "config_missing");
        assert!(!report.is_valid());
        assert!(!report.effective.as_ref().unwrap().has_central_layer);
    }

    #[test]
    fn drops_are_reported_but_do_not_invalidate() {
        let (_dir, paths) = fixture();
        std::fs::write(paths.seed(), SEED).unwrap();
        std::fs::write(
            &paths.local_config().path,
            r#"{"version": 2, "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/claude"}]}"#,
        )
        .unwrap();
        let report = ValidationReport::collect(&paths, None);
        assert!(report.is_valid());
        let effective = report.effective.unwrap();
        assert_eq!(effective.drops.len(), 1);
        assert_eq!(effective.plugins.len(), 2);
    }
}
