//! The host heals itself, and status tells the truth meanwhile (contract
//! §8): a cache lost while the daemon idles is imported again; a damaged or
//! missing identity is enrolled again from the join token; failed polls are
//! shown and, three in a row, degrade `overall`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::forward_answers::{Host, error_kinds};
use crate::history;
use crate::support::{TestDaemon, wait_until};

/// The worker's periodic look (300 s) is 3 s at this scale; a poll of the
/// seed (300 s) 3 s too.
const SCALE: &str = "100";
const WAIT: Duration = Duration::from_secs(40);

/// A joined host at `SCALE` whose local layer enables Claude, with
/// `sessions` x 5 rows of history.
fn host_with_history(sessions: usize) -> (Host, u64) {
    let mut host = Host::joined();
    host.env.set_var("HYP_TIME_SCALE", SCALE);
    let local = json!({"version": 2, "plugins": [{"name": "@hypaware/claude"}]});
    std::fs::write(
        host.env.hyp_home().join("hypaware-config.json"),
        serde_json::to_vec_pretty(&local).expect("a JSON document"),
    )
    .expect("write the local layer");
    let rows = history::write_history(&host.env, sessions, 5, 60);
    (host, rows)
}

fn cache_counts(host: &Host) -> (u64, u64) {
    let run = host.env.hyp([
        "query",
        "sql",
        "SELECT count(*) AS n, count(DISTINCT part_id) AS d FROM ai_gateway_messages",
        "--json",
    ]);
    if run.code() != 0 {
        return (0, 0);
    }
    let rows = run.stdout_json();
    (
        rows[0]["n"].as_u64().unwrap_or(0),
        rows[0]["d"].as_u64().unwrap_or(0),
    )
}

fn diagnostic(status: &Value, kind: &str) -> Option<Value> {
    status["diagnostics"]
        .as_array()?
        .iter()
        .find(|diagnostic| diagnostic["kind"] == kind)
        .cloned()
}

#[test]
fn a_cache_deleted_emptied_garbled_or_replaced_while_the_daemon_idles_is_imported_again() {
    let (host, rows) = host_with_history(2);
    let daemon = TestDaemon::start(&host.env, WAIT);
    // Rows and the done marker: a marker is written after its child ends.
    let imported = |host: &Host| {
        cache_counts(host) == (rows, rows) && host.status()["client_actions"][0]["state"] == "done"
    };
    wait_until(WAIT, "backfill-on-join", || imported(&host));
    let db = host.env.state_root().join("cache/cache.db");
    let companions = |db: &std::path::Path| {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    };
    let faults: [(&str, &str, &dyn Fn()); 4] = [
        ("deleted", "cache_missing", &|| {
            std::fs::remove_file(&db).expect("delete the cache");
            companions(&db);
        }),
        ("emptied", "cache_empty", &|| {
            std::fs::write(&db, b"").expect("empty the cache");
            companions(&db);
        }),
        ("garbage", "cache_damaged", &|| {
            std::fs::write(&db, vec![0x5a; 64 * 1024]).expect("garble the cache");
            companions(&db);
        }),
        ("foreign", "cache_foreign", &|| {
            std::fs::remove_file(&db).expect("remove the cache");
            companions(&db);
            let conn = rusqlite::Connection::open(&db).expect("make another database");
            conn.execute_batch("CREATE TABLE ai_gateway_messages (id INTEGER, body TEXT);")
                .expect("another schema");
        }),
    ];
    for (fault, kind, break_cache) in faults {
        break_cache();
        let status = host.status();
        let found = diagnostic(&status, kind)
            .unwrap_or_else(|| panic!("{fault}: no {kind} diagnostic in {status:#}"));
        assert_eq!(found["severity"], "error", "{fault}");
        assert!(
            found["message"]
                .as_str()
                .is_some_and(|message| message.contains("imports the history again")),
            "{fault}: {found}"
        );
        assert_eq!(status["overall"], "degraded", "{fault}");
        wait_until(
            WAIT,
            &format!("the cache imported again after: {fault}"),
            || imported(&host),
        );
        wait_until(
            WAIT,
            &format!("status healthy again after: {fault}"),
            || error_kinds(&host.status()).is_empty(),
        );
    }
    let aside: Vec<String> = std::fs::read_dir(host.env.state_root().join("cache"))
        .expect("the cache directory")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".damaged-") || name.contains(".foreign-"))
        .filter(|name| !name.ends_with("-wal") && !name.ends_with("-shm"))
        .collect();
    assert_eq!(
        aside.len(),
        2,
        "the garbled and the foreign file are kept: {aside:?}"
    );
    daemon.stop();
}

