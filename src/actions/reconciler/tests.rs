//! The reconciler core against fake handlers and a fixed clock: the
//! scenarios of the reference (reconciler.md section 9.A and 9.H) plus the
//! durable `running` marker, backoff deferral and cancellation.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::actions::child::CancelSource;
use crate::paths::{Paths, TimeScale};

const T0: &str = "2026-06-25T00:00:00.000Z";

#[derive(Clone, Copy, PartialEq)]
enum Currency {
    Current,
    Stale,
    Panics,
}

struct FakeState {
    keys: Vec<String>,
    script: VecDeque<Result<Outcome, ActionError>>,
    fallback: Outcome,
    performs: Vec<String>,
    reverses: Vec<String>,
    reverse_outcome: Outcome,
    reversible: bool,
    currency: Currency,
    desired_fails: bool,
    panics: bool,
    /// Set by perform: the marker on disk while it runs.
    seen_during_perform: Option<Value>,
}

#[derive(Clone)]
struct Fake {
    kind: String,
    state: Arc<Mutex<FakeState>>,
    store: Option<MarkerStore>,
}

impl Fake {
    fn new(kind: &str, keys: &[&str]) -> Fake {
        Fake {
            kind: kind.to_string(),
            state: Arc::new(Mutex::new(FakeState {
                keys: keys.iter().map(|key| key.to_string()).collect(),
                script: VecDeque::new(),
                fallback: Outcome::done(Some(7)),
                performs: Vec::new(),
                reverses: Vec::new(),
                reverse_outcome: Outcome::done(None),
                reversible: false,
                currency: Currency::Current,
                desired_fails: false,
                panics: false,
                seen_during_perform: None,
            })),
            store: None,
        }
    }

    fn with(&self, edit: impl FnOnce(&mut FakeState)) -> &Fake {
        edit(&mut self.state.lock().unwrap());
        self
    }

    fn performs(&self) -> Vec<String> {
        self.state.lock().unwrap().performs.clone()
    }

    fn reverses(&self) -> Vec<String> {
        self.state.lock().unwrap().reverses.clone()
    }
}

impl Handler for Fake {
    fn kind(&self) -> &str {
        &self.kind
    }

    fn desired(&self, _context: &DesiredContext) -> Result<Vec<DesiredAction>, ActionError> {
        let state = self.state.lock().unwrap();
        if state.desired_fails {
            return Err(ActionError::new("desired exploded"));
        }
        Ok(state
            .keys
            .iter()
            .map(|key| DesiredAction {
                request_key: key.clone(),
                params: Map::new(),
            })
            .collect())
    }

    fn perform(
        &self,
        action: &DesiredAction,
        context: &PerformContext,
    ) -> Result<Outcome, ActionError> {
        if let Some(store) = &self.store {
            let before = store.read().unwrap().as_value();
            context.child_started(4242);
            let after = store.read().unwrap().as_value();
            self.state.lock().unwrap().seen_during_perform = Some(json!([before, after]));
        }
        let mut state = self.state.lock().unwrap();
        state.performs.push(action.request_key.clone());
        if state.panics {
            drop(state);
            panic!("perform blew up");
        }
        match state.script.pop_front() {
            Some(scripted) => scripted,
            None => Ok(state.fallback.clone()),
        }
    }

    fn reversible(&self) -> bool {
        self.state.lock().unwrap().reversible
    }

    fn reverse(
        &self,
        request_key: &str,
        _marker: &Marker,
        _context: &PerformContext,
    ) -> Result<Outcome, ActionError> {
        let mut state = self.state.lock().unwrap();
        state.reverses.push(request_key.to_string());
        Ok(state.reverse_outcome.clone())
    }

    fn is_current(
        &self,
        _marker: &Marker,
        _action: &DesiredAction,
        _context: &DesiredContext,
    ) -> Result<bool, ActionError> {
        let currency = self.state.lock().unwrap().currency;
        match currency {
            Currency::Current => Ok(true),
            Currency::Stale => Ok(false),
            Currency::Panics => panic!("is_current blew up"),
        }
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    store: MarkerStore,
    now: Arc<Mutex<Timestamp>>,
    config: EffectiveConfig,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = MarkerStore::new(&Paths::with_home(dir.path()));
        Bench {
            _dir: dir,
            store,
            now: Arc::new(Mutex::new(T0.parse().unwrap())),
            config: EffectiveConfig::default(),
        }
    }

