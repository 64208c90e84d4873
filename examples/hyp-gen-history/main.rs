//! `hyp-gen-history`: a deterministic synthetic Claude Code and Codex
//! history, for the tests, the smoke flows and `make demo`, so the project
//! needs nothing beside its own checkout. A dev tool, hence a cargo example:
//! `cargo install --path .` never installs it.
//!
//! ```text
//! hyp-gen-history --out DIR [--preset small|large] [--sessions N] [--lines N]
//!                 [--seed N] [--providers claude,codex] [--days N]
//!                 [--anchor YYYY-MM-DD]
//! ```
//!
//! It writes `DIR/claude/projects/<slug>/<session>.jsonl` and
//! `DIR/codex/sessions/YYYY/MM/DD/rollout-<start>-<thread>.jsonl` (point
//! `CLAUDE_CONFIG_DIR` at `DIR/claude` and `CODEX_HOME` at `DIR/codex`), and
//! `DIR/manifest.json`, also printed on stdout:
//! `{seed, sessions_per_provider, lines_per_session, anchor, days,
//! providers: {<provider>: {files, lines, bytes, expected_rows}}}`, where
//! `expected_rows` is exactly what `hyp backfill` imports from it.
//!
//! The same arguments give byte-identical output: all chance comes from a
//! SplitMix64 stream per provider, seeded from `--seed` and the provider's
//! name. Session starts spread over the `--days` before `--anchor` (default:
//! today's midnight UTC), so a fresh corpus sits inside the default 90-day
//! import window. Presets: `small` is 20 sessions of 50 lines, `large` 2000
//! of 200, per provider; `--sessions` and `--lines` override them.

mod claude;
mod clock;
mod codex;
mod rng;
mod text;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::clock::{DAY_MS, Iso};
use crate::rng::Rng;

/// Generate a synthetic Claude Code + Codex history corpus.
#[derive(Debug, Parser)]
#[command(name = "hyp-gen-history")]
struct Args {
    /// Output directory (replaced when it holds an earlier corpus).
    #[arg(long)]
    out: PathBuf,
    /// Corpus size per provider: small = 20 x 50 lines, large = 2000 x 200.
    #[arg(long, value_enum, default_value = "small")]
    preset: Preset,
    /// Sessions per provider (overrides the preset).
    #[arg(long)]
    sessions: Option<usize>,
    /// Lines per session file (overrides the preset).
    #[arg(long)]
    lines: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Comma-separated providers to generate.
    #[arg(long, default_value = "claude,codex")]
    providers: String,
    /// Spread session starts over the last N days before the anchor.
    #[arg(long, default_value_t = 60)]
    days: u32,
    /// "Now" for the spread: YYYY-MM-DD or an RFC 3339 time (default: today 00:00Z).
    #[arg(long)]
    anchor: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    Small,
    Large,
}

impl Preset {
    /// (sessions, lines per session).
    fn size(self) -> (usize, usize) {
        match self {
            Preset::Small => (20, 50),
            Preset::Large => (2000, 200),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Claude,
    Codex,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::Claude => "claude",
            Provider::Codex => "codex",
        }
    }
}

#[derive(Debug)]
enum GenError {
    UnknownProvider(String),
    BadAnchor(String),
    EmptySessions,
    NotACorpus(PathBuf),
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for GenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenError::UnknownProvider(name) => {
                write!(f, "unknown provider '{name}' (known: claude, codex)")
            }
            GenError::BadAnchor(text) => {
                write!(
                    f,
                    "--anchor '{text}' is neither YYYY-MM-DD nor an RFC 3339 time"
                )
            }
            GenError::EmptySessions => write!(f, "--lines must be at least 1"),
            GenError::NotACorpus(path) => write!(
                f,
                "refusing to replace {}: it is not empty and holds no manifest.json (choose another --out)",
                path.display()
            ),
            GenError::Io { path, source } => write!(f, "cannot write {}: {source}", path.display()),
        }
    }
}

/// Where session starts fall: between `days` before the anchor and six
/// hours before it, so a session's later lines stay in the past too.
pub struct Spread {
    anchor_ms: i64,
    days: u32,
}

impl Spread {
    const MARGIN_MS: u64 = 6 * 3_600_000;

    pub fn session_start(&self, rng: &mut Rng) -> i64 {
        let span = (u64::from(self.days) * DAY_MS as u64).max(Self::MARGIN_MS);
        self.anchor_ms - rng.range(Self::MARGIN_MS, span) as i64
    }
}

/// The manifest, in gen_corpus.py's format (key order included).
#[derive(Debug, Serialize)]
struct Manifest {
    seed: u64,
    sessions_per_provider: usize,
    lines_per_session: usize,
    anchor: String,
    days: u32,
    providers: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize)]
