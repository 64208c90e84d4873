//! The one reader of a plugin's `backfill` policy, shared by the reconciler
//! and status so the two can never disagree.

use serde_json::Value;

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

/// An integer > 0, accepting integral floats (`30.0`) as the reference does.
fn positive_integer(value: &Value) -> Option<u64> {
    if let Some(int) = value.as_u64() {
        return (int > 0).then_some(int);
    }
    let float = value.as_f64()?;
    (float.is_finite() && float > 0.0 && float.fract() == 0.0 && float <= u64::MAX as f64)
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
}