    fn reconciler(&self, handlers: Vec<Fake>) -> Reconciler {
        let now = Arc::clone(&self.now);
        let clock: Clock = Arc::new(move || *now.lock().unwrap());
        let handlers = handlers
            .into_iter()
            .map(|fake| Box::new(fake) as Box<dyn Handler>)
            .collect();
        Reconciler::new(
            handlers,
            self.store.clone(),
            clock,
            Backoff::new("test-host", TimeScale::REAL),
        )
    }

    fn advance_secs(&self, secs: i64) {
        let mut now = self.now.lock().unwrap();
        *now = Timestamp::from_millisecond(now.as_millisecond() + secs * 1000).unwrap();
    }

    fn pass(&self, reconciler: &Reconciler) -> PassReport {
        self.pass_with(reconciler, FailedUnits::RetryNow)
    }

    fn pass_with(&self, reconciler: &Reconciler, failed_units: FailedUnits) -> PassReport {
        reconciler
            .pass(&self.config, failed_units, &Cancel::never())
            .unwrap()
    }

    fn doc(&self) -> Value {
        self.store.read().unwrap().as_value()
    }

    fn seed(&self, doc: Value) {
        crate::statefile::write(self.store.path(), &doc).unwrap();
    }
}

fn outcomes(report: &PassReport) -> Vec<(String, &'static str)> {
    report
        .results
        .iter()
        .map(|result| (result.request_key.clone(), result.outcome.name()))
        .collect()
}

fn pairs(items: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    items
        .iter()
        .map(|(key, outcome)| (key.to_string(), *outcome))
        .collect()
}

// 9.A 1
#[test]
fn run_once_then_short_circuit() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["@hypaware/claude"]);
    let reconciler = bench.reconciler(vec![fake.clone()]);
    let first = bench.pass(&reconciler);
    assert_eq!(outcomes(&first), pairs(&[("@hypaware/claude", "done")]));
    bench.advance_secs(1);
    let second = bench.pass(&reconciler);
    assert_eq!(outcomes(&second), pairs(&[("@hypaware/claude", "skipped")]));
    assert_eq!(fake.performs().len(), 1);
    assert_eq!(
        bench.doc()["backfill"]["@hypaware/claude"],
        json!({"status": "done", "request_key": "@hypaware/claude", "at": T0, "rows": 7})
    );
}

// 9.A 2
#[test]
fn a_missed_pass_is_recovered_and_nothing_is_written_before() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &[]);
    let reconciler = bench.reconciler(vec![fake.clone()]);
    assert!(bench.pass(&reconciler).results.is_empty());
    assert!(
        !bench.store.path().exists(),
        "no file when nothing to record"
    );
    fake.with(|state| state.keys = vec!["@hypaware/codex".into()]);
    assert_eq!(
        outcomes(&bench.pass(&reconciler)),
        pairs(&[("@hypaware/codex", "done")])
    );
    assert_eq!(fake.performs(), ["@hypaware/codex"]);
}

