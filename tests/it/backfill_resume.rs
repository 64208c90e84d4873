//! Capture sweeps (issue 12, points 3 and 7): a run over unchanged history
//! reads and writes nothing, a file that grew is read from where its last
//! import stopped, and the rows are exactly the ones a whole read writes.
//! Exactness is checked against a second cache fed from the same files with
//! continued reads turned off (`HYP_BACKFILL_NO_RESUME=1`): today's whole
//! re-read of a changed file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use crate::backfill::{assert_exact_rows, claude_line, count, provider, query};
use crate::support::{Run, TestEnv, wait_until};

/// The mtime of history as first written, and after it grew.
const FIRST_MTIME: u64 = 1_790_000_000;
const GROWN_MTIME: u64 = 1_790_000_600;

/// Two caches over the same history files: `resumed` imports as a sweep
/// does, `whole` with continued reads turned off.
struct Pair {
    resumed: TestEnv,
    whole: TestEnv,
}

/// One run of `hyp backfill ... --json` in each cache of a [`Pair`].
struct PairRun {
    resumed: Run,
    whole: Run,
}

impl PairRun {
    /// `key` of `name`'s report in the continued run.
    fn resumed(&self, name: &str, key: &str) -> u64 {
        counter(&self.resumed, name, key)
    }

    /// `key` of `name`'s report in the whole run.
    fn whole(&self, name: &str, key: &str) -> u64 {
        counter(&self.whole, name, key)
    }

    /// Both runs report the same counters, bytes read aside, and
    /// `rows_skipped` (rows already in the cache), which a whole re-read
    /// counts for every earlier row and a continued read does not meet.
    fn assert_same_counters(&self, names: &[&str]) {
        for name in names {
            for key in [
                "items_seen",
                "sessions_seen",
                "rows_written",
                "files_seen",
                "files_read",
                "files_unchanged",
            ] {
                assert_eq!(
                    self.resumed(name, key),
                    self.whole(name, key),
                    "{name} {key}: continued vs whole"
                );
            }
        }
    }
}

/// A continued read of one file read the `unread` bytes after the last
/// line end it had imported, and at most the four 4 KiB fingerprint windows
/// (before the old point, before the new one).
fn assert_continued(run: &PairRun, name: &str, unread: u64) {
    let read = run.resumed(name, "bytes_read");
    assert!(
        read >= unread && read <= unread + 4 * 4096,
        "{name} read {read} bytes for {unread} unread"
    );
}

/// A whole read of `path` read it all.
fn assert_whole(run: &PairRun, name: &str, path: &Path) {
    let size = std::fs::metadata(path).expect("metadata").len();
    let read = run.resumed(name, "bytes_read");
    assert!(
        read >= size,
        "{name} read {read} of {size}: not a whole read"
    );
}

fn counter(run: &Run, name: &str, key: &str) -> u64 {
    provider(&run.stdout_json(), name)[key]
        .as_u64()
        .unwrap_or_else(|| run.explain(&format!("{name} has no counter {key}")))
}

impl Pair {
    /// History lives under `resumed`'s temporary root, `history/`.
    fn new() -> Pair {
        let mut resumed = TestEnv::new();
        let mut whole = TestEnv::new();
        let history = resumed.root().join("history");
        for env in [&mut resumed, &mut whole] {
            env.set_var(
                "CLAUDE_CONFIG_DIR",
                history.join("claude").display().to_string(),
            );
            env.set_var("CODEX_HOME", history.join("codex").display().to_string());
        }
        whole.set_var("HYP_BACKFILL_NO_RESUME", "1");
        Pair { resumed, whole }
    }

    fn history(&self) -> PathBuf {
        self.resumed.root().join("history")
    }

    /// `hyp backfill <args> --json` in both caches.
    fn backfill(&self, args: &[&str]) -> PairRun {
        let argv: Vec<&str> = ["backfill"]
            .into_iter()
            .chain(args.iter().copied())
            .chain(["--json"])
            .collect();
        PairRun {
            resumed: self.resumed.hyp(&argv).assert_success(),
            whole: self.whole.hyp(&argv).assert_success(),
        }
    }

