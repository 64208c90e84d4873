//! Boot-time recovery of `running` markers. A `running` marker found when
//! the daemon boots was left by an earlier process that died mid-action (a
//! crash, SIGKILL, power loss). Before the unit can be retried, any child it
//! names must be gone: if the recorded pid is still alive *and* still looks
//! like our child (a process-group leader whose argv names the action kind,
//! so a recycled pid of an unrelated process is never touched), its group is
//! SIGKILLed. The marker then becomes `failed` with reason `interrupted`
//! and `attempts + 1`; it has no `next_attempt`, so the boot pass retries it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::actions::child::signal_group;
use crate::actions::reconciler::{failed_marker, previous_attempts};
use crate::actions::store::{MarkerStore, StoreError};

/// The reason written for a unit whose process died under it.
pub const INTERRUPTED: &str = "interrupted";
/// How long to wait for a killed child to disappear.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// One `running` marker that was turned into `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub kind: String,
    pub request_key: String,
    pub pid: Option<u32>,
    /// Its process group was alive, ours, and was killed.
    pub killed: bool,
}

/// Turn every `running` marker into `failed`/`interrupted`, killing the
/// child it names first when that child still runs.
pub fn recover_interrupted(
    store: &MarkerStore,
    now: Timestamp,
) -> Result<Vec<Recovered>, StoreError> {
    let stale = running_markers(&store.read()?);
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let mut recovered = Vec::new();
    for (kind, request_key, pid) in stale {
        let killed = pid.is_some_and(|pid| kill_if_ours(pid, &kind));
        recovered.push(Recovered {
            kind,
            request_key,
            pid,
            killed,
        });
    }
    store.modify(|doc| {
        for unit in &recovered {
            let Some(marker) = doc.marker(&unit.kind, &unit.request_key).cloned() else {
                continue;
            };
            if marker.get("status").and_then(Value::as_str) != Some("running") {
                continue;
            }
            let attempts = previous_attempts(Some(&marker)) + 1;
            let failed = failed_marker(
                &unit.request_key,
                INTERRUPTED,
                now,
                attempts,
                None,
                Some(&marker),
                &Map::new(),
            );
            doc.set_marker(&unit.kind, &unit.request_key, failed);
        }
    })?;
    for unit in &recovered {
        crate::event!(
            Warn,
            "client_action.interrupted",
            json!({"kind": unit.kind, "request_key": unit.request_key, "pid": unit.pid, "killed": unit.killed}),
        );
    }
    Ok(recovered)
}

fn running_markers(doc: &crate::actions::store::MarkerDoc) -> Vec<(String, String, Option<u32>)> {
    let mut found = Vec::new();
    for kind in doc.kinds() {
        for key in doc.keys(&kind) {
            let Some(marker) = doc.marker(&kind, &key) else {
                continue;
            };
            if marker.get("status").and_then(Value::as_str) == Some("running") {
                let pid = marker
                    .get("pid")
                    .and_then(Value::as_u64)
                    .and_then(|pid| u32::try_from(pid).ok());
                found.push((kind.clone(), key, pid));
            }
        }
    }
    found
}

fn kill_if_ours(pid: u32, kind: &str) -> bool {
    if !looks_like_our_child(pid, kind) {
        return false;
    }
    signal_group(pid, libc::SIGKILL);
    let deadline = Instant::now() + KILL_WAIT;
    // A bounded wait at boot, before any thread runs: the kernel needs a
    // moment to tear the process down.
    while is_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A live (non-zombie) group leader whose argv has `kind` as an argument.
fn looks_like_our_child(pid: u32, kind: &str) -> bool {
    let Some(stat) = ProcStat::read(pid) else {
        return false;
    };
    if !stat.is_alive() || stat.process_group != pid {
        return false;
    }
    let cmdline = std::fs::read(proc_path(pid, "cmdline")).unwrap_or_default();
    cmdline
        .split(|byte| *byte == 0)
        .any(|arg| arg == kind.as_bytes())
}

fn is_alive(pid: u32) -> bool {
    ProcStat::read(pid).is_some_and(|stat| stat.is_alive())
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// The two fields of `/proc/<pid>/stat` recovery needs.
struct ProcStat {
    state: char,
    process_group: u32,
}

impl ProcStat {
    fn read(pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
        // The command name may contain spaces and parentheses: split after
        // the last ')'.
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let _parent = fields.next()?;
        let process_group = fields.next()?.parse().ok()?;
        Some(ProcStat {
            state,
            process_group,
        })
    }

    fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}
