//! `hyp daemon ...`: run the daemon in the foreground, manage its systemd
//! user service, and read its pid file, status file and log. The commands
//! here are thin: the work lives in `crate::daemon`.

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::cli::{CliError, Code, output};
use crate::daemon::pid_file::{self, PidFileRead};
use crate::daemon::run::{DaemonError, RunOutcome};
use crate::daemon::service::{self, SystemctlError, UNIT_NAME, UnitScope};
use crate::daemon::signals::DaemonSignal;
use crate::daemon::{self, RestartOutcome, StopOutcome, lock, logs, status_file};
use crate::paths::{Paths, TimeScale};
use crate::statefile::StateRead;

/// Run the daemon, or manage and inspect it
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub command: DaemonCommand,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Run the daemon in this process until SIGTERM or SIGINT (the only mode;
    /// services run it this way). SIGHUP reloads config; SIGUSR1 restarts it
    /// in place (same pid).
    Run(RunArgs),
    /// Start the installed systemd user service
    Start,
    /// Stop the daemon: the systemd user service if installed, else SIGTERM to
    /// the process holding the daemon lock
    Stop(StopArgs),
    /// Restart the systemd user service; without one, stop the daemon and say
    /// how to start it again
    Restart(StopArgs),
    /// Show whether the daemon runs (exit 3 when it does not)
    Status(StatusArgs),
    /// Install the systemd unit hypaware.service, running this hyp binary, and
    /// start it (a user unit; --system for a root-run fleet)
    Install(ServiceArgs),
    /// Stop, disable and remove the systemd unit (--system: the system unit)
    Uninstall(ServiceArgs),
    /// Print the last lines of the daemon log (readable; --json for the raw JSON lines)
    Logs(LogsArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the foreground (the default and only mode; accepted for
    /// compatibility)
    #[arg(short = 'f', long)]
    pub foreground: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait for the daemon to exit
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Show the unit and its paths without changing anything
    #[arg(long)]
    pub dry_run: bool,
    /// The system unit /etc/systemd/system/hypaware.service, which runs the
    /// daemon as root from boot, for a fleet whose hosts run their AI clients
    /// as root (needs root); without it, the user unit of whoever runs hyp
    #[arg(long)]
    pub system: bool,
}

impl ServiceArgs {
    fn scope(&self) -> UnitScope {
        if self.system {
            UnitScope::System
        } else {
            UnitScope::User
        }
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// How many lines to print
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Keep printing lines as they are written (Ctrl-C to stop)
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Print the raw JSON lines instead of readable ones
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DaemonArgs) -> Result<Code, CliError> {
    match args.command {
        DaemonCommand::Run(_) => run_daemon(),
        DaemonCommand::Start => start(),
        DaemonCommand::Stop(args) => stop(args.timeout),
        DaemonCommand::Restart(args) => restart(args.timeout),
        DaemonCommand::Status(args) => status(args.json),
        DaemonCommand::Install(args) => install(&args),
        DaemonCommand::Uninstall(args) => uninstall(&args),
        DaemonCommand::Logs(args) => show_logs(&args),
    }
}

fn run_daemon() -> Result<Code, CliError> {
    let time_scale = TimeScale::from_env()?;
    let paths = Paths::from_env()?;
    let outcome = daemon::run::run(&paths, time_scale)
        .map_err(|err: DaemonError| CliError::failed(err.to_string()))?;
    let code = match outcome {
        RunOutcome::Stopped => Code::Ok,
        RunOutcome::Forced(DaemonSignal::Interrupt) => Code::Interrupted,
        RunOutcome::Forced(_) => Code::Terminated,
        RunOutcome::Overran => Code::Failure,
        RunOutcome::ExecFailed => Code::Relaunch,
    };
    let line = match outcome {
        RunOutcome::Stopped => "daemon: stopped\n",
        RunOutcome::Forced(_) => "daemon: stopped (forced by a second signal)\n",
        RunOutcome::Overran => "daemon: stopped (shutdown overran its budget)\n",
        RunOutcome::ExecFailed => "daemon: stopped (staged restart could not exec; relaunch me)\n",
    };
    output::stderr_text(line);
    Ok(code)
}

fn start() -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    if lock::is_held(&paths) {
        // Starting the service now would only fail on the lock, again and again.
        let pid = daemon::running_pid(&paths)
            .map_or_else(|| "pid unknown".to_string(), |pid| format!("pid={pid}"));
        output::stderr_text(&format!("daemon: already running ({pid})\n"));
        return Ok(Code::Ok);
    }
    let Some(scope) = service::installed_scope() else {
        return Err(CliError::failed(
            "service not installed (run 'hyp daemon install' first, or 'hyp daemon run' to run in the foreground)",
        ));
    };
    match service::systemctl_in(scope, &["start", UNIT_NAME]) {
        Ok(()) => {
            output::stderr_text("daemon: started\n");
            Ok(Code::Ok)
        }
        Err(err @ SystemctlError::Unavailable { .. }) => Err(CliError::failed(format!(
            "cannot start {UNIT_NAME}: {err}; run 'hyp daemon run' in the foreground instead"
        ))),
        Err(err) => Err(CliError::failed(err.to_string())),
    }
}

fn stop(timeout: u64) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let service_stopped = stop_service_if_installed();
    report_stop(&paths, timeout, service_stopped)
}

/// `systemctl [--user] stop` when a unit is installed and a manager runs;
/// true when that succeeded. The lock path after it stops a daemon the
/// service manager does not know (a foreground one).
fn stop_service_if_installed() -> bool {
    let Some(scope) = service::installed_scope() else {
        return false;
    };
    match service::systemctl_in(scope, &["stop", UNIT_NAME]) {
        Ok(()) => true,
        Err(SystemctlError::Unavailable { .. }) => false,
        Err(err) => {
            output::warning(&err.to_string());
            false
        }
    }
}

/// Stop through the lock and pid file and print the outcome.
fn report_stop(paths: &Paths, timeout: u64, service_stopped: bool) -> Result<Code, CliError> {
    match daemon::stop_running_daemon(paths, Duration::from_secs(timeout)) {
        StopOutcome::NotRunning if service_stopped => {
            output::stderr_text(&format!("daemon: stopped ({UNIT_NAME})\n"))
        }
        StopOutcome::NotRunning => output::stderr_text("daemon: not running\n"),
        StopOutcome::Stopped { .. } => output::stderr_text("daemon: stopped\n"),
        StopOutcome::TimedOut { pid } => {
            return Err(CliError::failed(format!(
                "stop signal sent to pid {pid} but the daemon did not exit within {timeout}s (try again with --timeout, or kill -9 {pid})"
            )));
        }
        StopOutcome::PidUnknown { detail } => {
            return Err(CliError::failed(format!(
                "a daemon holds {} but its pid is unknown: {detail}",
                paths.daemon_lock().display()
            )));
        }
    }
    Ok(Code::Ok)
}

/// Restart through the service manager when the unit is installed and a
/// manager answers; else restart the running daemon in place (a staged
/// restart, same pid). Never stops a daemon it cannot bring back: with
/// neither, it refuses before touching anything.
fn restart(timeout: u64) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let manager_problem = if let Some(scope) = service::installed_scope() {
        match service::systemctl_in(scope, &["restart", UNIT_NAME]) {
            Ok(()) => {
                output::stderr_text("daemon: restarted\n");
                return Ok(Code::Ok);
            }
            Err(err @ SystemctlError::Unavailable { .. }) => Some(err.to_string()),
            Err(err) => return Err(CliError::failed(err.to_string())),
        }
    } else {
        None
    };
    match daemon::restart_in_place(&paths, Duration::from_secs(timeout)) {
        RestartOutcome::Restarted { pid } => {
            output::stderr_text(&format!("daemon: restarted (pid {pid}, in place)\n"));
            Ok(Code::Ok)
        }
        RestartOutcome::TimedOut { pid } => Err(CliError::failed(format!(
            "asked pid {pid} to restart but no new run started within {timeout}s: see 'hyp daemon logs'"
        ))),
        RestartOutcome::NotRunning => Err(CliError::failed(match manager_problem {
            Some(problem) => format!(
                "no daemon runs and the service cannot be started ({problem}): start it with 'hyp daemon run'"
            ),
            None => "no daemon runs and no service is installed: start it with 'hyp daemon run', or 'hyp daemon install' for a service".to_string(),
        })),
    }
}