    /// Both caches hold the same rows, every column, ordered by `part_id`.
    fn assert_same_rows(&self, what: &str) {
        let sql = "SELECT * FROM ai_gateway_messages ORDER BY part_id";
        let resumed = query(&self.resumed, sql);
        let whole = query(&self.whole, sql);
        assert_eq!(resumed.len(), whole.len(), "{what}: row count");
        for (continued, reread) in resumed.iter().zip(&whole) {
            let differing: Vec<String> = continued
                .as_object()
                .expect("a row object")
                .iter()
                .filter(|(column, value)| reread.get(column.as_str()) != Some(value))
                .map(|(column, value)| format!("{column}: {value} vs {}", reread[column]))
                .collect();
            assert!(
                differing.is_empty(),
                "{what}: row {} differs (continued vs whole): {differing:?}",
                continued["part_id"]
            );
        }
        let distinct = "SELECT count(DISTINCT part_id) AS n FROM ai_gateway_messages";
        assert_eq!(count(&self.resumed, distinct), count(&self.whole, distinct));
        assert_eq!(count(&self.resumed, distinct) as usize, resumed.len());
    }
}

/// Write `bytes` to `path` (parents made) and set its mtime.
fn write_file(path: &Path, bytes: &[u8], mtime: u64) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("make the parent");
    std::fs::write(path, bytes).expect("write history");
    set_mtime(path, mtime);
}

/// Append `bytes` to `path` and set its mtime.
fn append_file(path: &Path, bytes: &[u8], mtime: u64) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open history for appending");
    file.write_all(bytes).expect("append history");
    drop(file);
    set_mtime(path, mtime);
}

fn set_mtime(path: &Path, mtime: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime)))
        .expect("set the mtime");
}

/// Every file under `root`, as (path relative to `root`, bytes).
fn files_under(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("read a corpus dir")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "jsonl") {
                let relative = path.strip_prefix(root).expect("under root").to_path_buf();
                out.push((relative, std::fs::read(&path).expect("read a corpus file")));
            }
        }
    }
    out.sort();
    out
}

/// The small generated corpus (20 files per provider), paths relative to
/// a history root (`claude/projects/...`, `codex/sessions/...`).
fn generated_files(scratch: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let generated = scratch.join("generated");
    crate::corpus::generate(&generated, &["--preset", "small"]);
    let mut files = Vec::new();
    for tree in ["claude", "codex"] {
        for (relative, bytes) in files_under(&generated.join(tree)) {
            files.push((Path::new(tree).join(relative), bytes));
        }
    }
    files
}

/// [`generated_files`] and, when it is beside the checkout, the real client
/// files of `shared/differential-data`.
fn split_corpus(scratch: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = generated_files(scratch);
    match crate::corpus::differential_data() {
        Some(real) => {
            for tree in ["claude", "codex"] {
                for (relative, bytes) in files_under(&real.join(tree)) {
                    files.push((Path::new(tree).join(relative), bytes));
                }
            }
        }
        None => eprintln!(
            "note: no shared/differential-data beside the checkout; splitting the generated corpus only"
        ),
    }
    files
}

/// Where a file is cut for the first import.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// After this percentage of its lines.
    Lines(usize),
    /// In the middle of the line at half the file: the first import sees a
    /// line still being written.
    InsideLine,
}

fn split_offset(bytes: &[u8], split: Split) -> usize {
    let ends: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .map(|(index, _)| index + 1)
        .collect();
    match split {
        Split::Lines(percent) => match ends.len() * percent / 100 {
            0 => 0,
            lines => ends[lines - 1],
        },
        Split::InsideLine => {
            let line = ends.len() / 2;
            let start = if line == 0 { 0 } else { ends[line - 1] };
            let end = ends.get(line).copied().unwrap_or(bytes.len());
            start + (end - start) / 2
        }
    }
}

/// The bytes a continued read must read again: from the last line end in
/// the prefix to the end of the file.
fn unread_after(bytes: &[u8], at: usize) -> u64 {
    let from = bytes[..at]
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |index| index + 1);
    (bytes.len() - from) as u64
}

