//! `hyp sync` on the command line and what `hyp status` says about exports
//! (contract §12 "`hyp sync`" and "Status", §8, §9): when it asks, what a
//! dry run shows, the `--json` document, the errors a person sees, and the
//! central sink row of status before, during and after failures.

use serde_json::{Value, json};

use crate::forward_answers::{Host, central_row, sink_report};
use crate::support::{TestEnv, list_tree};

/// The keys of a JSON object, in document order.
fn keys(object: &Value) -> Vec<&str> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect()
}

const REPORT_KEYS: [&str; 9] = [
    "instance",
    "status",
    "rows_sent",
    "bytes_sent",
    "chunks",
    "rows_withheld",
    "rows_quarantined",
    "pending_rows",
    "error",
];

#[test]
fn without_a_terminal_or_yes_it_is_a_usage_error_that_says_to_add_yes() {
    let host = Host::with_rows(1, 4);
    let run = host.env.hyp(["sync"]).assert_exit(2);
    let stderr = run.stderr();
    assert!(stderr.contains("hyp sync: "), "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(run.stdout(), "");
    assert!(host.ingests().is_empty(), "nothing is sent");
    assert_eq!(host.central_row()["pending_rows"], 4);

    let run = host.env.hyp(["sync", "--json"]).assert_exit(2);
    assert!(run.stderr().contains("--yes"));
    assert_eq!(run.stdout(), "");
    assert!(host.ingests().is_empty());
}

#[test]
fn a_dry_run_needs_no_yes_sends_nothing_and_shows_what_is_pending() {
    let host = Host::with_rows(2, 3);
    let run = host.env.hyp(["sync", "--dry-run"]).assert_success();
    let stdout = run.stdout();
    assert!(
        stdout.contains("central: 6 rows pending"),
        "the plan names the instance and its rows: {stdout}"
    );
    assert!(stdout.contains(&host.central.url), "{stdout}");
    assert!(
        run.stderr().contains("nothing was sent"),
        "{}",
        run.stderr()
    );

    let run = host
        .env
        .hyp(["sync", "--dry-run", "--json"])
        .assert_success();
    let document = run.stdout_json();
    assert_eq!(keys(&document), ["schema_version", "dry_run", "sinks"]);
    assert_eq!(document["schema_version"], 1);
    assert_eq!(document["dry_run"], true);
    let report = sink_report(&run);
    assert_eq!(keys(&report), REPORT_KEYS);
    assert_eq!(report["instance"], "central");
    assert_eq!(report["pending_rows"], 6);
    assert_eq!(report["rows_sent"], 0);

    assert!(host.ingests().is_empty(), "a dry run sends nothing");
    assert_eq!(host.central_row()["pending_rows"], 6);
    assert_eq!(host.central_row()["last_export_at"], Value::Null);
}

#[test]
fn the_json_document_has_exactly_the_documented_keys_in_order() {
    let host = Host::with_rows(2, 3);
    let run = host.sync(&[]).assert_success();
    // One JSON document on stdout (stdout_json refuses anything more).
    let document = run.stdout_json();
    assert_eq!(keys(&document), ["schema_version", "sinks"]);
    assert_eq!(document["schema_version"], 1);
    let report = sink_report(&run);
    assert_eq!(keys(&report), REPORT_KEYS);
    let ingests = host.ingests();
    let bytes: u64 = ingests
        .iter()
        .map(|request| request["body_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        report,
        json!({
            "instance": "central",
            "status": "exported",
            "rows_sent": 6,
            "bytes_sent": bytes,
            "chunks": ingests.len(),
            "rows_withheld": 0,
            "rows_quarantined": 0,
            "pending_rows": 0,
            "error": null,
        })
    );
    assert!(
        !run.stderr().contains('{'),
        "nothing JSON on stderr: {}",
        run.stderr()
    );

    // Nothing left: a success with nothing to send.
    let run = host.sync(&[]).assert_success();
    let report = sink_report(&run);
    assert_eq!(report["status"], "nothing_to_send");
    assert_eq!(report["rows_sent"], 0);
    assert_eq!(report["chunks"], 0);

    // A failure is still one document on stdout, with the error in it.
    crate::history::write_session(&host.env, "-home-u-repo", "more", "/home/u/repo", 2, 40);
    host.backfill();
    host.central
        .script_ingest(json!({"kind": "status", "status": 500}));
    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(keys(&report), REPORT_KEYS);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["pending_rows"], 2);
    assert!(report["error"].as_str().unwrap().contains("500"));
}

#[test]
fn a_host_that_is_not_joined_exits_1_and_says_so() {
    let env = TestEnv::new();
    let run = env.hyp(["sync", "--yes"]).assert_exit(1);
    assert!(run.stderr().contains("not joined"), "{}", run.stderr());
    assert!(run.stderr().contains("hyp join"), "{}", run.stderr());
    let run = env.hyp(["sync", "--yes", "--json"]).assert_exit(1);
    assert!(run.stderr().contains("not joined"));
}

#[test]
fn an_unknown_instance_exits_1_naming_the_known_ones() {
    let host = Host::with_rows(1, 2);
    let run = host.env.hyp(["sync", "nope", "--yes"]).assert_exit(1);
    let stderr = run.stderr();
    assert!(stderr.contains("'nope'"), "{stderr}");
    assert!(
        stderr.contains("central"),
        "names the known instance: {stderr}"
    );
    assert!(host.ingests().is_empty());

    // The known name works.
    let run = host
        .env
        .hyp(["sync", "central", "--yes", "--json"])
        .assert_success();
    assert_eq!(sink_report(&run)["rows_sent"], 2);
}

#[test]
fn help_exits_0() {
    let env = TestEnv::new();
    let run = env.hyp(["sync", "--help"]).assert_success();
    let stdout = run.stdout();
    for flag in ["--yes", "--dry-run", "--retry-quarantined", "--json"] {
        assert!(stdout.contains(flag), "help names {flag}: {stdout}");
    }
    assert!(
        !stdout.contains("--scheduled"),
        "the daemon's flag is hidden"
    );
}

// ---------------------------------------------------------------------------
// What `hyp status` says about exports.

const FORWARD_KEYS: [&str; 8] = [
    "state",
    "pending_rows",
    "last_export_at",
    "last_success_at",
    "next_attempt_at",
    "rows_sent_total",
    "rows_quarantined",
    "last_error",
];

/// `hyp status` and `hyp status --json` leave the file tree as they found it.
fn status_creates_nothing(host: &Host) -> (Value, String) {
    let before = list_tree(host.env.root());
    let status = host.status();
    let text = host.env.hyp(["status"]).assert_success().stdout();
    assert_eq!(
        list_tree(host.env.root()),
        before,
        "hyp status must create nothing"
    );
    (status, text)
}

/// The text line of the central sink.
fn central_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|line| line.starts_with("central: "))
        .unwrap_or_else(|| panic!("no central line in:\n{text}"))
        .to_string()
}

