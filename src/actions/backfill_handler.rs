//! Backfill-on-join: the first (and so far only) handler. For each enabled
//! `@hypaware/claude` / `@hypaware/codex` entry of the effective config whose
//! policy runs, import the machine's history once by running
//! `hyp backfill <provider> [--since <now - window_days>] --json` as an
//! isolated child with the daemon's environment (`HYP_HOME` forced to the
//! daemon's home, so the child imports into the daemon's cache).
//!
//! Exit 0 is authoritative (`done`, with the row count when stdout parses);
//! anything else is `failed` with a reason that ends with the child's last
//! stderr line. A `done` marker records the cache generation it filled
//! ([`crate::cache::read_generation`]) and stops holding when the cache is
//! replaced, so a damaged or deleted cache is refilled. The same target list ([`targets`]) feeds `hyp status` and
//! `hyp actions`, so `pending` always means "desired() will act".

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::actions::child::{self, ChildOutcome, ChildSpec};
use crate::actions::handler::{
    ActionError, DesiredAction, DesiredContext, Handler, Outcome, PerformContext,
};
use crate::actions::store::Marker;
use crate::config::EffectiveConfig;
use crate::config::catalog::{PROVIDERS, Provider};
use crate::config::policy::BackfillPolicy;
use crate::paths::Paths;
use crate::time::iso_ms;

/// The marker namespace of this handler.
pub const KIND: &str = "backfill";

/// The marker field naming the cache generation a `done` import filled.
pub const CACHE_GENERATION: &str = "cache_generation";

const DAY_MS: i64 = 86_400_000;

/// A backfill target the effective config declares: an enabled provider
/// plugin, with its policy read by the one shared reader.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillTarget {
    pub provider: Provider,
    pub policy: BackfillPolicy,
    /// The entry has an explicit `config.backfill` object.
    pub explicit_block: bool,
}

/// Enabled provider plugins in provider-registry order. A plugin named
/// twice is enabled if any entry is, and its policy comes from the last
/// entry (as the reference reads it).
pub fn targets(config: &EffectiveConfig) -> Vec<BackfillTarget> {
    PROVIDERS
        .iter()
        .filter_map(|provider| {
            let enabled = config
                .plugins
                .iter()
                .any(|entry| entry.name == provider.plugin && entry.enabled);
            if !enabled {
                return None;
            }
            let entry = config
                .plugins
                .iter()
                .rev()
                .find(|entry| entry.name == provider.plugin)?;
            Some(BackfillTarget {
                provider: *provider,
                policy: BackfillPolicy::read(&entry.config),
                explicit_block: entry.config.get("backfill").is_some_and(Value::is_object),
            })
        })
        .collect()
}

/// The units `desired()` names: targets whose policy runs on join.
pub fn desired_actions(config: &EffectiveConfig) -> Vec<DesiredAction> {
    targets(config)
        .into_iter()
        .filter(|target| target.policy.runs_on_join())
        .map(|target| {
            let mut params = Map::new();
            params.insert("provider".into(), Value::from(target.provider.name));
            params.insert("plugin".into(), Value::from(target.provider.plugin));
            if let Some(days) = target.policy.window_days {
                params.insert("window_days".into(), Value::from(days));
            }
            DesiredAction {
                request_key: target.provider.plugin.to_string(),
                params,
            }
        })
        .collect()
}

/// Runs `hyp backfill` children.
pub struct BackfillHandler {
    paths: Paths,
    exe: PathBuf,
    env: Vec<(OsString, OsString)>,
    grace: Duration,
}

impl BackfillHandler {
    /// `exe` is the `hyp` binary (the daemon's own, `current_exe()`);
    /// `base_env` is the daemon's environment; `grace` is how long an
    /// interrupted child gets between SIGTERM and SIGKILL.
    pub fn new(
        paths: Paths,
        exe: PathBuf,
        base_env: impl IntoIterator<Item = (OsString, OsString)>,
        grace: Duration,
    ) -> BackfillHandler {
        BackfillHandler {
            env: child::environment(&paths, base_env),
            paths,
            exe,
            grace,
        }
    }

    fn arguments(provider: &str, since: Option<&str>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["backfill".into(), provider.into()];
        if let Some(since) = since {
            args.push("--since".into());
            args.push(since.into());
        }
        args.push("--json".into());
        args
    }
}

