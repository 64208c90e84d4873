//! Central config control: the machine identity, the HTTP client for the
//! central protocol, the A/B-slot apply engine with probation, and the poll
//! thread that drives them.

pub mod client;
pub mod engine;
pub mod identity;
pub mod membership;
pub mod poll;
pub mod sink;