#[test]
fn status_shows_pending_rows_then_what_was_sent_and_creates_nothing() {
    let host = Host::with_rows(2, 3);
    let (status, text) = status_creates_nothing(&host);
    let row = central_row(&status);
    for key in FORWARD_KEYS {
        assert!(row.get(key).is_some(), "status row has {key}: {row:#}");
    }
    assert_eq!(status["cache"]["rows"], 6);
    assert_eq!(
        row["pending_rows"], 6,
        "before any export, every cached row"
    );
    assert_eq!(row["state"], "idle");
    assert_eq!(row["rows_sent_total"], 0);
    assert_eq!(row["last_export_at"], Value::Null);
    assert_eq!(row["last_success_at"], Value::Null);
    assert_eq!(row["last_error"], Value::Null);
    let line = central_line(&text);
    assert!(
        line.starts_with("central: 6 rows pending, no export yet"),
        "{line}"
    );

    host.sync_ok();
    let (status, text) = status_creates_nothing(&host);
    let row = central_row(&status);
    assert_eq!(row["pending_rows"], 0);
    assert_eq!(row["rows_sent_total"], 6);
    assert_eq!(row["state"], "idle");
    assert!(row["last_export_at"].is_string());
    assert_eq!(row["last_success_at"], row["last_export_at"]);
    assert_eq!(row["next_attempt_at"], Value::Null);
    assert_eq!(row["rows_quarantined"], 0);
    let line = central_line(&text);
    assert!(
        line.starts_with("central: 0 rows pending, last export ") && line.contains(" ago"),
        "{line}"
    );
    assert!(line.contains("6 sent in all"), "{line}");
}

#[test]
fn status_shows_a_failing_export_with_its_error_and_creates_nothing() {
    let host = Host::with_rows(1, 4);
    host.sync_ok();
    crate::history::write_session(&host.env, "-home-u-repo", "more", "/home/u/repo", 2, 40);
    host.backfill();
    host.central
        .script_ingest(json!({"kind": "status", "status": 500, "count": 2}));
    host.sync(&[]).assert_exit(1);

    let (status, text) = status_creates_nothing(&host);
    let row = central_row(&status);
    assert_eq!(row["pending_rows"], 2);
    assert_eq!(row["rows_sent_total"], 4);
    assert!(
        row["state"] == "backoff" || row["state"] == "failing",
        "{row:#}"
    );
    assert!(row["next_attempt_at"].is_string());
    let error = &row["last_error"];
    assert_eq!(keys(error), ["at", "http_status", "kind", "message"]);
    assert_eq!(error["http_status"], 500);
    assert!(
        row["last_success_at"].is_string(),
        "the earlier success stays"
    );
    assert_ne!(row["last_export_at"], row["last_success_at"]);
    let line = central_line(&text);
    assert!(
        line.starts_with("central: 2 rows pending, failing since "),
        "{line}"
    );
    assert!(line.contains("(central answered 500"), "the cause: {line}");

    // A second failure keeps the streak's start.
    host.sync(&[]).assert_exit(1);
    let (_, again) = status_creates_nothing(&host);
    let since = |line: &str| {
        line.split("failing since ")
            .nth(1)
            .map(|rest| rest[..5].to_string())
    };
    assert_eq!(since(&central_line(&again)), since(&line));

    host.sync_ok();
    let (status, text) = status_creates_nothing(&host);
    assert_eq!(central_row(&status)["last_error"], Value::Null);
    assert!(central_line(&text).starts_with("central: 0 rows pending, last export "));
}