fn status(json: bool) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let report = StatusReport::collect(&paths);
    if json {
        output::stdout_json(&report.to_json(&paths))?;
    } else {
        output::stdout_text(&report.to_text(&paths))?;
        for note in report.notes(&paths) {
            output::note(&note);
        }
    }
    Ok(if report.running {
        Code::Ok
    } else {
        Code::NotRunning
    })
}

/// What `hyp daemon status` read: the lock, the pid file, `status.json`.
struct StatusReport {
    running: bool,
    pid_file: PidFileRead,
    status: StateRead<Value>,
}

impl StatusReport {
    fn collect(paths: &Paths) -> StatusReport {
        StatusReport {
            running: lock::is_held(paths),
            pid_file: pid_file::read(paths),
            status: status_file::read(paths),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.running.then(|| self.pid_file.pid()).flatten()
    }

    fn status_value(&self) -> Option<&Value> {
        match &self.status {
            StateRead::Ok(value) => Some(value),
            _ => None,
        }
    }

    fn recorded_state(&self) -> Option<&str> {
        self.status_value()?.get("state")?.as_str()
    }

    /// The state to show: the recorded one while running; without a
    /// process, `not_running` (the one name everywhere for a daemon that
    /// stopped or never started), or `dead` when it did not say it stopped.
    fn state(&self) -> &str {
        match (self.running, self.recorded_state()) {
            (true, Some(state)) => state,
            (true, None) => "unknown",
            (false, Some("stopped") | None) => "not_running",
            (false, Some(_)) => "dead",
        }
    }

    /// Now minus `healthy_at` while the daemon runs; the stored value after.
    fn live_uptime_ms(&self) -> Option<u64> {
        let status = self.status_value()?;
        if !self.running {
            return status.get("uptime_ms")?.as_u64();
        }
        let healthy_at = crate::time::parse_iso(status.get("healthy_at")?.as_str()?)?;
        let uptime = jiff::Timestamp::now().duration_since(healthy_at);
        u64::try_from(uptime.as_millis()).ok()
    }

    fn pid_file_state(&self) -> &'static str {
        match (&self.pid_file, self.running) {
            (PidFileRead::Missing, _) => "missing",
            (PidFileRead::Malformed { .. }, _) => "malformed",
            (PidFileRead::Ok(_), true) => "ok",
            (PidFileRead::Ok(_), false) => "stale",
        }
    }

