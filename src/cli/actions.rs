//! `hyp actions`: show the client actions the daemon performs (backfill on
//! join) and re-arm one. Neither command performs an action: `list` reads
//! the marker store, `retry` clears one marker under the store's lock and
//! asks a running daemon (SIGHUP) for a pass.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::actions::rows::{self, ActionRow};
use crate::actions::store::{MarkerStore, StoreError};
use crate::cli::{CliError, Code, output};
use crate::paths::Paths;

/// Show or retry the client actions the daemon performs (backfill on join)
#[derive(Debug, Args)]
pub struct ActionsArgs {
    #[command(subcommand)]
    pub command: Option<ActionsCommand>,
    /// Print one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// List every action with its state (the default): done, failed,
    /// refused, running, pending or n/a
    List,
    /// Clear one action's marker so the daemon performs it again now (if it
    /// runs) or at its next start
    Retry {
        /// The action kind, e.g. backfill
        kind: String,
        /// The action's key, e.g. @hypaware/claude
        request_key: String,
    },
}

pub fn run(args: ActionsArgs) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    match args.command {
        None | Some(ActionsCommand::List) => list(&paths, args.json),
        Some(ActionsCommand::Retry { kind, request_key }) => {
            retry(&paths, &kind, &request_key, args.json)
        }
    }
}

fn list(paths: &Paths, json: bool) -> Result<Code, CliError> {
    let config = crate::config::load_effective(paths);
    let rows: Vec<ActionRow> = rows::collect(paths, &config).unwrap_or_default();
    if json {
        output::stdout_json(&rows)?;
        return Ok(Code::Ok);
    }
    if rows.is_empty() {
        output::note(
            "no client actions: this host is not joined and has no action markers ('hyp join <url> <token>' enables backfill on join)",
        );
        return Ok(Code::Ok);
    }
    let mut text = String::new();
    for row in &rows {
        text.push_str(&rows::render_text(row));
        text.push('\n');
    }
    output::stdout_text(&text)?;
    Ok(Code::Ok)
}

/// Why one marker could not be cleared.
enum RetryRefusal {
    NoMarker,
    Running { pid: Option<u64> },
}

fn retry(paths: &Paths, kind: &str, request_key: &str, json: bool) -> Result<Code, CliError> {
    let no_marker = || {
        CliError::failed(format!(
            "no marker for {kind} '{request_key}' (nothing to retry): run 'hyp actions' to list the actions"
        ))
    };
    let store = MarkerStore::new(paths);
    if !store.path().exists() {
        return Err(no_marker());
    }
    let daemon_pid = crate::daemon::running_pid(paths);
    let cleared = store
        .modify(|doc| {
            let Some(marker) = doc.marker(kind, request_key) else {
                return Err(RetryRefusal::NoMarker);
            };
            let status = marker
                .get("status")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            if status == "running" && daemon_pid.is_some() {
                let pid = marker.get("pid").and_then(serde_json::Value::as_u64);
                return Err(RetryRefusal::Running { pid });
            }
            doc.remove_marker(kind, request_key);
            Ok(status)
        })
        .map_err(|err: StoreError| CliError::failed(err.to_string()))?;
    let previous = match cleared {
        Ok(status) => status,
        Err(RetryRefusal::NoMarker) => return Err(no_marker()),
        Err(RetryRefusal::Running { pid }) => {
            let child = pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
            return Err(CliError::failed(format!(
                "{kind} '{request_key}' is running now{child}: wait for it to finish, then retry"
            )));
        }
    };
    let signalled = daemon_pid.is_some_and(crate::daemon::request_pass);
    if json {
        output::stdout_json(&json!({
            "kind": kind,
            "request_key": request_key,
            "cleared": previous,
            "daemon": {"running": daemon_pid.is_some(), "pid": daemon_pid, "signalled": signalled},
        }))?;
    } else {
        output::stderr_text(&format!(
            "cleared {kind} {request_key} (was {})\n",
            crate::sanitize::clean(&previous, 40)
        ));
    }
    match (daemon_pid, signalled) {
        (Some(pid), true) => output::note(&format!(
            "sent SIGHUP to the daemon (pid {pid}): a reconcile pass runs now"
        )),
        (Some(pid), false) => output::warning(&format!(
            "could not signal the daemon (pid {pid}): the action runs at its next pass or restart ('hyp daemon restart')"
        )),
        (None, _) => output::note(
            "no daemon is running: start it with 'hyp daemon start' (or 'hyp daemon run' in the foreground); its boot pass performs the action",
        ),
    }
    Ok(Code::Ok)
}