// 9.A 3
#[test]
fn the_store_round_trips_in_the_file_format() {
    use std::os::unix::fs::PermissionsExt;
    let bench = Bench::new();
    let reconciler = bench.reconciler(vec![Fake::new("backfill", &["claude", "codex"])]);
    assert_eq!(bench.store.read_lenient().as_value(), json!({}));
    bench.pass(&reconciler);
    assert_eq!(bench.store.read_lenient(), bench.store.read().unwrap());
    let doc = bench.doc();
    assert_eq!(doc["backfill"]["claude"]["status"], "done");
    assert_eq!(doc["backfill"]["codex"]["status"], "done");
    let text = std::fs::read_to_string(bench.store.path()).unwrap();
    assert!(text.ends_with("}\n") && text.starts_with("{\n  \"backfill\""));
    let mode = std::fs::metadata(bench.store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

// 9.A 4 (boot and confirm passes retry failed units at once)
#[test]
fn failed_is_retried_until_done_then_skipped() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["k"]);
    fake.with(|state| state.fallback = Outcome::failed("transcript dir missing"));
    let reconciler = bench.reconciler(vec![fake.clone()]);
    let first = bench.pass(&reconciler);
    assert_eq!(outcomes(&first), pairs(&[("k", "failed")]));
    let marker = &bench.doc()["backfill"]["k"];
    assert_eq!(marker["status"], "failed");
    assert_eq!(marker["reason"], "transcript dir missing");
    assert_eq!(marker["attempts"], 1);
    assert_eq!(marker["last_attempt"], T0);
    bench.pass(&reconciler);
    assert_eq!(bench.doc()["backfill"]["k"]["attempts"], 2);
    fake.with(|state| state.fallback = Outcome::done(Some(12)));
    let third = bench.pass(&reconciler);
    assert_eq!(outcomes(&third), pairs(&[("k", "done")]));
    assert_eq!(bench.doc()["backfill"]["k"]["rows"], 12);
    assert_eq!(
        outcomes(&bench.pass(&reconciler)),
        pairs(&[("k", "skipped")])
    );
    assert_eq!(fake.performs().len(), 3);
}

// 9.A 5
#[test]
fn a_perform_error_becomes_a_failed_marker() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["k"]);
    fake.with(|state| {
        state
            .script
            .push_back(Err(ActionError::new("spawn ENOENT")))
    });
    let reconciler = bench.reconciler(vec![fake]);
    assert_eq!(
        outcomes(&bench.pass(&reconciler)),
        pairs(&[("k", "failed")])
    );
    assert_eq!(bench.doc()["backfill"]["k"]["reason"], "spawn ENOENT");
}

// 9.A 6
#[test]
fn a_corrupt_marker_file_reads_as_empty_and_is_rewritten() {
    let bench = Bench::new();
    std::fs::create_dir_all(bench.store.path().parent().unwrap()).unwrap();
    std::fs::write(bench.store.path(), "{ this is not: json,,,").unwrap();
    let fake = Fake::new("backfill", &["k"]);
    let reconciler = bench.reconciler(vec![fake.clone()]);
    assert_eq!(outcomes(&bench.pass(&reconciler)), pairs(&[("k", "done")]));
    assert_eq!(fake.performs().len(), 1);
    let text = std::fs::read_to_string(bench.store.path()).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["backfill"]["k"]["status"], "done");
}

// 9.A 7
#[test]
fn a_failing_desired_does_not_block_other_handlers() {
    let bench = Bench::new();
    let bad = Fake::new("attach", &["x"]);
    bad.with(|state| state.desired_fails = true);
    let good = Fake::new("backfill", &["k"]);
    let reconciler = bench.reconciler(vec![bad.clone(), good.clone()]);
    let report = bench.pass(&reconciler);
    let kinds: Vec<(&str, &str)> = report
        .results
        .iter()
        .map(|result| (result.kind.as_str(), result.outcome.name()))
        .collect();
    assert_eq!(kinds, [("backfill", "done")]);
    assert!(bad.performs().is_empty());
    assert_eq!(good.performs().len(), 1);
}

// 9.A 8
#[test]
fn a_reversible_unit_is_undone_when_no_longer_desired() {
    let bench = Bench::new();
    let fake = Fake::new("attach", &["client-a"]);
    fake.with(|state| state.reversible = true);
    let reconciler = bench.reconciler(vec![fake.clone()]);
    bench.pass(&reconciler);
    assert_eq!(bench.doc()["attach"]["client-a"]["status"], "done");
    fake.with(|state| state.keys.clear());
    let report = bench.pass(&reconciler);
    assert_eq!(outcomes(&report), pairs(&[("client-a", "reversed")]));
    assert_eq!(fake.reverses(), ["client-a"]);
    assert!(bench.doc().get("attach").is_none(), "empty bucket removed");
}

