//! `hyp sync`: export the cache to central now, ignoring the schedule and
//! any backoff (contract §12). On a terminal it shows what is pending and
//! asks; `--yes` does not ask; with neither a terminal nor `--yes` it is a
//! usage error. It waits for an export of the same instance that is already
//! running, then sends what is left. Exit 0 only when every instance is
//! `exported` or `nothing_to_send`: a CI teardown must know the tail did
//! not drain.

use std::io::{BufRead, IsTerminal};

use clap::Args;
use serde::Serialize;

use crate::cli::interrupt::{Interrupt, StopSignal};
use crate::cli::{CliError, Code, output};
use crate::control::sink::CentralSink;
use crate::paths::{Paths, TimeScale};
use crate::sink::{self, ExportOptions, InstanceReport, SyncStatus};
use crate::units;

/// Export the cache's rows to central now (ignores the schedule and backoff)
#[derive(Debug, Args)]
#[command(after_help = "\
Sends every cached row central does not have yet, in the order the cache got them, \
and waits first for an export the daemon is already running. Rows of folders marked \
local-only or ignore and of clients opted out in usage-policy/client-sync.json stay on \
this machine.

Exit status: 0 when every instance is exported or had nothing to send; 1 when rows \
remain (failed, partial, held) or this machine is not joined; 2 without a terminal \
and without --yes; 130/143 when interrupted (the chunk in flight is sent again first \
next time).")]
pub struct SyncArgs {
    /// Export only this sink instance (default: every central sink)
    pub instance: Option<String>,
    /// Do not ask for confirmation (needed without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show what would be sent and send nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Offer the rows central refused (kept in quarantine) again first
    #[arg(long)]
    pub retry_quarantined: bool,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
    /// Run by the daemon's schedule: never ask, never release a hold
    #[arg(long, hide = true)]
    pub scheduled: bool,
}

/// The `hyp sync --json` document.
#[derive(Debug, Serialize)]
struct SyncDocument {
    schema_version: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
    sinks: Vec<InstanceReport>,
}

/// One instance of a dry run or a plan.
struct Planned {
    sink: CentralSink,
    rows: u64,
    bytes: u64,
}

pub fn run(args: SyncArgs) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let time_scale = TimeScale::from_env()?;
    let config = crate::config::load_effective(&paths);
    if !config.has_central_layer {
        return Err(CliError::failed(
            "this machine is not joined, so there is nowhere to send rows: run 'hyp join <url> <token>' first",
        ));
    }
    let (sinks, mut reports) = select_instances(&paths, &config, args.instance.as_deref())?;
    let attended = !args.scheduled && std::io::stdin().is_terminal();
    if !args.dry_run && !args.yes && !args.scheduled && !attended {
        return Err(CliError::usage(
            "no terminal to confirm on: add --yes to export without asking (or --dry-run to see what would be sent)",
        ));
    }
    let planned: Vec<Planned> = if args.dry_run || (attended && !args.yes) {
        sinks.into_iter().map(|sink| plan(&paths, sink)).collect()
    } else {
        sinks
            .into_iter()
            .map(|sink| Planned {
                sink,
                rows: 0,
                bytes: 0,
            })
            .collect()
    };
    if args.dry_run {
        return dry_run(&planned, reports, args.json);
    }
    if attended && !args.yes && !confirm_plan(&planned)? {
        output::note("nothing was sent");
        return Ok(Code::Failure);
    }
    let interrupt = Interrupt::install().map_err(|err| CliError::failed(err.to_string()))?;
    let options = ExportOptions {
        time_scale,
        retry_quarantined: args.retry_quarantined,
    };
    for Planned { sink, .. } in planned {
        if interrupt.received().is_some() {
            break;
        }
        // The daemon's tick honours a failure's backoff (a by-hand sync
        // ignores it): an instance still waiting is left out of the report.
        if args.scheduled && sink::waiting_for_backoff(&paths, &sink.name, jiff::Timestamp::now()) {
            continue;
        }
        let release = attended && !args.yes;
        let report = match hold_or_release(&paths, &sink, release)? {
            Some(held) => held,
            None => {
                let started = std::time::Instant::now();
                let mut report = export_one(&paths, &sink, options, &interrupt);
                report.elapsed = Some(started.elapsed());
                report
            }
        };
        reports.push(report);
    }
    finish(&reports, args.json, interrupt.received())
}

