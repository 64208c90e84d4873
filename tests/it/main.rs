//! Integration tests: every test drives the real `hyp` binary through
//! [`TestEnv`], which gives it a private `HOME` and `HYP_HOME` and a scrubbed
//! environment. One crate, one harness; a module per capability.

mod actions;
mod backfill;
mod backfill_resume;
mod capture;
mod cli;
mod config;
mod control;
mod daemon;
mod fake_central;
mod fake_ingest;
mod fleet;
mod forward;
mod forward_answers;
mod fresh_cache;
mod heal;
mod history;
mod join;
mod query;
mod state_files;
mod status;
mod support;
mod sync_cli;
