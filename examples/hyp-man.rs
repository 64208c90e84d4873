//! `hyp-man <dir>`: write hyp's man pages (section 1) into `<dir>`, one page
//! per command, named like git's and cargo's: `hyp.1`, `hyp-daemon.1`,
//! `hyp-daemon-run.1`. Each group's page lists its subcommands by those
//! names (`hyp-daemon-run(1)`), so `man hyp-daemon-run` finds them.
//!
//! A development tool run by `make install`, not part of the shipped binary:
//! clap_mangen is a dev-dependency, and the pages come from the same
//! `hyp::cli::args::Cli` tree that parses argv, so they never drift from it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use hyp::cli::args::Cli;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out_dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: hyp-man <dir>");
        return ExitCode::from(2);
    };
    let out_dir = PathBuf::from(out_dir);
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let version = root.get_version().unwrap_or_default().to_string();
    let written =
        std::fs::create_dir_all(&out_dir).and_then(|()| write_pages(&root, &version, &out_dir));
    match written {
        Ok(count) => {
            eprintln!("hyp-man: wrote {count} pages to {}", out_dir.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("hyp-man: cannot write to {}: {err}", out_dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Write the page of `command` and, depth first, of every visible
/// subcommand; the count written. After `build()` clap names a subcommand
/// `hyp-daemon-run` (its display name), which is the page's name.
fn write_pages(command: &clap::Command, version: &str, out_dir: &Path) -> std::io::Result<usize> {
    let page = clap_mangen::Man::new(command.clone())
        .source(format!("hyp {version}"))
        .manual("hyp manual");
    page.generate_to(out_dir)?;
    let mut count = 1;
    for sub in command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
    {
        count += write_pages(sub, version, out_dir)?;
    }
    Ok(count)
}
