//! Streaming a JSONL history file one line at a time with a reused buffer,
//! from its start or from where an earlier read stopped ([`ReadPoint`]).
//! Bad input never stops a file: blank lines are skipped, and a line that
//! is not JSON (garbage, invalid UTF-8) is skipped and counted. So is a line
//! longer than [`MAX_LINE_BYTES`], without ever holding it: a file of NUL
//! bytes left by a crash has no newline at all, and must not be read into
//! memory whole.
//!
//! The last line of a file that has no newline yet may be a line still
//! being written. It is not consumed and not counted as malformed: the read
//! point stays before it, so the next read takes it whole once it is
//! complete, and a file cut short by a crash is not read again until it
//! changes (then only from that point). One exception: a tail that already
//! parses as JSON is imported, as a whole read always did, because a JSON
//! document cut short never parses; the read point then goes past it and
//! remembers the line is still open ([`ReadPoint::open_line`]), and a later
//! read accepts only whitespace and the newline that end it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The longest line parsed. Real transcript lines reach a few MiB (a pasted
/// image in base64); nothing legitimate comes near this.
pub const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;

/// The fingerprint of a prefix hashes this many bytes at each of its ends.
const FINGERPRINT_WINDOW: u64 = 4096;

/// Where a read of a file stopped, and what the bytes before it were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPoint {
    /// Just past the last line consumed.
    pub offset: u64,
    /// [`fingerprint`] of the bytes before `offset`.
    pub fingerprint: String,
    /// The last line consumed is the file's unterminated tail (it parsed as
    /// JSON): what follows it may only be whitespace up to its newline.
    pub open_line: bool,
}

/// How reading a file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// Every line was read.
    Complete,
    /// The run was interrupted part way; what was read is partial.
    Interrupted,
    /// The file could not be opened or a read failed part way.
    Failed,
    /// A continued read found the bytes before its point changed (or gone).
    PrefixChanged,
    /// A continued read found more than a newline after an open line: the
    /// line it imported was not the whole line.
    OpenLineExtended,
}

/// What one pass over a file saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineStats {
    pub end: ReadEnd,
    pub malformed: u64,
    /// Bytes read from the file, fingerprints included.
    pub bytes_read: u64,
    /// Where a later read continues; set when `end` is `Complete`.
    pub point: Option<ReadPoint>,
}

impl LineStats {
    fn ended(end: ReadEnd, malformed: u64, bytes_read: u64) -> LineStats {
        LineStats {
            end,
            malformed,
            bytes_read,
            point: None,
        }
    }
}

/// Call `on_line` with every line of the first `len` bytes of `path` (the
/// size the walk saw; what is appended later waits for the next run),
/// starting at `from` when given (after checking its fingerprint), decoded
/// as `T`, and the line's bytes (for a decoder that must look again). A
/// line `T` rejects counts as malformed (so `T` must accept exactly the
/// JSON that `Value` accepts).
pub fn for_each_line_as<T: DeserializeOwned>(
    path: &Path,
    len: u64,
    from: Option<&ReadPoint>,
    stop: &AtomicBool,
    on_line: impl FnMut(T, &[u8]),
) -> LineStats {
    for_each_capped_line_as(path, len, from, stop, MAX_LINE_BYTES, on_line)
}