// 9.A 9 (generic form)
#[test]
fn a_failed_reverse_keeps_the_marker_unchanged() {
    let bench = Bench::new();
    let seeded =
        json!({"attach": {"probeless": {"status": "done", "request_key": "probeless", "at": T0}}});
    bench.seed(seeded.clone());
    let fake = Fake::new("attach", &[]);
    fake.with(|state| {
        state.reversible = true;
        state.reverse_outcome = Outcome::failed("no attach_probe");
    });
    let reconciler = bench.reconciler(vec![fake]);
    let report = bench.pass(&reconciler);
    assert_eq!(outcomes(&report), pairs(&[("probeless", "failed")]));
    assert!(
        report.results[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("attach_probe")
    );
    assert_eq!(bench.doc(), seeded);
}

// 9.A 10
#[test]
fn a_failed_marker_with_assets_is_reversed_and_others_dropped() {
    let bench = Bench::new();
    bench.seed(json!({"attach": {
        "with-assets": {"status": "failed", "request_key": "with-assets", "installed_assets": ["skill"]},
        "no-assets": {"status": "failed", "request_key": "no-assets"}
    }}));
    let fake = Fake::new("attach", &[]);
    fake.with(|state| state.reversible = true);
    let reconciler = bench.reconciler(vec![fake.clone()]);
    let report = bench.pass(&reconciler);
    assert_eq!(outcomes(&report), pairs(&[("with-assets", "reversed")]));
    assert_eq!(fake.reverses(), ["with-assets"]);
    assert_eq!(bench.doc(), json!({}));
}

// 9.A 11 and 9.H 82
#[test]
fn a_run_once_handler_never_reverses() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["done-key", "failed-key"]);
    fake.with(|state| {
        state.script.push_back(Ok(Outcome::done(Some(1))));
        state.script.push_back(Ok(Outcome::failed("boom")));
    });
    let reconciler = bench.reconciler(vec![fake.clone()]);
    bench.pass(&reconciler);
    fake.with(|state| state.keys.clear());
    let report = bench.pass(&reconciler);
    assert!(report.results.is_empty());
    assert!(
        report.next_retry.is_none(),
        "no retry for units no longer wanted"
    );
    assert_eq!(bench.doc()["backfill"]["done-key"]["status"], "done");
    assert_eq!(bench.doc()["backfill"]["failed-key"]["status"], "failed");
    assert!(fake.reverses().is_empty());
}

// 9.A 15
#[test]
fn refused_short_circuits_even_when_stale() {
    let bench = Bench::new();
    let fake = Fake::new("attach", &["claude"]);
    fake.with(|state| {
        state.currency = Currency::Stale;
        state
            .script
            .push_back(Ok(Outcome::refused("JSONC settings file")));
    });
    let reconciler = bench.reconciler(vec![fake.clone()]);
    let first = bench.pass(&reconciler);
    assert_eq!(outcomes(&first), pairs(&[("claude", "refused")]));
    assert_eq!(
        first.results[0].reason.as_deref(),
        Some("JSONC settings file")
    );
    let second = bench.pass(&reconciler);
    assert_eq!(outcomes(&second), pairs(&[("claude", "skipped")]));
    assert_eq!(fake.performs().len(), 1);
    assert_eq!(bench.doc()["attach"]["claude"]["status"], "refused");

    // Control: a stale done marker is re-performed on every pass.
    let control_bench = Bench::new();
    let control = Fake::new("attach", &["claude"]);
    control.with(|state| state.currency = Currency::Stale);
    let reconciler = control_bench.reconciler(vec![control.clone()]);
    control_bench.pass(&reconciler);
    control_bench.pass(&reconciler);
    assert_eq!(control.performs().len(), 2);
}

// 9.A 16
#[test]
fn the_refused_marker_shape() {
    let bench = Bench::new();
    *bench.now.lock().unwrap() = "2026-08-04T00:00:00Z".parse().unwrap();
    bench.seed(json!({"attach": {"openclaw": {
        "status": "done", "request_key": "openclaw", "at": T0, "installed_assets": ["X"]
    }}}));
    let fake = Fake::new("attach", &["openclaw"]);
    fake.with(|state| {
        state.currency = Currency::Stale;
        state.fallback = Outcome::refused("openclaw.json is not ours");
    });
    bench.pass(&bench.reconciler(vec![fake]));
    assert_eq!(
        bench.doc()["attach"]["openclaw"],
        json!({
            "status": "refused", "request_key": "openclaw", "reason": "openclaw.json is not ours",
            "at": "2026-08-04T00:00:00.000Z", "installed_assets": ["X"], "prior_done": true
        })
    );
}