    fn to_json(&self, paths: &Paths) -> Value {
        let mut pid_file = Map::new();
        pid_file.insert("path".into(), json!(paths.pid_file().display().to_string()));
        pid_file.insert("state".into(), json!(self.pid_file_state()));
        match &self.pid_file {
            PidFileRead::Ok(content) => {
                pid_file.insert("pid".into(), json!(content.pid));
                pid_file.insert("run_id".into(), json!(content.run_id));
            }
            PidFileRead::Malformed { detail } => {
                pid_file.insert("detail".into(), json!(detail));
            }
            PidFileRead::Missing => {}
        }
        let mut status_file = Map::new();
        status_file.insert(
            "path".into(),
            json!(paths.status_file().display().to_string()),
        );
        let status_state = match &self.status {
            StateRead::Ok(_) => "ok",
            StateRead::Missing => "missing",
            _ => "malformed",
        };
        status_file.insert("state".into(), json!(status_state));
        if let Some(problem) = self.status.problem(&paths.status_file()) {
            status_file.insert("detail".into(), json!(problem));
        }
        json!({
            "running": self.running,
            "pid": self.pid(),
            "state": self.state(),
            "uptime_ms": self.live_uptime_ms(),
            "last_state": self.recorded_state(),
            "unit_installed": service::is_installed(),
            "pid_file": pid_file,
            "status_file": status_file,
            "status": self.status_value(),
        })
    }

