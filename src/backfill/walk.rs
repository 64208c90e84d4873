//! Finding history files: a recursive walk that follows no symlink inside
//! the tree and skips what it cannot read, in the order the reference
//! visits files, made deterministic. The order matters: files commit in it,
//! so the first file holding a `part_id` keeps its row (`INSERT OR IGNORE`).
//!
//! - Claude ([`walk_files`]): the reference recurses into each
//!   directory where `readdir` meets it, so a session's `<session>/`
//!   directory (its `subagents/`) is walked at its place among the files.
//!   We sort each directory's entries first, by name: `<session>` sorts
//!   before `<session>.jsonl`, so the subagent transcripts come first, as
//!   the reference was seen to visit them on ext4.
//! - Codex ([`walk_files_by_path`]): the reference collects every rollout
//!   and sorts the whole paths as JavaScript strings (UTF-16 code units).

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One history file and what identifies its current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryFile {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// Every regular file under `root` whose name passes `wanted`: each
/// directory's entries sorted by name ([`js_sort_key`]) and walked
/// depth-first, a subdirectory at its place among the files. A missing or
/// unreadable root gives nothing.
pub fn walk_files(root: &Path, wanted: &dyn Fn(&str) -> bool) -> Vec<HistoryFile> {
    let mut out = Vec::new();
    walk_sorted(root, wanted, &mut out);
    out
}

/// Every regular file under `root` whose name passes `wanted`, sorted by
/// whole path ([`js_sort_key`]). A missing or unreadable root gives nothing.
pub fn walk_files_by_path(root: &Path, wanted: &dyn Fn(&str) -> bool) -> Vec<HistoryFile> {
    let mut out = Vec::new();
    collect(root, wanted, &mut out);
    out.sort_by_cached_key(|file| js_sort_key(file.path.as_os_str()));
    out
}

/// Depth-first, each directory's entries in [`js_sort_key`] order of name.
fn walk_sorted(dir: &Path, wanted: &dyn Fn(&str) -> bool, out: &mut Vec<HistoryFile>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<std::fs::DirEntry> = entries.flatten().collect();
    entries.sort_by_cached_key(|entry| js_sort_key(&entry.file_name()));
    for entry in entries {
        visit(entry, wanted, out, &mut |subdir, out| {
            walk_sorted(subdir, wanted, out)
        });
    }
}

/// Every wanted file under `dir`, in no particular order.
fn collect(dir: &Path, wanted: &dyn Fn(&str) -> bool, out: &mut Vec<HistoryFile>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        visit(entry, wanted, out, &mut |subdir, out| {
            collect(subdir, wanted, out)
        });
    }
}

/// Descend into a directory, keep a wanted regular file, pass over the
/// rest (symlinks included: neither a directory nor a regular file here).
fn visit(
    entry: std::fs::DirEntry,
    wanted: &dyn Fn(&str) -> bool,
    out: &mut Vec<HistoryFile>,
    descend: &mut dyn FnMut(&Path, &mut Vec<HistoryFile>),
) {
    let Ok(file_type) = entry.file_type() else {
        return;
    };
    if file_type.is_dir() {
        descend(&entry.path(), out);
    } else if file_type.is_file()
        && entry.file_name().to_str().is_some_and(wanted)
        && let Ok(metadata) = entry.metadata()
    {
        out.push(HistoryFile {
            path: entry.path(),
            size: metadata.len(),
            mtime_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
        });
    }
}

/// The order of JavaScript's default sort (UTF-16 code units), which the
/// reference uses; it differs from byte order only beyond U+FFFF. A name
/// that is not UTF-8 compares as its lossy form, then by bytes, so the
/// order stays total.
fn js_sort_key(name: &OsStr) -> (Vec<u16>, Vec<u8>) {
    (
        name.to_string_lossy().encode_utf16().collect(),
        name.as_encoded_bytes().to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relative_names(root: &Path, files: &[HistoryFile]) -> Vec<String> {
        files
            .iter()
            .map(|file| file.path.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn walk_files_walks_a_session_directory_before_its_transcript_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("p/s1/subagents")).unwrap();
        std::fs::write(root.join("p/s1.jsonl"), "").unwrap();
        std::fs::write(root.join("p/s1-b.jsonl"), "").unwrap();
        std::fs::write(root.join("p/s1/subagents/agent-a.jsonl"), "").unwrap();
        std::fs::write(root.join("p/notes.txt"), "").unwrap();
        std::os::unix::fs::symlink(root.join("p/s1.jsonl"), root.join("p/link.jsonl")).unwrap();
        let files = walk_files(root, &|name| name.ends_with(".jsonl"));
        // By whole path, "p/s1-b.jsonl" < "p/s1.jsonl" < "p/s1/...": not
        // the reference's order.
        assert_eq!(
            relative_names(root, &files),
            ["p/s1/subagents/agent-a.jsonl", "p/s1-b.jsonl", "p/s1.jsonl"]
        );
        assert!(walk_files(&root.join("absent"), &|_| true).is_empty());
    }

    #[test]
    fn walk_files_by_path_sorts_whole_paths_as_javascript_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("01")).unwrap();
        std::fs::create_dir_all(root.join("01-x")).unwrap();
        std::fs::write(root.join("01/r.jsonl"), "").unwrap();
        std::fs::write(root.join("01-x/r.jsonl"), "").unwrap();
        // U+FF61 is one UTF-16 unit (0xFF61); U+1F600 starts with 0xD83D:
        // JavaScript puts the emoji first, byte order the other way round.
        std::fs::write(root.join("\u{ff61}.jsonl"), "").unwrap();
        std::fs::write(root.join("\u{1f600}.jsonl"), "").unwrap();
        let files = walk_files_by_path(root, &|name| name.ends_with(".jsonl"));
        assert_eq!(
            relative_names(root, &files),
            [
                "01-x/r.jsonl",
                "01/r.jsonl",
                "\u{1f600}.jsonl",
                "\u{ff61}.jsonl"
            ]
        );
        assert!(walk_files_by_path(&root.join("absent"), &|_| true).is_empty());
    }
}
