//! The exporter thread: when the forward sink exports (contract §12
//! "When"). It ticks every 60 s (scaled), starting at this host's splay
//! offset so a fleet that boots together does not reach central together,
//! and on a tick exports every central sink instance whose `schedule`
//! matches the minute and whose backoff has passed. An `ExportRequest`
//! (a backfill child or a capture sweep committed rows) asks for the same
//! check at once, so a join's history reaches central seconds after it is
//! imported.
//!
//! Each export is a `hyp sync <instance> --scheduled --json` child through
//! the one spawning chokepoint (own process group, nice, parent-death
//! signal, stderr log): a slow upload never blocks the daemon's other
//! threads, the daemon's memory stays small whatever the cache size, and a
//! crash mid-export is the crash the intents are made for. Requests that
//! arrive during an export coalesce into one more check after it. An
//! instance whose last export left nothing behind is not exported again
//! until the cache, the identity or the URL changes, so an idle host
//! spawns nothing; a backoff is honoured by the child, so the daemon never
//! opens SQLite for it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, at, bounded, select_biased};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::actions::child::{self, Cancel, CancelSource, ChildOutcome, ChildSpec};
use crate::config::cron::{self, Schedule};
use crate::control::sink::CentralSink;
use crate::messages::{ExportReason, ExportRequest};
use crate::paths::{Paths, TimeScale};
use crate::sink;

/// The tick, unscaled (the reference's 60 s).
const TICK: Duration = Duration::from_secs(60);
/// How long an interrupted export child gets between SIGTERM and SIGKILL.
const CHILD_GRACE_SECS: u64 = 10;

/// What the exporter runs with; tests point `exe` at the built binary.
pub struct ExporterSetup {
    pub paths: Paths,
    pub time_scale: TimeScale,
    /// The program run as `<exe> sync ...` (the daemon's own binary).
    pub exe: PathBuf,
    /// The children's environment (`HYP_HOME` forced to the daemon's).
    pub env: Vec<(OsString, OsString)>,
}

impl ExporterSetup {
    pub fn for_daemon(paths: &Paths, time_scale: TimeScale) -> io::Result<ExporterSetup> {
        Ok(ExporterSetup {
            paths: paths.clone(),
            time_scale,
            exe: std::env::current_exe()?,
            env: child::environment(paths, std::env::vars_os()),
        })
    }
}

/// The running exporter; `shutdown` interrupts a running export and joins.
pub struct ExporterHandle {
    thread: JoinHandle<()>,
    cancel: CancelSource,
    exited: Receiver<()>,
}

impl ExporterHandle {
    pub fn spawn(
        setup: ExporterSetup,
        inbox: Receiver<ExportRequest>,
    ) -> io::Result<ExporterHandle> {
        let (cancel_source, cancel) = CancelSource::new();
        let (exit_guard, exited) = bounded::<()>(0);
        let period = setup.time_scale.scale(TICK);
        let installation =
            crate::control::membership::read_installation_id(&setup.paths).unwrap_or_default();
        let offset = setup
            .time_scale
            .scale(crate::splay::offset(&installation, "export", TICK));
        let actor = ExporterActor {
            grace: setup.time_scale.secs(CHILD_GRACE_SECS),
            setup,
            cancel,
            period,
            next_tick: Instant::now() + offset,
            invalid_schedules: Vec::new(),
            settled: HashMap::new(),
            _exit_guard: exit_guard,
        };
        let thread = std::thread::Builder::new()
            .name("exporter".into())
            .spawn(move || actor.run(&inbox))?;
        Ok(ExporterHandle {
            thread,
            cancel: cancel_source,
            exited,
        })
    }

    /// Stop ticking, interrupt a running export child (SIGTERM to its
    /// group, SIGKILL after the grace; its intent makes the next export
    /// resend what was in flight), and join by `deadline`.
    pub fn shutdown(self, deadline: Instant) {
        self.cancel.cancel(deadline);
        match self.exited.recv_deadline(deadline) {
            Err(RecvTimeoutError::Timeout) => crate::event!(
                Error,
                "central.forward.exporter_stuck",
                json!({"detail": "the exporter did not stop by the shutdown deadline"}),
            ),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
            }
        }
    }
}

/// Why the exporter woke.
enum Wake {
    Tick,
    Request(ExportReason),
    Stop,
}

struct ExporterActor {
    setup: ExporterSetup,
    cancel: Cancel,
    grace: Duration,
    period: Duration,
    next_tick: Instant,
    /// Instances whose bad schedule was already logged (logged once).
    invalid_schedules: Vec<String>,
    /// Per instance, what the files an export depends on looked like when
    /// its last export left nothing behind: while they look the same there
    /// is nothing to send, and no child is spawned.
    settled: HashMap<String, Fingerprint>,
    /// Dropped when the thread ends, however it ends.
    _exit_guard: Sender<()>,
}

/// The files an export's outcome depends on: where it sends (the URL), who
/// it is (the identity), and what it reads (the cache and its log). Sizes
/// and modification times: a commit, a checkpoint, a new enrolment or a
/// new cache each change one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    url: String,
    files: Vec<Option<(u64, std::time::SystemTime)>>,
}

impl Fingerprint {
    fn of(paths: &Paths, sink: &CentralSink) -> Fingerprint {
        let db = paths.cache_db();
        let wal = db.with_file_name("cache.db-wal");
        let files = [db, wal, paths.identity()]
            .iter()
            .map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                Some((meta.len(), meta.modified().ok()?))
            })
            .collect();
        Fingerprint {
            url: sink.url.clone(),
            files,
        }
    }
}

