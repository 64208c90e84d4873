//! The one reader of each policy block of a plugin entry (`backfill`,
//! `capture`), shared by the reconciler, the daemon and status so they can
//! never disagree. Readers never fail: a malformed opt-out fails closed, any
//! other malformed value reads as its default.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::Value;

/// The `capture.interval_seconds` values that count (contract section 13);
/// the section validator checks against the same range.
pub const CAPTURE_INTERVAL_SECONDS: RangeInclusive<u64> = 30..=86_400;

/// How often a provider's capture sweep runs when `interval_seconds` is
/// absent or does not count.
pub const DEFAULT_CAPTURE_INTERVAL: Duration = Duration::from_secs(300);

/// `config.backfill` of one plugin entry, read leniently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackfillPolicy {
    /// `None` when absent (default on); a boolean is itself; any other value
    /// is `Some(false)`: a malformed opt-out fails closed.
    pub on_join: Option<bool>,
    /// Only an integer > 0 counts (integral floats included).
    pub window_days: Option<u64>,
}

impl BackfillPolicy {
    /// Read from a plugin entry's `config` (an object, or `Null` when absent).
    pub fn read(plugin_config: &Value) -> BackfillPolicy {
        let Some(block) = plugin_config.get("backfill").and_then(Value::as_object) else {
            return BackfillPolicy::default();
        };
        let on_join = block
            .get("on_join")
            .map(|value| value.as_bool().unwrap_or(false));
        let window_days = block.get("window_days").and_then(positive_integer);
        BackfillPolicy {
            on_join,
            window_days,
        }
    }

    /// Whether backfill-on-join should run for this plugin.
    pub fn runs_on_join(&self) -> bool {
        self.on_join.unwrap_or(true)
    }
}

/// `config.capture` of one plugin entry, read leniently. The interval is
/// unscaled: the daemon applies `HYP_TIME_SCALE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturePolicy {
    /// Absent is on; a boolean is itself; any other value is off (a
    /// malformed opt-out fails closed).
    pub enabled: bool,
    /// `interval_seconds` when it is an integer in
    /// [`CAPTURE_INTERVAL_SECONDS`] (integral floats included), else
    /// [`DEFAULT_CAPTURE_INTERVAL`].
    pub interval: Duration,
}

impl Default for CapturePolicy {
    /// What a plugin without a `capture` block gets: sweeps every 300 s.
    fn default() -> CapturePolicy {
        CapturePolicy {
            enabled: true,
            interval: DEFAULT_CAPTURE_INTERVAL,
        }
    }
}

impl CapturePolicy {
    /// Read from a plugin entry's `config` (an object, or `Null` when
    /// absent). A `capture` block that is present but not an object (such
    /// as `"capture": false`) is a malformed opt-out and reads as disabled.
    pub fn read(plugin_config: &Value) -> CapturePolicy {
        let block = match plugin_config.get("capture") {
            None => return CapturePolicy::default(),
            Some(Value::Object(block)) => block,
            Some(_) => {
                return CapturePolicy {
                    enabled: false,
                    ..CapturePolicy::default()
                };
            }
        };
        let enabled = block
            .get("enabled")
            .is_none_or(|value| value.as_bool().unwrap_or(false));
        let interval = block
            .get("interval_seconds")
            .and_then(whole_number)
            .filter(|seconds| CAPTURE_INTERVAL_SECONDS.contains(seconds))
            .map_or(DEFAULT_CAPTURE_INTERVAL, Duration::from_secs);
        CapturePolicy { enabled, interval }
    }
}

/// An integer > 0, accepting integral floats (`30.0`) as the reference does.
fn positive_integer(value: &Value) -> Option<u64> {
    whole_number(value).filter(|int| *int > 0)
}

