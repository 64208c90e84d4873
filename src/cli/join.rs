//! `hyp join` and `hyp leave`: enrol this machine with a central config
//! server, or stop. Thin: check the arguments, call `control::membership`,
//! reach a running daemon, and say what happened and what to do next.
//!
//! Neither command talks to the server, installs a service or touches the
//! local config layer.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::Args;

use crate::cli::{CliError, Code, output};
use crate::control::membership;
use crate::daemon::{self, Reached};
use crate::paths::Paths;

/// Join this machine to a central config server
///
/// Writes the join seed, then tells a running daemon to pick it up.
/// Token sources (pick one): the positional argument ('-' reads stdin),
/// --token-file, or stdin when it is not a terminal. join never contacts the
/// server and never installs a service; the daemon does the network work.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The central server's base URL (http:// or https://)
    pub url: Option<String>,
    /// The bootstrap (policy) token; '-' reads it from stdin
    pub token: Option<String>,
    /// Read the token from this file (surrounding whitespace is trimmed)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Only write the files; do not signal or restart a daemon
    #[arg(long)]
    pub no_daemon: bool,
}

/// Leave the central config server
///
/// Removes the central config layer, probation state and machine identity.
/// Keeps the local config, the cache and client action markers.
#[derive(Debug, Args)]
pub struct LeaveArgs {}

const HOW_TO_START: &str =
    "start it with 'hyp daemon run' (foreground) or 'hyp daemon install' (systemd user service)";

pub fn run_join(args: &JoinArgs) -> Result<Code, CliError> {
    let Some(url) = args.url.as_deref() else {
        return Err(CliError::usage("missing <url> (see hyp join --help)"));
    };
    if args.token.is_some() && args.token_file.is_some() {
        return Err(CliError::usage(
            "pass the token either as an argument or via --token-file, not both",
        ));
    }
    check_url(url)?;
    let token = resolve_token(args)?;
    if token.is_empty() {
        return Err(CliError::usage("token is empty"));
    }
    if is_cleartext_remote(url) {
        output::warning(&format!(
            "{url} is plain http: the join token and every config this machine pulls cross the network unencrypted; use https unless that network is trusted"
        ));
    }
    let paths = Paths::from_env()?;
    let report =
        membership::join(&paths, url, &token).map_err(|err| CliError::failed(err.to_string()))?;
    let mut text = format!("✓ Wrote seed config {}\n", report.seed_path.display());
    if report.superseded_applied_config {
        text.push_str("  superseded a stale applied config so the new join token takes effect\n");
    }
    if args.no_daemon {
        text.push_str("  daemon not contacted (--no-daemon); ");
        text.push_str(&format!("{HOW_TO_START} to finish joining\n"));
        output::stderr_text(&text);
        return Ok(Code::Ok);
    }
    match daemon::reach_running_daemon(&paths) {
        Reached::Signalled { pid } => text.push_str(&format!(
            "✓ Joined - told the running daemon (pid {pid}) to reload; it will pull its configuration from {url}\n"
        )),
        Reached::ServiceRestarted => text.push_str(&format!(
            "✓ Joined - restarted the hypaware service; it will pull its configuration from {url}\n"
        )),
        Reached::NotRunning => {
            text.push_str("  no daemon is running: ");
            text.push_str(&format!("{HOW_TO_START} to finish joining\n"));
        }
    }
    output::stderr_text(&text);
    Ok(Code::Ok)
}

/// `http(s)://host...`; anything else is a usage error in the reference's words.
fn check_url(url: &str) -> Result<(), CliError> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|scheme| {
            let mut chars = scheme.chars();
            chars
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic())
                && chars.all(|ch| ch.is_ascii_alphanumeric() || "+-.".contains(ch))
        });
    let Some(scheme) = scheme else {
        return Err(CliError::usage(format!("not a valid URL: {url}")));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(CliError::usage(format!(
            "url must be http(s); got {scheme}:"
        )));
    }
    if !crate::control::sink::is_http_url(url) {
        return Err(CliError::usage(format!("not a valid URL: {url}")));
    }
    Ok(())
}