#[test]
fn a_damaged_or_missing_identity_is_enrolled_again_from_the_join_token() {
    let (host, _) = host_with_history(1);
    let identity = host.identity_path();
    let daemon = TestDaemon::start(&host.env, WAIT);
    wait_until(WAIT, "a first poll with an identity", || {
        identity.is_file() && host.status()["remote_config"]["last_poll_at"].is_string()
    });

    // Damaged while the daemon holds it: written back at the next poll.
    // The daemon is held still while status looks, or it could repair the
    // file first.
    daemon.pause();
    std::fs::write(&identity, b"{\"jwt\": \"trunc").expect("damage the identity");
    let status = host.status();
    daemon.resume();
    assert!(
        diagnostic(&status, "identity_unreadable").is_some(),
        "{status:#}"
    );
    wait_until(WAIT, "the identity written back", || {
        diagnostic(&host.status(), "identity_unreadable").is_none()
    });
    daemon.stop();

    // Damaged while no daemon runs: the next boot enrols again.
    std::fs::write(&identity, b"garbage").expect("damage the identity");
    let bootstraps = host.central.count("/v1/identity/bootstrap");
    let daemon = TestDaemon::start(&host.env, WAIT);
    wait_until(WAIT, "a new enrolment", || {
        host.central.count("/v1/identity/bootstrap") > bootstraps
            && diagnostic(&host.status(), "identity_unreadable").is_none()
    });
    daemon.stop();

    // Missing, with no join token left: status says to join again.
    std::fs::remove_file(&identity).expect("remove the identity");
    let seed = host.env.state_root().join("config-control/seed.json");
    let mut document: Value =
        serde_json::from_slice(&std::fs::read(&seed).expect("read the seed")).expect("JSON");
    document["sinks"]["central"]["config"]["identity"] = json!({});
    std::fs::write(&seed, serde_json::to_vec(&document).expect("JSON")).expect("write the seed");
    let status = host.status();
    let missing = diagnostic(&status, "identity_missing").expect("an identity diagnostic");
    assert_eq!(missing["repair"][0], "hyp join <url> <token>", "{missing}");
}

#[test]
fn failed_polls_are_shown_and_three_in_a_row_degrade_overall() {
    let (host, _) = host_with_history(1);
    let daemon = TestDaemon::start(&host.env, WAIT);
    wait_until(WAIT, "a first poll", || {
        host.status()["remote_config"]["last_poll_at"].is_string()
    });
    let remote = host.status()["remote_config"].clone();
    assert_eq!(remote["last_poll_result"], "not_registered", "{remote}");
    assert!(remote["next_poll_at"].is_string(), "{remote}");

    host.central
        .fail(json!({"kind": "status", "status": 500, "count": 1000}));
    wait_until(WAIT, "three failed polls", || {
        error_kinds(&host.status()).contains(&"central_unreachable".to_string())
    });
    let status = host.status();
    let remote = &status["remote_config"];
    assert_eq!(
        remote["last_poll_result"], "config_poll_http_error",
        "{remote}"
    );
    assert_eq!(remote["last_error"]["http_status"], 500, "{remote}");
    assert_eq!(status["overall"], "degraded");
    let text = host.env.hyp(["status"]).assert_success().stdout();
    assert!(text.contains("last failure:"), "{text}");
    let logs = host
        .env
        .hyp(["daemon", "logs", "-n", "200"])
        .assert_success()
        .stdout();
    assert!(logs.contains("central.config.poll"), "{logs}");

    host.central.clear_failures();
    wait_until(WAIT, "a good poll again", || {
        let status = host.status();
        status["remote_config"]["last_poll_result"] == "not_registered"
            && !error_kinds(&status).contains(&"central_unreachable".to_string())
    });
    daemon.stop();
}
