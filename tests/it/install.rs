//! What `make install` ships beside the binary: the completion scripts of
//! `hyp completions <shell>` and the man pages of the `hyp-man` example.

use std::process::Command;

use crate::support::{TestEnv, example_bin};

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
        .assert_stderr_contains("invalid value 'tcsh'");
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
