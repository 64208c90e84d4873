//! Issue 14.7: the real transcripts of `../shared/differential-data` (Claude
//! Code 2.0-2.1 with subagents and compactions, Codex CLI and Desktop
//! 0.47-0.135 and a pre-envelope rollout) import with no error and no valid
//! line skipped. The folder is optional: without it the test says so and
//! passes.

use std::path::Path;

use crate::backfill::provider;
use crate::corpus::{IMPORT_EVERY_LINE, differential_env, say};

/// Lines `hyp backfill` must count as malformed in `bytes`: those that are
/// not blank and not JSON. A last line with no newline that is not JSON
/// yet is a line still being written, which is not counted.
fn invalid_lines(bytes: &[u8]) -> u64 {
    let mut lines: Vec<&[u8]> = bytes.split(|byte| *byte == b'\n').collect();
    if !bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
        .iter()
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .filter(|line| serde_json::from_slice::<serde_json::Value>(line).is_err())
        .count() as u64
}

/// (files, invalid lines) under `root` whose names pass `wanted`.
fn census(root: &Path, wanted: &dyn Fn(&str) -> bool) -> (u64, u64) {
    let mut files = 0;
    let mut invalid = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a differential-data dir") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(wanted)
            {
                files += 1;
                invalid += invalid_lines(&std::fs::read(&path).expect("read a real transcript"));
            }
        }
    }
    (files, invalid)
}

#[test]
fn every_real_transcript_imports_without_an_error_or_a_skipped_valid_line() {
    let Some((env, data)) = differential_env("differential") else {
        return;
    };
    let run = env.hyp(IMPORT_EVERY_LINE).assert_success();
    let document = run.stdout_json();
    let expectations = [
        (
            "claude",
            census(&data.join("claude/projects"), &|name| {
                name.ends_with(".jsonl")
            }),
        ),
        (
            "codex",
            census(&data.join("codex/sessions"), &|name| {
                name.starts_with("rollout-")
                    && (name.ends_with(".jsonl") || name.ends_with(".json"))
            }),
        ),
    ];
    let stderr = run.stderr();
    for (name, (files, invalid)) in expectations {
        let report = provider(&document, name);
        assert_eq!(report["status"], "ok", "{name}: {report}");
        assert!(report.get("error").is_none(), "{name}: {report}");
        assert_eq!(
            report["files_seen"].as_u64(),
            Some(files),
            "{name}: {report}"
        );
        assert_eq!(
            report["files_read"].as_u64(),
            Some(files),
            "{name}: {report}"
        );
        assert!(
            report["rows_written"].as_u64() > Some(0),
            "{name}: {report}"
        );
        // Malformed lines are reported only on stderr, as a note per provider.
        let note = format!("{name}: skipped {invalid} malformed line");
        match invalid {
            0 => assert!(
                !stderr.contains(&format!("{name}: skipped")),
                "{name}: a valid line was skipped as malformed:\n{stderr}"
            ),
            _ => assert!(
                stderr.contains(&note),
                "{name}: expected '{note}' in:\n{stderr}"
            ),
        }
    }
    say(&format!(
        "differential: imported every file of {}",
        data.display()
    ));
}
