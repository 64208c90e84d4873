//! Finding history files: a recursive walk that follows no symlink inside
//! the tree, skips what it cannot read, and returns paths sorted bytewise so
//! every run visits files in the same order (the first file wins a
//! `part_id` collision).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One history file and what identifies its current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryFile {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// Every regular file under `root` whose name passes `wanted`, sorted.
/// A missing or unreadable root gives nothing.
pub fn walk_files(root: &Path, wanted: &dyn Fn(&str) -> bool) -> Vec<HistoryFile> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_file()
                && entry.file_name().to_str().is_some_and(wanted)
                && let Ok(metadata) = entry.metadata()
            {
                out.push(HistoryFile {
                    path,
                    size: metadata.len(),
                    mtime_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_encoded_bytes()
            .cmp(b.path.as_os_str().as_encoded_bytes())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_are_sorted_and_skip_symlinks_and_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("p/s1/subagents")).unwrap();
        std::fs::write(root.join("p/s1.jsonl"), "").unwrap();
        std::fs::write(root.join("p/s1/subagents/agent-a.jsonl"), "").unwrap();
        std::fs::write(root.join("p/notes.txt"), "").unwrap();
        std::os::unix::fs::symlink(root.join("p/s1.jsonl"), root.join("p/link.jsonl")).unwrap();
        let files = walk_files(root, &|name| name.ends_with(".jsonl"));
        let names: Vec<_> = files
            .iter()
            .map(|file| file.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["p/s1.jsonl", "p/s1/subagents/agent-a.jsonl"]);
        assert!(walk_files(&root.join("absent"), &|_| true).is_empty());
    }
}
