//! Parse argv with clap, dispatch to a command, and turn the outcome into an
//! exit code. Exit codes are decided here and nowhere else.
//!
//! clap's own error text is rewritten into the house form
//! (`hyp <command>: <message>` plus a `usage:` line, exit 2), so every command
//! reports bad arguments the same way.

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

pub mod actions;
pub mod args;
mod backfill;
mod completions;
pub mod config;
pub mod daemon;
pub mod interrupt;
pub mod join;
pub mod output;
mod query;
mod status;
mod sync;
mod version;

use args::{Cli, Command};

/// Every exit code `hyp` can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok,
    Failure,
    Usage,
    /// `hyp daemon status` when no daemon runs.
    NotRunning,
    /// A staged restart was requested but exec failed (EX_TEMPFAIL).
    Relaunch,
    /// Interrupted by SIGINT.
    Interrupted,
    /// Stopped by SIGTERM.
    Terminated,
}

impl Code {
    pub fn value(self) -> u8 {
        match self {
            Code::Ok => 0,
            Code::Failure => 1,
            Code::Usage => 2,
            Code::NotRunning => 3,
            Code::Relaunch => 75,
            Code::Interrupted => 130,
            Code::Terminated => 143,
        }
    }
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code.value())
    }
}

/// Why a command did not succeed, already phrased for the user.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments: exit 2, with the command's usage line when known.
    Usage {
        message: String,
        usage: Option<String>,
    },
    /// The command ran and failed.
    Failed { message: String, code: Code },
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage {
            message: message.into(),
            usage: None,
        }
    }

    pub fn failed(message: impl Into<String>) -> CliError {
        CliError::Failed {
            message: message.into(),
            code: Code::Failure,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            CliError::Usage { .. } => Code::Usage,
            CliError::Failed { code, .. } => *code,
        }
    }

    /// Print the error under `command_path` and return its exit code.
    fn report(&self, command_path: &str) -> ExitCode {
        match self {
            CliError::Usage { message, usage } => {
                output::error(command_path, message);
                match usage {
                    Some(usage) => output::stderr_plain(usage),
                    None => output::stderr_plain(&format!(
                        "run 'hyp {}--help' for usage",
                        if command_path.is_empty() {
                            String::new()
                        } else {
                            format!("{command_path} ")
                        }
                    )),
                }
            }
            CliError::Failed { message, .. } => output::error(command_path, message),
        }
        self.code().into()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage { message, .. } | CliError::Failed { message, .. } => {
                f.write_str(message)
            }
        }
    }
}

/// A bad environment (no home, bad `HYP_TIME_SCALE`) is a usage error.
impl From<crate::paths::PathsError> for CliError {
    fn from(err: crate::paths::PathsError) -> CliError {
        CliError::usage(err.to_string())
    }
}

/// The whole program: parse argv, run the command, return its exit code.
pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mut root = Cli::command();
    root.build();
    let matches = match root.clone().try_get_matches_from(&argv) {
        Ok(matches) => matches,
        Err(err) => return report_clap_error(&root, &argv, err),
    };
    let command_path = matched_path(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => return report_clap_error(&root, &argv, err),
    };
    let filter = match crate::logging::filter_from_env() {
        Ok(filter) => filter,
        Err(err) => {
            return CliError::Failed {
                message: err.to_string(),
                code: Code::Usage,
            }
            .report("");
        }
    };
    // The daemon installs its own backend (the log file) once it holds the
    // lock; every other command logs to stderr, and only when asked.
    if !is_daemon_run(&cli.command) {
        crate::logging::init_terminal(filter.as_deref());
    }
    match run(cli) {
        Ok(code) => code.into(),
        Err(err) => err.report(&command_path),
    }
}

fn is_daemon_run(command: &Command) -> bool {
    matches!(
        command,
        Command::Daemon(daemon::DaemonArgs {
            command: daemon::DaemonCommand::Run(_),
        })
    )
}

fn run(cli: Cli) -> Result<Code, CliError> {
    match cli.command {
        Command::Status(args) => status::run(&args),
        Command::Config(args) => config::run(&args),
        Command::Daemon(args) => daemon::run(args),
        Command::Actions(args) => actions::run(args),
        Command::Version => version::run(),
        Command::Join(args) => join::run_join(&args),
        Command::Leave(args) => join::run_leave(&args),
        Command::Backfill(args) => backfill::run(args),
        Command::Query(args) => query::run(args),
        Command::Sync(args) => sync::run(args),
        Command::Completions(args) => completions::run(&args),
    }
}

/// `config validate` for `hyp config validate --json`.
fn matched_path(matches: &clap::ArgMatches) -> String {
    let mut names = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        names.push(name.to_string());
        current = sub;
    }
    names.join(" ")
}