/// An integer >= 0 that fits a `u64`, integral floats included.
fn whole_number(value: &Value) -> Option<u64> {
    if let Some(int) = value.as_u64() {
        return Some(int);
    }
    let float = value.as_f64()?;
    (float.is_finite() && float >= 0.0 && float.fract() == 0.0 && float <= u64::MAX as f64)
        .then_some(float as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(config: Value) -> BackfillPolicy {
        BackfillPolicy::read(&config)
    }

    #[test]
    fn the_tri_state_of_on_join() {
        assert_eq!(read(Value::Null).on_join, None);
        assert_eq!(read(json!({})).on_join, None);
        assert_eq!(read(json!({"backfill": "yes"})).on_join, None);
        assert_eq!(read(json!({"backfill": {}})).on_join, None);
        assert_eq!(
            read(json!({"backfill": {"on_join": true}})).on_join,
            Some(true)
        );
        assert_eq!(
            read(json!({"backfill": {"on_join": false}})).on_join,
            Some(false)
        );
        assert_eq!(
            read(json!({"backfill": {"on_join": "false"}})).on_join,
            Some(false)
        );
        assert_eq!(
            read(json!({"backfill": {"on_join": null}})).on_join,
            Some(false)
        );
        assert!(read(json!({})).runs_on_join());
        assert!(!read(json!({"backfill": {"on_join": 1}})).runs_on_join());
    }

    #[test]
    fn window_days_counts_only_as_a_positive_integer() {
        let days = |value: Value| read(json!({"backfill": {"window_days": value}})).window_days;
        assert_eq!(days(json!(30)), Some(30));
        assert_eq!(days(json!(30.0)), Some(30));
        assert_eq!(days(json!(0)), None);
        assert_eq!(days(json!(-3)), None);
        assert_eq!(days(json!(1.5)), None);
        assert_eq!(days(json!("30")), None);
    }

    #[test]
    fn a_block_that_is_not_an_object_reads_as_absent() {
        for block in [json!(null), json!([]), json!(false), json!(5)] {
            let policy = read(json!({"backfill": block}));
            assert_eq!(policy, BackfillPolicy::default());
            assert!(policy.runs_on_join());
        }
        assert_eq!(
            BackfillPolicy::read(&json!("not an object")),
            BackfillPolicy::default()
        );
    }

    #[test]
    fn both_fields_are_read_independently() {
        let policy = read(json!({"backfill": {"on_join": false, "window_days": 14, "extra": 1}}));
        assert_eq!(
            policy,
            BackfillPolicy {
                on_join: Some(false),
                window_days: Some(14)
            }
        );
        assert!(!policy.runs_on_join());
        let policy = read(json!({"backfill": {"window_days": 2.5}, "attach": {"on_join": false}}));
        assert_eq!(policy.window_days, None);
        assert!(policy.runs_on_join());
        assert_eq!(
            read(json!({"backfill": {"window_days": 1e300}})).window_days,
            None,
            "beyond u64 does not count"
        );
    }

    fn capture(config: Value) -> CapturePolicy {
        CapturePolicy::read(&config)
    }

    #[test]
    fn capture_defaults_to_on_every_300_seconds() {
        let default = CapturePolicy {
            enabled: true,
            interval: Duration::from_secs(300),
        };
        assert_eq!(CapturePolicy::default(), default);
        assert_eq!(capture(Value::Null), default);
        assert_eq!(capture(json!({})), default);
        assert_eq!(capture(json!({"capture": {}})), default);
        assert_eq!(capture(json!({"backfill": {"on_join": false}})), default);
        assert_eq!(
            capture(json!("not an object")),
            default,
            "a config that is not an object has no capture block"
        );
    }

    #[test]
    fn capture_enabled_fails_closed() {
        let enabled = |value: Value| capture(json!({"capture": {"enabled": value}})).enabled;
        assert!(enabled(json!(true)));
        assert!(!enabled(json!(false)));
        for malformed in [json!("true"), json!(null), json!(1), json!([]), json!({})] {
            assert!(
                !enabled(malformed.clone()),
                "{malformed} should read as off"
            );
        }
    }

    #[test]
    fn a_capture_block_that_is_not_an_object_is_a_malformed_opt_out() {
        for block in [json!(false), json!(null), json!("off"), json!(0), json!([])] {
            let policy = capture(json!({"capture": block}));
            assert!(!policy.enabled, "{block} should read as off");
            assert_eq!(policy.interval, DEFAULT_CAPTURE_INTERVAL);
        }
    }

    #[test]
    fn capture_interval_counts_only_within_30_to_86400() {
        let interval =
            |value: Value| capture(json!({"capture": {"interval_seconds": value}})).interval;
        assert_eq!(interval(json!(30)), Duration::from_secs(30));
        assert_eq!(interval(json!(86_400)), Duration::from_secs(86_400));
        assert_eq!(interval(json!(600.0)), Duration::from_secs(600));
        assert_eq!(interval(json!(90)), Duration::from_secs(90));
        for ignored in [
            json!(29),
            json!(86_401),
            json!(0),
            json!(-60),
            json!(60.5),
            json!("60"),
            json!(true),
            json!(null),
            json!(1e300),
        ] {
            assert_eq!(
                interval(ignored.clone()),
                DEFAULT_CAPTURE_INTERVAL,
                "{ignored} should not count"
            );
        }
    }

    #[test]
    fn capture_fields_are_read_independently() {
        assert_eq!(
            capture(json!({"capture": {"enabled": false, "interval_seconds": 60, "extra": 1}})),
            CapturePolicy {
                enabled: false,
                interval: Duration::from_secs(60)
            }
        );
        assert_eq!(
            capture(json!({"capture": {"enabled": "no", "interval_seconds": 5}})),
            CapturePolicy {
                enabled: false,
                interval: DEFAULT_CAPTURE_INTERVAL
            }
        );
        assert_eq!(
            capture(json!({"capture": {"interval_seconds": 120}})),
            CapturePolicy {
                enabled: true,
                interval: Duration::from_secs(120)
            }
        );
    }
}
