//! The client action reconciler: the marker store, the generic pass, the
//! backfill handler, the child chokepoint and the worker thread.

pub mod backfill_handler;
pub mod backoff;
pub mod capture;
pub mod child;
pub mod handler;
pub mod op_queue;
pub mod reconciler;
pub mod recovery;
pub mod rows;
pub mod store;
pub mod worker;
