//! The daemon process: single instance, boot order, threads, signals,
//! staged restart and bounded shutdown.

pub mod messages;