/// The instances to export: every central sink, or the one named. A sink
/// whose config cannot be used is a failed report, not an error, so the
/// others still export.
fn select_instances(
    paths: &Paths,
    config: &crate::config::EffectiveConfig,
    wanted: Option<&str>,
) -> Result<(Vec<CentralSink>, Vec<InstanceReport>), CliError> {
    let mut sinks = Vec::new();
    let mut reports = Vec::new();
    let mut names = Vec::new();
    for parsed in sink::instances(paths, config) {
        match parsed {
            Ok(sink) => {
                names.push(sink.name.clone());
                if wanted.is_none_or(|name| name == sink.name) {
                    sinks.push(sink);
                }
            }
            Err(err) => {
                let name = match &err {
                    crate::control::sink::SinkError::Invalid { sink, .. } => sink.clone(),
                    crate::control::sink::SinkError::NoCentralSink => String::new(),
                };
                names.push(name.clone());
                if wanted.is_none_or(|wanted| wanted == name) {
                    let failure =
                        sink::Failure::new(sink::FailureKind::State, None, err.to_string());
                    reports.push(InstanceReport::failed(&name, &failure, 0));
                }
            }
        }
    }
    if let Some(name) = wanted
        && !names.iter().any(|known| known == name)
    {
        return Err(CliError::failed(format!(
            "no central sink named '{name}' (this machine has: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    Ok((sinks, reports))
}

fn plan(paths: &Paths, sink: CentralSink) -> Planned {
    let (rows, bytes) = sink::plan(paths, &sink.name);
    Planned { sink, rows, bytes }
}

fn plan_line(planned: &Planned) -> String {
    format!(
        "{}: {} pending (about {}) for {}",
        planned.sink.name,
        units::counted(planned.rows, "row", "rows"),
        units::bytes(planned.bytes),
        planned.sink.url
    )
}

fn dry_run(planned: &[Planned], failed: Vec<InstanceReport>, json: bool) -> Result<Code, CliError> {
    if json {
        let mut sinks: Vec<InstanceReport> = planned
            .iter()
            .map(|planned| {
                InstanceReport::unsent(&planned.sink.name, SyncStatus::NothingToSend, planned.rows)
            })
            .collect();
        sinks.extend(failed);
        return output::stdout_json(&SyncDocument {
            schema_version: 1,
            dry_run: true,
            sinks,
        })
        .map(|()| Code::Ok);
    }
    let mut text = String::new();
    for planned in planned {
        text.push_str(&plan_line(planned));
        text.push('\n');
    }
    output::stdout_text(&text)?;
    output::note(
        "dry run: nothing was sent (rows kept local by the usage policy are counted here and withheld when sending)",
    );
    Ok(Code::Ok)
}

/// Show the plan on stderr and ask; true on yes.
fn confirm_plan(planned: &[Planned]) -> Result<bool, CliError> {
    for planned in planned {
        output::stderr_plain(&plan_line(planned));
    }
    ask("Send them now? [y/N] ")
}

fn ask(question: &str) -> Result<bool, CliError> {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|err| CliError::failed(format!("cannot read the answer: {err}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// A live first-sync hold: released by an answer on a terminal, else the
/// instance is reported `held`. A past marker is removed.
fn hold_or_release(
    paths: &Paths,
    sink: &CentralSink,
    may_ask: bool,
) -> Result<Option<InstanceReport>, CliError> {
    let now = jiff::Timestamp::now();
    let Some(until) = sink::first_sync_hold(paths, now) else {
        let _ = sink::clear_first_sync_hold(paths);
        return Ok(None);
    };
    if may_ask {
        output::stderr_plain(&format!(
            "A first-sync hold keeps this machine's history local until {} so you can mark private folders first.",
            crate::time::iso_ms(until)
        ));
        if ask("Release it and send now? [y/N] ")? {
            sink::clear_first_sync_hold(paths).map_err(|err| {
                CliError::failed(format!(
                    "cannot remove {}: {err}",
                    paths.first_sync_hold().display()
                ))
            })?;
            return Ok(None);
        }
    }
    Ok(Some(InstanceReport::held(
        &sink.name,
        until,
        sink::pending_rows(paths, &sink.name),
    )))
}

fn export_one(
    paths: &Paths,
    sink: &CentralSink,
    options: ExportOptions,
    interrupt: &Interrupt,
) -> InstanceReport {
    let waiting = |holder: Option<u32>| {
        let who = holder.map_or_else(String::new, |pid| format!(" (pid {pid})"));
        output::note(&format!(
            "waiting for the export of '{}' already running{who} to finish",
            sink.name
        ));
    };
    sink::export(paths, sink, options, interrupt.flag(), &waiting)
}

fn report_line(report: &InstanceReport) -> String {
    let mut line = format!(
        "{}: {} ({} in {}, {})",
        report.instance,
        report.status.name(),
        units::counted(report.rows_sent, "row", "rows"),
        units::counted(report.chunks, "chunk", "chunks"),
        units::bytes(report.bytes_sent),
    );
    if report.rows_withheld > 0 {
        line.push_str(&format!(
            "; {} kept local",
            units::counted(report.rows_withheld, "row", "rows")
        ));
    }
    if report.rows_quarantined > 0 {
        line.push_str(&format!(
            "; {} refused and quarantined",
            units::counted(report.rows_quarantined, "row", "rows")
        ));
    }
    if let Some(elapsed) = report.elapsed {
        line.push_str(&format!(" in {}", units::elapsed(elapsed)));
    }
    line.push_str(&format!("; {} pending", units::count(report.pending_rows)));
    if let Some(error) = &report.error {
        line.push_str(&format!(
            "\n  error: {}",
            crate::sanitize::error_text(error)
        ));
    }
    line
}

fn finish(
    reports: &[InstanceReport],
    json: bool,
    stopped: Option<StopSignal>,
) -> Result<Code, CliError> {
    if json {
        output::stdout_json(&SyncDocument {
            schema_version: 1,
            dry_run: false,
            sinks: reports.to_vec(),
        })?;
    } else {
        let text: String = reports
            .iter()
            .map(|report| format!("{}\n", report_line(report)))
            .collect();
        output::stdout_text(&text)?;
    }
    if let Some(signal) = stopped.or_else(|| {
        reports
            .iter()
            .any(|report| report.interrupted)
            .then_some(StopSignal::Interrupt)
    }) {
        return Ok(signal.code());
    }
    if reports.iter().all(|report| report.status.is_complete()) {
        Ok(Code::Ok)
    } else {
        Ok(Code::Failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_line_says_what_was_sent_and_how_long_it_took() {
        let mut report = InstanceReport::unsent("central", SyncStatus::Exported, 0);
        report.rows_sent = 12_345;
        report.chunks = 3;
        report.bytes_sent = 3 * 1024 * 1024;
        report.elapsed = Some(std::time::Duration::from_millis(1_400));
        assert_eq!(
            report_line(&report),
            "central: exported (12,345 rows in 3 chunks, 3.0 MiB) in 1.4 s; 0 pending"
        );
        report.elapsed = None;
        assert_eq!(
            report_line(&report),
            "central: exported (12,345 rows in 3 chunks, 3.0 MiB); 0 pending"
        );
    }
}