/// Help and version go to stdout with exit 0; every other clap error becomes
/// `hyp <command>: <message>` plus `usage: …` on stderr with exit 2.
fn report_clap_error(root: &clap::Command, argv: &[OsString], err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = output::stdout_text(&err.render().to_string());
            return Code::Ok.into();
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let (_, command) = walk_subcommands(root, argv);
            let help = command.clone().render_help().to_string();
            let _ = output::stdout_text(&help);
            return Code::Ok.into();
        }
        _ => {}
    }
    let (path, command) = walk_subcommands(root, argv);
    if path.first().is_some_and(|name| name == "help") {
        return report_help_error(root, argv, &err);
    }
    let message = clap_message(&err, path.is_empty());
    let usage = command
        .clone()
        .render_usage()
        .to_string()
        .replacen("Usage: ", "usage: ", 1);
    CliError::Usage {
        message,
        usage: Some(usage),
    }
    .report(&path.join(" "))
}

/// `hyp help` is clap's: `--help` after it is help about `help` (exit 0),
/// and an unknown name is an unknown command with a suggestion.
fn report_help_error(root: &clap::Command, argv: &[OsString], err: &clap::Error) -> ExitCode {
    if argv.iter().any(|arg| arg == "--help" || arg == "-h")
        && let Some(help) = root.find_subcommand("help")
    {
        let _ = output::stdout_text(&help.clone().render_help().to_string());
        return Code::Ok.into();
    }
    let given = match err.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(token)) => token.clone(),
        _ => first_line(err),
    };
    let known = root
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .map(|sub| sub.get_name());
    let message = match crate::suggest::closest(&given, known) {
        Some(name) => format!("unknown command '{given}' (did you mean '{name}'?)"),
        None => format!("unknown command '{given}'"),
    };
    CliError::Usage {
        message,
        usage: Some("usage: hyp help [COMMAND]...".to_string()),
    }
    .report("")
}

/// Follow argv's subcommand names down the tree as far as they match.
fn walk_subcommands<'a>(
    root: &'a clap::Command,
    argv: &[OsString],
) -> (Vec<String>, &'a clap::Command) {
    let mut path = Vec::new();
    let mut command = root;
    for token in argv.iter().skip(1) {
        let Some(token) = token.to_str() else { break };
        if token.starts_with('-') {
            continue;
        }
        match command.find_subcommand(token) {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                command = sub;
            }
            None => break,
        }
    }
    (path, command)
}

fn clap_message(err: &clap::Error, top_level: bool) -> String {
    let context = |kind: ContextKind| -> Option<String> {
        match err.get(kind)? {
            ContextValue::String(value) => Some(value.clone()),
            ContextValue::Strings(values) => Some(values.join(", ")),
            other => Some(other.to_string()),
        }
    };
    // clap's did-you-mean: one name, or several to choose from.
    let suggestion = |kind: ContextKind| -> Option<String> {
        match err.get(kind)? {
            ContextValue::String(value) => Some(format!("'{value}'")),
            ContextValue::Strings(values) if !values.is_empty() => Some(
                values
                    .iter()
                    .map(|value| format!("'{value}'"))
                    .collect::<Vec<_>>()
                    .join(" or "),
            ),
            _ => None,
        }
    };
    let invalid_arg = context(ContextKind::InvalidArg).unwrap_or_default();
    match err.kind() {
        ErrorKind::UnknownArgument if invalid_arg.starts_with('-') => {
            match suggestion(ContextKind::SuggestedArg) {
                Some(flag) => format!("unknown flag {invalid_arg} (did you mean {flag}?)"),
                None => format!("unknown flag {invalid_arg}"),
            }
        }
        ErrorKind::UnknownArgument => {
            format!("unexpected argument '{invalid_arg}' (quote multi-word values)")
        }
        ErrorKind::InvalidSubcommand => {
            let noun = if top_level { "command" } else { "subcommand" };
            let token = context(ContextKind::InvalidSubcommand).unwrap_or_default();
            match suggestion(ContextKind::SuggestedSubcommand) {
                Some(names) => format!("unknown {noun} '{token}' (did you mean {names}?)"),
                None => format!("unknown {noun} '{token}'"),
            }
        }
        ErrorKind::MissingRequiredArgument => format!("missing required {invalid_arg}"),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let value = context(ContextKind::InvalidValue).unwrap_or_default();
            let detail = first_line(err);
            let flag = invalid_arg.split_whitespace().next().unwrap_or_default();
            let choices = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(values)) if !values.is_empty() => Some(values.join("|")),
                _ => None,
            };
            if invalid_arg.is_empty() {
                detail
            } else if value.is_empty() {
                format!("{flag} expects a value")
            } else if let Some(choices) = choices {
                // The reference's wording: `--X expects a|b|c (got V)`.
                format!("{flag} expects {choices} (got {value})")
            } else {
                format!("{invalid_arg}: {detail}")
            }
        }
        _ => first_line(err),
    }
}

/// clap's own first line without its `error: ` prefix.
fn first_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_match_the_contract() {
        let codes: Vec<u8> = [
            Code::Ok,
            Code::Failure,
            Code::Usage,
            Code::NotRunning,
            Code::Relaunch,
            Code::Interrupted,
            Code::Terminated,
        ]
        .iter()
        .map(|code| code.value())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 75, 130, 143]);
    }
}
