//! `hyp version`: the version and the resolved home, for bug reports.

use crate::cli::{CliError, Code, output};
use crate::paths::Paths;

pub fn run() -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    let text = format!(
        "hyp {}\n  platform: {} {}\n  hyp_home: {}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        paths.home().display()
    );
    output::stdout_text(&text)?;
    Ok(Code::Ok)
}
