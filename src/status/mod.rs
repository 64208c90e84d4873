//! `hyp status`: a read-only report of everything on disk, for people and
//! (with `--json`) for scripts. **Invariant:** status writes nothing.

pub mod collect;
pub mod render_text;
pub mod report;
