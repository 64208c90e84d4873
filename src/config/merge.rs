//! The merge of the central layer (authoritative) and the local layer
//! (additive), config.md §3.2-§3.3.
//!
//! Central entries come first and win whole; a local entry whose key central
//! uses is dropped (`collides_with_central`). The surviving local entries are
//! then added back one at a time, and each one that would add a new
//! cross-plugin error is dropped (`invalid_merge`, with the error kind as
//! `detail`). Errors the central layer carries on its own never cause a
//! drop, and boot never fails because of the local layer. `query` is
//! local-only. Entries are merged as raw JSON, so unknown keys inside an
//! entry survive into the effective document.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::validate::cross_plugin_errors;

/// The section a dropped local entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeSection {
    Plugins,
    Sinks,
    Disambiguate,
}

impl MergeSection {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeSection::Plugins => "plugins",
            MergeSection::Sinks => "sinks",
            MergeSection::Disambiguate => "disambiguate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    CollidesWithCentral,
    InvalidMerge,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::CollidesWithCentral => "collides_with_central",
            DropReason::InvalidMerge => "invalid_merge",
        }
    }
}

/// A local entry that is not applied: `{section, key, reason, detail?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedEntry {
    pub section: MergeSection,
    pub key: String,
    pub reason: DropReason,
    /// For `invalid_merge`: the kind of the first new error it caused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl DroppedEntry {
    /// For people: `plugins.@hypaware/ai-gateway (collides with central)`.
    pub fn describe(&self) -> String {
        let reason = self.reason.as_str().replace('_', " ");
        let detail = self
            .detail
            .as_deref()
            .map(|detail| format!(": {}", detail.replace('_', " ")))
            .unwrap_or_default();
        format!("{}.{} ({reason}{detail})", self.section.as_str(), self.key)
    }
}

/// The merged document and what the merge left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub document: Value,
    pub drops: Vec<DroppedEntry>,
    /// The central layer had a `query` block, which is ignored.
    pub central_query_ignored: bool,
}

/// Merge the layers that loaded. With no central layer the local document is
/// the result verbatim (or `{"version": 2}` when it is absent too).
pub fn merge_layers(central: Option<&Value>, local: Option<&Value>) -> Merged {
    let Some(central) = central else {
        return Merged {
            document: local.cloned().unwrap_or_else(|| json!({"version": 2})),
            drops: Vec::new(),
            central_query_ignored: false,
        };
    };
    let empty = Value::Object(Map::new());
    let local = local.unwrap_or(&empty);
    let mut drops = Vec::new();

    // §3.2: structural merge, remembering which local entries survive.
    let central_plugins = array(central, "plugins");
    let central_names: Vec<&str> = central_plugins.iter().filter_map(entry_name).collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    for entry in array(local, "plugins") {
        let Some(name) = entry_name(entry) else {
            continue;
        };
        if central_names.contains(&name) {
            drops.push(collision(MergeSection::Plugins, name));
        } else {
            candidates.push(Candidate::Plugin(name.to_string(), entry.clone()));
        }
    }
    for (section, key_of) in [
        (MergeSection::Sinks, "sinks"),
        (MergeSection::Disambiguate, "disambiguate"),
    ] {
        let central_keys = object(central, key_of);
        for (key, value) in object(local, key_of) {
            if central_keys.contains_key(key) {
                drops.push(collision(section, key));
            } else {
                candidates.push(Candidate::Keyed(section, key.clone(), value.clone()));
            }
        }
    }

    // §3.3: add the survivors back one by one against the central baseline.
    let mut current = Map::new();
    current.insert("version".into(), json!(2));
    current.insert("plugins".into(), Value::Array(central_plugins.to_vec()));
    current.insert(
        "sinks".into(),
        Value::Object(object(central, "sinks").clone()),
    );
    current.insert(
        "disambiguate".into(),
        Value::Object(object(central, "disambiguate").clone()),
    );
    if let Some(query) = local.get("query") {
        current.insert("query".into(), query.clone());
    }
    let mut baseline = signatures(&Value::Object(current.clone()));
    for candidate in candidates {
        let mut trial = current.clone();
        candidate.add_to(&mut trial);
        let trial_value = Value::Object(trial);
        let errors = cross_plugin_errors(&trial_value);
        let new_error = errors
            .iter()
            .find(|error| !baseline.contains(&signature(&error.kind, &error.pointer)));
        match new_error {
            Some(error) => drops.push(DroppedEntry {
                section: candidate.section(),
                key: candidate.key().to_string(),
                reason: DropReason::InvalidMerge,
                detail: Some(error.kind.clone()),
            }),
            None => {
                baseline = errors
                    .iter()
                    .map(|error| signature(&error.kind, &error.pointer))
                    .collect();
                if let Value::Object(accepted) = trial_value {
                    current = accepted;
                }
            }
        }
    }
    Merged {
        document: finish(current),
        drops,
        central_query_ignored: central.get("query").is_some(),
    }
}

/// A local entry that survived the structural merge, in add-back order.
enum Candidate {
    Plugin(String, Value),
    Keyed(MergeSection, String, Value),
}

