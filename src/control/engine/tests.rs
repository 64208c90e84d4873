//! Unit tests of the apply engine against a temporary control dir.

use super::*;
use serde_json::json;

fn now() -> Timestamp {
    "2026-06-12T00:00:00Z".parse().unwrap()
}

fn later(secs: i64) -> Timestamp {
    Timestamp::from_second(now().as_second() + secs).unwrap()
}

fn doc(interval: Option<u64>) -> Value {
    let mut config = json!({"url": "http://127.0.0.1:9", "identity": {}});
    if let Some(interval) = interval {
        config["poll_interval_seconds"] = json!(interval);
    }
    json!({"version": 2, "plugins": [{"name": "@hypaware/central"}],
           "sinks": {"central": {"plugin": "@hypaware/central", "config": config}}})
}

struct Fixture {
    _dir: tempfile::TempDir,
    paths: Paths,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::with_home(dir.path().join(".hyp"));
    Fixture { _dir: dir, paths }
}

const SEED: &str = "{\n  \"version\": 2,\n  \"sinks\": {\"central\": {\"plugin\": \"@hypaware/central\", \"config\": {\"url\": \"http://x\", \"identity\": {\"bootstrap_token\": \"tok\"}}}}\n}\n";

fn write_seed(paths: &Paths) {
    statefile::write_bytes(&paths.seed(), SEED.as_bytes()).unwrap();
}

fn engine(paths: &Paths) -> ApplyEngine {
    ApplyEngine::new(paths.clone(), TimeScale::REAL)
}

fn state(paths: &Paths) -> ApplyState {
    read_state(paths)
}

fn apply(paths: &Paths, etag: &str, at: Timestamp) -> StageOutcome {
    engine(paths).stage_at(&doc(Some(5)), etag, at)
}

#[test]
fn first_apply_over_a_seed_keeps_the_seed_in_slot_a_and_retires_it() {
    let fx = fixture();
    let paths = &fx.paths;
    write_seed(paths);
    let outcome = apply(paths, "rev-1", now());
    assert!(
        matches!(outcome, StageOutcome::Applied { ref etag, .. } if etag == "rev-1"),
        "{outcome:?}"
    );
    assert_eq!(config::read_active_pointer(paths), Some(Slot::B));
    assert_eq!(fs::read_to_string(paths.slot(Slot::A)).unwrap(), SEED);
    assert!(!paths.slot_etag(Slot::A).exists());
    assert_eq!(
        fs::read_to_string(paths.slot_etag(Slot::B)).unwrap(),
        "rev-1\n"
    );
    let slot_b: Value = serde_json::from_slice(&fs::read(paths.slot(Slot::B)).unwrap()).unwrap();
    assert_eq!(slot_b, doc(Some(5)));
    assert!(!paths.seed().exists(), "the seed is retired");
    let marker = state(paths).probation.unwrap();
    assert_eq!(marker.etag, "rev-1");
    assert_eq!(marker.slot, WireSlot::B);
    assert_eq!(marker.previous_slot, Some(WireSlot::A));
    assert_eq!(marker.applied_at, "2026-06-12T00:00:00.000Z");
    assert_eq!(
        marker.until, "2026-06-12T00:02:00.000Z",
        "5 s cadence -> 120 s floor"
    );
    assert_eq!(running_etag(paths).as_deref(), Some("rev-1"));
    let mode = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&paths.slot(Slot::B)), 0o600);
    assert_eq!(mode(&paths.apply_state()), 0o600);
    let link = fs::read_link(paths.active_pointer()).unwrap();
    assert_eq!(link, Path::new("config.b.json"), "a relative symlink");
}

#[test]
fn slots_alternate_and_remember_the_previous_one() {
    let fx = fixture();
    let paths = &fx.paths;
    assert!(matches!(
        apply(paths, "rev-1", now()),
        StageOutcome::Applied { .. }
    ));
    let first = state(paths).probation.unwrap();
    assert_eq!(
        (first.slot, first.previous_slot),
        (WireSlot::B, None),
        "no seed, no pointer"
    );
    assert!(!paths.slot(Slot::A).exists());
    assert!(matches!(
        apply(paths, "rev-2", now()),
        StageOutcome::Applied { .. }
    ));
    let second = state(paths).probation.unwrap();
    assert_eq!(
        (second.slot, second.previous_slot),
        (WireSlot::A, Some(WireSlot::B))
    );
    assert!(matches!(
        apply(paths, "rev-3", now()),
        StageOutcome::Applied { .. }
    ));
    let third = state(paths).probation.unwrap();
    assert_eq!(
        (third.slot, third.previous_slot),
        (WireSlot::B, Some(WireSlot::A))
    );
}

