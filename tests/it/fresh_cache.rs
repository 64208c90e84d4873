//! A first import into a cache that does not exist yet is built in a
//! temporary file beside `cache.db` and moved into place only when complete
//! (contract §7): killed at any point it leaves no cache or the whole one,
//! the next run removes the leftover and ends with exactly the manifest's
//! rows; SIGINT still publishes what was parsed; two first imports at once
//! make one cache and lose nothing; readers meanwhile see no cache.
//!
//! Kill points are conditions on the temporary file (it exists, it has grown
//! past a size), never sleeps.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::backfill::{assert_exact_rows, assert_rerun_completes, count, json_document, provider};
use crate::corpus::{SLOW_CLAUDE, expected_rows, generated_corpus};
use crate::support::{TestEnv, wait_until};

fn cache_dir(env: &TestEnv) -> PathBuf {
    env.state_root().join("cache")
}

/// The first-import temporary files (`cache.db.importing.<pid>`) present.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("cache.db.importing."))
        })
        .collect();
    found.sort();
    found
}

fn spawn_backfill(env: &TestEnv) -> Child {
    env.command(["backfill", "claude", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hyp backfill")
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// Wait until the child is building and its own temporary file (not a
/// killed run's leftover) has reached `bytes` (or the child is gone: a fast
/// machine may finish first).
fn wait_for_build(env: &TestEnv, child: &mut Child, bytes: u64) {
    let dir = cache_dir(env);
    let own = dir.join(format!("cache.db.importing.{}", child.id()));
    wait_until(
        Duration::from_secs(120),
        "the first import's temporary file to grow",
        || {
            std::fs::metadata(&own).is_ok_and(|meta| meta.len() >= bytes.max(1))
                || child.try_wait().ok().flatten().is_some()
                || dir.join("cache.db").exists()
        },
    );
}

/// Whether the SQLite file's header says WAL (bytes 18 and 19 are 2).
fn is_wal(db: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(db)
        .and_then(|mut file| file.read_exact(&mut header))
        .expect("read the cache's header");
    header[18..20] == [2, 2]
}

fn rows_in_cache(env: &TestEnv) -> u64 {
    count(env, "SELECT count(*) AS n FROM ai_gateway_messages") as u64
}

#[test]
fn a_first_import_killed_anywhere_leaves_no_cache_or_a_whole_one() {
    let mut env = TestEnv::new();
    let (_, manifest) = generated_corpus(&mut env, &SLOW_CLAUDE);
    let expected = expected_rows(&manifest, "claude");
    let dir = cache_dir(&env);
    let db = dir.join("cache.db");
    // Just created, a little in, well in: each run starts a new first
    // import (no cache yet) over the last one's leftover.
    for bytes in [1, 256 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024] {
        let mut child = spawn_backfill(&env);
        wait_for_build(&env, &mut child, bytes);
        signal(&child, libc::SIGKILL);
        let status = child.wait().expect("wait for hyp backfill");
        if db.exists() {
            // It finished before the kill landed: then it is whole.
            assert_eq!(rows_in_cache(&env), expected, "a cache in place is whole");
            std::fs::remove_dir_all(&dir).unwrap();
            continue;
        }
        assert!(
            status.code().is_none(),
            "killed at {bytes} B: {status:?} (no cache in place)"
        );
        assert!(
            !temp_files(&dir).is_empty(),
            "killed at {bytes} B: the dead import's file is left over"
        );
        // Readers see no cache, not an error about one, and status names
        // the dead import's file as a leftover.
        let status = env.hyp(["status", "--json"]);
        assert_eq!(status.code(), 0, "status: {}", status.stderr());
        let pid = child.id();
        let builds = status.stdout_json()["cache"]["first_imports"].clone();
        assert!(
            builds.as_array().is_some_and(|builds| builds
                .iter()
                .any(|build| build["pid"] == pid && build["running"] == false)),
            "killed at {bytes} B: {builds}"
        );
    }
    let run = env.hyp(["backfill", "claude", "--json"]).assert_success();
    assert_eq!(
        provider(&run.stdout_json(), "claude")["rows_written"].as_u64(),
        Some(expected)
    );
    assert_exact_rows(&env, expected);
    assert_eq!(temp_files(&dir), Vec::<PathBuf>::new(), "leftovers removed");
    let rerun = env.hyp(["backfill", "claude", "--json"]).assert_success();
    assert_eq!(
        provider(&rerun.stdout_json(), "claude")["rows_written"].as_u64(),
        Some(0)
    );
}

#[test]
fn sigint_during_a_first_import_publishes_what_was_parsed_and_exits_130() {
    let mut env = TestEnv::new();
    let (_, manifest) = generated_corpus(&mut env, &SLOW_CLAUDE);
    let expected = expected_rows(&manifest, "claude");
    let dir = cache_dir(&env);
    let mut child = spawn_backfill(&env);
    wait_for_build(&env, &mut child, 2 * 1024 * 1024);
    signal(&child, libc::SIGINT);
    let output = child.wait_with_output().expect("wait for hyp backfill");
    let document: Value = json_document(&output.stdout);
    let written = provider(&document, "claude")["rows_written"]
        .as_u64()
        .unwrap();
    if output.status.code() == Some(130) {
        assert_eq!(provider(&document, "claude")["status"], "interrupted");
        assert!(written < expected, "cut short ({written} of {expected})");
    } else {
        assert_eq!(output.status.code(), Some(0), "finished before the signal");
    }
    assert!(dir.join("cache.db").exists(), "what was parsed is in place");
    assert_eq!(temp_files(&dir), Vec::<PathBuf>::new());
    assert_eq!(rows_in_cache(&env), written);
    assert!(
        is_wal(&dir.join("cache.db")),
        "a published cache is in WAL mode"
    );

    assert_rerun_completes(&env, written, expected);
}

#[test]
fn two_first_imports_at_once_make_one_cache_and_lose_nothing() {
    let mut env = TestEnv::new();
    let (_, manifest) = generated_corpus(&mut env, &SLOW_CLAUDE);
    let expected = expected_rows(&manifest, "claude");
    let mut first = spawn_backfill(&env);
    wait_for_build(&env, &mut first, 1);
    let second = spawn_backfill(&env);
    let (first, second) = (
        first.wait_with_output().expect("first backfill"),
        second.wait_with_output().expect("second backfill"),
    );
    let mut total = 0;
    for output in [&first, &second] {
        assert_eq!(
            output.status.code(),
            Some(0),
            "stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        total += provider(&json_document(&output.stdout), "claude")["rows_written"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(total, expected, "each row written once between the two");
    assert_eq!(rows_in_cache(&env), expected);
    assert_eq!(temp_files(&cache_dir(&env)), Vec::<PathBuf>::new());
}

#[test]
fn readers_during_a_first_import_see_no_cache_yet() {
    let mut env = TestEnv::new();
    generated_corpus(&mut env, &SLOW_CLAUDE);
    let dir = cache_dir(&env);
    let mut child = spawn_backfill(&env);
    wait_for_build(&env, &mut child, 1);
    // SIGSTOP holds the import still, so the readers look mid-build.
    signal(&child, libc::SIGSTOP);
    let building = !dir.join("cache.db").exists();
    let child_pid = child.id();
    let status = env.hyp(["status", "--json"]);
    let text = env.hyp(["status"]).stdout();
    let query = env.hyp([
        "query",
        "sql",
        "SELECT count(*) AS n FROM ai_gateway_messages",
    ]);
    signal(&child, libc::SIGCONT);
    let output = child.wait_with_output().expect("wait for hyp backfill");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(status.code(), 0, "status: {}", status.stderr());
    if building {
        assert_eq!(
            status.stdout_json()["cache"]["rows"].as_u64(),
            Some(0),
            "{}",
            status.stdout()
        );
        let builds = &status.stdout_json()["cache"]["first_imports"];
        assert_eq!(builds[0]["pid"], child_pid, "{builds}");
        assert_eq!(builds[0]["running"], true, "{builds}");
        assert!(
            text.contains(&format!("first import:    running (pid {child_pid},")),
            "{text}"
        );
        assert!(
            query.stderr().contains("no cache"),
            "query: {} {}",
            query.code(),
            query.stderr()
        );
    }
    assert!(dir.join("cache.db").exists());
}
