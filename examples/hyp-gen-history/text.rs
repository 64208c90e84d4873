//! Filler that looks like a coding session: prose made of programming
//! words, numbered tool output with a long tail (most outputs are a few
//! lines, a few are long file reads or test logs), and the names a session
//! picks from (projects, branches, shell commands).

use crate::rng::Rng;

const WORDS: &[&str] = &[
    "the", "a", "to", "of", "and", "in", "for", "is", "on", "that", "with", "this", "it", "as",
    "be", "are", "by", "from", "at", "or", "an", "not", "we", "then", "when", "if", "so",
    "function", "return", "value", "error", "config", "file", "path", "test", "build", "module",
    "import", "export", "struct", "method", "field", "array", "string", "number", "boolean",
    "null", "option", "result", "thread", "channel", "stream", "buffer", "parse", "write", "read",
    "cache", "index", "query", "table", "column", "row", "schema", "snapshot", "commit", "branch",
    "merge", "rebase", "diff", "patch", "lint", "type", "check", "fix", "refactor", "rename",
    "extract", "inline", "service", "handler", "route", "request", "response", "header", "body",
    "status", "timeout", "retry", "backoff", "queue", "worker", "job", "daemon", "socket", "port",
    "listen", "bind", "close", "open", "flush", "sync", "spool", "batch", "compact", "should",
    "could", "would", "will", "can", "may", "must", "need", "try", "make", "use", "add", "remove",
    "update", "create", "delete", "list", "show", "find", "search", "replace", "move", "copy",
    "run", "start", "stop", "restart", "install", "deploy", "release", "version", "tag", "log",
    "trace", "metric", "span", "lock", "signal", "child", "process", "exit", "code", "panic",
];

pub const PROJECTS: &[&str] = &[
    "hypaware",
    "webapp",
    "api-server",
    "data-pipeline",
    "infra",
    "mobile-client",
    "docs-site",
    "ml-experiments",
    "billing",
    "auth-service",
    "cli-tools",
    "search-index",
    "etl-jobs",
    "design-system",
    "analytics",
    "payments",
    "notifications",
    "gateway",
    "scheduler",
    "storage-engine",
    "query-planner",
    "dotfiles",
    "blog",
    "playground",
];

/// `main` is listed three times: most sessions happen on it.
pub const BRANCHES: &[&str] = &[
    "main",
    "main",
    "main",
    "develop",
    "feature/cache-refresh",
    "fix/flaky-test",
    "feature/backfill",
    "chore/deps",
    "release/1.4",
];

pub const SHELL_COMMANDS: &[&str] = &[
    "ls -la",
    "git status",
    "npm test",
    "rg -n TODO src",
    "cat package.json",
    "pytest -q",
    "cargo build",
    "git diff --stat",
    "node --version",
    "sed -n 1,80p src/index.js",
    "make lint",
    "go test ./...",
];

/// One word.
pub fn word(rng: &mut Rng) -> &'static str {
    rng.pick(WORDS)
}

/// Prose of `low..=high` words in sentences of 6 to 16 words, capitalised
/// and ending with a full stop.
pub fn prose(rng: &mut Rng, low: u64, high: u64) -> String {
    let n_words = rng.range(low, high);
    let mut out = String::with_capacity(n_words as usize * 7);
    let mut sentence_left = 0;
    for word_idx in 0..n_words {
        if word_idx > 0 {
            out.push(' ');
        }
        let word = word(rng);
        if sentence_left == 0 {
            sentence_left = rng.range(6, 16);
            capitalised(&mut out, word);
        } else {
            out.push_str(word);
        }
        sentence_left -= 1;
        if sentence_left == 0 || word_idx + 1 == n_words {
            out.push('.');
        }
    }
    out
}

fn capitalised(out: &mut String, word: &str) {
    let mut chars = word.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.push_str(chars.as_str());
    }
}

/// Numbered output lines: 70% short (1-8 lines), 25% medium (10-40), 5%
/// long (60-150), like file reads and test logs.
pub fn tool_output(rng: &mut Rng) -> String {
    let roll = rng.unit();
    let n_lines = if roll < 0.70 {
        rng.range(1, 8)
    } else if roll < 0.95 {
        rng.range(10, 40)
    } else {
        rng.range(60, 150)
    };
    let mut out = String::with_capacity(n_lines as usize * 64);
    for line_no in 1..=n_lines {
        if line_no > 1 {
            out.push('\n');
        }
        out.push_str(&format!("{line_no:4}  "));
        out.push_str(&prose(rng, 3, 12));
    }
    out
}

/// A fixed system prompt of a few KiB, as real Codex rollouts carry the
/// whole of theirs in `session_meta`; the same for every seed.
pub fn base_instructions() -> String {
    let mut rng = Rng::for_purpose(0, "base_instructions");
    format!(
        "You are Codex, a coding agent. {}",
        prose(&mut rng, 700, 700)
    )
}