fn for_each_capped_line_as<T: DeserializeOwned>(
    path: &Path,
    len: u64,
    from: Option<&ReadPoint>,
    stop: &AtomicBool,
    max_line: u64,
    mut on_line: impl FnMut(T, &[u8]),
) -> LineStats {
    let Ok(mut file) = File::open(path) else {
        return LineStats::ended(ReadEnd::Failed, 0, 0);
    };
    let mut bytes_read = 0;
    let start = match from {
        None => 0,
        Some(point) => match fingerprint(&file, point.offset) {
            Ok((print, read)) if print == point.fingerprint => {
                bytes_read += read;
                point.offset
            }
            Ok((_, read)) => return LineStats::ended(ReadEnd::PrefixChanged, 0, read),
            Err(_) => return LineStats::ended(ReadEnd::PrefixChanged, 0, 0),
        },
    };
    if file.seek(SeekFrom::Start(start)).is_err() {
        return LineStats::ended(ReadEnd::Failed, 0, bytes_read);
    }
    let mut reader = BufReader::with_capacity(256 * 1024, (&file).take(len.saturating_sub(start)));
    let mut cursor = LineCursor {
        consumed: start,
        open_line: from.is_some_and(|point| point.open_line),
        ending_open_line: from.is_some_and(|point| point.open_line),
        malformed: 0,
    };
    let mut buffer = Vec::with_capacity(64 * 1024);
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break ReadEnd::Interrupted;
        }
        match next_line(&mut reader, &mut buffer, max_line) {
            Ok(Segment::End) => break ReadEnd::Complete,
            Ok(segment) => {
                bytes_read += segment.len();
                match cursor.take(segment, &buffer, &mut on_line) {
                    Step::Next => {}
                    Step::Stop => break ReadEnd::Complete,
                    Step::Diverged => break ReadEnd::OpenLineExtended,
                }
            }
            Err(_) => break ReadEnd::Failed,
        }
    };
    let mut stats = LineStats::ended(end, cursor.malformed, bytes_read);
    if end == ReadEnd::Complete {
        match fingerprint(&file, cursor.consumed) {
            Ok((print, read)) => {
                stats.bytes_read += read;
                stats.point = Some(ReadPoint {
                    offset: cursor.consumed,
                    fingerprint: print,
                    open_line: cursor.open_line,
                });
            }
            Err(_) => stats.end = ReadEnd::Failed,
        }
    }
    stats
}

/// One piece of the file as [`next_line`] cut it.
enum Segment {
    /// Nothing left.
    End,
    /// A line read into the buffer (newline included when it has one).
    Line { len: u64, terminated: bool },
    /// A line over the cap, skipped without being held.
    Overlong { len: u64, terminated: bool },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::End => 0,
            Segment::Line { len, .. } | Segment::Overlong { len, .. } => *len,
        }
    }
}

fn next_line(
    reader: &mut impl BufRead,
    buffer: &mut Vec<u8>,
    max_line: u64,
) -> io::Result<Segment> {
    buffer.clear();
    let read = reader.by_ref().take(max_line).read_until(b'\n', buffer)? as u64;
    let terminated = buffer.last() == Some(&b'\n');
    if read == 0 {
        Ok(Segment::End)
    } else if read == max_line && !terminated {
        let (skipped, terminated) = skip_rest_of_line(reader)?;
        Ok(Segment::Overlong {
            len: read + skipped,
            terminated,
        })
    } else {
        Ok(Segment::Line {
            len: read,
            terminated,
        })
    }
}

/// What to do after a segment.
enum Step {
    Next,
    /// The unterminated tail: nothing follows it.
    Stop,
    /// The open line of an earlier read was continued.
    Diverged,
}

/// The read position and what the lines so far amounted to.
struct LineCursor {
    /// Just past the last line consumed.
    consumed: u64,
    /// The last line consumed has no newline yet.
    open_line: bool,
    /// The next segment must end the open line an earlier read left.
    ending_open_line: bool,
    malformed: u64,
}

impl LineCursor {
    fn take<T: DeserializeOwned>(
        &mut self,
        segment: Segment,
        buffer: &[u8],
        on_line: &mut impl FnMut(T, &[u8]),
    ) -> Step {
        let (len, terminated, overlong) = match segment {
            Segment::End => return Step::Stop,
            Segment::Line { len, terminated } => (len, terminated, false),
            Segment::Overlong { len, terminated } => (len, terminated, true),
        };
        let line = if overlong {
            &[][..]
        } else {
            buffer.trim_ascii()
        };
        if std::mem::take(&mut self.ending_open_line) {
            if overlong || !line.is_empty() {
                return Step::Diverged;
            }
            if terminated {
                self.consumed += len;
                self.open_line = false;
            }
            return if terminated { Step::Next } else { Step::Stop };
        }
        if !terminated {
            if !overlong
                && !line.is_empty()
                && let Ok(value) = serde_json::from_slice::<T>(line)
            {
                on_line(value, line);
                self.consumed += len;
                self.open_line = true;
            }
            return Step::Stop;
        }
        self.consumed += len;
        if overlong {
            self.malformed += 1;
        } else if !line.is_empty() {
            match serde_json::from_slice::<T>(line) {
                Ok(value) => on_line(value, line),
                Err(_) => self.malformed += 1,
            }
        }
        Step::Next
    }
}

