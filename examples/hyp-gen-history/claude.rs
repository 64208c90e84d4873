//! Claude Code transcripts as the CLI writes them under
//! `projects/<slug>/<session>.jsonl`: one JSON object per line, chained by
//! `parentUuid`. An API response is split one content block per line
//! (thinking, text, tool_use) sharing `message.id` and repeating its usage;
//! a tool's answer is a user line holding one `tool_result` block and the
//! `toolUseResult` sidecar. `system` and `file-history-snapshot` lines are
//! bookkeeping and make no row.
//!
//! Rows `hyp backfill claude` makes: one per user or assistant line, since
//! each carries exactly one content block (or a plain string prompt).

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::Spread;
use crate::clock::Iso;
use crate::rng::{BASE62, Rng};
use crate::text::{self, BRANCHES, PROJECTS, SHELL_COMMANDS};

const MODELS: &[&str] = &[
    "claude-sonnet-4-5-20250929",
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
];
const VERSIONS: &[&str] = &["2.0.14", "2.0.21", "2.0.28", "2.0.37", "2.0.42"];
const TOOLS: &[&str] = &[
    "Bash",
    "Read",
    "Edit",
    "Write",
    "Grep",
    "Glob",
    "TodoWrite",
    "WebFetch",
];

/// One generated transcript.
pub struct Transcript {
    /// Under the history root: `claude/projects/<slug>/<session>.jsonl`.
    pub path: PathBuf,
    /// The file's bytes: one JSON object per line, each ending in `\n`.
    pub data: Vec<u8>,
    pub n_lines: usize,
    pub expected_rows: u64,
}

/// A transcript of exactly `n_lines` lines.
pub fn transcript(rng: &mut Rng, spread: &Spread, n_lines: usize) -> Transcript {
    let session_id = rng.uuid();
    let project = rng.pick(PROJECTS);
    let cwd = format!("/home/dev/src/{project}");
    let path = PathBuf::from("claude/projects")
        .join(cwd.replace('/', "-"))
        .join(format!("{session_id}.jsonl"));
    let mut writer = SessionWriter {
        session_id,
        branch: rng.pick(BRANCHES),
        version: rng.pick(VERSIONS),
        model: rng.pick(MODELS),
        clock_ms: spread.session_start(rng),
        cwd,
        parent: None,
        data: Vec::with_capacity(n_lines * 1024),
        n_lines: 0,
        expected_rows: 0,
        rng,
    };
    writer.fill(n_lines);
    Transcript {
        path,
        data: writer.data,
        n_lines: writer.n_lines,
        expected_rows: writer.expected_rows,
    }
}

/// A TypeScript file under the session's working directory.
fn source_file(rng: &mut Rng, cwd: &str) -> String {
    format!("{cwd}/src/{}/{}.ts", text::word(rng), text::word(rng))
}

/// A tool call waiting for its result line.
struct ToolCall {
    id: String,
    name: &'static str,
}

/// The state of one transcript being written.
struct SessionWriter<'r> {
    rng: &'r mut Rng,
    session_id: String,
    cwd: String,
    branch: &'static str,
    version: &'static str,
    model: &'static str,
    clock_ms: i64,
    /// The `uuid` of the last line, the next line's `parentUuid`.
    parent: Option<String>,
    data: Vec<u8>,
    n_lines: usize,
    expected_rows: u64,
}

