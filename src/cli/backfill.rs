//! `hyp backfill [provider...] [flags]`, `hyp backfill list`, `hyp backfill
//! plan`: argv, provider selection and output.
//!
//! clap only routes here; the arguments are parsed by hand because the
//! reference's rules are stricter and worded differently than clap's
//! (`--since -1d` takes `-1d` as a value, `--json=false` is a boolean with a
//! value, `list`/`plan` are words only in first position, any other bare word
//! is a provider). `--help`/`-h` anywhere prints the help and exits 0.

use std::ffi::OsString;

use clap::Args;
use serde::Serialize;

use crate::backfill::window::{Window, WindowSource, parse_bound_ms};
use crate::backfill::{
    self, DATASET, DEFAULT_RETENTION_DAYS, ProviderPlan, ProviderReport, ProviderStatus, RunOptions,
};
use crate::cli::interrupt::Interrupt;
use crate::cli::{CliError, Code, output};
use crate::config::catalog::{PROVIDERS, Provider, provider};
use crate::config::{self, EffectiveConfig};
use crate::paths::Paths;

mod explain;

pub const USAGE: &str = "usage: hyp backfill [provider...] [--since <iso>] [--until <iso>] [--retention-days <n>] [--dry-run] [--json]";
const LIST_USAGE: &str = "usage: hyp backfill list [--json]";
const PLAN_USAGE: &str = "usage: hyp backfill plan [provider...] [--since <iso>] [--until <iso>] [--retention-days <n>] [--json]";

pub const HELP: &str = "\
Import local Claude Code and Codex history into the cache (ai_gateway_messages)

Usage: hyp backfill [provider...] [--since <iso>] [--until <iso>] [--retention-days <n>] [--dry-run] [--json]
       hyp backfill list [--json]
       hyp backfill plan [provider...] [--since <iso>] [--until <iso>] [--retention-days <n>] [--json]

Arguments:
  [provider...]            Providers to run (claude, codex); default: every provider whose
                           plugin is enabled in the effective config

Commands:
  list                     The providers this build has
  plan                     Where each provider looks, the files and bytes it finds and the
                           window it would apply; reads the history tree, writes nothing

Options:
      --since <iso>        Import lines at or after this time: a date (2026-01-01), RFC 3339,
                           or a span back from now (12h, 30d, 2w)
      --until <iso>        Import lines at or before this time (same forms)
      --retention-days <n> Lower bound as now - n days when --since is not given
                           (default: query.cache.retention.default_days, else 90; 0 = no bound)
      --dry-run            Scan and count, write nothing
      --json               Print one JSON document on stdout
  -h, --help               Print help

Re-running is safe: rows already in the cache are skipped, unchanged files under a
covering window are not read again, and a file that grew is read from where the last
import stopped. SIGINT/SIGTERM commit what is parsed and exit 130/143.

Without --json, a summary on stderr says where each provider looked, the window it
applied and what fell outside it, and what was skipped as unchanged or ignored.
";

/// Import local Claude Code and Codex history into the cache
#[derive(Debug, Args)]
#[command(disable_help_flag = true, override_help = HELP)]
pub struct BackfillArgs {
    /// Providers and flags, parsed by `hyp backfill` itself
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub argv: Vec<OsString>,
}