/// Consume up to and including the next newline (or to the end), holding
/// no more than the reader's own buffer. Returns (bytes, found a newline).
fn skip_rest_of_line(reader: &mut impl BufRead) -> io::Result<(u64, bool)> {
    let mut skipped = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((skipped, false));
        }
        if let Some(end) = available.iter().position(|byte| *byte == b'\n') {
            reader.consume(end + 1);
            return Ok((skipped + end as u64 + 1, true));
        }
        let all = available.len();
        reader.consume(all);
        skipped += all as u64;
    }
}

/// A cheap identity of the first `offset` bytes of `file`: SHA-256 of the
/// length, the first 4 KiB and the last 4 KiB, 128 bits as hex (a prefix of
/// 8 KiB or less is read once, whole). History files are only appended to,
/// so what this guards against is a file that was replaced or rewritten (a
/// new session under the same name, a copy restored from elsewhere): those
/// change the head or the bytes just before the point, which is also where
/// a point that no longer falls on a line boundary shows. A rewrite of the
/// middle alone, keeping the length, would pass; nothing writes history
/// that way. Returns (hash, bytes read).
pub fn fingerprint(file: &File, offset: u64) -> io::Result<(String, u64)> {
    let whole = offset <= 2 * FINGERPRINT_WINDOW;
    let head_len = if whole { offset } else { FINGERPRINT_WINDOW };
    let mut head = vec![0; head_len as usize];
    file.read_exact_at(&mut head, 0)?;
    let tail = if whole {
        Vec::new()
    } else {
        let mut tail = vec![0; FINGERPRINT_WINDOW as usize];
        file.read_exact_at(&mut tail, offset - FINGERPRINT_WINDOW)?;
        tail
    };
    let mut hasher = Sha256::new();
    hasher.update(offset.to_le_bytes());
    hasher.update(&head);
    hasher.update(&tail);
    let hex = crate::hex::hex(&hasher.finalize()[..16]);
    Ok((hex, head_len + tail.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Every JSON line of `path` (whole, or from `from`), with the stats.
    fn read_all(path: &Path, from: Option<&ReadPoint>) -> (Vec<Value>, LineStats) {
        let len = std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
        let mut seen = Vec::new();
        let stats = for_each_line_as(path, len, from, &AtomicBool::new(false), |value, _| {
            seen.push(value)
        });
        (seen, stats)
    }

    fn append(path: &Path, bytes: &[u8]) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(bytes).unwrap();
    }

    #[test]
    fn bad_lines_are_counted_and_the_rest_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let bytes =
            b"{\"a\":1}\r\n\n   \ngarbage\n{\"b\":\"\xff\"}\n[1]\n{\"c\":3}\n{\"trunc".to_vec();
        std::fs::write(&path, &bytes).unwrap();
        let (seen, stats) = read_all(&path, None);
        assert_eq!(stats.end, ReadEnd::Complete);
        assert_eq!(stats.malformed, 2, "the unterminated tail is not malformed");
        assert_eq!(seen.len(), 3);
        let point = stats.point.expect("a read point");
        assert_eq!(point.offset, bytes.len() as u64 - b"{\"trunc".len() as u64);
        assert!(!point.open_line);
        let len = bytes.len() as u64;
        let missing = for_each_line_as::<Value>(
            &dir.path().join("absent"),
            len,
            None,
            &AtomicBool::new(false),
            |_, _| {},
        );
        assert_eq!(missing.end, ReadEnd::Failed);
        let stopped =
            for_each_line_as::<Value>(&path, len, None, &AtomicBool::new(true), |_, _| {});
        assert_eq!(stopped.end, ReadEnd::Interrupted);
        assert_eq!(stopped.point, None, "an interrupted read has no point");
    }

    #[test]
    fn a_line_being_written_is_taken_once_it_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let (seen, stats) = read_all(&path, None);
        assert_eq!((seen, stats.malformed), (vec![json!({"a": 1})], 0));
        let point = stats.point.unwrap();
        assert_eq!(point.offset, 8);
        append(&path, b"2}\n{\"c\":3}\n");
        let (seen, stats) = read_all(&path, Some(&point));
        assert_eq!(seen, [json!({"b": 2}), json!({"c": 3})]);
        assert_eq!(stats.point.unwrap().offset, 24);
        assert_eq!(stats.bytes_read, 8 + 16 + 24, "lines plus fingerprints");
    }

    #[test]
    fn a_tail_that_parses_is_taken_and_only_a_newline_may_end_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}").unwrap();
        let (seen, stats) = read_all(&path, None);
        assert_eq!(seen.len(), 2);
        let open = stats.point.unwrap();
        assert_eq!((open.offset, open.open_line), (15, true));

        // Whitespace alone keeps it open; a newline ends it; then lines go on.
        append(&path, b"  ");
        let (seen, stats) = read_all(&path, Some(&open));
        assert!(seen.is_empty());
        assert_eq!(stats.point.as_ref().unwrap(), &open);
        append(&path, b"\r\n{\"c\":3}\n");
        let (seen, stats) = read_all(&path, Some(&open));
        assert_eq!(seen, [json!({"c": 3})]);
        let point = stats.point.unwrap();
        assert!(!point.open_line);
        assert_eq!(point.offset, std::fs::metadata(&path).unwrap().len());

        // More JSON on the open line makes it another line: no resume.
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}").unwrap();
        append(&path, b"{\"x\":1}\n");
        let (_, stats) = read_all(&path, Some(&open));
        assert_eq!(stats.end, ReadEnd::OpenLineExtended);
    }

    #[test]
    fn a_changed_prefix_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, "{\"a\":1}\n").unwrap();
        let point = read_all(&path, None).1.point.unwrap();
        std::fs::write(&path, "{\"a\":2}\n{\"b\":1}\n").unwrap();
        assert_eq!(read_all(&path, Some(&point)).1.end, ReadEnd::PrefixChanged);
        std::fs::write(&path, "{\"a\"").unwrap();
        assert_eq!(read_all(&path, Some(&point)).1.end, ReadEnd::PrefixChanged);
        std::fs::write(&path, "{\"a\":1}\n{\"b\":1}\n").unwrap();
        let (seen, stats) = read_all(&path, Some(&point));
        assert_eq!(
            (seen, stats.end),
            (vec![json!({"b": 1})], ReadEnd::Complete)
        );
    }

    #[test]
    fn only_the_length_the_walk_saw_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n").unwrap();
        let mut seen = Vec::new();
        let stats = for_each_line_as::<Value>(&path, 10, None, &AtomicBool::new(false), |v, _| {
            seen.push(v)
        });
        assert_eq!(seen, [json!({"a": 1})]);
        assert_eq!(stats.point.unwrap().offset, 8, "the cut line waits");
    }

    #[test]
    fn an_overlong_line_is_skipped_and_counted_without_being_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
        let text = format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n{}", "\0".repeat(3000));
        std::fs::write(&path, &text).unwrap();
        let mut seen = Vec::new();
        let len = text.len() as u64;
        let stats = for_each_capped_line_as::<Value>(
            &path,
            len,
            None,
            &AtomicBool::new(false),
            1024,
            |value, _| seen.push(value),
        );
        assert_eq!(
            seen,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
        assert_eq!(stats.end, ReadEnd::Complete);
        assert_eq!(
            stats.malformed, 1,
            "the long line; the unterminated NUL tail waits, uncounted"
        );
        assert_eq!(stats.point.unwrap().offset, len - 3000);
        // A line of exactly the cap, newline included, is read.
        let exact = format!("{{\"p\":\"{}\"}}\n", "y".repeat(1024 - 9));
        assert_eq!(exact.len(), 1024);
        std::fs::write(&path, &exact).unwrap();
        let stats = for_each_capped_line_as::<Value>(
            &path,
            1024,
            None,
            &AtomicBool::new(false),
            1024,
            |_, _| {},
        );
        assert_eq!(stats.malformed, 0);
    }
}
