//! Reading `S/logs/daemon.log` for `hyp daemon logs`: the last N lines
//! (read backwards in chunks, so a 10 MiB log costs one chunk), and
//! following the file as it grows, surviving rotation. This runs in the CLI,
//! not the daemon, so following polls the file's size on a short timer.
//! [`LogPrinter`] turns the JSON lines into readable ones
//! ([`crate::logging::readable_line`]) unless `--json` asks for them raw.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

const CHUNK: u64 = 64 * 1024;
/// How often `follow` looks at the file.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// The last `n` lines of the file (each with its newline, except perhaps a
/// final unterminated one), and the file's length when read.
pub fn tail(path: &Path, n: usize) -> io::Result<(Vec<u8>, u64)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if n == 0 {
        return Ok((Vec::new(), len));
    }
    let mut start = len;
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        // A trailing newline ends the last line; it does not start another.
        let newlines = buffer
            .iter()
            .take(
                buffer
                    .len()
                    .saturating_sub(usize::from(buffer.last() == Some(&b'\n'))),
            )
            .filter(|byte| **byte == b'\n')
            .count();
        if newlines >= n || start == 0 {
            break;
        }
        let read_from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - read_from) as usize];
        file.seek(SeekFrom::Start(read_from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buffer);
        buffer = chunk;
        start = read_from;
    }
    Ok((last_lines(&buffer, n).to_vec(), len))
}

/// The suffix of `bytes` holding its last `n` lines.
fn last_lines(bytes: &[u8], n: usize) -> &[u8] {
    let body = match bytes.last() {
        Some(b'\n') => &bytes[..bytes.len() - 1],
        _ => bytes,
    };
    let mut seen = 0;
    for (index, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == n {
                return &bytes[index + 1..];
            }
        }
    }
    bytes
}

/// Where following stands: the file identity and how far it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowPosition {
    inode: u64,
    offset: u64,
}

impl FollowPosition {
    /// Start at `offset` of the file now at `path` (or at 0 if it is missing).
    pub fn at(path: &Path, offset: u64) -> FollowPosition {
        let inode = std::fs::metadata(path).map_or(0, |meta| meta.ino());
        FollowPosition { inode, offset }
    }
}

/// New bytes since `position`. A rotated or truncated file is read again
/// from its start; a missing file yields nothing.
pub fn read_new(path: &Path, position: &mut FollowPosition) -> io::Result<Vec<u8>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    if meta.ino() != position.inode || meta.len() < position.offset {
        *position = FollowPosition {
            inode: meta.ino(),
            offset: 0,
        };
    }
    if meta.len() == position.offset {
        return Ok(Vec::new());
    }
    file.seek(SeekFrom::Start(position.offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    position.offset += bytes.len() as u64;
    Ok(bytes)
}

/// What `hyp daemon logs` prints for the bytes it reads: with `--json` the
/// bytes as they are; else one readable line per complete JSON line, a
/// line not yet ended being held until the rest arrives.
#[derive(Debug)]
pub struct LogPrinter {
    json: bool,
    pending: Vec<u8>,
}

impl LogPrinter {
    pub fn new(json: bool) -> LogPrinter {
        LogPrinter {
            json,
            pending: Vec::new(),
        }
    }

    /// The text for `bytes`, read after whatever came before.
    pub fn lines(&mut self, bytes: &[u8]) -> String {
        if self.json {
            return String::from_utf8_lossy(bytes).into_owned();
        }
        self.pending.extend_from_slice(bytes);
        let Some(last_newline) = self.pending.iter().rposition(|byte| *byte == b'\n') else {
            return String::new();
        };
        let complete: Vec<u8> = self.pending.drain(..=last_newline).collect();
        complete
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| format!("{}\n", readable(line)))
            .collect()
    }

    /// A last line that never ended (a tail read while it was written).
    pub fn rest(&mut self) -> String {
        if self.pending.is_empty() {
            return String::new();
        }
        let line = std::mem::take(&mut self.pending);
        format!("{}\n", readable(&line))
    }
}

/// One log line for people: an event line rendered, anything else (a line
/// cut short, another program's text) as it is, cleaned for a terminal.
fn readable(line: &[u8]) -> String {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(map)) if map.get("event").is_some_and(Value::is_string) => {
            crate::logging::readable_line(&map)
        }
        _ => crate::sanitize::clean(&String::from_utf8_lossy(line), usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let (bytes, len) = tail(&path, 3).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "line 997\nline 998\nline 999\n"
        );
        assert_eq!(len, text.len() as u64);
        let (bytes, _) = tail(&path, 5000).unwrap();
        assert_eq!(bytes.len(), text.len());
        assert!(tail(&path, 0).unwrap().0.is_empty());

        std::fs::write(&path, "a\nb\nunterminated").unwrap();
        assert_eq!(tail(&path, 2).unwrap().0, b"b\nunterminated");
        assert!(tail(&dir.path().join("missing"), 2).is_err());
    }

    #[test]
    fn a_long_log_is_read_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let line = "x".repeat(1000);
        let text: String = (0..300).map(|i| format!("{i} {line}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let (bytes, _) = tail(&path, 100).unwrap();
        let lines: Vec<&str> = std::str::from_utf8(&bytes).unwrap().lines().collect();
        assert_eq!(lines.len(), 100);
        assert!(lines[0].starts_with("200 "));
    }

    #[test]
    fn following_sees_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        std::fs::write(&path, "one\n").unwrap();
        let mut position = FollowPosition::at(&path, 4);
        assert!(read_new(&path, &mut position).unwrap().is_empty());
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(read_new(&path, &mut position).unwrap(), b"two\n");
        std::fs::rename(&path, dir.path().join("daemon.log.1")).unwrap();
        std::fs::write(&path, "three\n").unwrap();
        assert_eq!(read_new(&path, &mut position).unwrap(), b"three\n");
    }

    #[test]
    fn the_printer_renders_event_lines_and_holds_an_unended_one() {
        let event = r#"{"ts":"2026-12-04T10:02:03.456Z","level":"warn","event":"config.rollback","pid":1,"run_id":"r","config_etag":"rev-2"}"#;
        let mut printer = LogPrinter::new(false);
        let (head, tail) = event.split_at(40);
        assert_eq!(
            printer.lines(format!("{{\"n\":1}}\nplain \u{1b}text\n{head}").as_bytes()),
            "{\"n\":1}\nplain text\n"
        );
        assert_eq!(
            printer.lines(format!("{tail}\n").as_bytes()),
            "2026-12-04T10:02:03Z warn  config.rollback  config_etag=rev-2\n"
        );
        assert_eq!(printer.rest(), "");
        printer.lines(b"{\"cut");
        assert_eq!(printer.rest(), "{\"cut\n");

        let mut raw = LogPrinter::new(true);
        assert_eq!(
            raw.lines(format!("{event}\n{head}").as_bytes()),
            format!("{event}\n{head}")
        );
        assert_eq!(raw.rest(), "");
    }
}
