//! What people read on stderr: `warning:`, `note:` and `hyp <command>:`
//! lines, confirmations and summaries, and the one rule for whether they
//! are coloured. Below every module that talks to people (the CLI and the
//! daemon's foreground lines), so none imports the CLI to do it. stdout,
//! which carries data, is `cli::output`'s.

use std::io::{self, IsTerminal, Write};

/// `warning: <message>` on stderr (yellow prefix on a terminal).
pub fn warning(message: &str) {
    stderr_line(Paint::Yellow, "warning:", message);
}

/// `note: <message>` on stderr (dim prefix on a terminal).
pub fn note(message: &str) {
    stderr_line(Paint::Dim, "note:", message);
}

/// Text on stderr as is: confirmations of what a command did (`daemon:
/// stopped`, `✓ Joined ...`), which are for people, not data.
pub fn stderr_text(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// A plain line on stderr, for progress and human summaries in `--json` mode.
pub fn stderr_plain(message: &str) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// `hyp <command>: <message>` on stderr (red prefix on a terminal).
pub fn error(command_path: &str, message: &str) {
    let prefix = if command_path.is_empty() {
        "hyp:".to_string()
    } else {
        format!("hyp {command_path}:")
    };
    stderr_line(Paint::Red, &prefix, message);
}

#[derive(Clone, Copy)]
enum Paint {
    Red,
    Yellow,
    Dim,
}

fn stderr_line(paint: Paint, prefix: &str, message: &str) {
    let prefix = if colour() {
        let code = match paint {
            Paint::Red => "31",
            Paint::Yellow => "33",
            Paint::Dim => "2",
        };
        format!("\x1b[{code}m{prefix}\x1b[0m")
    } else {
        prefix.to_string()
    };
    let _ = writeln!(io::stderr().lock(), "{prefix} {message}");
}

/// Whether hyp paints anything (only ever the prefix of a stderr line).
/// This is the one place the rule lives: see [`colour_rule`].
pub fn colour() -> bool {
    colour_rule(
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
        io::stdout().is_terminal(),
        io::stderr().is_terminal(),
    )
}

/// Colour is off when `NO_COLOR` is set to anything but the empty string
/// (no-color.org), when `TERM=dumb`, when stdout is not a terminal (the
/// output is piped or saved, so the whole run is not being watched) and
/// when stderr, where the colour would go, is not one.
fn colour_rule(
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
    stdout_terminal: bool,
    stderr_terminal: bool,
) -> bool {
    no_color.is_none_or(|value| value.is_empty())
        && term.is_none_or(|term| term != "dumb")
        && stdout_terminal
        && stderr_terminal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_needs_two_terminals_and_no_opt_out() {
        let xterm = Some(OsStr::new("xterm-256color"));
        assert!(colour_rule(None, xterm, true, true));
        assert!(colour_rule(None, None, true, true), "no TERM is not dumb");
        assert!(
            colour_rule(Some(OsStr::new("")), xterm, true, true),
            "empty NO_COLOR"
        );
        assert!(!colour_rule(Some(OsStr::new("1")), xterm, true, true));
        assert!(!colour_rule(None, Some(OsStr::new("dumb")), true, true));
        assert!(!colour_rule(None, xterm, false, true), "stdout piped");
        assert!(!colour_rule(None, xterm, true, false), "stderr redirected");
    }
}