// 9.A 17
#[test]
fn the_reverse_gap_reverses_refused_markers_only_with_assets() {
    let bench = Bench::new();
    bench.seed(json!({"attach": {
        "refused-with-assets": {"status": "refused", "request_key": "refused-with-assets", "installed_assets": ["a"]},
        "refused-no-assets": {"status": "refused", "request_key": "refused-no-assets"}
    }}));
    let fake = Fake::new("attach", &[]);
    fake.with(|state| state.reversible = true);
    let report = bench.pass(&bench.reconciler(vec![fake.clone()]));
    assert_eq!(
        outcomes(&report),
        pairs(&[("refused-with-assets", "reversed")])
    );
    assert_eq!(fake.reverses(), ["refused-with-assets"]);
    assert_eq!(bench.doc(), json!({}));
}

// 9.A 18
#[test]
fn a_once_done_unit_is_reversed_not_dropped() {
    let bench = Bench::new();
    let fake = Fake::new("attach", &["claude"]);
    fake.with(|state| state.reversible = true);
    let reconciler = bench.reconciler(vec![fake.clone()]);
    bench.pass(&reconciler);
    let done = bench.doc()["attach"]["claude"].clone();
    assert!(done.get("prior_done").is_none() && done.get("installed_assets").is_none());
    fake.with(|state| {
        state.currency = Currency::Stale;
        state.fallback = Outcome::refused("conflict");
    });
    bench.pass(&reconciler);
    assert_eq!(bench.doc()["attach"]["claude"]["prior_done"], true);
    fake.with(|state| state.keys.clear());
    let report = bench.pass(&reconciler);
    assert_eq!(outcomes(&report), pairs(&[("claude", "reversed")]));
    assert_eq!(bench.doc(), json!({}));
}

// 9.A 19
#[test]
fn prior_done_survives_repeated_failures() {
    let bench = Bench::new();
    let fake = Fake::new("attach", &["applied", "never-applied"]);
    fake.with(|state| {
        state.reversible = true;
        state.currency = Currency::Stale;
        for outcome in [
            Outcome::done(None),
            Outcome::failed("x"),
            Outcome::failed("x"),
            Outcome::failed("x"),
            Outcome::failed("x"),
            Outcome::failed("x"),
        ] {
            state.script.push_back(Ok(outcome));
        }
    });
    let reconciler = bench.reconciler(vec![fake.clone()]);
    for _ in 0..3 {
        bench.pass(&reconciler);
    }
    let doc = bench.doc();
    assert_eq!(doc["attach"]["applied"]["status"], "failed");
    assert_eq!(doc["attach"]["applied"]["attempts"], 2);
    assert_eq!(doc["attach"]["applied"]["prior_done"], true);
    assert!(doc["attach"]["never-applied"].get("prior_done").is_none());
    fake.with(|state| state.keys.clear());
    bench.pass(&reconciler);
    assert_eq!(fake.reverses(), ["applied"]);
    assert_eq!(bench.doc(), json!({}));
}

// 9.H 78
#[test]
fn a_failed_marker_is_re_performed_even_if_current() {
    let bench = Bench::new();
    bench.seed(json!({"backfill": {"k": {"status": "failed", "request_key": "k", "attempts": 1}}}));
    let fake = Fake::new("backfill", &["k"]);
    bench.pass(&bench.reconciler(vec![fake.clone()]));
    assert_eq!(fake.performs().len(), 1);
}