#[test]
fn the_probation_window_follows_the_staged_cadence_and_the_time_scale() {
    let window = |interval: Option<u64>, scale: f64| {
        let fx = fixture();
        let scale = TimeScale::parse(Some(&scale.to_string())).unwrap();
        let mut engine = ApplyEngine::new(fx.paths.clone(), scale);
        engine.stage_at(&doc(interval), "rev-1", now());
        let marker = state(&fx.paths).probation.unwrap();
        parse_iso(&marker.until).unwrap().as_millisecond()
            - parse_iso(&marker.applied_at).unwrap().as_millisecond()
    };
    assert_eq!(window(None, 1.0), 900_000);
    assert_eq!(window(Some(5), 1.0), 120_000);
    assert_eq!(window(Some(60), 1.0), 180_000);
    assert_eq!(window(Some(3600), 1.0), 10_800_000);
    assert_eq!(window(Some(60), 10.0), 18_000);
}

#[test]
fn the_stage_checks_run_in_the_reference_order() {
    let fx = fixture();
    let paths = &fx.paths;
    let mut engine = engine(paths);
    // Empty etag.
    assert!(matches!(
        engine.stage_at(&doc(None), "", now()),
        StageOutcome::Failed(StageError::ConfigInvalid { .. })
    ));
    // Invalid document: bad etag remembered, nothing written but state.
    let outcome = engine.stage_at(&json!({"version": 1}), "rev-bad", now());
    assert!(
        matches!(outcome, StageOutcome::Failed(StageError::ConfigInvalid { ref message }) if message.contains("/version")),
        "{outcome:?}"
    );
    let bad = state(paths).bad_etag.unwrap();
    assert_eq!(
        (bad.etag.as_str(), bad.reason.as_str()),
        ("rev-bad", "validation_failed")
    );
    assert!(config::read_active_pointer(paths).is_none());
    assert!(state(paths).last_rollback.is_none());
    // The same etag again is skipped without validation (even if now valid).
    assert_eq!(
        engine.stage_at(&doc(None), "rev-bad", now()),
        StageOutcome::SkippedBadEtag
    );
    // Too large: no bad etag recorded.
    let huge = json!({"version": 2, "plugins": [{"name": "x".repeat(MAX_DOCUMENT_BYTES)}]});
    let outcome = engine.stage_at(&huge, "rev-huge", now());
    assert!(
        matches!(
            outcome,
            StageOutcome::Failed(StageError::DocumentTooLarge { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(state(paths).bad_etag.unwrap().etag, "rev-bad");
    // A good one applies; then the process refuses any further stage.
    assert!(matches!(
        engine.stage_at(&doc(None), "rev-1", now()),
        StageOutcome::Applied { .. }
    ));
    assert!(engine.restart_pending());
    assert_eq!(
        engine.stage_at(&doc(None), "rev-2", now()),
        StageOutcome::Failed(StageError::RestartPending)
    );
    // After a restart, the running etag is a no-op.
    let mut engine = ApplyEngine::new(paths.clone(), TimeScale::REAL);
    assert_eq!(
        engine.stage_at(&doc(None), "rev-1", now()),
        StageOutcome::NoopSameEtag
    );
}

#[test]
fn confirm_fires_once_per_probation_and_clears_the_rollback_warning() {
    let fx = fixture();
    let paths = &fx.paths;
    let mut engine = engine(paths);
    assert_eq!(engine.confirm_poll(), None, "no probation, no edge");
    assert!(
        !paths.apply_state().exists(),
        "a confirm without probation writes nothing"
    );
    apply(paths, "rev-1", now());
    let mut with_rollback = state(paths);
    with_rollback.last_rollback = Some(LastRollback {
        etag: "rev-0".into(),
        reason: "probation_expired".into(),
        at: iso_ms(now()),
        detail: None,
    });
    with_rollback.bad_etag = Some(BadEtag {
        etag: "rev-0".into(),
        reason: "probation_expired".into(),
        recorded_at: iso_ms(now()),
    });
    write_state(paths, &with_rollback).unwrap();
    assert_eq!(engine.confirm_poll().as_deref(), Some("rev-1"));
    assert_eq!(engine.confirm_poll(), None);
    let after = state(paths);
    assert!(after.probation.is_none());
    assert!(after.last_rollback.is_none());
    assert_eq!(
        after.bad_etag.unwrap().etag,
        "rev-0",
        "the bad etag stays remembered"
    );
}

#[test]
fn an_expired_first_apply_rolls_back_to_the_seed_bytes() {
    let fx = fixture();
    let paths = &fx.paths;
    write_seed(paths);
    apply(paths, "rev-1", now());
    let mut engine = engine(paths);
    assert_eq!(
        engine.expire_probation_at(later(200)),
        Some(RollbackOutcome::RolledBack { to: Slot::A })
    );
    assert!(engine.restart_pending());
    assert_eq!(config::read_active_pointer(paths), Some(Slot::A));
    assert_eq!(running_etag(paths), None, "seed bytes carry no etag");
    assert_eq!(
        central_layer_document(paths).unwrap()["sinks"]["central"]["config"]["identity"]["bootstrap_token"],
        "tok"
    );
    let after = state(paths);
    assert!(after.probation.is_none());
    let bad = after.bad_etag.unwrap();
    assert_eq!(
        (bad.etag.as_str(), bad.reason.as_str()),
        ("rev-1", "probation_expired")
    );
    assert_eq!(after.last_rollback.unwrap().etag, "rev-1");
    // Nothing left to roll back.
    assert_eq!(engine.expire_probation_at(later(300)), None);
    // The re-served bad etag is skipped.
    let mut fresh = ApplyEngine::new(paths.clone(), TimeScale::REAL);
    assert_eq!(
        fresh.stage_at(&doc(Some(5)), "rev-1", later(400)),
        StageOutcome::SkippedBadEtag
    );
}

#[test]
fn a_chained_apply_rolls_back_by_one_revision() {
    let fx = fixture();
    let paths = &fx.paths;
    write_seed(paths);
    apply(paths, "rev-1", now());
    engine(paths).confirm_poll();
    apply(paths, "rev-2", now());
    assert_eq!(config::read_active_pointer(paths), Some(Slot::A));
    assert_eq!(
        engine(paths).expire_probation_at(later(500)),
        Some(RollbackOutcome::RolledBack { to: Slot::B })
    );
    assert_eq!(running_etag(paths).as_deref(), Some("rev-1"));
}

#[test]
fn no_distinct_target_clears_probation_and_keeps_the_config() {
    let fx = fixture();
    let paths = &fx.paths;
    apply(paths, "rev-1", now());
    let mut engine = engine(paths);
    assert_eq!(
        engine.expire_probation_at(later(500)),
        Some(RollbackOutcome::NoTarget)
    );
    assert!(!engine.restart_pending(), "no restart without a target");
    let after = state(paths);
    assert!(after.probation.is_none());
    assert!(after.bad_etag.is_none());
    assert!(after.last_rollback.is_none());
    assert_eq!(running_etag(paths).as_deref(), Some("rev-1"));
    // previous_slot == slot is the same guard.
    let mut state = read_state(paths);
    state.probation = Some(ProbationMarker {
        etag: "rev-1".into(),
        applied_at: iso_ms(now()),
        until: iso_ms(now()),
        slot: WireSlot::B,
        previous_slot: Some(WireSlot::B),
    });
    write_state(paths, &state).unwrap();
    assert_eq!(
        engine.expire_probation_at(later(500)),
        Some(RollbackOutcome::NoTarget)
    );
}

#[test]
fn boot_evaluation_matrix() {
    // Nothing at all.
    let fx = fixture();
    let eval = evaluate_at_boot_at(&fx.paths, now());
    assert_eq!((eval.action.as_str(), eval.probation), ("none", None));

    // Unexpired probation: kept, with its deadline for the watchdog.
    let fx = fixture();
    write_seed(&fx.paths);
    apply(&fx.paths, "rev-1", now());
    let eval = evaluate_at_boot_at(&fx.paths, later(10));
    assert_eq!(eval.action, "none");
    let probation = eval.probation.unwrap();
    assert_eq!(probation.etag, "rev-1");
    assert_eq!(
        probation.deadline,
        SystemTime::try_from(later(120)).unwrap()
    );
    assert_eq!(active_probation(&fx.paths), Some(probation));

    // Expired probation: rolled back at boot to the seed.
    let eval = evaluate_at_boot_at(&fx.paths, later(121));
    assert_eq!(
        (eval.action.as_str(), eval.probation),
        ("rolled_back", None)
    );
    assert_eq!(config::read_active_pointer(&fx.paths), Some(Slot::A));
    assert_eq!(state(&fx.paths).bad_etag.unwrap().etag, "rev-1");

    // Expired without a distinct target.
    let fx = fixture();
    apply(&fx.paths, "rev-1", now());
    let eval = evaluate_at_boot_at(&fx.paths, later(1000));
    assert_eq!(eval.action, "rollback_no_target");
    assert_eq!(running_etag(&fx.paths).as_deref(), Some("rev-1"));
    assert!(state(&fx.paths).bad_etag.is_none());

    // Orphaned marker: the crash came before the flip.
    let fx = fixture();
    apply(&fx.paths, "rev-1", now());
    let mut orphan = state(&fx.paths);
    if let Some(marker) = orphan.probation.as_mut() {
        marker.slot = WireSlot::A;
    }
    write_state(&fx.paths, &orphan).unwrap();
    let eval = evaluate_at_boot_at(&fx.paths, later(1));
    assert_eq!(eval.action, "cleared_orphan");
    assert!(state(&fx.paths).probation.is_none());
    assert_eq!(running_etag(&fx.paths).as_deref(), Some("rev-1"));
}

#[test]
fn boot_recovers_a_wedged_bad_active_config() {
    let wedge = |paths: &Paths| {
        apply(paths, "rev-1", now());
        let wedged = ApplyState {
            bad_etag: Some(BadEtag {
                etag: "rev-1".into(),
                reason: "probation_expired".into(),
                recorded_at: iso_ms(now()),
            }),
            ..ApplyState::default()
        };
        write_state(paths, &wedged).unwrap();
    };
    let fx = fixture();
    wedge(&fx.paths);
    let eval = evaluate_at_boot_at(&fx.paths, now());
    assert_eq!(
        (eval.action.as_str(), eval.recovery.as_deref()),
        ("recovered_bad_active", Some("repull"))
    );
    assert!(state(&fx.paths).bad_etag.is_none());
    assert_eq!(running_etag(&fx.paths).as_deref(), Some("rev-1"));

    let fx = fixture();
    wedge(&fx.paths);
    write_seed(&fx.paths);
    let eval = evaluate_at_boot_at(&fx.paths, now());
    assert_eq!(eval.recovery.as_deref(), Some("seed"));
    assert!(fs::symlink_metadata(fx.paths.active_pointer()).is_err());
    assert_eq!(running_etag(&fx.paths), None);
    assert_eq!(
        central_layer_document(&fx.paths).unwrap()["sinks"]["central"]["config"]["url"],
        "http://x"
    );
}

#[test]
fn a_corrupt_state_file_reads_as_empty_and_is_replaced() {
    let fx = fixture();
    let paths = &fx.paths;
    statefile::create_private_dir(&paths.control_dir()).unwrap();
    fs::write(paths.apply_state(), b"{\"probation\": {\"etag\": tru").unwrap();
    assert_eq!(read_state(paths), ApplyState::default());
    assert_eq!(active_probation(paths), None);
    assert_eq!(evaluate_at_boot_at(paths, now()).action, "none");
    assert!(matches!(
        apply(paths, "rev-1", now()),
        StageOutcome::Applied { .. }
    ));
    assert_eq!(state(paths).probation.unwrap().etag, "rev-1");
}

#[test]
fn unknown_state_keys_survive_engine_writes() {
    let fx = fixture();
    let paths = &fx.paths;
    statefile::write(&paths.apply_state(), &json!({"future": {"x": 1}})).unwrap();
    apply(paths, "rev-1", now());
    engine(paths).confirm_poll();
    let raw = statefile::read_value(&paths.apply_state()).ok().unwrap();
    assert_eq!(raw, json!({"future": {"x": 1}}));
}

#[test]
fn reset_removes_the_applied_layer_but_not_the_seed() {
    let fx = fixture();
    let paths = &fx.paths;
    write_seed(paths);
    apply(paths, "rev-1", now());
    write_seed(paths);
    let report = reset_to_seed(paths).unwrap();
    assert!(report.had_active_slot);
    for path in [
        paths.active_pointer(),
        paths.apply_state(),
        paths.slot(Slot::A),
        paths.slot(Slot::B),
        paths.slot_etag(Slot::B),
    ] {
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "{} must be gone",
            path.display()
        );
    }
    assert!(paths.seed().exists());
    assert!(!reset_to_seed(paths).unwrap().had_active_slot);
}

#[test]
fn a_section_error_of_an_introduced_plugin_is_a_validation_failure() {
    let fx = fixture();
    let paths = &fx.paths;
    write_seed(paths);
    let mut served = doc(Some(5));
    served["plugins"] = json!([
        {"name": "@hypaware/central"},
        {"name": "@hypaware/claude", "config": {"backfill": {"on_join": "false"}}}
    ]);
    let outcome = engine(paths).stage_at(&served, "rev-bad", now());
    assert!(
        matches!(outcome, StageOutcome::Failed(StageError::ConfigInvalid { ref message }) if message.contains("config_section_invalid")),
        "{outcome:?}"
    );
    assert_eq!(state(paths).bad_etag.unwrap().reason, "validation_failed");
    assert!(paths.seed().exists(), "still in seed mode");
    assert!(config::read_active_pointer(paths).is_none());
}