impl Candidate {
    fn section(&self) -> MergeSection {
        match self {
            Candidate::Plugin(..) => MergeSection::Plugins,
            Candidate::Keyed(section, ..) => *section,
        }
    }

    fn key(&self) -> &str {
        match self {
            Candidate::Plugin(name, _) | Candidate::Keyed(_, name, _) => name,
        }
    }

    fn add_to(&self, document: &mut Map<String, Value>) {
        match self {
            Candidate::Plugin(_, entry) => {
                if let Some(Value::Array(plugins)) = document.get_mut("plugins") {
                    plugins.push(entry.clone());
                }
            }
            Candidate::Keyed(section, key, value) => {
                if let Some(Value::Object(map)) = document.get_mut(section.as_str()) {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
    }
}

fn collision(section: MergeSection, key: &str) -> DroppedEntry {
    DroppedEntry {
        section,
        key: key.to_string(),
        reason: DropReason::CollidesWithCentral,
        detail: None,
    }
}

/// `{version: 2}` plus each non-empty section, in schema order.
fn finish(mut current: Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("version".into(), json!(2));
    for key in ["plugins", "sinks", "query", "disambiguate"] {
        let Some(value) = current.remove(key) else {
            continue;
        };
        let empty = match &value {
            Value::Array(items) => items.is_empty(),
            Value::Object(map) => map.is_empty() && key != "query",
            _ => false,
        };
        if !empty {
            out.insert(key.into(), value);
        }
    }
    Value::Object(out)
}

fn signatures(document: &Value) -> Vec<String> {
    cross_plugin_errors(document)
        .iter()
        .map(|error| signature(&error.kind, &error.pointer))
        .collect()
}

fn signature(kind: &str, pointer: &str) -> String {
    format!("{kind} {pointer}")
}

fn entry_name(entry: &Value) -> Option<&str> {
    entry
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
}

fn array<'a>(document: &'a Value, key: &str) -> &'a [Value] {
    document
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn object<'a>(document: &'a Value, key: &str) -> &'a Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    document
        .get(key)
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop(
        section: MergeSection,
        key: &str,
        reason: DropReason,
        detail: Option<&str>,
    ) -> DroppedEntry {
        DroppedEntry {
            section,
            key: key.to_string(),
            reason,
            detail: detail.map(str::to_string),
        }
    }

    fn names(document: &Value) -> Vec<&str> {
        array(document, "plugins")
            .iter()
            .filter_map(entry_name)
            .collect()
    }

    #[test]
    fn without_central_the_local_layer_is_the_result_verbatim() {
        let local = json!({"version": 2, "plugins": [{"name": "@hypaware/claude", "x": 1}], "sinks": {},
                           "query": {"cache": {"dir": "/d"}}});
        let merged = merge_layers(None, Some(&local));
        assert_eq!(merged.document, local);
        assert!(merged.drops.is_empty());
        assert!(!merged.central_query_ignored);
        assert_eq!(merge_layers(None, None).document, json!({"version": 2}));
    }