#[test]
fn continued_reads_write_exactly_the_rows_of_whole_reads() {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let files = split_corpus(scratch.path());
    assert!(files.len() >= 40, "the corpus has files");
    let (mut resumed_bytes, mut whole_bytes) = (0, 0);
    for split in [
        Split::Lines(10),
        Split::Lines(50),
        Split::Lines(90),
        Split::InsideLine,
    ] {
        let pair = Pair::new();
        let mut codex_unread = 0;
        let mut codex_grown = 0;
        for (relative, bytes) in &files {
            let at = split_offset(bytes, split);
            write_file(&pair.history().join(relative), &bytes[..at], FIRST_MTIME);
            if relative.starts_with("codex") && at < bytes.len() {
                codex_unread += unread_after(bytes, at);
                codex_grown += 1;
            }
        }
        let args = ["claude", "codex", "--retention-days", "0"];
        pair.backfill(&args)
            .assert_same_counters(&["claude", "codex"]);
        pair.assert_same_rows(&format!("{split:?}, prefix"));
        for (relative, bytes) in &files {
            let at = split_offset(bytes, split);
            append_file(&pair.history().join(relative), &bytes[at..], GROWN_MTIME);
        }
        let grown = pair.backfill(&args);
        grown.assert_same_counters(&["claude", "codex"]);
        pair.assert_same_rows(&format!("{split:?}, grown"));
        // Codex never needs a whole read here: it reads what it had not
        // read, plus at most four 4 KiB fingerprint windows per file.
        let codex_read = grown.resumed("codex", "bytes_read");
        assert!(
            codex_read <= codex_unread + codex_grown * 4 * 4096,
            "{split:?}: codex read {codex_read} bytes for {codex_unread} unread"
        );
        for name in ["claude", "codex"] {
            resumed_bytes += grown.resumed(name, "bytes_read");
            whole_bytes += grown.whole(name, "bytes_read");
        }
        // A third run over the now unchanged history reads nothing.
        let again = pair.backfill(&args);
        for name in ["claude", "codex"] {
            assert_eq!(again.resumed(name, "bytes_read"), 0);
            assert_eq!(again.resumed(name, "rows_written"), 0);
        }
    }
    assert!(
        resumed_bytes * 10 < whole_bytes * 7,
        "continued reads read {resumed_bytes} bytes, whole reads {whole_bytes}"
    );
}

/// A cache directory as (name, length, mtime), the directory itself first.
fn cache_snapshot(env: &TestEnv) -> Vec<(String, u64, std::time::SystemTime)> {
    let dir = env.state_root().join("cache");
    let meta = |path: &Path| std::fs::metadata(path).expect("cache metadata");
    let dir_meta = meta(&dir);
    let mut out = vec![(
        ".".to_string(),
        dir_meta.len(),
        dir_meta.modified().expect("an mtime"),
    )];
    for entry in std::fs::read_dir(&dir)
        .expect("read the cache dir")
        .flatten()
    {
        let entry_meta = meta(&entry.path());
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry_meta.len(),
            entry_meta.modified().expect("an mtime"),
        ));
    }
    out.sort();
    out
}

#[test]
fn a_sweep_over_unchanged_history_reads_nothing_and_writes_nothing() {
    let pair = Pair::new();
    let scratch = tempfile::tempdir().expect("a scratch dir");
    for (relative, bytes) in generated_files(scratch.path()) {
        write_file(&pair.history().join(relative), &bytes, FIRST_MTIME);
    }
    let env = &pair.resumed;
    env.write(
        "home/.hyp/hypaware/plugins/@hypaware/claude/session-context.jsonl",
        "{\"session_id\":\"x\",\"cwd\":\"/nowhere\"}\n",
    );
    let args = ["backfill", "claude", "codex", "--json"];
    env.hyp(args).assert_success();
    let before = cache_snapshot(env);
    assert!(
        before.iter().all(|(name, _, _)| !name.ends_with("-wal")),
        "a finished import leaves no WAL: {before:?}"
    );
    let generation =
        std::fs::read(env.state_root().join("cache/generation")).expect("a generation");
    let sweep = env.hyp(args).assert_success();
    for name in ["claude", "codex"] {
        let seen = counter(&sweep, name, "files_seen");
        assert!(seen > 0);
        assert_eq!(counter(&sweep, name, "files_unchanged"), seen);
        assert_eq!(counter(&sweep, name, "files_read"), 0);
        assert_eq!(counter(&sweep, name, "bytes_read"), 0);
        assert_eq!(counter(&sweep, name, "items_seen"), 0);
        assert_eq!(counter(&sweep, name, "rows_written"), 0);
    }
    assert_eq!(cache_snapshot(env), before, "the sweep touched the cache");
    assert_eq!(
        std::fs::read(env.state_root().join("cache/generation")).expect("a generation"),
        generation
    );
    // The new counters follow the reference's keys, in this order.
    let document = sweep.stdout_json();
    let keys: Vec<&str> = provider(&document, "claude")
        .as_object()
        .expect("a report")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "provider",
            "plugin",
            "datasets",
            "status",
            "items_seen",
            "sessions_seen",
            "rows_written",
            "rows_skipped",
            "files_seen",
            "files_read",
            "files_unchanged",
            "bytes_read",
            "roots",
            "window",
            "bytes_seen",
            "lines_outside_window",
            "files_outside_window",
            "sessions_ignored",
            "files_ignored",
            "duration_ms"
        ]
    );
    let text = env.hyp(["backfill", "claude"]).assert_success();
    assert!(
        text.stdout()
            .contains("    files_seen=20  files_read=0  files_unchanged=20  bytes_read=0\n"),
        "{}",
        text.stdout()
    );
}