    fn to_text(&self, paths: &Paths) -> String {
        let mut text = match (self.running, self.pid()) {
            (true, Some(pid)) => format!("daemon: running (pid={pid})\n"),
            (true, None) => "daemon: running (pid unknown)\n".to_string(),
            (false, _) => "daemon: not running\n".to_string(),
        };
        let field = |key: &str| -> Option<String> {
            let value = self.status_value()?.get(key)?;
            match value {
                Value::Null => None,
                Value::String(text) => Some(clean(text)),
                other => Some(clean(&other.to_string())),
            }
        };
        let mut line = |label: &str, value: Option<String>| {
            if let Some(value) = value {
                text.push_str(&format!("  {:<12} {value}\n", format!("{label}:")));
            }
        };
        match (self.running, self.recorded_state()) {
            (true, _) => line("state", Some(clean(self.state()))),
            (false, Some(recorded)) if recorded != "stopped" => line(
                "last state",
                Some(format!("{} (no live process)", clean(recorded))),
            ),
            (false, Some(_)) => line("last state", Some("stopped".into())),
            (false, None) => {}
        }
        line("run_id", field("run_id"));
        line("started_at", field("started_at"));
        line("healthy_at", field("healthy_at"));
        line("stopped_at", field("stopped_at"));
        line("uptime", self.live_uptime_ms().map(human_duration));
        if self.running {
            line(
                "central",
                field("central_layer").map(|central| match central.as_str() {
                    "true" => "joined (poll thread running)".to_string(),
                    _ => "not joined (no central layer)".to_string(),
                }),
            );
            line(
                "probation",
                field("probation_until").map(|until| format!("until {until}")),
            );
        }
        line("log", Some(paths.daemon_log().display().to_string()));
        text
    }

    /// Explanations of files that are stale or unusable; never fatal.
    fn notes(&self, paths: &Paths) -> Vec<String> {
        let mut notes = Vec::new();
        match (&self.pid_file, self.running) {
            (PidFileRead::Ok(content), false) => notes.push(format!(
                "stale pid file {} (pid {}, no daemon holds the lock); the next 'hyp daemon run' replaces it",
                paths.pid_file().display(),
                content.pid
            )),
            (PidFileRead::Malformed { detail }, _) => notes.push(format!(
                "the pid file is malformed and ignored: {}; the next 'hyp daemon run' replaces it",
                clean(detail)
            )),
            _ => {}
        }
        if let Some(problem) = self.status.problem(&paths.status_file()) {
            notes.push(format!(
                "the status file is unusable: {}; the daemon rewrites it when it next starts",
                clean(&problem)
            ));
        }
        if !self.running && self.status_value().is_none() {
            notes.push(
                "start it with 'hyp daemon run' (or 'hyp daemon install' for a service)".into(),
            );
        }
        notes
    }
}

