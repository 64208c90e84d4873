//! The one place that prints. stdout carries data (text or one JSON
//! document); stderr carries `hyp …:` messages, `warning:` and `note:` lines
//! (written by [`crate::term`], re-exported here so a command prints
//! through one module). A closed stdout (broken pipe) is a quiet success,
//! never a panic.

use std::io::{self, Write};

use serde::Serialize;

use crate::cli::CliError;

pub use crate::term::{colour, error, note, stderr_plain, stderr_text, warning};

/// Print `text` on stdout as is.
pub fn stdout_text(text: &str) -> Result<(), CliError> {
    write_stdout(text.as_bytes())
}

/// Print `value` as one pretty JSON document (2-space indent) plus a newline.
pub fn stdout_json<T: Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|err| CliError::failed(format!("cannot render JSON: {err}")))?;
    bytes.push(b'\n');
    write_stdout(&bytes)
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    finish_stdout(stdout.write_all(bytes).and_then(|()| stdout.flush()))
}

/// stdout behind a 64 KiB buffer, for output written as it is produced
/// (`hyp query sql` streams rows through it). Hand the outcome of the
/// writes and the final flush to [`finish_stdout`].
pub fn stdout_buffered() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(64 * 1024, io::stdout().lock())
}

/// The outcome of writing to stdout: a closed pipe (`hyp query sql ... |
/// head`) is a quiet success, any other error a failure.
pub fn finish_stdout(res: io::Result<()>) -> Result<(), CliError> {
    match res {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(CliError::failed(format!("cannot write to stdout: {err}"))),
    }
}
