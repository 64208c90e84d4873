//! The process's memory allocator, chosen once, at its first allocation:
//! mimalloc for a `hyp backfill` run, the system's for everything else.
//!
//! An import allocates and frees millions of small strings and JSON nodes
//! on its parse threads; mimalloc's per-thread free lists take about a fifth
//! off their CPU against glibc's malloc (ARCHITECTURE.md, "Performance
//! record"). A long-lived daemon gains nothing from that and would pay for
//! it in idle memory (its threads' mimalloc heaps and segments: 7.0 MiB idle
//! against 5.8 in `make bench`), so the choice is per process. It is read from the command line,
//! before the first block is handed out, and never changes: every block is
//! freed by the allocator that made it. Nothing depends on the choice but
//! speed and memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// The allocator `main.rs` installs.
pub struct HypAllocator;

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// Whether this process allocates with mimalloc; decided on the first call.
/// The first call comes before any block exists (it is the first
/// allocation), so no block can outlive a change of mind. Two threads
/// deciding at once would read the same command line and agree.
#[inline(always)]
fn fast() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        SYSTEM => false,
        MIMALLOC => true,
        _ => decide(),
    }
}

#[cold]
fn decide() -> bool {
    let choice = if own_command_line_names_backfill() {
        MIMALLOC
    } else {
        SYSTEM
    };
    CHOICE.store(choice, Ordering::Relaxed);
    choice == MIMALLOC
}

// SAFETY: each call is forwarded to one allocator, the same for the whole
// life of the process (see `fast`), so a block is always resized and freed
// by the allocator that made it; both uphold GlobalAlloc's contract.
unsafe impl GlobalAlloc for HypAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            if fast() {
                mimalloc::MiMalloc.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            if fast() {
                mimalloc::MiMalloc.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the same allocator (see `fast`).
        unsafe {
            if fast() {
                mimalloc::MiMalloc.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from the same allocator (see `fast`).
        unsafe {
            if fast() {
                mimalloc::MiMalloc.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}

/// Whether an argument of this process is `backfill`, read from
/// `/proc/self/cmdline` with plain syscalls into a stack buffer: this runs
/// before anything may allocate. Anything unreadable means no.
fn own_command_line_names_backfill() -> bool {
    let mut buffer = [0u8; 4096];
    let mut filled = 0;
    // SAFETY: a NUL-terminated path, a stack buffer read within its bounds,
    // and the descriptor closed on every path.
    unsafe {
        let fd = libc::open(
            c"/proc/self/cmdline".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        while filled < buffer.len() {
            let read = libc::read(
                fd,
                buffer[filled..].as_mut_ptr().cast(),
                buffer.len() - filled,
            );
            if read <= 0 {
                break;
            }
            filled += read as usize;
        }
        libc::close(fd);
    }
    names_backfill(&buffer[..filled])
}

/// Whether a NUL-separated command line has `backfill` among its arguments
/// (the program's own name aside). Any mention picks the import's
/// allocator: `hyp help backfill` gets it too, harmlessly.
fn names_backfill(command_line: &[u8]) -> bool {
    command_line
        .split(|byte| *byte == 0)
        .skip(1)
        .any(|argument| argument == b"backfill")
}

#[cfg(test)]
mod tests {
    use super::names_backfill;

    #[test]
    fn only_an_argument_that_is_backfill_picks_the_import_allocator() {
        assert!(names_backfill(b"hyp\0backfill\0claude\0--json\0"));
        assert!(names_backfill(b"/usr/bin/hyp\0--color\0never\0backfill\0"));
        assert!(!names_backfill(b"backfill\0daemon\0run\0"));
        assert!(!names_backfill(b"hyp\0query\0sql\0select 'backfill'\0"));
        assert!(!names_backfill(b"hyp\0backfill-plan\0"));
        assert!(!names_backfill(b""));
    }
}
