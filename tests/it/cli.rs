//! The command line's global conventions: help, version, usage errors.

use crate::support::TestEnv;

#[test]
fn version_flag_prints_the_version() {
    let env = TestEnv::new();
    let run = env.hyp(["--version"]).assert_success();
    assert_eq!(
        run.stdout().trim(),
        format!("hyp {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bare_hyp_and_help_print_help_and_exit_zero() {
    let env = TestEnv::new();
    for args in [vec![], vec!["--help"], vec!["help"], vec!["-h"]] {
        env.hyp(&args)
            .assert_success()
            .assert_stdout_contains("Usage: hyp");
    }
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let env = TestEnv::new();
    let run = env
        .hyp(["bogus"])
        .assert_exit(2)
        .assert_stderr_contains("hyp: unknown command 'bogus'");
    assert!(
        run.stdout().is_empty(),
        "nothing on stdout for a usage error"
    );
    assert!(!run.stderr().contains("panicked"));
}

#[test]
fn an_unknown_flag_names_the_command_and_its_usage() {
    let env = TestEnv::new();
    env.hyp(["version", "--jsn"])
        .assert_exit(2)
        .assert_stderr_contains("hyp version: unknown flag --jsn")
        .assert_stderr_contains("usage: hyp version");
    env.hyp(["version", "extra"])
        .assert_exit(2)
        .assert_stderr_contains("hyp version: unexpected argument 'extra'");
}

#[test]
fn version_command_names_the_home() {
    let env = TestEnv::new();
    env.hyp(["version"])
        .assert_success()
        .assert_stdout_contains(&format!("hyp_home: {}", env.hyp_home().display()));
}

#[test]
fn no_home_at_all_is_a_clear_error() {
    let mut env = TestEnv::new();
    env.remove_var("HOME");
    env.remove_var("HYP_HOME");
    env.hyp(["version"])
        .assert_exit(2)
        .assert_stderr_contains("set HYP_HOME or HOME");
}

#[test]
fn an_invalid_hyp_log_filter_is_a_startup_error() {
    let mut env = TestEnv::new();
    env.set_var("HYP_LOG", "warn,hyp=loud");
    for args in [vec!["status"], vec!["daemon", "run"]] {
        let run = env.hyp(&args).assert_exit(2);
        assert_eq!(
            run.stderr(),
            "hyp: HYP_LOG: invalid filter 'warn,hyp=loud': invalid logging spec 'loud'\n"
        );
        assert!(run.stdout().is_empty());
    }
    assert!(
        !env.state_root().join("logs").exists(),
        "the daemon refused before it opened its log"
    );
}

#[test]
fn hyp_log_sends_readable_lines_to_stderr_outside_the_daemon() {
    let mut host = crate::forward_answers::Host::with_rows(1, 2);
    host.env.set_var("HYP_LOG", "hyp::sink=info");
    let run = host.env.hyp(["sync", "--yes"]).assert_success();
    let stderr = run.stderr();
    let line = stderr
        .lines()
        .find(|line| line.contains(" info  central.forward.export  "))
        .unwrap_or_else(|| panic!("no readable export line on stderr:\n{stderr}"));
    assert!(line.contains("rows_sent=2"), "{line}");
    host.env.remove_var("HYP_LOG");
    let run = host.env.hyp(["sync", "--yes"]).assert_success();
    assert!(
        !run.stderr().contains("central.forward"),
        "nothing is logged without HYP_LOG: {}",
        run.stderr()
    );
}