// 9.H 79
#[test]
fn a_panicking_is_current_counts_as_current() {
    let bench = Bench::new();
    bench.seed(json!({"backfill": {"k": {"status": "done", "request_key": "k"}}}));
    let fake = Fake::new("backfill", &["k"]);
    fake.with(|state| state.currency = Currency::Panics);
    let report = bench.pass(&bench.reconciler(vec![fake.clone()]));
    assert_eq!(outcomes(&report), pairs(&[("k", "skipped")]));
    assert!(fake.performs().is_empty());
}

// 9.H 80 (a typed outcome cannot be invalid; a panic is the Rust analogue)
#[test]
fn a_panicking_perform_becomes_a_failed_marker_and_the_pass_goes_on() {
    let bench = Bench::new();
    let bad = Fake::new("attach", &["x"]);
    bad.with(|state| state.panics = true);
    let good = Fake::new("backfill", &["k"]);
    let report = bench.pass(&bench.reconciler(vec![bad, good.clone()]));
    assert_eq!(outcomes(&report), pairs(&[("x", "failed"), ("k", "done")]));
    let marker = &bench.doc()["attach"]["x"];
    assert_eq!(marker["status"], "failed");
    assert_eq!(marker["reason"], "handler panicked: perform blew up");
}

// 9.H 81
#[test]
fn a_failure_without_reason_reads_unknown() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["k"]);
    fake.with(|state| {
        state.fallback = Outcome {
            reason: None,
            ..Outcome::failed("")
        }
    });
    bench.pass(&bench.reconciler(vec![fake]));
    assert_eq!(bench.doc()["backfill"]["k"]["reason"], "unknown");
}

// 9.H 83
#[test]
fn unknown_kinds_and_fields_survive_a_pass() {
    let bench = Bench::new();
    bench.seed(json!({
        "future": {"thing": {"status": "done", "shape": [1, 2, {"x": null}]}},
        "backfill": {"old": {"status": "done", "request_key": "old", "extra": {"kept": true}}}
    }));
    let fake = Fake::new("backfill", &["old", "new"]);
    bench.pass(&bench.reconciler(vec![fake]));
    let doc = bench.doc();
    assert_eq!(
        doc["future"],
        json!({"thing": {"status": "done", "shape": [1, 2, {"x": null}]}})
    );
    assert_eq!(doc["backfill"]["old"]["extra"], json!({"kept": true}));
    assert_eq!(doc["backfill"]["new"]["status"], "done");
}

// 9.H 84
#[test]
fn a_pass_where_everything_is_skipped_does_not_rewrite() {
    let bench = Bench::new();
    let reconciler = bench.reconciler(vec![Fake::new("backfill", &["k"])]);
    bench.pass(&reconciler);
    let before = std::fs::metadata(bench.store.path())
        .unwrap()
        .modified()
        .unwrap();
    let inode_before =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(bench.store.path()).unwrap());
    bench.pass(&reconciler);
    let after = std::fs::metadata(bench.store.path()).unwrap();
    assert_eq!(after.modified().unwrap(), before);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&after),
        inode_before,
        "not replaced"
    );
}

// 9.H 85
#[test]
fn done_over_failed_drops_the_failure_fields() {
    let bench = Bench::new();
    bench.seed(json!({"backfill": {"k": {
        "status": "failed", "request_key": "k", "reason": "x", "last_attempt": T0, "attempts": 4,
        "next_attempt": T0
    }}}));
    bench.pass(&bench.reconciler(vec![Fake::new("backfill", &["k"])]));
    assert_eq!(
        bench.doc()["backfill"]["k"],
        json!({"status": "done", "request_key": "k", "at": T0, "rows": 7})
    );
}

// 9.H 86
#[test]
fn an_unreadable_store_fails_the_pass() {
    let bench = Bench::new();
    std::fs::create_dir_all(bench.store.path()).unwrap();
    let reconciler = bench.reconciler(vec![Fake::new("backfill", &["k"])]);
    let outcome = reconciler.pass(&bench.config, FailedUnits::RetryNow, &Cancel::never());
    assert!(matches!(outcome, Err(StoreError::Read { .. })));
}

#[test]
fn duplicate_keys_in_one_desired_perform_once() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["k", "k"]);
    let report = bench.pass(&bench.reconciler(vec![fake.clone()]));
    assert_eq!(outcomes(&report), pairs(&[("k", "done"), ("k", "skipped")]));
    assert_eq!(fake.performs().len(), 1);
}