/// `3d 4h`, `5m 2s`, `800ms`: the two largest units.
fn human_duration(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0 => format!("{millis}ms"),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A value from a file, safe for a terminal: control, bidi and other
/// invisible characters dropped, clamped to 200 characters.
fn clean(text: &str) -> String {
    let invisible = |ch: char| {
        ch.is_control()
            || matches!(ch, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    let kept: String = text.chars().filter(|ch| !invisible(*ch)).collect();
    match kept.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &kept[..cut]),
        None => kept,
    }
}

fn install(args: &ServiceArgs) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let scope = args.scope();
    let plan = service::plan(&paths, scope).map_err(|err| CliError::failed(err.to_string()))?;
    if !args.dry_run {
        service::require_root(scope, &plan.unit_path, "writes")
            .map_err(|err| CliError::failed(err.to_string()))?;
    }
    let summary = format!(
        "  target:    {}\n  bin:       {}\n  hyp_home:  {}\n  config:    {}\n  log:       {}\n",
        plan.unit_path.display(),
        plan.executable.display(),
        plan.hyp_home.display(),
        plan.config_path.display(),
        plan.daemon_log.display(),
    );
    warn_about_executable(&plan.executable);
    if scope == UnitScope::System {
        warn_about_foreign_home(&plan.hyp_home);
    }
    if args.dry_run {
        output::stdout_text(&format!(
            "service: {} {UNIT_NAME} (dry run: nothing written)\n{summary}--- content ---\n{}",
            scope.label(),
            plan.content
        ))?;
        hint_linger(scope);
        return Ok(Code::Ok);
    }
    service::write_unit(&plan).map_err(|err| CliError::failed(err.to_string()))?;
    if let Err(err) = crate::statefile::create_private_dir(&paths.logs_dir()) {
        output::warning(&format!(
            "cannot create {}: {err}",
            paths.logs_dir().display()
        ));
    }
    let steps: [&[&str]; 3] = [
        &["daemon-reload"],
        &["enable", UNIT_NAME],
        &["restart", UNIT_NAME],
    ];
    let managed = steps
        .iter()
        .try_for_each(|args| service::systemctl_in(scope, args));
    let unit_label = installed_label(scope);
    match managed {
        Ok(()) => {
            output::stderr_text(&format!(
                "✓ Daemon installed ({unit_label}: {UNIT_NAME})\n{summary}"
            ));
            hint_linger(scope);
            Ok(Code::Ok)
        }
        Err(err @ SystemctlError::Unavailable { .. }) => {
            output::stderr_text(&format!(
                "✓ Wrote the {unit_label} {UNIT_NAME} (not started)\n{summary}"
            ));
            output::warning(&format!("{err}, so the service was not enabled or started"));
            let systemctl = scope.systemctl_command();
            output::note(&format!(
                "start the daemon with 'hyp daemon run' (for example under nohup), or run '{systemctl} daemon-reload && {systemctl} enable --now {UNIT_NAME}' where systemd runs"
            ));
            Ok(Code::Ok)
        }
        Err(err) => Err(CliError::failed(format!(
            "{err} (the unit stays at {})",
            plan.unit_path.display()
        ))),
    }
}

/// How the outcome lines name the unit (the user unit's wording predates
/// `--system`).
fn installed_label(scope: UnitScope) -> &'static str {
    match scope {
        UnitScope::User => "systemd unit",
        UnitScope::System => "systemd system unit",
    }
}

/// A unit must outlive the shell that wrote it: warn when it would run a
/// binary from a cargo build tree or a temporary directory.
fn warn_about_executable(executable: &std::path::Path) {
    if let Some(build_tree) = service::build_tree_of(executable) {
        output::warning(&format!(
            "the unit points into a build tree: it runs {}, inside cargo's {}, which a rebuild replaces and 'cargo clean' removes; install hyp with 'make install' and run 'hyp daemon install' again with the installed binary",
            executable.display(),
            build_tree.display()
        ));
    } else if executable.starts_with(std::env::temp_dir()) {
        output::warning(&format!(
            "{} is under a temporary directory; the service stops working when it is removed",
            executable.display()
        ));
    }
}

/// A root daemon writing into another user's `HYP_HOME` would leave
/// root-owned files that user's own `hyp` cannot change (a `sudo` that kept
/// the caller's `HOME`).
fn warn_about_foreign_home(hyp_home: &std::path::Path) {
    if let Some(uid) = service::owner_other_than_root(hyp_home) {
        output::warning(&format!(
            "HYP_HOME {} belongs to uid {uid}, but the system unit runs the daemon as root, which would leave root-owned files there; run 'sudo -H hyp daemon install --system', or set HYP_HOME to root's own directory",
            hyp_home.display()
        ));
    }
}

