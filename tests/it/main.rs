//! Integration tests: every test drives the real `hyp` binary through
//! [`TestEnv`], which gives it a private `HOME` and `HYP_HOME` and a scrubbed
//! environment. One crate, one harness; a module per capability.

mod actions;
mod backfill;
mod backfill_report;
mod backfill_resume;
mod capture;
mod cli;
mod cli_help;
mod config;
mod control;
mod corpus;
mod daemon;
mod differential;
mod fake_central;
mod fake_ingest;
mod fleet;
mod forward;
mod forward_answers;
mod fresh_cache;
mod heal;
mod history;
mod house;
mod install;
mod join;
mod query;
mod query_stream;
mod rows_golden;
mod state_files;
mod status;
mod support;
mod sync_cli;
