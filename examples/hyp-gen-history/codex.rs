//! Codex rollouts as the CLI writes them under
//! `sessions/YYYY/MM/DD/rollout-<start>-<thread>.jsonl`: `{timestamp, type,
//! payload}` lines. One `session_meta` (thread id, cwd, originator, version,
//! git, the full system prompt), then turns: a `turn_context`, the user's
//! message (the first turn also carries the environment context), steps of
//! reasoning, a shell `function_call`, a `token_count` event and the
//! call's output, then the answer and a last `token_count`. `event_msg`
//! lines echo the user's and the agent's messages.
//!
//! Rows `hyp backfill codex` makes: one per `message`, `function_call`,
//! `function_call_output`, and `reasoning` item with a non-empty summary;
//! no row for the meta, turn contexts or events.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::Spread;
use crate::clock::{Civil, Iso};
use crate::rng::{BASE62, HEX, Rng};
use crate::text::{self, BRANCHES, PROJECTS, SHELL_COMMANDS};

const MODELS: &[&str] = &["gpt-5-codex", "gpt-5-codex", "gpt-5", "gpt-5.1-codex"];
const VERSIONS: &[&str] = &["0.46.0", "0.50.0", "0.58.0", "0.63.0"];
const ORIGINATORS: &[&str] = &[
    "codex_cli_rs",
    "codex_cli_rs",
    "codex_vscode",
    "Codex Desktop",
];

/// One generated rollout.
pub struct Rollout {
    /// Under the history root: `codex/sessions/YYYY/MM/DD/rollout-....jsonl`.
    pub path: PathBuf,
    /// The file's bytes: one JSON object per line, each ending in `\n`.
    pub data: Vec<u8>,
    pub n_lines: usize,
    pub expected_rows: u64,
}

/// A rollout of exactly `n_lines` lines (for `n_lines >= 1`).
pub fn rollout(rng: &mut Rng, spread: &Spread, base_instructions: &str, n_lines: usize) -> Rollout {
    let thread_id = rng.uuid();
    let project = rng.pick(PROJECTS);
    let branch = rng.pick(BRANCHES);
    let model = rng.pick(MODELS);
    let start_ms = spread.session_start(rng);
    let path = rollout_path(start_ms, &thread_id);
    let mut writer = RolloutWriter {
        rng,
        cwd: format!("/home/dev/src/{project}"),
        model,
        clock_ms: start_ms,
        totals: [0; 5],
        data: Vec::with_capacity(n_lines * 1024),
        n_lines: 0,
        expected_rows: 0,
    };
    writer.session_meta(&thread_id, project, branch, base_instructions);
    writer.fill(n_lines);
    Rollout {
        path,
        data: writer.data,
        n_lines: writer.n_lines,
        expected_rows: writer.expected_rows,
    }
}

/// The client's file name for a thread started at `start_ms`.
fn rollout_path(start_ms: i64, thread_id: &str) -> PathBuf {
    let c = Civil::from_millis(start_ms);
    let (year, month, day) = (c.year, c.month, c.day);
    PathBuf::from(format!(
        "codex/sessions/{year:04}/{month:02}/{day:02}/rollout-{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}-{thread_id}.jsonl",
        c.hour, c.minute, c.second
    ))
}

/// The keys of a token usage record, in the client's order.
const USAGE_KEYS: [&str; 5] = [
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
];

/// The state of one rollout being written.
struct RolloutWriter<'r> {
    rng: &'r mut Rng,
    cwd: String,
    model: &'static str,
    clock_ms: i64,
    /// Running totals of [`USAGE_KEYS`] for `total_token_usage`.
    totals: [u64; 5],
    data: Vec<u8>,
    n_lines: usize,
    expected_rows: u64,
}

