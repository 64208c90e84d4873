//! Every path of the on-disk layout, resolved once from the environment.
//!
//! `HYP_HOME` (default `~/.hyp`, empty = unset) is the root; `S` is
//! `$HYP_HOME/hypaware`. The layout matches the reference implementation so a
//! host can move between the two. `HYP_TIME_SCALE` lives here too, because it
//! is read from the environment once and then handed to every daemon timer.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the environment could not be turned into paths or a time scale.
#[derive(Debug)]
pub enum PathsError {
    NoHome,
    Cwd(std::io::Error),
    TimeScale { value: String },
}

impl fmt::Display for PathsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathsError::NoHome => {
                write!(f, "cannot find the home directory: set HYP_HOME or HOME")
            }
            PathsError::Cwd(err) => write!(f, "cannot read the current directory: {err}"),
            PathsError::TimeScale { value } => write!(
                f,
                "HYP_TIME_SCALE must be a positive number (got '{value}'): unset it or use e.g. 20"
            ),
        }
    }
}

impl std::error::Error for PathsError {}

/// Where a path came from, so messages can say which knob to turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSource {
    Env,
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathWithSource {
    pub path: PathBuf,
    pub source: PathSource,
}

/// One of the two central-config slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The slot file's name, which is also the `active` symlink's target.
    pub fn file_name(self) -> String {
        format!("config.{}.json", self.letter())
    }
}

/// The resolved layout. Cheap to clone; holds no open files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    home: PathBuf,
    local_config: PathWithSource,
}

impl Paths {
    /// Resolve from the process environment.
    pub fn from_env() -> Result<Paths, PathsError> {
        Paths::resolve(|name| env::var_os(name))
    }

    /// Resolve from any environment lookup (tests pass a closure over a map).
    pub fn resolve(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Paths, PathsError> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let cwd = || env::current_dir().map_err(PathsError::Cwd);
        let home = match non_empty("HYP_HOME") {
            Some(home) => absolute(PathBuf::from(home), cwd)?,
            None => {
                let user_home = non_empty("HOME").ok_or(PathsError::NoHome)?;
                absolute(PathBuf::from(user_home), cwd)?.join(".hyp")
            }
        };
        let local_config = match non_empty("HYP_CONFIG") {
            Some(path) => PathWithSource {
                path: absolute(PathBuf::from(path), cwd)?,
                source: PathSource::Env,
            },
            None => PathWithSource {
                path: home.join("hypaware-config.json"),
                source: PathSource::Default,
            },
        };
        Ok(Paths { home, local_config })
    }

    /// A layout rooted at `home` with the default local-config path.
    pub fn with_home(home: impl Into<PathBuf>) -> Paths {
        let home = home.into();
        let local_config = PathWithSource {
            path: home.join("hypaware-config.json"),
            source: PathSource::Default,
        };
        Paths { home, local_config }
    }

    /// `$HYP_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The local config layer (`hypaware-config.json`, or `HYP_CONFIG`).
    pub fn local_config(&self) -> &PathWithSource {
        &self.local_config
    }

    /// `S` = `$HYP_HOME/hypaware`.
    pub fn state_root(&self) -> PathBuf {
        self.home.join("hypaware")
    }

    pub fn control_dir(&self) -> PathBuf {
        self.state_root().join("config-control")
    }

    pub fn seed(&self) -> PathBuf {
        self.control_dir().join("seed.json")
    }

    pub fn slot(&self, slot: Slot) -> PathBuf {
        self.control_dir().join(slot.file_name())
    }

    pub fn slot_etag(&self, slot: Slot) -> PathBuf {
        self.control_dir()
            .join(format!("config.{}.etag", slot.letter()))
    }

    /// The relative symlink that names the active slot.
    pub fn active_pointer(&self) -> PathBuf {
        self.control_dir().join("active")
    }

    /// The apply engine's `state.json` (probation, bad etag, last rollback).
    pub fn apply_state(&self) -> PathBuf {
        self.control_dir().join("state.json")
    }

    pub fn client_actions(&self) -> PathBuf {
        self.control_dir().join("client-actions.json")
    }

