//! Generated histories for the tests: the project's own generator,
//! `examples/hyp-gen-history`, built beside this test executable, so a
//! checkout with nothing beside it tests itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::TestEnv;

/// `target/<profile>/examples/hyp-gen-history`, beside this executable
/// (`target/<profile>/deps/it-<hash>`), built once per test run.
///
/// `cargo test --all-targets` compiles the examples as test harnesses,
/// under hashed names, so the generator itself may be missing or stale:
/// `cargo build --example` makes it, for the same profile and target
/// directory (a no-op when it is fresh; cargo does not hold the build lock
/// while tests run).
pub(crate) fn generator() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_generator).clone()
}

fn build_generator() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile name in {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            "hyp-gen-history",
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build --example hyp-gen-history");
    assert!(
        output.status.success(),
        "cargo build --example hyp-gen-history failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generator = profile_dir.join("examples/hyp-gen-history");
    assert!(generator.is_file(), "{} was not built", generator.display());
    generator
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

/// `../shared/differential-data` beside the checkout: real Claude Code and
/// Codex files (see its `SOURCES.md`). Optional: a checkout alone has none.
pub(crate) fn differential_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/differential-data");
    dir.is_dir().then_some(dir)
}