impl RolloutWriter<'_> {
    fn fill(&mut self, n_lines: usize) {
        let mut first_turn = true;
        while self.n_lines < n_lines {
            self.turn_context();
            if self.n_lines >= n_lines {
                break;
            }
            if first_turn && n_lines - self.n_lines >= 2 {
                self.environment_context();
            }
            first_turn = false;
            let prompt = text::prose(self.rng, 6, 60);
            self.message("user", "input_text", &prompt);
            if self.n_lines < n_lines {
                self.event(json!({"type": "user_message", "message": prompt, "images": []}));
            }
            for _ in 0..self.rng.range(1, 6) {
                // A step takes up to four lines.
                if n_lines - self.n_lines < 5 {
                    break;
                }
                self.step();
            }
            if self.n_lines >= n_lines {
                break;
            }
            let answer = text::prose(self.rng, 10, 120);
            self.message("assistant", "output_text", &answer);
            if self.n_lines < n_lines {
                self.event(json!({"type": "agent_message", "message": answer}));
            }
            if self.n_lines < n_lines {
                self.token_count();
            }
        }
    }

    /// Move the clock on by 1 to 20 seconds plus some milliseconds.
    fn tick(&mut self) -> String {
        self.clock_ms += (self.rng.range(1000, 20_000) + self.rng.below(1000)) as i64;
        Iso(self.clock_ms).to_string()
    }

    fn push(&mut self, timestamp: String, kind: &str, payload: Value, makes_row: bool) {
        let line = json!({"timestamp": timestamp, "type": kind, "payload": payload});
        serde_json::to_writer(&mut self.data, &line).expect("a JSON value serialises");
        self.data.push(b'\n');
        self.n_lines += 1;
        self.expected_rows += u64::from(makes_row);
    }

    fn response_item(&mut self, payload: Value, makes_row: bool) {
        let timestamp = self.tick();
        self.push(timestamp, "response_item", payload, makes_row);
    }

    fn event(&mut self, payload: Value) {
        let timestamp = self.tick();
        self.push(timestamp, "event_msg", payload, false);
    }

    fn session_meta(&mut self, thread_id: &str, project: &str, branch: &str, base: &str) {
        let started = Iso(self.clock_ms).to_string();
        let payload = json!({
            "id": thread_id,
            "timestamp": started,
            "cwd": self.cwd,
            "originator": self.rng.pick(ORIGINATORS),
            "cli_version": self.rng.pick(VERSIONS),
            "instructions": null,
            "source": self.rng.pick(&["cli", "vscode", "exec"]),
            "model_provider": "openai",
            "base_instructions": {"text": base},
            "git": {
                "commit_hash": self.rng.chars(HEX, 40),
                "branch": branch,
                "repository_url": format!("git@github.com:acme/{project}.git"),
            },
        });
        self.push(started, "session_meta", payload, false);
    }

    fn turn_context(&mut self) {
        let payload = json!({
            "cwd": self.cwd,
            "approval_policy": "on-request",
            "sandbox_policy": {
                "type": "workspace-write",
                "network_access": false,
                "exclude_tmpdir_env_var": false,
                "exclude_slash_tmp": false,
            },
            "model": self.model,
            "effort": self.rng.pick(&["low", "medium", "high"]),
            "summary": "auto",
        });
        let timestamp = self.tick();
        self.push(timestamp, "turn_context", payload, false);
    }

    /// The environment the CLI reports to the model before the first prompt.
    fn environment_context(&mut self) {
        let text = format!(
            "<environment_context>\n  <cwd>{}</cwd>\n  <approval_policy>on-request</approval_policy>\n  \
             <sandbox_mode>workspace-write</sandbox_mode>\n  <network_access>restricted</network_access>\n  \
             <shell>bash</shell>\n</environment_context>",
            self.cwd
        );
        self.message("user", "input_text", &text);
    }

    fn message(&mut self, role: &str, content_type: &str, text: &str) {
        self.response_item(
            json!({"type": "message", "role": role, "content": [{"type": content_type, "text": text}]}),
            true,
        );
    }

    /// Maybe reasoning, then a shell call, the usage so far, and its output.
    fn step(&mut self) {
        if self.rng.chance(0.6) {
            self.reasoning();
        }
        let call_id = format!("call_{}", self.rng.chars(BASE62, 24));
        let command = self.rng.pick(SHELL_COMMANDS);
        let arguments = json!({"command": ["bash", "-lc", command], "workdir": self.cwd, "timeout_ms": 120_000});
        self.response_item(
            json!({"type": "function_call", "name": "shell", "arguments": arguments.to_string(), "call_id": call_id}),
            true,
        );
        self.token_count();
        let output = json!({
            "output": text::tool_output(self.rng),
            "metadata": {
                "exit_code": if self.rng.chance(0.9) { 0 } else { 1 },
                "duration_seconds": tenths(self.rng.unit() * 5.0),
            },
        });
        self.response_item(
            json!({"type": "function_call_output", "call_id": call_id, "output": output.to_string()}),
            true,
        );
    }

    /// Encrypted reasoning; its summary, when there is one, makes a row.
    fn reasoning(&mut self) {
        let summary = if self.rng.chance(0.3) {
            Vec::new()
        } else {
            let title = text::prose(self.rng, 2, 5);
            let body = text::prose(self.rng, 10, 50);
            vec![json!({"type": "summary_text", "text": format!("**{title}**\n\n{body}")})]
        };
        let makes_row = !summary.is_empty();
        let encrypted_len = self.rng.range(200, 1200) as usize;
        let encrypted = format!("gAAAAA{}", self.rng.chars(BASE62, encrypted_len));
        self.response_item(
            json!({"type": "reasoning", "summary": summary, "content": null, "encrypted_content": encrypted}),
            makes_row,
        );
    }

    /// The usage of the last request and the running totals, with rate
    /// limits.
    fn token_count(&mut self) {
        let input = self.rng.range(2000, 60_000);
        let cached = self.rng.range(0, input);
        let output = self.rng.range(10, 3000);
        let reasoning = self.rng.range(0, output);
        let last = [input, cached, output, reasoning, input + output];
        for (total, value) in self.totals.iter_mut().zip(last) {
            *total += value;
        }
        let payload = json!({
            "type": "token_count",
            "info": {
                "total_token_usage": usage_record(&self.totals),
                "last_token_usage": usage_record(&last),
                "model_context_window": 272_000,
            },
            "rate_limits": {
                "primary": {
                    "used_percent": tenths(self.rng.unit() * 100.0),
                    "window_minutes": 300,
                    "resets_in_seconds": self.rng.range(0, 18_000),
                },
                "secondary": {
                    "used_percent": tenths(self.rng.unit() * 100.0),
                    "window_minutes": 10_080,
                    "resets_in_seconds": self.rng.range(0, 604_800),
                },
            },
        });
        self.event(payload);
    }
}

fn usage_record(values: &[u64; 5]) -> Value {
    let record = USAGE_KEYS
        .iter()
        .zip(values)
        .map(|(key, value)| (key.to_string(), json!(value)))
        .collect();
    Value::Object(record)
}

/// Rounded to one decimal, as the client prints percentages and durations.
fn tenths(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}