/// A parsed `hyp backfill ...` command line.
#[derive(Debug, Clone, PartialEq)]
enum Request {
    Help,
    Import(ImportFlags),
    List { json: bool },
    Plan(ImportFlags),
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ImportFlags {
    providers: Vec<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    retention_days: Option<f64>,
    dry_run: bool,
    json: bool,
}

fn usage_error(message: impl Into<String>, usage: &str) -> CliError {
    CliError::Usage {
        message: message.into(),
        usage: Some(usage.to_string()),
    }
}

fn parse(argv: &[OsString]) -> Result<Request, CliError> {
    let mut tokens = Vec::with_capacity(argv.len());
    for token in argv {
        match token.to_str() {
            Some(text) => tokens.push(text.to_string()),
            None => return Err(usage_error("arguments must be valid UTF-8", USAGE)),
        }
    }
    if tokens
        .iter()
        .any(|token| token == "--help" || token == "-h")
    {
        return Ok(Request::Help);
    }
    match tokens.first().map(String::as_str) {
        Some("list") => {
            let flags = parse_flags(&tokens[1..], &["json"], LIST_USAGE)?;
            if let Some(extra) = flags.providers.first() {
                return Err(usage_error(
                    format!("unexpected argument '{extra}' (quote multi-word values)"),
                    LIST_USAGE,
                ));
            }
            Ok(Request::List { json: flags.json })
        }
        Some("plan") => Ok(Request::Plan(parse_flags(
            &tokens[1..],
            &["since", "until", "retention-days", "json"],
            PLAN_USAGE,
        )?)),
        _ => Ok(Request::Import(parse_flags(
            &tokens,
            &["since", "until", "retention-days", "dry-run", "json"],
            USAGE,
        )?)),
    }
}

/// The strict flag grammar shared by import, list and plan.
fn parse_flags(tokens: &[String], allowed: &[&str], usage: &str) -> Result<ImportFlags, CliError> {
    let mut flags = ImportFlags::default();
    let mut since = None;
    let mut until = None;
    let mut index = 0;
    while index < tokens.len() {
        let token = &tokens[index];
        index += 1;
        let Some(body) = token.strip_prefix("--") else {
            if token.starts_with('-') && token.len() > 1 {
                return Err(usage_error(format!("unknown flag {token}"), usage));
            }
            flags.providers.push(token.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        if !allowed.contains(&name) {
            return Err(usage_error(format!("unknown flag --{name}"), usage));
        }
        match name {
            "dry-run" | "json" => {
                let value = match inline.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(other) => {
                        return Err(usage_error(
                            format!("--{name} expects true|false (got {other})"),
                            usage,
                        ));
                    }
                };
                if name == "json" {
                    flags.json = value;
                } else {
                    flags.dry_run = value;
                }
            }
            _ => {
                let value = match inline {
                    Some(value) => value,
                    None => match tokens.get(index) {
                        Some(next) if !next.starts_with("--") => {
                            index += 1;
                            next.clone()
                        }
                        _ => return Err(usage_error(format!("--{name} expects a value"), usage)),
                    },
                };
                match name {
                    "since" => since = Some(value),
                    "until" => until = Some(value),
                    _ => flags.retention_days = Some(parse_retention(&value, usage)?),
                }
            }
        }
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let parse_bound = |name: &str, value: &Option<String>| -> Result<Option<i64>, CliError> {
        match value {
            None => Ok(None),
            Some(text) => parse_bound_ms(text, now_ms).map(Some).ok_or_else(|| {
                usage_error(
                    format!("--{name} expects a parseable date (got {text})"),
                    usage,
                )
            }),
        }
    };
    flags.since_ms = parse_bound("since", &since)?;
    flags.until_ms = parse_bound("until", &until)?;
    if let (Some(since_ms), Some(until_ms)) = (flags.since_ms, flags.until_ms)
        && since_ms > until_ms
    {
        return Err(usage_error(
            format!(
                "--since must be before or equal to --until (got {} > {})",
                since.unwrap_or_default(),
                until.unwrap_or_default()
            ),
            usage,
        ));
    }
    Ok(flags)
}

fn parse_retention(value: &str, usage: &str) -> Result<f64, CliError> {
    match value.trim().parse::<f64>() {
        Ok(days) if days.is_finite() && days >= 0.0 => Ok(days),
        Ok(days) if days.is_finite() => Err(usage_error(
            format!("--retention-days expects a number >= 0 (got {value})"),
            usage,
        )),
        _ => Err(usage_error(
            format!("--retention-days expects a number (got {value})"),
            usage,
        )),
    }
}

pub fn run(args: BackfillArgs) -> Result<Code, CliError> {
    match parse(&args.argv)? {
        Request::Help => {
            output::stdout_text(HELP)?;
            Ok(Code::Ok)
        }
        Request::List { json } => list(json),
        Request::Plan(flags) => plan(flags),
        Request::Import(flags) => import(flags),
    }
}

/// Resolve names (all must be known) or select from the config.
fn select_providers(names: &[String], config: &EffectiveConfig) -> Result<Vec<Provider>, CliError> {
    if names.is_empty() {
        return Ok(PROVIDERS
            .iter()
            .copied()
            .filter(|provider| config.enabled_plugin(provider.plugin).is_some())
            .collect());
    }
    let unknown: Vec<&str> = names
        .iter()
        .filter(|name| provider(name).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known = || PROVIDERS.iter().map(|provider| provider.name);
        let suggestions: Vec<String> = unknown
            .iter()
            .filter_map(|name| crate::suggest::closest(name, known()))
            .map(|name| format!("'{name}'"))
            .collect();
        let hint = match suggestions.first() {
            Some(_) => format!(" (did you mean {}?)", suggestions.join(" or ")),
            None => " (run 'hyp backfill list' to see them)".to_string(),
        };
        return Err(CliError::failed(format!(
            "unknown provider(s): {}{hint}",
            unknown.join(", ")
        )));
    }
    Ok(names.iter().filter_map(|name| provider(name)).collect())
}

/// The selection, which must not be empty: a run that imports nothing
/// because no provider is enabled is a mistake to tell, not a success.
fn select_some(names: &[String], config: &EffectiveConfig) -> Result<Vec<Provider>, CliError> {
    let providers = select_providers(names, config)?;
    if providers.is_empty() {
        return Err(CliError::failed(NONE_ENABLED));
    }
    Ok(providers)
}

/// The window an import applies, where its lower bound came from, and the
/// retention in days (which `--since` overrides).
fn import_window(flags: &ImportFlags, config: &EffectiveConfig) -> (Window, WindowSource, f64) {
    let config_days = config.retention_default_days();
    let (retention, source) = match (flags.retention_days, config_days) {
        (Some(days), _) => (days, WindowSource::RetentionDays),
        (None, Some(days)) => (days, WindowSource::Config),
        (None, None) => (DEFAULT_RETENTION_DAYS, WindowSource::Default),
    };
    let source = match flags.since_ms {
        Some(_) => WindowSource::Since,
        None => source,
    };
    let window = backfill::resolve_window(
        flags.since_ms,
        flags.until_ms,
        retention,
        jiff::Timestamp::now().as_millisecond(),
    );
    (window, source, retention)
}

fn run_id() -> String {
    match std::env::var("DEV_RUN_ID") {
        Ok(id) if !id.is_empty() => id,
        _ => format!("bf-{}", uuid_v4()),
    }
}

/// A random UUID v4 from the kernel's random source.
fn uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut bytes))
        .is_ok();
    if !filled {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::hex::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

const NONE_ENABLED: &str = "no providers matched your active config: none of claude, codex is enabled here; name one (e.g. 'hyp backfill claude') or see them with 'hyp backfill list'";

#[derive(Serialize)]
struct RunDocument<'a> {
    run_id: &'a str,
    dry_run: bool,
    providers: &'a [ProviderReport],
}

fn import(flags: ImportFlags) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let config = config::load_effective(&paths);
    let providers = select_some(&flags.providers, &config)?;
    let run_id = run_id();
    let (window, window_source, retention) = import_window(&flags, &config);
    let options = RunOptions {
        window,
        window_source,
        dry_run: flags.dry_run,
        show_progress: backfill::progress::wanted(),
    };
    let interrupt = Interrupt::install().map_err(|err| CliError::failed(err.to_string()))?;
    let mut reports = Vec::with_capacity(providers.len());
    for provider in providers {
        if interrupt.received().is_some() {
            reports.push(ProviderReport::empty(provider, ProviderStatus::Interrupted));
            continue;
        }
        let report = backfill::run_provider(&paths, &config, provider, &options, interrupt.flag());
        warn_of_a_set_aside_cache(&report);
        summarise_skipped_lines(&report);
        if !flags.json {
            explain::provider(&report, retention, flags.dry_run);
        }
        reports.push(report);
    }
    if reports
        .iter()
        .any(|report| report.cache_set_aside.is_some())
    {
        ask_the_daemon_to_refill(&paths);
    }
    if flags.json {
        output::stdout_json(&RunDocument {
            run_id: &run_id,
            dry_run: flags.dry_run,
            providers: &reports,
        })?;
    } else {
        output::stdout_text(&human_report(&run_id, flags.dry_run, &reports))?;
    }
    Ok(match interrupt.received() {
        Some(signal) => signal.code(),
        None if reports
            .iter()
            .any(|report| report.status == ProviderStatus::Failed) =>
        {
            Code::Failure
        }
        None => Code::Ok,
    })
}