/// A user unit runs only while its user has a session, unless logind keeps
/// their manager running (lingering): say how, when it does not.
fn hint_linger(scope: UnitScope) {
    if scope != UnitScope::User {
        return;
    }
    match service::login_name() {
        Some(user) if service::lingers(&user) => {}
        Some(user) => output::note(&format!(
            "{user} has no lingering session, so the service starts at {user}'s first login and stops at the last logout; run 'loginctl enable-linger {user}' to run it from boot without a login"
        )),
        None => output::note(
            "unless this user lingers, the service starts at the first login and stops at the last logout; run 'loginctl enable-linger' to run it from boot without a login",
        ),
    }
}

fn uninstall(args: &ServiceArgs) -> Result<Code, CliError> {
    let scope = args.scope();
    let unit_path = scope
        .unit_dir()
        .map_err(|err| CliError::failed(err.to_string()))?
        .join(UNIT_NAME);
    if !unit_path.is_file() {
        let which = match scope {
            UnitScope::User => "",
            UnitScope::System => "system ",
        };
        output::stderr_text(&format!("daemon: no {which}service installed\n"));
        return Ok(Code::Ok);
    }
    if args.dry_run {
        output::stdout_text(&format!(
            "would stop and disable {UNIT_NAME} and remove {} (dry run: nothing changed)\n",
            unit_path.display()
        ))?;
        return Ok(Code::Ok);
    }
    service::require_root(scope, &unit_path, "removes")
        .map_err(|err| CliError::failed(err.to_string()))?;
    for action in ["stop", "disable"] {
        if let Err(err @ SystemctlError::Failed { .. }) =
            service::systemctl_in(scope, &[action, UNIT_NAME])
        {
            output::warning(&err.to_string());
        }
    }
    service::remove_unit(&unit_path).map_err(|err| CliError::failed(err.to_string()))?;
    let _ = service::systemctl_in(scope, &["daemon-reload"]);
    output::stderr_text(&format!(
        "✓ Daemon removed ({}: {UNIT_NAME})\n  removed: {}\n  config, state and logs are kept\n",
        installed_label(scope),
        unit_path.display()
    ));
    Ok(Code::Ok)
}

fn show_logs(args: &LogsArgs) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let log_path = paths.daemon_log();
    let mut printer = logs::LogPrinter::new(args.json);
    let offset = match logs::tail(&log_path, args.lines) {
        Ok((bytes, len)) => {
            output::stdout_text(&printer.lines(&bytes))?;
            if !args.follow {
                output::stdout_text(&printer.rest())?;
            }
            len
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if !args.follow {
                output::note(&format!(
                    "no daemon log yet at {} (the daemon writes it when it runs)",
                    log_path.display()
                ));
                return Ok(Code::Ok);
            }
            0
        }
        Err(err) => {
            return Err(CliError::failed(format!(
                "cannot read {}: {err}",
                log_path.display()
            )));
        }
    };
    if !args.follow {
        return Ok(Code::Ok);
    }
    // A reader that goes away (`| head`) ends the follow quietly, as with
    // `tail -f`: restore SIGPIPE's default action for this process.
    // SAFETY: setting a signal disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if std::io::stderr().is_terminal() {
        output::note(&format!(
            "following {} (Ctrl-C to stop)",
            log_path.display()
        ));
    }
    let mut position = logs::FollowPosition::at(&log_path, offset);
    loop {
        match logs::read_new(&log_path, &mut position) {
            Ok(bytes) if !bytes.is_empty() => {
                output::stdout_text(&printer.lines(&bytes))?;
            }
            Ok(_) => {}
            Err(err) => {
                return Err(CliError::failed(format!(
                    "cannot read {}: {err}",
                    log_path.display()
                )));
            }
        }
        std::thread::sleep(logs::FOLLOW_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_drops_invisible_characters_and_clamps() {
        assert_eq!(clean("ok\u{1b}[31m\u{202e}x"), "ok[31mx");
        let long = "y".repeat(300);
        assert_eq!(clean(&long).chars().count(), 201);
    }
}
