//! Central config control: the machine identity, the HTTP client for the
//! central protocol and the CAs it trusts, the A/B-slot apply engine with
//! probation, and the poll thread that drives them.

pub mod client;
pub mod engine;
pub mod identity;
pub mod membership;
pub mod poll;
pub mod sink;
pub mod trust;
