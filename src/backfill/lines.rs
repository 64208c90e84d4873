//! Streaming a JSONL file one line at a time with a reused buffer. Bad input
//! never stops a file: blank lines are skipped, and a line that is not JSON
//! (garbage, a truncated last line, invalid UTF-8) is skipped and counted.
//! So is a line longer than [`MAX_LINE_BYTES`], without ever holding it: a
//! file of NUL bytes left by a crash has no newline at all, and must not
//! be read into memory whole.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;

/// The longest line parsed. Real transcript lines reach a few MiB (a pasted
/// image in base64); nothing legitimate comes near this.
pub const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;

/// How reading a file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// Every line was read.
    Complete,
    /// The run was interrupted part way; what was read is partial.
    Interrupted,
    /// The file could not be opened or a read failed part way.
    Failed,
}

/// What one pass over a file saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineStats {
    pub end: ReadEnd,
    pub malformed: u64,
}

/// Call `on_line` with every line of `path` decoded as `T`, and the line's
/// bytes (for a decoder that must look again); a line `T` rejects counts as
/// malformed (so `T` must accept exactly the JSON that `Value` accepts).
pub fn for_each_line_as<T: DeserializeOwned>(
    path: &Path,
    stop: &AtomicBool,
    on_line: impl FnMut(T, &[u8]),
) -> LineStats {
    for_each_capped_line_as(path, stop, MAX_LINE_BYTES, on_line)
}

fn for_each_capped_line_as<T: DeserializeOwned>(
    path: &Path,
    stop: &AtomicBool,
    max_line: u64,
    mut on_line: impl FnMut(T, &[u8]),
) -> LineStats {
    let mut stats = LineStats {
        end: ReadEnd::Complete,
        malformed: 0,
    };
    let Ok(file) = File::open(path) else {
        stats.end = ReadEnd::Failed;
        return stats;
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut buffer = Vec::with_capacity(64 * 1024);
    loop {
        if stop.load(Ordering::Relaxed) {
            stats.end = ReadEnd::Interrupted;
            return stats;
        }
        buffer.clear();
        match reader
            .by_ref()
            .take(max_line)
            .read_until(b'\n', &mut buffer)
        {
            Ok(0) => return stats,
            Ok(read) if read as u64 == max_line && buffer.last() != Some(&b'\n') => {
                stats.malformed += 1;
                if skip_rest_of_line(&mut reader).is_err() {
                    stats.end = ReadEnd::Failed;
                    return stats;
                }
                continue;
            }
            Ok(_) => {}
            Err(_) => {
                stats.end = ReadEnd::Failed;
                return stats;
            }
        }
        let line = buffer.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<T>(line) {
            Ok(value) => on_line(value, line),
            Err(_) => stats.malformed += 1,
        }
    }
}

/// Consume up to and including the next newline (or to the end), holding
/// no more than the reader's own buffer.
fn skip_rest_of_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        if let Some(end) = available.iter().position(|byte| *byte == b'\n') {
            reader.consume(end + 1);
            return Ok(());
        }
        let all = available.len();
        reader.consume(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn for_each_json_line(
        path: &Path,
        stop: &AtomicBool,
        mut on_line: impl FnMut(Value),
    ) -> LineStats {
        for_each_line_as(path, stop, |value, _| on_line(value))
    }

    #[test]
    fn bad_lines_are_counted_and_the_rest_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let mut bytes =
            b"{\"a\":1}\r\n\n   \ngarbage\n{\"b\":\"\xff\"}\n[1]\n{\"c\":3}\n{\"trunc".to_vec();
        bytes.extend_from_slice(b"");
        std::fs::write(&path, bytes).unwrap();
        let mut seen = Vec::new();
        let stats = for_each_json_line(&path, &AtomicBool::new(false), |value| seen.push(value));
        assert_eq!(
            stats,
            LineStats {
                end: ReadEnd::Complete,
                malformed: 3
            }
        );
        assert_eq!(seen.len(), 3);
        let missing =
            for_each_json_line(&dir.path().join("absent"), &AtomicBool::new(false), |_| {});
        assert_eq!(missing.end, ReadEnd::Failed);
        let stopped = for_each_json_line(&path, &AtomicBool::new(true), |_| {});
        assert_eq!(stopped.end, ReadEnd::Interrupted);
    }

    #[test]
    fn an_overlong_line_is_skipped_and_counted_without_being_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
        let text = format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n{}", "\0".repeat(3000));
        std::fs::write(&path, text).unwrap();
        let mut seen = Vec::new();
        let stats =
            for_each_capped_line_as::<Value>(&path, &AtomicBool::new(false), 1024, |value, _| {
                seen.push(value)
            });
        assert_eq!(
            seen,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
        assert_eq!(
            stats,
            LineStats {
                end: ReadEnd::Complete,
                malformed: 2
            },
            "the long line and the NUL tail"
        );
        // A line of exactly the cap, newline included, is read.
        let exact = format!("{{\"p\":\"{}\"}}\n", "y".repeat(1024 - 9));
        assert_eq!(exact.len(), 1024);
        std::fs::write(&path, &exact).unwrap();
        let stats =
            for_each_capped_line_as::<Value>(&path, &AtomicBool::new(false), 1024, |_, _| {});
        assert_eq!(stats.malformed, 0);
    }
}