/// A new cache holds none of what the daemon's `done` markers imported:
/// a pass re-imports every provider it manages (their markers name the old
/// cache generation). Run as the daemon's own child, this queues the pass
/// behind the current one.
fn ask_the_daemon_to_refill(paths: &Paths) {
    if let Some(pid) = crate::daemon::running_pid(paths)
        && crate::daemon::request_pass(pid)
    {
        output::note(&format!(
            "asked the daemon (pid {pid}) for a pass: it re-imports its providers into the new cache"
        ));
    }
}

/// The open-time case; a provider that failed mid-run says it in its error.
fn warn_of_a_set_aside_cache(report: &ProviderReport) {
    if let Some(aside) = &report.cache_set_aside
        && report.status != ProviderStatus::Failed
    {
        output::warning(&format!(
            "{}: the cache was damaged; moved it to {} and started a new one (a provider this run does not import comes back with 'hyp backfill <provider>')",
            report.provider,
            aside.display()
        ));
    }
}

fn summarise_skipped_lines(report: &ProviderReport) {
    if report.malformed_lines > 0 {
        output::note(&format!(
            "{}: skipped {} malformed line{} in {} file{}",
            report.provider,
            report.malformed_lines,
            if report.malformed_lines == 1 { "" } else { "s" },
            report.files_with_malformed_lines,
            if report.files_with_malformed_lines == 1 {
                ""
            } else {
                "s"
            },
        ));
    }
}