impl Handler for BackfillHandler {
    fn kind(&self) -> &str {
        KIND
    }

    fn desired(&self, context: &DesiredContext) -> Result<Vec<DesiredAction>, ActionError> {
        Ok(desired_actions(context.config))
    }

    fn perform(
        &self,
        action: &DesiredAction,
        context: &PerformContext,
    ) -> Result<Outcome, ActionError> {
        let Some(provider) = action
            .params
            .get("provider")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
        else {
            return Ok(Outcome::failed("backfill action missing provider name"));
        };
        let since = action
            .params
            .get("window_days")
            .and_then(Value::as_i64)
            .and_then(|days| {
                let millis = context.now.as_millisecond() - days.checked_mul(DAY_MS)?;
                jiff::Timestamp::from_millisecond(millis).ok()
            })
            .map(iso_ms);
        crate::event!(
            Info,
            "client_action.backfill_spawn",
            json!({"plugin": action.request_key, "provider": provider, "since": since}),
        );
        let spec = ChildSpec {
            program: self.exe.clone(),
            args: BackfillHandler::arguments(provider, since.as_deref()),
            env: self.env.clone(),
            stderr_log: self.paths.action_log(KIND, provider),
            grace: self.grace,
        };
        let run = child::run(&spec, context.cancel, &|pid| {
            crate::event!(
                Debug,
                "client_action.backfill_started",
                json!({"plugin": action.request_key, "provider": provider, "pid": pid}),
            );
            context.child_started(pid);
        });
        let with_tail = |base: String| match &run.stderr_tail {
            Some(tail) => format!("{base}: {tail}"),
            None => base,
        };
        let outcome = match &run.outcome {
            ChildOutcome::Exited(0) => {
                let mut done = Outcome::done(rows_written(&run.stdout));
                if let Some(generation) = crate::cache::read_generation(&self.paths.cache_db()) {
                    done.detail
                        .insert(CACHE_GENERATION.into(), Value::String(generation));
                }
                done
            }
            ChildOutcome::Exited(_) | ChildOutcome::Signalled(_) => {
                Outcome::failed(with_tail(format!("hyp backfill {}", run.outcome)))
            }
            ChildOutcome::SpawnFailed(err) => {
                Outcome::failed(format!("hyp backfill spawn failed: {err}"))
            }
            ChildOutcome::Cancelled => Outcome::failed(run.outcome.to_string()),
        };
        Ok(outcome)
    }

    /// A `done` marker holds while the cache it filled does: a marker from
    /// another cache generation, or with no cache left at all, re-imports.
    /// A marker that predates generations, or a cache whose generation
    /// cannot be read, counts as current.
    fn is_current(
        &self,
        marker: &Marker,
        _action: &DesiredAction,
        _context: &DesiredContext,
    ) -> Result<bool, ActionError> {
        Ok(imported_into_current_cache(&self.paths, marker))
    }
}

/// Whether the cache a `done` marker filled is still the cache (see
/// [`BackfillHandler::is_current`]); `hyp status` asks the same question.
/// Never while the cache is missing, emptied, damaged or another program's
/// database; else by generation (a marker that predates generations, or a
/// cache whose generation cannot be read, counts as current).
pub fn imported_into_current_cache(paths: &Paths, marker: &Marker) -> bool {
    let db = paths.cache_db();
    if !crate::cache::health::probe(&db).is_sound() {
        return false;
    }
    let Some(recorded) = marker.get(CACHE_GENERATION).and_then(Value::as_str) else {
        return true;
    };
    crate::cache::read_generation(&db).is_none_or(|current| current == recorded)
}

/// `sum(providers[].rows_written)` of the child's `--json` document; `None`
/// when stdout is not that document.
pub fn rows_written(stdout: &[u8]) -> Option<u64> {
    let document: Value = serde_json::from_slice(stdout).ok()?;
    let providers = document.get("providers")?.as_array()?;
    let total: f64 = providers
        .iter()
        .filter_map(|provider| provider.get("rows_written")?.as_f64())
        .filter(|rows| rows.is_finite())
        .sum();
    Some(total.max(0.0) as u64)
}

#[cfg(test)]
mod tests;
