//! The raw-parse baseline `make bench` compares backfill against: read every
//! `.jsonl`/`.json` file under the given roots line by line and parse each
//! line into a `serde_json::Value`, on one thread, doing nothing else.
//!
//! Usage: `parse_baseline <dir>...`; prints `files bytes lines parsed seconds`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => collect(&path, out),
            Ok(kind)
                if kind.is_file()
                    && path
                        .extension()
                        .is_some_and(|ext| ext == "jsonl" || ext == "json") =>
            {
                out.push(path)
            }
            _ => {}
        }
    }
}

fn main() {
    let started = Instant::now();
    let mut files = Vec::new();
    for root in std::env::args_os().skip(1) {
        collect(Path::new(&root), &mut files);
    }
    files.sort();
    let (mut bytes, mut lines, mut parsed) = (0u64, 0u64, 0u64);
    let mut buffer = Vec::with_capacity(64 * 1024);
    for path in &files {
        let Ok(file) = std::fs::File::open(path) else {
            continue;
        };
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => bytes += read as u64,
            }
            lines += 1;
            if serde_json::from_slice::<serde_json::Value>(buffer.trim_ascii()).is_ok() {
                parsed += 1;
            }
        }
    }
    println!(
        "{} {bytes} {lines} {parsed} {:.3}",
        files.len(),
        started.elapsed().as_secs_f64()
    );
}
