//! Integration tests: every test drives the real `hyp` binary through
//! [`TestEnv`], which gives it a private `HOME` and `HYP_HOME` and a scrubbed
//! environment. One crate, one harness; a module per capability.

mod actions;
mod cli;
mod support;