#[test]
fn a_durable_running_marker_is_written_before_perform_and_gets_the_pid() {
    let bench = Bench::new();
    bench.seed(json!({"backfill": {"k": {"status": "failed", "request_key": "k", "attempts": 2}}}));
    let mut fake = Fake::new("backfill", &["k"]);
    fake.store = Some(bench.store.clone());
    bench.pass(&bench.reconciler(vec![fake.clone()]));
    let seen = fake
        .state
        .lock()
        .unwrap()
        .seen_during_perform
        .clone()
        .unwrap();
    assert_eq!(
        seen[0]["backfill"]["k"],
        json!({"status": "running", "request_key": "k", "pid": null, "started_at": T0, "attempts": 2})
    );
    assert_eq!(seen[1]["backfill"]["k"]["pid"], 4242);
    assert_eq!(bench.doc()["backfill"]["k"]["status"], "done");
}

#[test]
fn detail_never_overrides_the_core_fields() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["k"]);
    let mut outcome = Outcome::done(Some(1));
    outcome.detail.insert("status".into(), json!("hijacked"));
    outcome
        .detail
        .insert("endpoint".into(), json!("http://127.0.0.1:1"));
    fake.with(|state| state.fallback = outcome);
    bench.pass(&bench.reconciler(vec![fake]));
    let marker = &bench.doc()["backfill"]["k"];
    assert_eq!(marker["status"], "done");
    assert_eq!(marker["endpoint"], "http://127.0.0.1:1");
}

#[test]
fn a_failed_unit_waits_for_its_next_attempt_unless_retried_now() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["k"]);
    fake.with(|state| state.fallback = Outcome::failed("nope"));
    let reconciler = bench.reconciler(vec![fake.clone()]);
    let first = bench.pass_with(&reconciler, FailedUnits::WhenDue);
    let next = first.next_retry.expect("a retry is scheduled");
    let waited = next.duration_since(T0.parse().unwrap()).as_secs_f64();
    assert!((48.0..=72.0).contains(&waited), "first backoff {waited}s");
    assert_eq!(
        bench.doc()["backfill"]["k"]["next_attempt"],
        json!(crate::time::iso_ms(next))
    );

    // Not yet due: deferred, nothing written, the same retry time reported.
    bench.advance_secs(30);
    let early = bench.pass_with(&reconciler, FailedUnits::WhenDue);
    assert_eq!(outcomes(&early), pairs(&[("k", "deferred")]));
    assert_eq!(early.next_retry, Some(next));
    assert_eq!(fake.performs().len(), 1);

    // A boot pass or confirm edge retries at once.
    let now = bench.pass_with(&reconciler, FailedUnits::RetryNow);
    assert_eq!(outcomes(&now), pairs(&[("k", "failed")]));
    assert_eq!(bench.doc()["backfill"]["k"]["attempts"], 2);
    let second_wait = now
        .next_retry
        .unwrap()
        .duration_since(bench.now.lock().unwrap().to_owned())
        .as_secs_f64();
    assert!(
        (96.0..=144.0).contains(&second_wait),
        "second backoff {second_wait}s"
    );

    // Once due, a retry pass performs it.
    bench.advance_secs(200);
    let due = bench.pass_with(&reconciler, FailedUnits::WhenDue);
    assert_eq!(outcomes(&due), pairs(&[("k", "failed")]));
    assert_eq!(fake.performs().len(), 3);
}

#[test]
fn a_cancelled_pass_stops_after_the_unit_in_flight() {
    let bench = Bench::new();
    let fake = Fake::new("backfill", &["a", "b"]);
    let reconciler = bench.reconciler(vec![fake.clone()]);
    let (source, cancel) = CancelSource::new();
    source.cancel(std::time::Instant::now());
    let report = reconciler
        .pass(&bench.config, FailedUnits::RetryNow, &cancel)
        .unwrap();
    assert!(report.cancelled);
    assert!(fake.performs().is_empty());
    assert!(!bench.store.path().exists());
}