impl ExporterActor {
    fn run(mut self, inbox: &Receiver<ExportRequest>) {
        loop {
            let wake = self.next_wake(inbox);
            match wake {
                Wake::Stop => break,
                Wake::Tick => self.advance_tick(),
                Wake::Request(reason) => crate::event!(
                    Debug,
                    "central.forward.export_requested",
                    json!({"hyp_reason": reason.name()}),
                ),
            }
            // Requests that came meanwhile are answered by this one check.
            while inbox.try_recv().is_ok() {}
            self.export_due();
            if self.cancel.is_cancelled() {
                break;
            }
        }
        crate::event!(Debug, "central.forward.exporter_stopped", json!({}));
    }

    fn next_wake(&self, inbox: &Receiver<ExportRequest>) -> Wake {
        select_biased! {
            recv(self.cancel.receiver()) -> _ => Wake::Stop,
            recv(inbox) -> request => match request {
                Ok(request) => Wake::Request(request.reason),
                Err(_) => Wake::Stop,
            },
            recv(at(self.next_tick)) -> _ => Wake::Tick,
        }
    }

    /// The next tick on the grid after now (ticks missed during a long
    /// export are skipped, not run back to back).
    fn advance_tick(&mut self) {
        let now = Instant::now();
        while self.next_tick <= now {
            self.next_tick += self.period.max(Duration::from_millis(1));
        }
    }

    /// Export every instance that is due now.
    fn export_due(&mut self) {
        let config = crate::config::load_effective(&self.setup.paths);
        let now = Timestamp::now();
        for instance in sink::instances(&self.setup.paths, &config) {
            if self.cancel.is_cancelled() {
                return;
            }
            match instance {
                Ok(sink) if self.is_due(&sink, now) => {
                    let before = Fingerprint::of(&self.setup.paths, &sink);
                    if self.settled.get(&sink.name) == Some(&before) {
                        continue;
                    }
                    match self.export(&sink) {
                        true => self.settled.insert(sink.name.clone(), before),
                        false => self.settled.remove(&sink.name),
                    };
                }
                Ok(_) => {}
                Err(err) => crate::event!(
                    Warn,
                    "central.forward.instance_invalid",
                    json!({"message": err.to_string()}),
                ),
            }
        }
    }

    /// The schedule matches this minute (UTC). A backoff is the child's to
    /// honour (it reads `forward.db`; the daemon stays off SQLite).
    fn is_due(&mut self, sink: &CentralSink, now: Timestamp) -> bool {
        let expression = sink.schedule.as_deref().unwrap_or(cron::EVERY_MINUTE);
        let schedule = match Schedule::parse(expression) {
            Ok(schedule) => schedule,
            Err(err) => {
                if !self.invalid_schedules.contains(&sink.name) {
                    self.invalid_schedules.push(sink.name.clone());
                    crate::event!(
                        Error,
                        "central.forward.schedule_invalid",
                        json!({"hyp_sink_instance": sink.name, "schedule": expression, "message": err.to_string()}),
                    );
                }
                return false;
            }
        };
        self.invalid_schedules.retain(|name| name != &sink.name);
        schedule.matches(now)
    }

    /// Run one export child; true when it left nothing to send (every row
    /// up to its start is settled).
    fn export(&self, sink: &CentralSink) -> bool {
        let spec = ChildSpec {
            program: self.setup.exe.clone(),
            args: vec![
                "sync".into(),
                sink.name.clone().into(),
                "--scheduled".into(),
                "--json".into(),
            ],
            env: self.setup.env.clone(),
            stderr_log: self.setup.paths.action_log("export", &sink.name),
            grace: self.grace,
        };
        let run = child::run(&spec, &self.cancel, &|pid| {
            crate::event!(
                Debug,
                "central.forward.export_started",
                json!({"hyp_sink_instance": sink.name, "pid": pid}),
            );
        });
        let summary = serde_json::from_slice::<Value>(&run.stdout)
            .ok()
            .and_then(|document| document.pointer("/sinks/0").cloned())
            .unwrap_or(Value::Null);
        let status = summary.get("status").and_then(Value::as_str);
        let fields = json!({
            "hyp_sink_instance": sink.name,
            "outcome": run.outcome.to_string(),
            "status": status,
            "rows_sent": summary.get("rows_sent"),
            "bytes_sent": summary.get("bytes_sent"),
            "chunks": summary.get("chunks"),
            "rows_withheld": summary.get("rows_withheld"),
            "rows_quarantined": summary.get("rows_quarantined"),
            "pending_rows": summary.get("pending_rows"),
            "error": summary.get("error"),
            "stderr": run.stderr_tail,
        });
        let settled = matches!(run.outcome, ChildOutcome::Exited(0))
            && matches!(status, Some("exported" | "nothing_to_send"));
        // One line per export that did something; an idle minute logs at debug.
        match (&run.outcome, status) {
            (ChildOutcome::Cancelled, _) | (ChildOutcome::Exited(0), Some("nothing_to_send")) => {
                crate::event!(Debug, "central.forward.export", fields)
            }
            (ChildOutcome::Exited(0), _) => crate::event!(Info, "central.forward.export", fields),
            _ => crate::event!(Warn, "central.forward.export", fields),
        }
        settled
    }
}