    pub fn client_actions_lock(&self) -> PathBuf {
        self.control_dir().join("client-actions.lock")
    }

    pub fn identity_dir(&self) -> PathBuf {
        self.state_root().join("plugins/@hypaware/central")
    }

    pub fn identity(&self) -> PathBuf {
        self.identity_dir().join("identity.json")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.state_root().join("run")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.run_dir().join("hypaware.pid")
    }

    /// The single-instance lock the daemon holds for its whole life.
    pub fn daemon_lock(&self) -> PathBuf {
        self.run_dir().join("hypaware.lock")
    }

    pub fn status_file(&self) -> PathBuf {
        self.run_dir().join("status.json")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_root().join("logs")
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.logs_dir().join("daemon.log")
    }

    /// Stderr of one action child: `S/logs/actions/<kind>-<name>.log`.
    /// `name` is sanitised so a plugin name cannot escape the directory.
    pub fn action_log(&self, kind: &str, name: &str) -> PathBuf {
        self.logs_dir().join("actions").join(format!(
            "{}-{}.log",
            safe_file_name(kind),
            safe_file_name(name)
        ))
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.state_root().join("cache")
    }

    pub fn cache_db(&self) -> PathBuf {
        self.cache_dir().join("cache.db")
    }

    /// `S/usage-policy`: the person's privacy choices for this machine.
    pub fn usage_policy_dir(&self) -> PathBuf {
        self.state_root().join("usage-policy")
    }

    /// Directories marked `local-only` or `ignore` on this machine.
    pub fn local_only_list(&self) -> PathBuf {
        self.usage_policy_dir().join("local-only.json")
    }

    /// Clients opted out of forwarding (`{version, entries: [{source, class}]}`).
    pub fn client_sync(&self) -> PathBuf {
        self.usage_policy_dir().join("client-sync.json")
    }

    /// A live `{deadline_ms}` here holds every export (reference: `hyp remote login`).
    pub fn first_sync_hold(&self) -> PathBuf {
        self.usage_policy_dir().join("first-sync-hold.json")
    }

    /// This installation's id, made at the first join and kept across leave
    /// and join: mixed into batch ids and the splay offsets.
    pub fn installation(&self) -> PathBuf {
        self.state_root().join("installation.json")
    }

    /// The forward sink's state for one sink instance (watermarks, intents,
    /// the sent-row ledger, quarantine). `instance` is sanitised so a name
    /// cannot escape the directory.
    pub fn sink_instance_dir(&self, instance: &str) -> PathBuf {
        self.identity_dir()
            .join("sink-instances")
            .join(safe_file_name(instance))
    }
}

/// `text` with every character outside `[A-Za-z0-9._-]` replaced by `_`
/// (and an empty, `.` or `..` name made plain), so a name from config stays
/// one file name inside its directory.
fn safe_file_name(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|ch| match ch {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => ch,
            _ => '_',
        })
        .collect();
    match safe.as_str() {
        "" | "." | ".." => safe.replace('.', "_") + "_",
        _ => safe,
    }
}

fn absolute(
    path: PathBuf,
    cwd: impl Fn() -> Result<PathBuf, PathsError>,
) -> Result<PathBuf, PathsError> {
    if path.is_absolute() {
        Ok(path)
    } else {
        Ok(cwd()?.join(path))
    }
}