/// A Claude line of about 3 KiB at second `second` of a fixed minute.
fn padded_line(session: &str, number: usize, second: usize) -> String {
    claude_line(
        session,
        &format!("u{number}"),
        &format!("2026-11-01T00:00:{second:02}.000Z"),
        &format!("line {number} {}", "x".repeat(3000)),
    )
}

/// `lines` joined, each with its newline.
fn lines_text(lines: &[String]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

#[test]
fn a_line_being_written_lands_once_complete_and_a_cut_file_is_not_read_again() {
    let pair = Pair::new();
    let path = pair.history().join("claude/projects/p/s.jsonl");
    let lines: Vec<String> = (0..12).map(|n| padded_line("s", n, n)).collect();
    let cut = lines[10].len() / 2;
    let first = format!("{}{}", lines_text(&lines[..10]), &lines[10][..cut]);
    write_file(&path, first.as_bytes(), FIRST_MTIME);
    let args = ["claude", "--retention-days", "0"];
    let run = pair.backfill(&args);
    assert_eq!(run.resumed("claude", "rows_written"), 10);
    assert!(
        !run.resumed.stderr().contains("malformed"),
        "a line being written is not malformed: {}",
        run.resumed.stderr()
    );
    // Cut short for good (a crash): the file is not read again.
    let again = pair.backfill(&args);
    assert_eq!(again.resumed("claude", "files_unchanged"), 1);
    assert_eq!(again.resumed("claude", "bytes_read"), 0);
    // Completed: the line lands once, read from its start, not the file's.
    let rest = format!("{}\n{}", &lines[10][cut..], lines_text(&lines[11..]));
    append_file(&path, rest.as_bytes(), GROWN_MTIME);
    let grown = pair.backfill(&args);
    grown.assert_same_counters(&["claude"]);
    assert_eq!(grown.resumed("claude", "rows_written"), 2);
    assert_continued(
        &grown,
        "claude",
        (lines[10].len() + lines[11].len() + 2) as u64,
    );
    pair.assert_same_rows("a completed line");
}

#[test]
fn a_last_line_that_is_already_json_lands_at_once_and_only_its_newline_may_follow() {
    let pair = Pair::new();
    let lines: Vec<String> = (0..6).map(|n| padded_line("s", n, n)).collect();
    let ended = pair.history().join("claude/projects/p/ended.jsonl");
    let extended = pair.history().join("claude/projects/p/extended.jsonl");
    let without_newline = lines_text(&lines[..4]) + &lines[4];
    write_file(&ended, without_newline.as_bytes(), FIRST_MTIME);
    let other_file = |text: &str| text.replace("\"s\"", "\"t\"").replace("\"u", "\"t");
    write_file(
        &extended,
        other_file(&without_newline).as_bytes(),
        FIRST_MTIME,
    );
    let args = ["claude", "--retention-days", "0"];
    let run = pair.backfill(&args);
    assert_eq!(
        run.resumed("claude", "rows_written"),
        10,
        "5 lines, 2 files"
    );
    // The newline arrives, then a line: continued, nothing twice.
    append_file(&ended, format!("\n{}\n", lines[5]).as_bytes(), GROWN_MTIME);
    // More on the same line: it was not a whole line after all.
    append_file(
        &extended,
        format!("{{\"junk\":1}}\n{}\n", other_file(&lines[5])).as_bytes(),
        GROWN_MTIME,
    );
    let grown = pair.backfill(&args);
    grown.assert_same_counters(&["claude"]);
    pair.assert_same_rows("an open last line");
    // One new line in each file; the extended one lost its open line to
    // the junk, as a whole read sees it.
    assert_eq!(grown.resumed("claude", "rows_written"), 2);
    assert_eq!(grown.resumed("claude", "files_read"), 2);
}

#[test]
fn a_shrunk_or_replaced_file_is_read_whole() {
    let pair = Pair::new();
    let path = pair.history().join("claude/projects/p/s.jsonl");
    let lines: Vec<String> = (0..10).map(|n| padded_line("s", n, n)).collect();
    write_file(&path, lines_text(&lines).as_bytes(), FIRST_MTIME);
    let args = ["claude", "--retention-days", "0"];
    pair.backfill(&args);
    // Replaced by a longer file with other content.
    let other: Vec<String> = (0..12).map(|n| padded_line("other", n + 20, n)).collect();
    write_file(&path, lines_text(&other).as_bytes(), GROWN_MTIME);
    let replaced = pair.backfill(&args);
    assert_whole(&replaced, "claude", &path);
    assert_eq!(replaced.resumed("claude", "rows_written"), 12);
    pair.assert_same_rows("replaced");
    // Shrunk.
    write_file(&path, lines_text(&other[..5]).as_bytes(), GROWN_MTIME + 60);
    let shrunk = pair.backfill(&args);
    assert_whole(&shrunk, "claude", &path);
    shrunk.assert_same_counters(&["claude"]);
    pair.assert_same_rows("shrunk");
}

#[test]
fn a_claude_line_appended_out_of_timestamp_order_is_read_whole() {
    let pair = Pair::new();
    let path = pair.history().join("claude/projects/p/s.jsonl");
    let at = |number: usize, second: usize| padded_line("s", number, second);
    write_file(
        &path,
        lines_text(&[at(0, 10), at(1, 20), at(2, 30)]).as_bytes(),
        FIRST_MTIME,
    );
    let args = ["claude", "--retention-days", "0"];
    pair.backfill(&args);
    // 25 sorts before 30: a whole read places it earlier, so one is made.
    append_file(
        &path,
        lines_text(&[at(3, 25), at(4, 40)]).as_bytes(),
        GROWN_MTIME,
    );
    let late = pair.backfill(&args);
    late.assert_same_counters(&["claude"]);
    assert_whole(&late, "claude", &path);
    pair.assert_same_rows("an earlier line appended");
    // In order again: continued.
    let next = lines_text(&[at(5, 50)]);
    append_file(&path, next.as_bytes(), GROWN_MTIME + 60);
    let in_order = pair.backfill(&args);
    in_order.assert_same_counters(&["claude"]);
    assert_continued(&in_order, "claude", next.len() as u64);
    pair.assert_same_rows("a later line appended");
}

#[test]
fn a_window_that_no_longer_keeps_the_same_lines_means_a_whole_read() {
    let pair = Pair::new();
    let path = pair.history().join("claude/projects/p/s.jsonl");
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let days_ago = |number: usize, days: u64| {
        let ts = jiff::Timestamp::from_second((now - days * 86_400) as i64).expect("a time");
        claude_line(
            "s",
            &format!("u{number}"),
            &ts.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string(),
            &format!("line {number} {}", "x".repeat(3000)),
        )
    };
    write_file(
        &path,
        lines_text(&[days_ago(0, 100), days_ago(1, 50), days_ago(2, 10)]).as_bytes(),
        FIRST_MTIME,
    );
    pair.backfill(&["claude"]);
    append_file(&path, lines_text(&[days_ago(3, 1)]).as_bytes(), GROWN_MTIME);
    // 30 days drops the line of 50 days ago that the 90-day import kept.
    let narrower = pair.backfill(&["claude", "--retention-days", "30"]);
    narrower.assert_same_counters(&["claude"]);
    assert_whole(&narrower, "claude", &path);
    pair.assert_same_rows("a narrower window");
    // The same window again: the same lines, so continued.
    let next = lines_text(&[days_ago(4, 0)]);
    append_file(&path, next.as_bytes(), GROWN_MTIME + 60);
    let same = pair.backfill(&["claude", "--retention-days", "30"]);
    same.assert_same_counters(&["claude"]);
    assert_continued(&same, "claude", next.len() as u64);
    pair.assert_same_rows("the same window");
}

#[test]
fn a_codex_thread_id_that_arrives_late_means_a_whole_read() {
    let pair = Pair::new();
    let path = pair
        .history()
        .join("codex/sessions/2026/11/01/rollout-2026-11-01T00-00-00-late.jsonl");
    let item = |second: usize, text: &str| {
        json!({"timestamp": format!("2026-11-01T00:00:{second:02}.000Z"), "type": "response_item",
               "payload": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
        .to_string()
    };
    write_file(
        &path,
        lines_text(&[item(1, "hello"), item(2, "again")]).as_bytes(),
        FIRST_MTIME,
    );
    let args = ["codex", "--retention-days", "0"];
    pair.backfill(&args);
    let meta = json!({"timestamp": "2026-11-01T00:00:03.000Z", "type": "session_meta",
                      "payload": {"id": "thread-late", "timestamp": "2026-11-01T00:00:00.000Z"}})
    .to_string();
    append_file(
        &path,
        lines_text(&[meta, item(4, "more")]).as_bytes(),
        GROWN_MTIME,
    );
    let grown = pair.backfill(&args);
    grown.assert_same_counters(&["codex"]);
    assert_whole(&grown, "codex", &path);
    pair.assert_same_rows("a late session_meta");
    // The earlier messages get ids under the new thread id: new rows.
    assert_eq!(grown.resumed("codex", "rows_written"), 3);
}

#[test]
fn an_older_cache_without_resume_columns_reads_whole_then_continues() {
    let pair = Pair::new();
    let path = pair.history().join("claude/projects/p/s.jsonl");
    let lines: Vec<String> = (0..12).map(|n| padded_line("s", n, n)).collect();
    write_file(&path, lines_text(&lines[..8]).as_bytes(), FIRST_MTIME);
    let args = ["claude", "--retention-days", "0"];
    pair.backfill(&args);
    let db = pair.resumed.state_root().join("cache/cache.db");
    let conn = rusqlite::Connection::open(&db).expect("open the cache");
    conn.execute_batch(
        "ALTER TABLE imported_files DROP COLUMN resume_offset;
         ALTER TABLE imported_files DROP COLUMN resume_fingerprint;
         ALTER TABLE imported_files DROP COLUMN resume_state;",
    )
    .expect("make the cache look older");
    drop(conn);
    append_file(&path, lines_text(&lines[8..10]).as_bytes(), GROWN_MTIME);
    let upgraded = pair.backfill(&args);
    assert_whole(&upgraded, "claude", &path);
    upgraded.assert_same_counters(&["claude"]);
    let next = lines_text(&lines[10..]);
    append_file(&path, next.as_bytes(), GROWN_MTIME + 60);
    let continued = pair.backfill(&args);
    assert_continued(&continued, "claude", next.len() as u64);
    continued.assert_same_counters(&["claude"]);
    pair.assert_same_rows("an upgraded cache");
}

#[test]
fn an_interrupted_sweep_loses_nothing_and_doubles_nothing() {
    let mut env = TestEnv::new();
    let (corpus, manifest) = crate::corpus::generated_corpus(&mut env, &crate::corpus::SLOW_CLAUDE);
    let files = files_under(&corpus.join("claude"));
    for (relative, bytes) in &files {
        let at = split_offset(bytes, Split::Lines(30));
        write_file(
            &corpus.join("claude").join(relative),
            &bytes[..at],
            FIRST_MTIME,
        );
    }
    env.hyp(["backfill", "claude", "--json"]).assert_success();
    for (relative, bytes) in &files {
        let at = split_offset(bytes, Split::Lines(30));
        append_file(
            &corpus.join("claude").join(relative),
            &bytes[at..],
            GROWN_MTIME,
        );
    }
    let child = env
        .command(["backfill", "claude", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hyp backfill");
    let wal = env.state_root().join("cache/cache.db-wal");
    wait_until(
        Duration::from_secs(60),
        "the writer to open the cache",
        || wal.exists(),
    );
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = child.wait_with_output().expect("wait for hyp backfill");
    let code = output.status.code();
    assert!(
        code == Some(130) || code == Some(0),
        "exit {code:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    env.hyp(["backfill", "claude", "--json"]).assert_success();
    let expected = crate::corpus::expected_rows(&manifest, "claude");
    assert_exact_rows(&env, expected);
}