    /// config.md §3.4, first example.
    #[test]
    fn central_wins_colliding_plugins_and_query_is_local_only() {
        let central = json!({"version": 2,
            "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/ai-gateway", "config": {"listen": "central"}}],
            "sinks": {"central": {"plugin": "@hypaware/central", "config": {"url": "https://c", "identity": {}}}},
            "query": {"cache": {"dir": "/operator/path"}}});
        let local = json!({"version": 2,
            "plugins": [{"name": "@hypaware/ai-gateway", "config": {"listen": "local"}}, {"name": "@hypaware/claude"}],
            "query": {"cache": {"dir": "/home/u/.hyp"}}});
        let merged = merge_layers(Some(&central), Some(&local));
        assert_eq!(
            merged.document,
            json!({"version": 2,
                "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/ai-gateway", "config": {"listen": "central"}},
                            {"name": "@hypaware/claude"}],
                "sinks": {"central": {"plugin": "@hypaware/central", "config": {"url": "https://c", "identity": {}}}},
                "query": {"cache": {"dir": "/home/u/.hyp"}}})
        );
        assert_eq!(
            merged.drops,
            [drop(
                MergeSection::Plugins,
                "@hypaware/ai-gateway",
                DropReason::CollidesWithCentral,
                None
            )]
        );
        assert!(merged.central_query_ignored);
        assert_eq!(
            merged.drops[0].describe(),
            "plugins.@hypaware/ai-gateway (collides with central)"
        );
    }

    /// config.md §3.4, invalid-merge example.
    #[test]
    fn a_local_entry_that_breaks_the_merge_is_dropped_invalid_merge() {
        let central = json!({"version": 2, "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/format-parquet"}]});
        let local = json!({"version": 2, "plugins": [{"name": "@hypaware/format-jsonl"}, {"name": "@hypaware/claude"}]});
        let merged = merge_layers(Some(&central), Some(&local));
        assert_eq!(
            names(&merged.document),
            [
                "@hypaware/central",
                "@hypaware/format-parquet",
                "@hypaware/claude"
            ]
        );
        assert_eq!(
            merged.drops,
            [drop(
                MergeSection::Plugins,
                "@hypaware/format-jsonl",
                DropReason::InvalidMerge,
                Some("capability_ambiguous")
            )]
        );
        assert_eq!(
            merged.drops[0].describe(),
            "plugins.@hypaware/format-jsonl (invalid merge: capability ambiguous)"
        );
        assert!(!merged.central_query_ignored);
    }

    /// The reference drops an unknown local plugin (`plugin_unknown`); here
    /// it is inert, so it is kept.
    #[test]
    fn an_unknown_local_plugin_is_kept() {
        let central = json!({"version": 2, "plugins": [{"name": "@hypaware/central"}]});
        let local = json!({"version": 2, "plugins": [{"name": "@acme/not-in-any-catalog"}]});
        let merged = merge_layers(Some(&central), Some(&local));
        assert_eq!(
            names(&merged.document),
            ["@hypaware/central", "@acme/not-in-any-catalog"]
        );
        assert!(merged.drops.is_empty());
    }

    #[test]
    fn errors_the_central_layer_carries_never_blame_local() {
        let central = json!({"version": 2, "plugins": [
            {"name": "@hypaware/central"}, {"name": "@hypaware/format-parquet"}, {"name": "@hypaware/format-jsonl"}]});
        let local = json!({"version": 2, "plugins": [{"name": "@hypaware/ai-gateway"}]});
        let merged = merge_layers(Some(&central), Some(&local));
        assert!(merged.drops.is_empty());
        assert_eq!(names(&merged.document).len(), 4);
    }

    #[test]
    fn a_duplicate_within_local_drops_the_later_entry() {
        let central = json!({"version": 2, "plugins": [{"name": "@hypaware/central"}]});
        let local = json!({"version": 2, "plugins": [
            {"name": "@hypaware/claude", "config": {"a": 1}}, {"name": "@hypaware/claude", "config": {"a": 2}}]});
        let merged = merge_layers(Some(&central), Some(&local));
        assert_eq!(
            merged.drops,
            [drop(
                MergeSection::Plugins,
                "@hypaware/claude",
                DropReason::InvalidMerge,
                Some("duplicate_plugin")
            )]
        );
        assert_eq!(merged.document["plugins"][1]["config"]["a"], 1);
    }

    #[test]
    fn sinks_and_disambiguate_merge_by_key() {
        let central = json!({"version": 2,
            "plugins": [{"name": "@hypaware/central"}],
            "sinks": {"central": {"plugin": "@hypaware/central"}},
            "disambiguate": {"hypaware.encoder": "@hypaware/format-parquet"}});
        let local = json!({"version": 2,
            "sinks": {
                "central": {"plugin": "@hypaware/webhook"},
                "hook": {"plugin": "@hypaware/webhook"},
                "bad": {"plugin": "@hypaware/claude"},
                "cron": {"plugin": "@hypaware/webhook", "config": {"schedule": "@hourly"}}
            },
            "disambiguate": {"hypaware.encoder": "@hypaware/format-jsonl", "hypaware.blob-store": "@hypaware/s3"}});
        let merged = merge_layers(Some(&central), Some(&local));
        assert_eq!(
            merged.drops,
            [
                drop(
                    MergeSection::Sinks,
                    "central",
                    DropReason::CollidesWithCentral,
                    None
                ),
                drop(
                    MergeSection::Disambiguate,
                    "hypaware.encoder",
                    DropReason::CollidesWithCentral,
                    None
                ),
                drop(
                    MergeSection::Sinks,
                    "bad",
                    DropReason::InvalidMerge,
                    Some("sink_pair_incompatible")
                ),
                drop(
                    MergeSection::Sinks,
                    "cron",
                    DropReason::InvalidMerge,
                    Some("sink_schedule_invalid")
                ),
            ]
        );
        let sinks: Vec<&String> = object(&merged.document, "sinks").keys().collect();
        assert_eq!(sinks, ["central", "hook"]);
        assert_eq!(
            merged.document["sinks"]["central"]["plugin"],
            "@hypaware/central"
        );
        assert_eq!(
            merged.document["disambiguate"],
            json!({"hypaware.encoder": "@hypaware/format-parquet", "hypaware.blob-store": "@hypaware/s3"})
        );
    }

    #[test]
    fn a_local_retention_dataset_is_judged_with_the_local_query() {
        let central = json!({"version": 2, "plugins": [{"name": "@hypaware/central"}]});
        let local = json!({"version": 2,
            "plugins": [{"name": "@hypaware/claude"}],
            "query": {"cache": {"retention": {"default_days": 5, "datasets": {"bogus": 1}}}}});
        let merged = merge_layers(Some(&central), Some(&local));
        assert!(
            merged.drops.is_empty(),
            "the query error is in the baseline"
        );
        assert_eq!(merged.document["query"], local["query"]);
    }

    #[test]
    fn empty_sections_are_omitted_and_a_missing_local_layer_is_fine() {
        let central = json!({"version": 2, "plugins": [], "sinks": {}});
        let merged = merge_layers(Some(&central), None);
        assert_eq!(merged.document, json!({"version": 2}));
        assert!(merged.drops.is_empty());
    }
}
