//! `hyp` makes a machine a member of a HypAware fleet and imports its AI-client
//! history. The binary is a thin shell over this library; see ARCHITECTURE.md
//! for the map.

pub mod actions;
pub mod allocator;
pub mod backfill;
pub mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod hex;
pub mod logging;
pub mod messages;
pub mod paths;
pub mod sanitize;
pub mod sink;
pub mod splay;
pub mod statefile;
pub mod status;
pub mod suggest;
pub mod term;
pub mod time;
pub mod units;
