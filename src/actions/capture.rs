//! Continuous capture (contract §13): after a provider's first import, the
//! worker keeps the cache current with a **capture sweep** every
//! `capture.interval_seconds` (default 300, scaled): a
//! `hyp backfill <provider> --json` child through the one spawning
//! chokepoint, with the same isolation as the backfill-on-join child.
//!
//! The worker runs sweeps between reconcile passes, so a provider's sweep
//! never runs beside its backfill-on-join child, and one sweep runs at a
//! time. A provider sweeps once its backfill-on-join action is done (for
//! the current cache) or refused, or when on-join is off; then it imports
//! only what was written after the join. Each provider's sweeps sit on a
//! grid that starts at the host's splay offset within the interval, so a
//! fleet that boots together does not sweep (and export) together.
//!
//! A sweep over unchanged history reads only file metadata (`hyp backfill`
//! skips unchanged files and reads grown ones from their last line). A
//! failed sweep is retried sooner (60 s doubling, up to the interval) and
//! never touches config. The schedule and the last outcome of each
//! provider are written to `S/run/capture.json` for `hyp status`.
//!
//! **Invariant:** only this module writes `capture.json`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actions::backfill_handler::{self, BackfillTarget};
use crate::actions::child::{self, Cancel, ChildOutcome, ChildSpec};
use crate::actions::store::MarkerStore;
use crate::config::EffectiveConfig;
use crate::config::policy::CapturePolicy;
use crate::paths::{Paths, TimeScale};
use crate::statefile;
use crate::time::iso_ms;

/// The action-log kind of sweep children (`S/logs/actions/capture-<provider>.log`).
const KIND: &str = "capture";
/// A failed sweep is retried after 60 s, doubling, at most the interval.
const RETRY_BASE: Duration = Duration::from_secs(60);

/// `S/run/capture.json`: per provider, the last sweep and the next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureFile {
    pub schema_version: u32,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderCapture>,
}

/// One provider's capture record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderCapture {
    pub last_sweep_at: Option<String>,
    pub last_sweep_rows: Option<u64>,
    pub next_sweep_at: Option<String>,
    /// Why a provider does not sweep yet (e.g. its first import runs).
    pub waiting_for: Option<String>,
    pub last_error: Option<SweepError>,
    #[serde(default)]
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepError {
    pub at: String,
    pub message: String,
}

/// `S/run/capture.json`.
pub fn capture_file(paths: &Paths) -> PathBuf {
    paths.run_dir().join("capture.json")
}

/// One provider on the sweep grid.
#[derive(Debug, Clone)]
struct Slot {
    target: BackfillTarget,
    /// Scaled.
    interval: Duration,
    /// The grid's origin: the splay offset after the slot was made.
    anchor: Instant,
    next_at: Instant,
    failures: u32,
}

/// The sweep schedule of every capturing provider, owned by the worker.
pub struct Capture {
    paths: Paths,
    exe: PathBuf,
    env: Vec<(OsString, OsString)>,
    time_scale: TimeScale,
    grace: Duration,
    installation: String,
    slots: BTreeMap<&'static str, Slot>,
    record: CaptureFile,
}

impl Capture {
    /// `env` already has `HYP_HOME` forced to the daemon's home.
    pub fn new(
        paths: &Paths,
        exe: PathBuf,
        env: Vec<(OsString, OsString)>,
        time_scale: TimeScale,
        grace: Duration,
    ) -> Capture {
        Capture {
            installation: crate::control::membership::read_installation_id(paths)
                .unwrap_or_default(),
            paths: paths.clone(),
            exe,
            env,
            time_scale,
            grace,
            slots: BTreeMap::new(),
            record: CaptureFile {
                schema_version: 1,
                ..CaptureFile::default()
            },
        }
    }

    /// Bring the grid in line with the config: providers that capture get
    /// a slot (first sweep at the splay offset), others lose theirs; a
    /// changed interval starts a new grid. Capture runs on a joined host.
    pub fn refresh(&mut self, config: &EffectiveConfig) {
        let wanted: Vec<(BackfillTarget, Duration)> = if config.has_central_layer {
            backfill_handler::targets(config)
                .into_iter()
                .filter_map(|target| {
                    let entry = config.enabled_plugin(target.provider.plugin)?;
                    let policy = CapturePolicy::read(&entry.config);
                    policy
                        .enabled
                        .then(|| (target, self.time_scale.scale(policy.interval)))
                })
                .collect()
        } else {
            Vec::new()
        };
        let before = self.slots.len();
        self.slots.retain(|name, _| {
            wanted
                .iter()
                .any(|(target, _)| target.provider.name == *name)
        });
        let mut changed = self.slots.len() != before;
        for (target, interval) in wanted {
            let name = target.provider.name;
            match self.slots.get_mut(name) {
                Some(slot) if slot.interval == interval => slot.target = target,
                _ => {
                    let offset = crate::splay::offset(
                        &self.installation,
                        &format!("capture:{name}"),
                        interval,
                    );
                    let anchor = Instant::now() + offset;
                    self.slots.insert(
                        name,
                        Slot {
                            target,
                            interval,
                            anchor,
                            next_at: anchor,
                            failures: 0,
                        },
                    );
                    changed = true;
                }
            }
        }
        if changed {
            self.record
                .providers
                .retain(|name, _| self.slots.contains_key(name.as_str()));
            for (name, slot) in &self.slots {
                let entry = self.record.providers.entry(name.to_string()).or_default();
                entry.next_sweep_at = Some(wall_clock(slot.next_at));
            }
            self.write_record();
        }
    }