struct ProviderStats {
    files: u64,
    lines: u64,
    bytes: u64,
    expected_rows: u64,
}

/// What one provider's run needs.
struct Plan<'a> {
    out: &'a Path,
    seed: u64,
    sessions: usize,
    lines: usize,
    spread: &'a Spread,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hyp-gen-history: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), GenError> {
    let providers = parse_providers(&args.providers)?;
    let (preset_sessions, preset_lines) = args.preset.size();
    let sessions = args.sessions.unwrap_or(preset_sessions);
    let lines = args.lines.unwrap_or(preset_lines);
    if lines == 0 {
        return Err(GenError::EmptySessions);
    }
    let anchor_ms = match &args.anchor {
        Some(text) => clock::parse_anchor(text).ok_or_else(|| GenError::BadAnchor(text.clone()))?,
        None => clock::today_midnight(),
    };
    let spread = Spread {
        anchor_ms,
        days: args.days,
    };
    clear_out_dir(&args.out)?;
    let plan = Plan {
        out: &args.out,
        seed: args.seed,
        sessions,
        lines,
        spread: &spread,
    };
    // One thread per provider: their streams are independent.
    let plan = &plan;
    let results: Vec<(Provider, Result<ProviderStats, GenError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = providers
            .iter()
            .map(|&provider| (provider, scope.spawn(move || generate(plan, provider))))
            .collect();
        handles
            .into_iter()
            .map(|(provider, handle)| {
                (
                    provider,
                    handle.join().expect("a generator thread does not panic"),
                )
            })
            .collect()
    });
    let mut manifest = Manifest {
        seed: args.seed,
        sessions_per_provider: sessions,
        lines_per_session: lines,
        anchor: Iso(anchor_ms).to_string(),
        days: args.days,
        providers: serde_json::Map::new(),
    };
    for (provider, stats) in results {
        let stats = serde_json::to_value(stats?).expect("stats serialise");
        manifest
            .providers
            .insert(provider.name().to_string(), stats);
    }
    write_manifest(&args.out, &manifest)
}

fn parse_providers(list: &str) -> Result<Vec<Provider>, GenError> {
    let mut providers = Vec::new();
    for name in list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let provider = match name {
            "claude" => Provider::Claude,
            "codex" => Provider::Codex,
            other => return Err(GenError::UnknownProvider(other.to_string())),
        };
        if !providers.contains(&provider) {
            providers.push(provider);
        }
    }
    Ok(providers)
}

/// Start from an empty `out`: an earlier corpus (it has a manifest) is
/// removed; any other non-empty directory is left alone and refused.
fn clear_out_dir(out: &Path) -> Result<(), GenError> {
    let io_err = |source| GenError::Io {
        path: out.to_path_buf(),
        source,
    };
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                if !out.join("manifest.json").is_file() {
                    return Err(GenError::NotACorpus(out.to_path_buf()));
                }
                std::fs::remove_dir_all(out).map_err(io_err)?;
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_err(err)),
    }
    std::fs::create_dir_all(out).map_err(io_err)
}

/// Every session of one provider, written; returns its manifest entry.
fn generate(plan: &Plan<'_>, provider: Provider) -> Result<ProviderStats, GenError> {
    let mut rng = Rng::for_purpose(plan.seed, provider.name());
    let base_instructions = text::base_instructions();
    let mut stats = ProviderStats::default();
    for _ in 0..plan.sessions {
        let (relative, data, n_lines, expected_rows) = match provider {
            Provider::Claude => {
                let session = claude::transcript(&mut rng, plan.spread, plan.lines);
                (
                    session.path,
                    session.data,
                    session.n_lines,
                    session.expected_rows,
                )
            }
            Provider::Codex => {
                let session = codex::rollout(&mut rng, plan.spread, &base_instructions, plan.lines);
                (
                    session.path,
                    session.data,
                    session.n_lines,
                    session.expected_rows,
                )
            }
        };
        write_session(&plan.out.join(relative), &data)?;
        stats.files += 1;
        stats.lines += n_lines as u64;
        stats.bytes += data.len() as u64;
        stats.expected_rows += expected_rows;
    }
    Ok(stats)
}

fn write_session(path: &Path, data: &[u8]) -> Result<(), GenError> {
    let io_err = |source| GenError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    std::fs::write(path, data).map_err(io_err)
}

fn write_manifest(out: &Path, manifest: &Manifest) -> Result<(), GenError> {
    let path = out.join("manifest.json");
    let mut text = serde_json::to_string_pretty(manifest).expect("the manifest serialises");
    text.push('\n');
    std::fs::write(&path, &text).map_err(|source| GenError::Io { path, source })?;
    // stdout gone (a closed pipe) is no failure: the manifest is on disk.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}