fn status_word(status: ProviderStatus) -> &'static str {
    match status {
        ProviderStatus::Ok => "ok",
        ProviderStatus::Failed => "failed",
        ProviderStatus::Interrupted => "interrupted",
    }
}

fn human_report(run_id: &str, dry_run: bool, reports: &[ProviderReport]) -> String {
    let mut text = if dry_run {
        format!("backfill (dry-run) run_id={run_id}\n")
    } else {
        format!("backfill run_id={run_id}\n")
    };
    for report in reports {
        text.push_str(&format!(
            "  {}  [{}]\n",
            report.provider,
            status_word(report.status)
        ));
        text.push_str(&format!(
            "    items_seen={}  sessions={}  rows_written={}  rows_skipped={}\n",
            report.items_seen, report.sessions_seen, report.rows_written, report.rows_skipped
        ));
        text.push_str(&format!(
            "    files_seen={}  files_read={}  files_unchanged={}  bytes_read={}\n",
            report.files_seen, report.files_read, report.files_unchanged, report.bytes_read
        ));
        if let Some(error) = &report.error {
            text.push_str(&format!("    error: {error}\n"));
        }
    }
    text
}

fn summary(provider: Provider) -> String {
    match provider.name {
        "claude" => format!("Import local Claude Code transcripts into {DATASET}"),
        "codex" => format!("Import local Codex session rollouts into {DATASET}"),
        other => format!("Import local {other} history into {DATASET}"),
    }
}

#[derive(Serialize)]
struct ListedProvider {
    name: &'static str,
    plugin: &'static str,
    datasets: [&'static str; 1],
    summary: String,
}

#[derive(Serialize)]
struct ListDocument {
    providers: Vec<ListedProvider>,
}

fn list(json: bool) -> Result<Code, CliError> {
    if json {
        output::stdout_json(&ListDocument {
            providers: PROVIDERS
                .iter()
                .map(|provider| ListedProvider {
                    name: provider.name,
                    plugin: provider.plugin,
                    datasets: [DATASET],
                    summary: summary(*provider),
                })
                .collect(),
        })?;
    } else {
        let mut text = String::from("Backfill providers:\n");
        for provider in PROVIDERS {
            text.push_str(&format!(
                "  {}  ({})  -> {DATASET}\n    {}\n",
                provider.name,
                provider.plugin,
                summary(*provider)
            ));
        }
        output::stdout_text(&text)?;
    }
    Ok(Code::Ok)
}

#[derive(Serialize)]
struct PlannedProvider {
    provider: &'static str,
    plugin: &'static str,
    datasets: [&'static str; 1],
    plan: ProviderPlan,
}

#[derive(Serialize)]
struct PlanDocument<'a> {
    run_id: &'a str,
    providers: Vec<PlannedProvider>,
}

/// What an import with these flags would do, per provider: nothing is
/// written (the ledger is read read-only).
fn plan(flags: ImportFlags) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let config = config::load_effective(&paths);
    let providers = select_some(&flags.providers, &config)?;
    let run_id = run_id();
    let (window, window_source, retention) = import_window(&flags, &config);
    let planned: Vec<PlannedProvider> = providers
        .iter()
        .map(|provider| PlannedProvider {
            provider: provider.name,
            plugin: provider.plugin,
            datasets: [DATASET],
            plan: backfill::plan_provider(&paths, *provider, &window, window_source),
        })
        .collect();
    if flags.json {
        output::stdout_json(&PlanDocument {
            run_id: &run_id,
            providers: planned,
        })?;
        return Ok(Code::Ok);
    }
    let mut text = format!("backfill plan (retention={}d)\n", format_days(retention));
    for entry in &planned {
        text.push_str(&format!(
            "  {}  ({})  -> {DATASET}\n",
            entry.provider, entry.plugin
        ));
        text.push_str(&explain::plan(entry.provider, &entry.plan, retention));
    }
    output::stdout_text(&text)?;
    Ok(Code::Ok)
}

