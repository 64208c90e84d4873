//! The top-level command tree. Each group's own flags live in its file
//! (`cli/<group>.rs`) as clap derive structs whose doc comments are the help.

use clap::{Parser, Subcommand};

/// hyp: make this machine a member of a HypAware fleet and keep its AI-client
/// history (Claude Code, Codex) in one queryable place.
#[derive(Debug, Parser)]
#[command(
    name = "hyp",
    version,
    arg_required_else_help = true,
    after_help = "Run 'hyp <command> --help' for details. Start with 'hyp status' to see whether this install is working."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show this machine's health: config, daemon, cache, remote config, client actions
    Status(crate::cli::status::StatusArgs),
    Join(crate::cli::join::JoinArgs),
    Leave(crate::cli::join::LeaveArgs),
    /// Run the daemon, or manage and inspect it (start, stop, status, logs, install)
    Daemon(crate::cli::daemon::DaemonArgs),
    /// Import local Claude Code and Codex history into the cache
    Backfill(crate::cli::backfill::BackfillArgs),
    /// Query the local cache with read-only SQL
    Query(crate::cli::query::QueryArgs),
    /// Send the cache's rows to central now (the daemon does it on its schedule)
    Sync(crate::cli::sync::SyncArgs),
    /// Check, show and locate the configuration layers
    Config(crate::cli::config::ConfigArgs),
    /// Show or retry the client actions the daemon performs (backfill on join)
    #[command(arg_required_else_help = false)]
    Actions(crate::cli::actions::ActionsArgs),
    /// Print the version and where hyp keeps its state
    Version,
    Completions(crate::cli::completions::CompletionsArgs),
}
