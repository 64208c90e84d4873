//! `hyp status`: a read-only report of everything on disk.

pub mod sanitize;
