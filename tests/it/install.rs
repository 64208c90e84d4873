//! What `make install` ships beside the binary: the completion scripts of
//! `hyp completions <shell>` and the man pages of the `hyp-man` example; and
//! what `hyp daemon install` makes of an installed binary.

use std::process::Command;
use std::time::Duration;

use crate::support::{TestEnv, example_bin, wait_until};

#[test]
fn bash_completion_registers_hyp_and_completes_subcommands() {
    let env = TestEnv::new();
    let run = env.hyp(["completions", "bash"]).assert_success();
    let script = env.write("hyp.bash", &run.stdout());
    let probe = format!(
        "source '{}' && complete -p hyp && COMP_WORDS=(hyp dae) COMP_CWORD=1 && _hyp hyp dae hyp && echo \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let output = Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("complete "), "{stdout}");
    assert!(lines[0].ends_with(" -F _hyp hyp"), "{stdout}");
    assert_eq!(lines[1], "daemon", "{stdout}");
}

#[test]
fn zsh_and_fish_scripts_name_hyp_and_its_commands() {
    let env = TestEnv::new();
    let zsh = env.hyp(["completions", "zsh"]).assert_success().stdout();
    assert!(zsh.starts_with("#compdef hyp\n"), "{zsh}");
    let fish = env.hyp(["completions", "fish"]).assert_success().stdout();
    assert!(
        fish.contains("complete -c hyp -n \"__fish_hyp_needs_command\" -f -a \"daemon\""),
        "{fish}"
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let env = TestEnv::new();
    env.hyp(["completions", "tcsh"])
        .assert_exit(2)
        .assert_stderr_contains("hyp completions: ")
        .assert_stderr_contains("expects bash|zsh|fish (got tcsh)");
    env.hyp(["completions"])
        .assert_exit(2)
        .assert_stderr_contains("hyp completions: ");
}

#[test]
fn man_pages_are_one_per_command_named_like_git() {
    let env = TestEnv::new();
    let out_dir = env.root().join("man1");
    let output = Command::new(example_bin("hyp-man"))
        .arg(&out_dir)
        .output()
        .expect("run hyp-man");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut pages: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("the man directory")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for expected in [
        "hyp.1",
        "hyp-join.1",
        "hyp-daemon.1",
        "hyp-daemon-run.1",
        "hyp-daemon-install.1",
        "hyp-config-validate.1",
        "hyp-completions.1",
    ] {
        assert!(pages.iter().any(|page| page == expected), "{pages:?}");
    }
    assert!(
        !pages.iter().any(|page| page.contains("help")),
        "no page for clap's help subcommand: {pages:?}"
    );
    let group = std::fs::read_to_string(out_dir.join("hyp-daemon.1")).unwrap();
    assert!(group.contains(".TH hyp-daemon 1"), "{group}");
    assert!(group.contains("hyp\\-daemon\\-install(1)"), "{group}");
    let leaf = std::fs::read_to_string(out_dir.join("hyp-daemon-install.1")).unwrap();
    assert!(leaf.contains("\\-\\-dry\\-run"), "{leaf}");
}

#[test]
fn man_generator_without_a_directory_is_a_usage_error() {
    let output = Command::new(example_bin("hyp-man"))
        .output()
        .expect("run hyp-man");
    assert_eq!(output.status.code(), Some(2));
}

// ---------------------------------------------------------------------------
// `hyp daemon install`: the installed binary, linger, `--system`.

/// A `TestEnv` that never reaches the machine's real service manager and
/// writes system units into its own directory.
fn service_env() -> TestEnv {
    let mut env = TestEnv::new();
    env.set_var("HYP_SERVICE_MANAGER", "none");
    let system_dir = env.root().join("etc-systemd-system");
    env.set_var("HYP_SYSTEM_UNIT_DIR", system_dir.display().to_string());
    env
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The name `loginctl` knows the user running the tests by.
fn login_name() -> String {
    let output = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Run `command`, again while the freshly copied binary is "text file busy"
/// (another test thread forked with its write descriptor open).
fn output_retrying_busy_text(command: &mut Command) -> std::process::Output {
    let mut finished = None;
    wait_until(
        Duration::from_secs(20),
        "the copied binary to run",
        || match command.output() {
            Ok(output) => {
                finished = Some(output);
                true
            }
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) => false,
            Err(err) => panic!("run the copied binary: {err}"),
        },
    );
    finished.expect("ran")
}

#[test]
fn install_from_the_build_tree_warns_and_suggests_make_install() {
    let env = service_env();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_hyp")).unwrap();
    env.hyp(["daemon", "install", "--dry-run"])
        .assert_success()
        .assert_stdout_contains(&format!("ExecStart={} daemon run", exe.display()))
        .assert_stderr_contains("warning: the unit points into a build tree")
        .assert_stderr_contains("make install");
}

#[test]
fn install_names_the_installed_binary_and_does_not_warn_outside_a_build_tree() {
    let env = service_env();
    let bin_dir = env.root().join("opt/hyp/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let installed = bin_dir.join("hyp");
    std::fs::copy(env!("CARGO_BIN_EXE_hyp"), &installed).unwrap();
    let link = env.root().join("hyp-link");
    std::os::unix::fs::symlink(&installed, &link).unwrap();
    let template = env.command(["daemon", "install", "--dry-run"]);
    let mut command = Command::new(&link);
    command
        .args(["daemon", "install", "--dry-run"])
        .env_clear()
        .envs(
            template
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        );
    let output = output_retrying_busy_text(&mut command);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    let canonical = std::fs::canonicalize(&installed).unwrap();
    assert!(
        stdout.contains(&format!("ExecStart={} daemon run", canonical.display())),
        "the unit runs the binary itself, not the link: {stdout}"
    );
    assert!(!stderr.contains("build tree"), "{stderr}");
}

#[test]
fn install_hints_enable_linger_unless_the_user_lingers() {
    let env = service_env();
    let user = login_name();
    let run = env.hyp(["daemon", "install", "--dry-run"]).assert_success();
    let hint = format!("run 'loginctl enable-linger {user}'");
    if std::path::Path::new("/var/lib/systemd/linger")
        .join(&user)
        .exists()
    {
        assert!(!run.stderr().contains("enable-linger"), "{}", run.stderr());
    } else {
        assert!(run.stderr().contains(&hint), "{}", run.stderr());
        assert!(run.stderr().contains("has no lingering session"));
    }
}

#[test]
fn system_dry_run_prints_a_root_unit_for_boot_and_writes_nothing() {
    let mut env = service_env();
    env.remove_var("HYP_SYSTEM_UNIT_DIR");
    let run = env
        .hyp(["daemon", "install", "--system", "--dry-run"])
        .assert_success()
        .assert_stdout_contains("service: systemd system unit hypaware.service (dry run")
        .assert_stdout_contains("target:    /etc/systemd/system/hypaware.service")
        .assert_stdout_contains("\nUser=root\n")
        .assert_stdout_contains(&format!(
            "Environment=\"HYP_HOME={}\"",
            env.hyp_home().display()
        ))
        .assert_stdout_contains("WantedBy=multi-user.target");
    assert!(
        !run.stderr().contains("enable-linger"),
        "a system unit needs no linger: {}",
        run.stderr()
    );
    env.hyp(["daemon", "uninstall", "--system", "--dry-run"])
        .assert_success();
}

#[test]
fn system_install_needs_root() {
    let env = service_env();
    let args = ["daemon", "install", "--system"];
    let mut command = if is_root() {
        // Run it as nobody (the check is on the effective uid), from a copy
        // in this test's own directory opened to all: the checkout may sit
        // where nobody cannot reach.
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(env.root(), open).unwrap();
        let copy = env.root().join("bin/hyp");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_hyp"), &copy).unwrap();
        let template = env.command(args);
        let mut command = Command::new(&copy);
        command
            .args(args)
            .env_clear()
            .envs(
                template
                    .get_envs()
                    .filter_map(|(key, value)| Some((key, value?))),
            )
            .stdin(std::process::Stdio::null())
            .current_dir("/")
            .uid(65534)
            .gid(65534);
        command
    } else {
        env.command(args)
    };
    let output = output_retrying_busy_text(&mut command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("hyp daemon install: --system writes ")
            && stderr
                .contains("etc-systemd-system/hypaware.service and needs root: run it with sudo"),
        "{stderr}"
    );
    assert!(!env.root().join("etc-systemd-system").exists());
}

#[test]
fn system_install_and_uninstall_drive_the_system_manager() {
    let mut env = service_env();
    if !is_root() {
        env.hyp(["daemon", "install", "--system"])
            .assert_exit(1)
            .assert_stderr_contains("needs root");
        return;
    }
    let calls = env.root().join("systemctl.calls");
    let fake = env.write(
        "bin/fake-systemctl",
        &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", calls.display()),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.set_var("HYP_SERVICE_MANAGER", fake.display().to_string());
    let unit = env.root().join("etc-systemd-system/hypaware.service");
    env.hyp(["daemon", "install", "--system"])
        .assert_success()
        .assert_stderr_contains("Daemon installed (systemd system unit: hypaware.service)");
    let content = std::fs::read_to_string(&unit).expect("the system unit");
    assert!(content.contains("\nUser=root\n"), "{content}");
    let user_unit = env.home().join(".config/systemd/user/hypaware.service");
    assert!(!user_unit.exists(), "--system writes no user unit");
    // Status and daemon status see the system unit as the installed one.
    let daemon_status = env.hyp(["daemon", "status", "--json"]);
    assert_eq!(daemon_status.stdout_json()["unit_installed"], true);
    assert_eq!(
        env.hyp(["status", "--json"]).stdout_json()["daemon"]["installed"],
        true
    );
    // start, stop and restart drive the system unit when it is the one installed.
    env.hyp(["daemon", "stop"])
        .assert_success()
        .assert_stderr_contains("daemon: stopped (hypaware.service)");
    env.hyp(["daemon", "start"])
        .assert_success()
        .assert_stderr_contains("daemon: started");
    env.hyp(["daemon", "restart"])
        .assert_success()
        .assert_stderr_contains("daemon: restarted");
    env.hyp(["daemon", "uninstall"])
        .assert_success()
        .assert_stderr_contains("daemon: no service installed");
    env.hyp(["daemon", "uninstall", "--system"])
        .assert_success()
        .assert_stderr_contains("Daemon removed (systemd system unit: hypaware.service)");
    assert!(!unit.exists());
    env.hyp(["daemon", "uninstall", "--system"])
        .assert_success()
        .assert_stderr_contains("daemon: no system service installed");
    let recorded = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        recorded.lines().collect::<Vec<_>>(),
        [
            "daemon-reload",
            "enable hypaware.service",
            "restart hypaware.service",
            "stop hypaware.service",
            "start hypaware.service",
            "restart hypaware.service",
            "stop hypaware.service",
            "disable hypaware.service",
            "daemon-reload",
        ]
    );
}