    /// When the worker must wake for the next sweep.
    pub fn next_wake(&self) -> Option<Instant> {
        self.slots.values().map(|slot| slot.next_at).min()
    }

    /// Run every due sweep whose provider may sweep. Returns whether a
    /// sweep committed rows (the exporter is then asked to send them).
    pub fn run_due(&mut self, cancel: &Cancel) -> bool {
        let now = Instant::now();
        let due: Vec<&'static str> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.next_at <= now)
            .map(|(name, _)| *name)
            .collect();
        let mut committed = false;
        for name in due {
            if cancel.is_cancelled() {
                break;
            }
            committed |= self.sweep_if_ready(name, cancel);
        }
        self.write_record();
        committed
    }

    fn sweep_if_ready(&mut self, name: &'static str, cancel: &Cancel) -> bool {
        let Some(slot) = self.slots.get(name).cloned() else {
            return false;
        };
        let since = match self.readiness(&slot.target) {
            Ok(since) => since,
            Err(waiting) => {
                let next = next_on_grid(&slot, Instant::now());
                self.reschedule(name, next, slot.failures);
                let entry = self.record.providers.entry(name.to_string()).or_default();
                entry.waiting_for = Some(waiting);
                return false;
            }
        };
        let started = Timestamp::now();
        let outcome = self.sweep(&slot.target, since.as_deref(), cancel);
        let entry = self.record.providers.entry(name.to_string()).or_default();
        entry.waiting_for = None;
        entry.last_sweep_at = Some(iso_ms(started));
        match outcome {
            Sweep::Cancelled => false,
            Sweep::Done { rows } => {
                entry.last_sweep_rows = Some(rows);
                entry.last_error = None;
                entry.failures = 0;
                let next = next_on_grid(&slot, Instant::now());
                self.reschedule(name, next, 0);
                rows > 0
            }
            Sweep::Failed { message } => {
                entry.last_sweep_rows = Some(0);
                entry.last_error = Some(SweepError {
                    at: iso_ms(Timestamp::now()),
                    message,
                });
                let failures = slot.failures.saturating_add(1);
                entry.failures = failures;
                let doublings = failures.saturating_sub(1).min(16);
                let retry = self
                    .time_scale
                    .scale(RETRY_BASE.saturating_mul(1 << doublings))
                    .min(slot.interval);
                self.reschedule(name, Instant::now() + retry, failures);
                // A failed child may have committed part of its import.
                true
            }
        }
    }

    fn reschedule(&mut self, name: &str, next: Instant, failures: u32) {
        if let Some(slot) = self.slots.get_mut(name) {
            slot.next_at = next;
            slot.failures = failures;
        }
        let entry = self.record.providers.entry(name.to_string()).or_default();
        entry.next_sweep_at = Some(wall_clock(next));
    }

    /// `Ok(since)` when the provider may sweep (`since` = the join time
    /// when on-join is off, else the on-join window); `Err(why not)` while
    /// its first import is still to come.
    fn readiness(&self, target: &BackfillTarget) -> Result<Option<String>, String> {
        if !target.policy.runs_on_join() {
            return Ok(crate::control::membership::joined_at(&self.paths).map(iso_ms));
        }
        let markers = MarkerStore::new(&self.paths).read_lenient();
        let marker = markers.marker(backfill_handler::KIND, target.provider.plugin);
        let status = marker
            .and_then(|marker| marker.get("status"))
            .and_then(Value::as_str);
        let ready = match (status, marker) {
            (Some("refused"), _) => true,
            (Some("done"), Some(marker)) => {
                backfill_handler::imported_into_current_cache(&self.paths, marker)
            }
            _ => false,
        };
        if !ready {
            return Err("the first import (backfill on join) is not done yet".into());
        }
        Ok(target.policy.window_days.and_then(|days| {
            let millis =
                Timestamp::now().as_millisecond() - (days as i64).checked_mul(86_400_000)?;
            Timestamp::from_millisecond(millis).ok().map(iso_ms)
        }))
    }

