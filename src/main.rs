//! `hyp`: parse, run, map to an exit code. Everything else lives in the library.

#[global_allocator]
static ALLOCATOR: hyp::allocator::HypAllocator = hyp::allocator::HypAllocator;

fn main() -> std::process::ExitCode {
    hyp::cli::main()
}
