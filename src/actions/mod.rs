//! The client action reconciler: the marker store, the generic pass, the
//! backfill handler, the child chokepoint and the worker thread.

pub mod worker;