    fn sweep(&self, target: &BackfillTarget, since: Option<&str>, cancel: &Cancel) -> Sweep {
        let provider = target.provider.name;
        let mut args: Vec<OsString> = vec!["backfill".into(), provider.into()];
        if let Some(since) = since {
            args.push("--since".into());
            args.push(since.into());
        }
        args.push("--json".into());
        let spec = ChildSpec {
            program: self.exe.clone(),
            args,
            env: self.env.clone(),
            stderr_log: self.paths.action_log(KIND, provider),
            grace: self.grace,
        };
        let run = child::run(&spec, cancel, &|pid| {
            crate::event!(
                Debug,
                "capture.sweep_started",
                json!({"provider": provider, "pid": pid, "since": since}),
            );
        });
        let rows = backfill_handler::rows_written(&run.stdout).unwrap_or(0);
        let sweep = match &run.outcome {
            ChildOutcome::Exited(0) => Sweep::Done { rows },
            ChildOutcome::Cancelled => Sweep::Cancelled,
            outcome => Sweep::Failed {
                message: match &run.stderr_tail {
                    Some(tail) => format!("hyp backfill {outcome}: {tail}"),
                    None => format!("hyp backfill {outcome}"),
                },
            },
        };
        let fields =
            json!({"provider": provider, "rows": rows, "outcome": run.outcome.to_string()});
        match sweep {
            Sweep::Failed { .. } => crate::event!(Warn, "capture.sweep_failed", fields),
            _ => crate::event!(Info, "capture.sweep", fields),
        }
        sweep
    }

    fn write_record(&self) {
        if let Err(err) = statefile::write(&capture_file(&self.paths), &self.record) {
            crate::event!(
                Warn,
                "capture.record_write_failed",
                json!({"message": err.to_string()}),
            );
        }
    }
}

/// How one sweep ended.
enum Sweep {
    Done { rows: u64 },
    Failed { message: String },
    Cancelled,
}

/// The first grid point of `slot` after `now`.
fn next_on_grid(slot: &Slot, now: Instant) -> Instant {
    let interval = slot.interval.max(Duration::from_millis(1));
    if now < slot.anchor {
        return slot.anchor;
    }
    let elapsed = now.duration_since(slot.anchor).as_nanos();
    let periods = elapsed / interval.as_nanos() + 1;
    slot.anchor + Duration::from_nanos((periods * interval.as_nanos()).min(u64::MAX as u128) as u64)
}

/// An `Instant` as the wall-clock time it will be, for the record.
fn wall_clock(at: Instant) -> String {
    let from_now = at.saturating_duration_since(Instant::now());
    let when = SystemTime::now() + from_now;
    iso_ms(Timestamp::try_from(when).unwrap_or_else(|_| Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(anchor: Instant, interval_ms: u64) -> Slot {
        Slot {
            target: backfill_handler::targets(&EffectiveConfig::from_document(
                json!({"version": 2, "plugins": [{"name": "@hypaware/claude"}]}),
                true,
            ))
            .remove(0),
            interval: Duration::from_millis(interval_ms),
            anchor,
            next_at: anchor,
            failures: 0,
        }
    }

    #[test]
    fn the_grid_keeps_its_phase() {
        let anchor = Instant::now();
        let slot = slot(anchor, 1000);
        assert_eq!(
            next_on_grid(&slot, anchor - Duration::from_millis(5)),
            anchor
        );
        assert_eq!(
            next_on_grid(&slot, anchor),
            anchor + Duration::from_millis(1000)
        );
        assert_eq!(
            next_on_grid(&slot, anchor + Duration::from_millis(2500)),
            anchor + Duration::from_millis(3000)
        );
    }

    #[test]
    fn only_enabled_providers_of_a_joined_host_capture() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path());
        let mut capture = Capture::new(
            &paths,
            "hyp".into(),
            Vec::new(),
            TimeScale::REAL,
            Duration::from_secs(1),
        );
        let document = json!({"version": 2, "plugins": [
            {"name": "@hypaware/claude", "config": {"capture": {"interval_seconds": 60}}},
            {"name": "@hypaware/codex", "config": {"capture": {"enabled": false}}}
        ]});
        capture.refresh(&EffectiveConfig::from_document(document.clone(), false));
        assert!(capture.next_wake().is_none(), "not joined: no capture");
        capture.refresh(&EffectiveConfig::from_document(document, true));
        let wake = capture.next_wake().unwrap();
        assert!(wake <= Instant::now() + Duration::from_secs(60));
        assert_eq!(
            capture.slots.keys().copied().collect::<Vec<_>>(),
            ["claude"]
        );
        let record: CaptureFile = statefile::read(&capture_file(&paths)).ok().unwrap();
        assert!(record.providers["claude"].next_sweep_at.is_some());
    }
}
