//! Generated histories for the tests: the project's own generator,
//! `examples/hyp-gen-history`, built beside this test executable, so a
//! checkout with nothing beside it tests itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::support::TestEnv;

/// `examples/hyp-gen-history`, built once per test run.
pub(crate) fn generator() -> PathBuf {
    crate::support::example_bin("hyp-gen-history")
}

/// Run the generator into `out` with `args`; returns the manifest.
pub(crate) fn generate(out: &Path, args: &[&str]) -> Value {
    let generator = generator();
    let output = std::process::Command::new(&generator)
        .arg("--out")
        .arg(out)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run hyp-gen-history");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        generator.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = std::fs::read(out.join("manifest.json")).expect("read manifest.json");
    serde_json::from_slice(&manifest).expect("manifest.json is JSON")
}

/// Generate a corpus under the env's root; returns its directory and
/// manifest, and points the env's Claude and Codex roots at it.
pub(crate) fn generated_corpus(env: &mut TestEnv, args: &[&str]) -> (PathBuf, Value) {
    let out = env.root().join("corpus");
    let manifest = generate(&out, args);
    env.set_var(
        "CLAUDE_CONFIG_DIR",
        out.join("claude").display().to_string(),
    );
    env.set_var("CODEX_HOME", out.join("codex").display().to_string());
    (out, manifest)
}

/// The rows the manifest says `hyp backfill` imports for `provider`.
pub(crate) fn expected_rows(manifest: &Value, provider: &str) -> u64 {
    manifest["providers"][provider]["expected_rows"]
        .as_u64()
        .expect("manifest has expected_rows")
}

/// A Claude history large enough that importing it takes a while (300
/// sessions of 200 lines), for tests that interrupt an import midway.
pub(crate) const SLOW_CLAUDE: [&str; 6] = [
    "--sessions",
    "300",
    "--lines",
    "200",
    "--providers",
    "claude",
];

/// `hyp backfill` of both providers, every line whatever its age (the real
/// transcripts span 2025 and 2026).
pub(crate) const IMPORT_EVERY_LINE: [&str; 6] = [
    "backfill",
    "claude",
    "codex",
    "--since",
    "2000-01-01",
    "--json",
];

/// A home whose Claude and Codex roots are the real transcripts of
/// `../shared/differential-data`, and that folder; `None`, after saying on
/// stderr that `test` was skipped, where the folder is absent.
pub(crate) fn differential_env(test: &str) -> Option<(TestEnv, PathBuf)> {
    let Some(data) = differential_data() else {
        say(&format!(
            "{test}: skipped: no ../shared/differential-data beside the checkout (it is optional)"
        ));
        return None;
    };
    let mut env = TestEnv::new();
    env.set_var(
        "CLAUDE_CONFIG_DIR",
        data.join("claude").display().to_string(),
    );
    env.set_var("CODEX_HOME", data.join("codex").display().to_string());
    Some((env, data))
}

/// A line on the real stderr: the test harness captures `eprintln!`, and
/// whether a test ran on real files must show in a plain `cargo test`.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `../shared/differential-data` beside the checkout: real Claude Code and
/// Codex files (see its `SOURCES.md`). Optional: a checkout alone has none.
pub(crate) fn differential_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/differential-data");
    dir.is_dir().then_some(dir)
}
