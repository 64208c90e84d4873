//! `hyp`: parse, run, map to an exit code. Everything else lives in the library.

fn main() -> std::process::ExitCode {
    hyp::cli::main()
}
