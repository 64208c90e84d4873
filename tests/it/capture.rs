//! Continuous capture (contract §13) end to end: a joined daemon keeps the
//! cache, and through the forward sink central, current with no one
//! touching the host; `on_join: false` imports only what was written after
//! the join; a failing sweep shows its error in status and recovers.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::forward_answers::Host;
use crate::history;
use crate::support::{TestDaemon, wait_until};

/// Capture every 30 s (the minimum) is 0.75 s at this scale; the export
/// tick 1.5 s; probation 3 s.
const SCALE: &str = "40";
const WAIT: Duration = Duration::from_secs(40);

/// A joined host at `SCALE` with Claude capturing every 30 s and
/// `claude_config` merged into its plugin config. The plugin comes from the
/// local layer, so no served config (and no probation) is in the way.
fn capturing_host(claude_config: Value) -> Host {
    let mut host = Host::joined();
    host.env.set_var("HYP_TIME_SCALE", SCALE);
    let mut config = json!({"capture": {"interval_seconds": 30}});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), claude_config.as_object()) {
        config.extend(extra.clone());
    }
    let local = json!({"version": 2, "plugins": [{"name": "@hypaware/claude", "config": config}]});
    std::fs::write(
        host.env.hyp_home().join("hypaware-config.json"),
        serde_json::to_vec_pretty(&local).expect("a JSON document"),
    )
    .expect("write the local layer");
    host
}

/// A Claude line stamped `offset_secs` from now (after the join when > 0).
fn line_now(session: &str, index: usize, offset_secs: i64) -> String {
    let ts = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + offset_secs)
        .expect("a valid timestamp")
        .strftime("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string();
    json!({"sessionId": session, "uuid": format!("{session}-{index:06}"), "type": "user",
           "cwd": "/home/u/live", "timestamp": ts,
           "message": {"role": "user", "content": [{"type": "text", "text": format!("live {index}")}]}})
    .to_string()
}

fn append(path: &Path, lines: &[String]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open a transcript");
    for line in lines {
        writeln!(file, "{line}").expect("append a line");
    }
}

fn capture_row(host: &Host) -> Value {
    host.status()["capture"]["claude"].clone()
}

#[test]
fn a_joined_daemon_brings_new_sessions_and_appended_lines_to_central_on_its_own() {
    let host = capturing_host(json!({}));
    let first = history::write_session(&host.env, "-p", "s-first", "/home/u/p", 5, 60);
    let daemon = TestDaemon::start(&host.env, WAIT);
    wait_until(WAIT, "the first import on central", || {
        host.stored_part_ids().len() == 5
    });

    // Lines appended to a session, and a new session, after the import.
    append(
        &first,
        &[line_now("s-first", 5, 0), line_now("s-first", 6, 0)],
    );
    let project = first.parent().expect("a project dir");
    append(
        &project.join("s-new.jsonl"),
        &[
            line_now("s-new", 0, 0),
            line_now("s-new", 1, 0),
            line_now("s-new", 2, 0),
        ],
    );
    wait_until(WAIT, "the new lines on central", || {
        host.stored_part_ids().len() == 10
    });
    host.assert_all_stored_once();
    let row = capture_row(&host);
    assert_eq!(row["enabled"], true);
    assert_eq!(row["interval_seconds"], 30);
    assert!(row["last_sweep_at"].is_string(), "{row}");
    assert!(row["next_sweep_at"].is_string(), "{row}");
    assert_eq!(row["last_error"], Value::Null);
    // The sweeps that found nothing read nothing: the log's sweep lines
    // after the import wrote rows only for the lines appended.
    daemon.stop();
    let status = host.status();
    assert_eq!(
        status["capture"]["claude"]["next_sweep_at"],
        Value::Null,
        "no next sweep without a daemon"
    );
}

#[test]
fn with_on_join_off_a_sweep_imports_only_what_was_written_after_the_join() {
    let host = capturing_host(json!({"backfill": {"on_join": false}}));
    // History from before the join (its lines a day old).
    let old = history::write_session(&host.env, "-p", "s-old", "/home/u/p", 4, 60);
    let daemon = TestDaemon::start(&host.env, WAIT);
    // Written after the join (stamped a few seconds ahead of now).
    append(&old, &[line_now("s-old", 4, 5), line_now("s-old", 5, 5)]);
    wait_until(WAIT, "the lines written after the join on central", || {
        host.stored_part_ids().len() == 2
    });
    // A few more sweeps: still only those two.
    let sweeps = |host: &Host| capture_row(host)["last_sweep_at"].clone();
    let seen = sweeps(&host);
    wait_until(WAIT, "another sweep", || sweeps(&host) != seen);
    assert_eq!(
        host.cache_part_ids(),
        ["s-old-000004#0", "s-old-000005#0"],
        "only the lines written after the join are imported"
    );
    host.assert_all_stored_once();
    daemon.stop();
}

#[test]
fn a_failing_sweep_shows_its_error_and_the_next_one_recovers() {
    let host = capturing_host(json!({}));
    let first = history::write_session(&host.env, "-p", "s-first", "/home/u/p", 3, 60);
    let daemon = TestDaemon::start(&host.env, WAIT);
    wait_until(WAIT, "the first import on central", || {
        host.stored_part_ids().len() == 3
    });
    // A malformed local-only list fails every import (fail closed).
    host.write_policy("local-only.json", "{not json");
    wait_until(WAIT, "a sweep to fail", || {
        capture_row(&host)["last_error"].is_object()
    });
    let row = capture_row(&host);
    assert!(
        row["last_error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("hyp backfill exited with code 1")),
        "{row}"
    );
    let text = host.env.hyp(["status"]).assert_success().stdout();
    assert!(text.contains("last error:"), "{text}");
    std::fs::remove_file(host.policy_path("local-only.json")).expect("remove the list");
    append(&first, &[line_now("s-first", 3, 0)]);
    wait_until(
        WAIT,
        "the sweep to recover and the new line on central",
        || capture_row(&host)["last_error"].is_null() && host.stored_part_ids().len() == 4,
    );
    host.assert_all_stored_once();
    daemon.stop();
}