impl SessionWriter<'_> {
    fn fill(&mut self, n_lines: usize) {
        let mut waiting: Option<ToolCall> = None;
        let mut needs_prompt = true;
        while self.n_lines < n_lines {
            let remaining = n_lines - self.n_lines;
            if let Some(call) = waiting.take() {
                self.tool_result(&call);
                continue;
            }
            let roll = self.rng.unit();
            if roll < 0.02 {
                self.snapshot();
            } else if roll < 0.04 {
                self.system_line();
            } else if needs_prompt || roll < 0.10 {
                self.prompt();
                needs_prompt = false;
            } else {
                waiting = self.assistant_message(remaining);
            }
        }
    }

    /// Move the clock on by `low..=high` seconds plus some milliseconds.
    fn tick(&mut self, low: u64, high: u64) -> String {
        self.clock_ms += (self.rng.range(low * 1000, high * 1000) + self.rng.below(1000)) as i64;
        Iso(self.clock_ms).to_string()
    }

    /// The keys every conversation line starts with, in the client's order.
    fn envelope(&self, kind: &str) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("parentUuid".into(), json!(self.parent));
        line.insert("isSidechain".into(), json!(false));
        line.insert("userType".into(), json!("external"));
        line.insert("cwd".into(), json!(self.cwd));
        line.insert("sessionId".into(), json!(self.session_id));
        line.insert("version".into(), json!(self.version));
        line.insert("gitBranch".into(), json!(self.branch));
        line.insert("type".into(), json!(kind));
        line
    }

    fn push(&mut self, line: Map<String, Value>, makes_row: bool) {
        if let Some(Value::String(uuid)) = line.get("uuid") {
            self.parent = Some(uuid.clone());
        }
        serde_json::to_writer(&mut self.data, &line).expect("a JSON map serialises");
        self.data.push(b'\n');
        self.n_lines += 1;
        self.expected_rows += u64::from(makes_row);
    }

    /// A typed prompt: `message.content` is a plain string.
    fn prompt(&mut self) {
        let mut line = self.envelope("user");
        let text = text::prose(self.rng, 6, 60);
        line.insert("message".into(), json!({"role": "user", "content": text}));
        line.insert("uuid".into(), json!(self.rng.uuid()));
        line.insert("timestamp".into(), json!(self.tick(5, 120)));
        self.push(line, true);
    }

    /// Bookkeeping with no `sessionId` and no message: skipped by import.
    fn snapshot(&mut self) {
        let message_id = self.rng.uuid();
        let line = json!({
            "type": "file-history-snapshot",
            "messageId": message_id,
            "snapshot": {
                "messageId": message_id,
                "trackedFileBackups": {},
                "timestamp": Iso(self.clock_ms).to_string(),
            },
            "isSnapshotUpdate": false,
        });
        let Value::Object(line) = line else {
            unreachable!("json! of an object literal is an object")
        };
        self.push(line, false);
    }

    /// A local command notice: a `system` line with no message, no row.
    fn system_line(&mut self) {
        let mut line = self.envelope("system");
        let command = text::word(self.rng);
        line.insert("subtype".into(), json!("local_command"));
        line.insert(
            "content".into(),
            json!(format!("<command-name>/{command}</command-name>")),
        );
        line.insert("level".into(), json!("info"));
        line.insert("timestamp".into(), json!(self.tick(1, 20)));
        line.insert("uuid".into(), json!(self.rng.uuid()));
        line.insert("isMeta".into(), json!(false));
        self.push(line, false);
    }

    /// The user line answering `call`.
    fn tool_result(&mut self, call: &ToolCall) {
        let output = text::tool_output(self.rng);
        let is_error = self.rng.chance(0.05);
        let sidecar = if call.name == "Bash" {
            json!({"stdout": output, "stderr": "", "interrupted": false, "isImage": false})
        } else {
            json!({"type": "text", "file": {"numLines": output.lines().count()}})
        };
        let mut line = self.envelope("user");
        line.insert(
            "message".into(),
            json!({"role": "user", "content": [{
                "tool_use_id": call.id,
                "type": "tool_result",
                "content": output,
                "is_error": is_error,
            }]}),
        );
        line.insert("uuid".into(), json!(self.rng.uuid()));
        line.insert("timestamp".into(), json!(self.tick(1, 30)));
        line.insert("toolUseResult".into(), sidecar);
        self.push(line, true);
    }

    /// One API response, one line per block, in at most `remaining` lines
    /// (keeping one for the result when it ends with a tool call). Returns
    /// the call that now waits for its result.
    fn assistant_message(&mut self, remaining: usize) -> Option<ToolCall> {
        let message_id = format!("msg_01{}", self.rng.chars(BASE62, 22));
        let request_id = format!("req_011{}", self.rng.chars(BASE62, 21));
        let usage = self.usage();
        let (mut blocks, mut call) = self.blocks();
        let room = remaining - usize::from(call.is_some());
        if room == 0 {
            call = None;
            blocks = vec![json!({"type": "text", "text": text::prose(self.rng, 5, 40)})];
        } else if blocks.len() > room {
            blocks.drain(..blocks.len() - room);
        }
        let timestamp = self.tick(2, 40);
        let n_blocks = blocks.len();
        for (block_idx, block) in blocks.into_iter().enumerate() {
            let stop_reason = match (block_idx + 1 == n_blocks, &call) {
                (false, _) => Value::Null,
                (true, Some(_)) => json!("tool_use"),
                (true, None) => json!("end_turn"),
            };
            let mut line = self.envelope("assistant");
            line.insert(
                "message".into(),
                json!({
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [block],
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": usage,
                }),
            );
            line.insert("requestId".into(), json!(request_id));
            line.insert("uuid".into(), json!(self.rng.uuid()));
            line.insert("timestamp".into(), json!(timestamp));
            self.push(line, true);
        }
        call
    }

    /// The blocks of one response: maybe thinking, maybe text, and a tool
    /// call (always, when there is nothing else), the call last.
    fn blocks(&mut self) -> (Vec<Value>, Option<ToolCall>) {
        let mut blocks = Vec::with_capacity(3);
        if self.rng.chance(0.25) {
            blocks.push(json!({
                "type": "thinking",
                "thinking": text::prose(self.rng, 15, 80),
                "signature": self.rng.chars(BASE62, 120),
            }));
        }
        if self.rng.chance(0.7) {
            blocks.push(json!({"type": "text", "text": text::prose(self.rng, 5, 90)}));
        }
        if !self.rng.chance(0.6) && !blocks.is_empty() {
            return (blocks, None);
        }
        let name = self.rng.pick(TOOLS);
        let id = format!("toolu_01{}", self.rng.chars(BASE62, 22));
        let input = self.tool_input(name);
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        (blocks, Some(ToolCall { id, name }))
    }

    fn tool_input(&mut self, name: &str) -> Value {
        let rng = &mut *self.rng;
        match name {
            "Bash" => {
                let command = rng.pick(SHELL_COMMANDS);
                json!({"command": command, "description": text::prose(rng, 3, 8)})
            }
            "Read" => json!({"file_path": source_file(rng, &self.cwd)}),
            "Write" => {
                let file_path = source_file(rng, &self.cwd);
                json!({"file_path": file_path, "content": text::tool_output(rng)})
            }
            "Edit" => {
                let file_path = source_file(rng, &self.cwd);
                json!({
                    "file_path": file_path,
                    "old_string": text::prose(rng, 4, 20),
                    "new_string": text::prose(rng, 4, 20),
                })
            }
            "Grep" => {
                json!({"pattern": text::word(rng), "path": self.cwd, "output_mode": "content"})
            }
            "Glob" => {
                let extension = rng.pick(&["js", "ts", "py", "rs", "go"]);
                json!({"pattern": format!("**/*.{extension}")})
            }
            "TodoWrite" => {
                let todos: Vec<Value> = (0..rng.range(1, 4))
                    .map(|_| {
                        json!({
                            "content": text::prose(rng, 3, 8),
                            "status": rng.pick(&["pending", "in_progress", "completed"]),
                            "activeForm": text::prose(rng, 2, 5),
                        })
                    })
                    .collect();
                json!({"todos": todos})
            }
            _ => json!({
                "url": format!("https://example.com/{}", text::word(rng)),
                "prompt": text::prose(rng, 5, 15),
            }),
        }
    }

    /// Usage as the API reports it: input net of the cache, cache reads
    /// and (half the time) cache writes.
    fn usage(&mut self) -> Value {
        let cache_read = self.rng.range(0, 120_000);
        let cache_write = if self.rng.chance(0.5) {
            self.rng.range(0, 8000)
        } else {
            0
        };
        json!({
            "input_tokens": self.rng.range(1, 40),
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
            "output_tokens": self.rng.range(5, 2500),
            "service_tier": "standard",
        })
    }
}