/// Whether `url` is plain `http` to a host other than this machine.
fn is_cleartext_remote(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// The positional token (verbatim), else the trimmed token file, else the
/// trimmed stdin when it is not a terminal.
fn resolve_token(args: &JoinArgs) -> Result<String, CliError> {
    match (&args.token, &args.token_file) {
        (Some(token), _) if token != "-" => Ok(token.clone()),
        (Some(_), _) => read_stdin_token(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|text| text.trim().to_string())
            .map_err(|err| CliError::failed(format!("--token-file: {}: {err}", file.display()))),
        (None, None) => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::usage(
                    "no token given - pass it as an argument, via --token-file, or on stdin",
                ));
            }
            read_stdin_token()
        }
    }
}

fn read_stdin_token() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| CliError::failed(format!("cannot read the token from stdin: {err}")))?;
    Ok(text.trim().to_string())
}

pub fn run_leave(_args: &LeaveArgs) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let local_sink = membership::local_layer_has_central_sink(&paths);
    let local_note = || {
        output::note(&format!(
            "the local config {} defines a central sink of its own; leave does not edit it",
            paths.local_config().path.display()
        ));
    };
    let Some(connection) = membership::connection(&paths) else {
        output::stderr_text(
            "hyp leave: this machine is not connected to a central server - nothing to do\n",
        );
        if local_sink {
            local_note();
        }
        return Ok(Code::Ok);
    };
    let urls = if connection.urls.is_empty() {
        "the central server".to_string()
    } else {
        connection.urls.join(", ")
    };
    let mut text = format!("leaving {urls}\n");
    let mut failed_steps = 0;
    match membership::remove_central_layer(&paths) {
        Ok(()) => text.push_str("✓ removed the central config layer\n"),
        Err(err) => {
            failed_steps += 1;
            text.push_str(&format!(
                "✗ cannot remove the central config layer: {err}\n"
            ));
        }
    }
    match membership::remove_identity(&paths) {
        Ok(true) => text.push_str("✓ removed the forward identity\n"),
        Ok(false) => text.push_str("  no identity to remove\n"),
        Err(err) => {
            failed_steps += 1;
            text.push_str(&format!(
                "✗ cannot remove {}: {err}\n",
                paths.identity().display()
            ));
        }
    }
    match daemon::reach_running_daemon(&paths) {
        Reached::Signalled { pid } => text.push_str(&format!(
            "✓ told the running daemon (pid {pid}) to reload - config pull is stopped\n"
        )),
        Reached::ServiceRestarted => {
            text.push_str("✓ restarted the daemon - config pull is stopped\n")
        }
        Reached::NotRunning => text.push_str("  no daemon is running - nothing to restart\n"),
    }
    // A poll that landed between the first removal and the reload may have
    // written a slot; removing again closes that race (idempotent).
    if membership::remove_central_layer(&paths).is_err() {
        failed_steps += 1;
    }
    if failed_steps == 0 {
        text.push_str(&format!(
            "✓ left {urls} - this machine no longer pulls org config\n  kept: the query cache, client action markers, and your local config\n"
        ));
    }
    output::stderr_text(&text);
    if local_sink {
        local_note();
    }
    if failed_steps > 0 {
        return Err(CliError::failed(format!(
            "{failed_steps} step(s) could not finish (see above); a plain re-run of 'hyp leave' will pick up the rest"
        )));
    }
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::is_cleartext_remote;

    #[test]
    fn only_plain_http_to_another_machine_is_cleartext() {
        for url in [
            "http://central.example",
            "http://10.0.0.5:8080/prefix",
            "http://user@central.example:80",
            "http://[2001:db8::1]:8080",
        ] {
            assert!(is_cleartext_remote(url), "{url}");
        }
        for url in [
            "https://central.example",
            "http://127.0.0.1:9",
            "http://127.8.9.10",
            "http://localhost:8080/x",
            "http://LOCALHOST",
            "http://[::1]:9",
        ] {
            assert!(!is_cleartext_remote(url), "{url}");
        }
    }
}
