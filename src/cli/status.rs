//! `hyp status [--json]`: read-only health of this machine. Exit 0 whatever
//! the health; scripts gate on `.overall` or on `hyp daemon status`.

use clap::Args;

use crate::cli::{CliError, Code, output};
use crate::paths::Paths;
use crate::status::{collect, render_text};

/// Show config, daemon, cache, remote config and client actions
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON document (schema_version 1) instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatusArgs) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let report = collect::collect(&paths);
    if args.json {
        output::stdout_json(&report)?;
    } else {
        output::stdout_text(&render_text::render(&report))?;
    }
    Ok(Code::Ok)
}