/// `HYP_TIME_SCALE`: every daemon timer is divided by this factor so hermetic
/// tests can run a whole probation cycle in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    pub const REAL: TimeScale = TimeScale(1.0);

    pub fn from_env() -> Result<TimeScale, PathsError> {
        TimeScale::parse(env::var("HYP_TIME_SCALE").ok().as_deref())
    }

    /// `None` or an empty string means 1; anything else must be a finite
    /// number greater than zero.
    pub fn parse(value: Option<&str>) -> Result<TimeScale, PathsError> {
        let Some(raw) = value.filter(|raw| !raw.trim().is_empty()) else {
            return Ok(TimeScale::REAL);
        };
        match raw.trim().parse::<f64>() {
            Ok(factor) if factor.is_finite() && factor > 0.0 => Ok(TimeScale(factor)),
            _ => Err(PathsError::TimeScale {
                value: raw.to_string(),
            }),
        }
    }

    pub fn factor(self) -> f64 {
        self.0
    }

    /// A real-world duration shrunk by the factor.
    pub fn scale(self, duration: Duration) -> Duration {
        Duration::from_secs_f64(duration.as_secs_f64() / self.0)
    }

    /// `scale(Duration::from_secs(secs))`.
    pub fn secs(self, secs: u64) -> Duration {
        self.scale(Duration::from_secs(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)]) -> Result<Paths, PathsError> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(key, value)| (key.to_string(), OsString::from(value)))
            .collect();
        Paths::resolve(|name| map.get(name).cloned())
    }

    #[test]
    fn hyp_home_wins_and_empty_counts_as_unset() {
        let paths = resolve(&[("HYP_HOME", "/h"), ("HOME", "/u")]).unwrap();
        assert_eq!(paths.home(), Path::new("/h"));
        let paths = resolve(&[("HYP_HOME", ""), ("HOME", "/u")]).unwrap();
        assert_eq!(paths.home(), Path::new("/u/.hyp"));
        assert!(matches!(resolve(&[]), Err(PathsError::NoHome)));
    }

    #[test]
    fn layout_matches_the_contract() {
        let paths = Paths::with_home("/h");
        let s = "/h/hypaware";
        assert_eq!(
            paths.seed(),
            PathBuf::from(format!("{s}/config-control/seed.json"))
        );
        assert_eq!(
            paths.slot(Slot::B),
            PathBuf::from(format!("{s}/config-control/config.b.json"))
        );
        assert_eq!(
            paths.slot_etag(Slot::A),
            PathBuf::from(format!("{s}/config-control/config.a.etag"))
        );
        assert_eq!(
            paths.active_pointer(),
            PathBuf::from(format!("{s}/config-control/active"))
        );
        assert_eq!(
            paths.apply_state(),
            PathBuf::from(format!("{s}/config-control/state.json"))
        );
        assert_eq!(
            paths.identity(),
            PathBuf::from(format!("{s}/plugins/@hypaware/central/identity.json"))
        );
        assert_eq!(
            paths.pid_file(),
            PathBuf::from(format!("{s}/run/hypaware.pid"))
        );
        assert_eq!(
            paths.cache_db(),
            PathBuf::from(format!("{s}/cache/cache.db"))
        );
        assert_eq!(
            paths.action_log("backfill", "@hypaware/claude"),
            PathBuf::from(format!("{s}/logs/actions/backfill-_hypaware_claude.log"))
        );
        assert_eq!(
            paths.local_config().path,
            PathBuf::from("/h/hypaware-config.json")
        );
    }

    #[test]
    fn hyp_config_moves_only_the_local_layer() {
        let paths = resolve(&[("HYP_HOME", "/h"), ("HYP_CONFIG", "/etc/hyp.json")]).unwrap();
        assert_eq!(paths.local_config().path, PathBuf::from("/etc/hyp.json"));
        assert_eq!(paths.local_config().source, PathSource::Env);
        assert_eq!(
            paths.seed(),
            PathBuf::from("/h/hypaware/config-control/seed.json")
        );
    }

    #[test]
    fn time_scale_parses_positive_numbers_only() {
        assert_eq!(TimeScale::parse(None).unwrap(), TimeScale::REAL);
        assert_eq!(TimeScale::parse(Some("")).unwrap(), TimeScale::REAL);
        assert_eq!(TimeScale::parse(Some("20")).unwrap().factor(), 20.0);
        assert_eq!(TimeScale::parse(Some("0.5")).unwrap().factor(), 0.5);
        for bad in ["0", "-1", "abc", "inf", "NaN"] {
            assert!(
                TimeScale::parse(Some(bad)).is_err(),
                "{bad} must be refused"
            );
        }
        let scale = TimeScale::parse(Some("10")).unwrap();
        assert_eq!(scale.secs(300), Duration::from_secs(30));
    }
}