/// `90`, `1.5`: JS number form.
fn format_days(days: f64) -> String {
    if days.fract() == 0.0 {
        format!("{}", days as i64)
    } else {
        format!("{days}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::window::parse_date_ms;

    fn parse_args(args: &[&str]) -> Result<Request, String> {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&argv).map_err(|err| err.to_string())
    }

    #[test]
    fn parses_the_reference_example() {
        let Ok(Request::Import(flags)) = parse_args(&[
            "claude",
            "--since",
            "2026-01-01",
            "--until=2026-02-01",
            "--retention-days",
            "7",
            "--dry-run",
            "--json",
            "codex",
        ]) else {
            panic!("parses")
        };
        assert_eq!(flags.providers, ["claude", "codex"]);
        assert_eq!(flags.since_ms, parse_date_ms("2026-01-01"));
        assert_eq!(flags.until_ms, parse_date_ms("2026-02-01"));
        assert_eq!(flags.retention_days, Some(7.0));
        assert!(flags.dry_run && flags.json);
        assert_eq!(parse_args(&[]), Ok(Request::Import(ImportFlags::default())));
    }

    #[test]
    fn strict_rules_give_the_reference_messages() {
        let cases: &[(&[&str], &str)] = &[
            (&["--nope"], "unknown flag --nope"),
            (&["--nope=1"], "unknown flag --nope"),
            (&["-j"], "unknown flag -j"),
            (&["--since"], "--since expects a value"),
            (&["--since", "--json"], "--since expects a value"),
            (
                &["--since", "-1d"],
                "--since expects a parseable date (got -1d)",
            ),
            (&["--since="], "--since expects a parseable date (got )"),
            (&["--json=yes"], "--json expects true|false (got yes)"),
            (
                &["--retention-days", "abc"],
                "--retention-days expects a number (got abc)",
            ),
            (
                &["--retention-days", "-3"],
                "--retention-days expects a number >= 0 (got -3)",
            ),
            (
                &["--since", "notadate"],
                "--since expects a parseable date (got notadate)",
            ),
            (
                &["--until", "notadate"],
                "--until expects a parseable date (got notadate)",
            ),
            (
                &["--since", "2026-01-02", "--until", "2026-01-01"],
                "--since must be before or equal to --until (got 2026-01-02 > 2026-01-01)",
            ),
            (
                &["list", "extra"],
                "unexpected argument 'extra' (quote multi-word values)",
            ),
            (&["list", "--since", "x"], "unknown flag --since"),
        ];
        for (args, message) in cases {
            assert_eq!(parse_args(args), Err(message.to_string()), "{args:?}");
        }
    }

    #[test]
    fn edge_forms_that_are_accepted() {
        let same = parse_args(&[
            "--since",
            "2026-01-01T00:00:00.000Z",
            "--until",
            "2026-01-01T00:00:00.000Z",
        ]);
        assert!(matches!(same, Ok(Request::Import(_))));
        let Ok(Request::Import(flags)) = parse_args(&["-", "--json=false", "--retention-days=1.5"])
        else {
            panic!("parses")
        };
        assert_eq!(flags.providers, ["-"]);
        assert!(!flags.json);
        assert_eq!(flags.retention_days, Some(1.5));
        assert_eq!(parse_args(&["claude", "--help"]), Ok(Request::Help));
        assert_eq!(
            parse_args(&["list", "--json"]),
            Ok(Request::List { json: true })
        );
        assert!(matches!(
            parse_args(&["plan", "claude"]),
            Ok(Request::Plan(_))
        ));
    }

    #[test]
    fn retention_and_window_resolve_like_the_reference() {
        let now = 1_000 * window_day();
        assert_eq!(
            backfill::resolve_window(None, None, 0.0, now).since_ms,
            None
        );
        assert_eq!(
            backfill::resolve_window(None, None, 1.0, now).since_ms,
            Some(now - window_day())
        );
        assert_eq!(
            backfill::resolve_window(Some(5), None, 1.0, now).since_ms,
            Some(5)
        );
    }

    fn window_day() -> i64 {
        crate::backfill::window::DAY_MS
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
