//! The usage-policy gate: a session whose cwd resolves to `ignore` is not
//! imported. Two sources, the more restrictive wins: the nearest
//! `.hypignore` walking up from the cwd (first token of its body; empty or
//! unknown means `ignore`), and the machine-local list
//! `S/usage-policy/local-only.json` (longest matching dir wins).
//!
//! A present but malformed local list fails the provider: importing history
//! the person asked to keep out would be worse than importing nothing.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

/// A usage class, ordered from least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UsageClass {
    Full,
    LocalOnly,
    Ignore,
}

impl UsageClass {
    fn parse(text: &str) -> Option<UsageClass> {
        match text {
            "full" => Some(UsageClass::Full),
            "local-only" => Some(UsageClass::LocalOnly),
            "ignore" => Some(UsageClass::Ignore),
            _ => None,
        }
    }
}

/// The local list is present but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedList {
    pub path: PathBuf,
}

impl std::fmt::Display for MalformedList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "local-only list at '{}' is unreadable or malformed",
            self.path.display()
        )
    }
}

/// The gate for one run: the local list plus a per-cwd memo.
#[derive(Debug)]
pub struct UsagePolicy {
    entries: Vec<(PathBuf, UsageClass)>,
    memo: Mutex<HashMap<String, UsageClass>>,
}

impl UsagePolicy {
    /// Load the local list (`S/usage-policy/local-only.json`). Missing means
    /// empty; unreadable or malformed is an error.
    pub fn load(list_path: &Path) -> Result<UsagePolicy, MalformedList> {
        let malformed = || MalformedList {
            path: list_path.to_path_buf(),
        };
        let entries = match std::fs::read(list_path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(_) => return Err(malformed()),
            Ok(bytes) => parse_list(&bytes).ok_or_else(malformed)?,
        };
        Ok(UsagePolicy {
            entries,
            memo: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a session run in `cwd` must be left out.
    pub fn ignores(&self, cwd: &str) -> bool {
        self.class(cwd) == UsageClass::Ignore
    }

    /// The class of `cwd` (memoised per run): the forward sink withholds
    /// anything above `full`.
    pub fn class(&self, cwd: &str) -> UsageClass {
        if let Ok(memo) = self.memo.lock()
            && let Some(class) = memo.get(cwd)
        {
            return *class;
        }
        let class = self.resolve(cwd);
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(cwd.to_string(), class);
        }
        class
    }

    fn resolve(&self, cwd: &str) -> UsageClass {
        let dir = resolve_path(cwd);
        let from_file = hypignore_class(&dir);
        let from_list = self
            .entries
            .iter()
            .filter(|(entry, _)| dir.starts_with(entry))
            .max_by(|(a, class_a), (b, class_b)| {
                a.as_os_str()
                    .len()
                    .cmp(&b.as_os_str().len())
                    .then(class_a.cmp(class_b))
            })
            .map(|(_, class)| *class);
        from_file.max(from_list).unwrap_or(UsageClass::Full)
    }
}

fn parse_list(bytes: &[u8]) -> Option<Vec<(PathBuf, UsageClass)>> {
    let document: Value = serde_json::from_slice(bytes).ok()?;
    let object = document.as_object()?;
    match object.get("version").and_then(Value::as_i64) {
        Some(1) => object
            .get("dirs")?
            .as_array()?
            .iter()
            .map(|dir| Some((resolve_path(dir.as_str()?), UsageClass::LocalOnly)))
            .collect(),
        Some(2) => object
            .get("entries")?
            .as_array()?
            .iter()
            .map(|entry| {
                let dir = entry.get("dir")?.as_str()?;
                let class = UsageClass::parse(entry.get("class")?.as_str()?)?;
                Some((resolve_path(dir), class))
            })
            .collect(),
        _ => None,
    }
}

/// The nearest `.hypignore` at or above `dir`, read as a class.
fn hypignore_class(dir: &Path) -> Option<UsageClass> {
    for ancestor in dir.ancestors() {
        let candidate = ancestor.join(".hypignore");
        match std::fs::read_to_string(&candidate) {
            Ok(body) => return Some(class_from_body(&body)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) if candidate.exists() => return Some(UsageClass::Ignore),
            Err(_) => continue,
        }
    }
    None
}

/// First token after stripping comments; empty or unknown means `ignore`.
fn class_from_body(body: &str) -> UsageClass {
    let token = body
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .find(|line| !line.is_empty())
        .and_then(|line| line.split_whitespace().next());
    match token {
        Some("local-only") => UsageClass::LocalOnly,
        _ => UsageClass::Ignore,
    }
}

/// `path.resolve`: absolute against the process cwd, `.`/`..` removed.
fn resolve_path(path: &str) -> PathBuf {
    let raw = Path::new(path);
    let joined = if raw.is_absolute() {
        raw.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(raw)
    };
    let mut out = PathBuf::from("/");
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypignore_bodies_read_as_classes() {
        assert_eq!(class_from_body(""), UsageClass::Ignore);
        assert_eq!(class_from_body("# only a comment\n"), UsageClass::Ignore);
        assert_eq!(class_from_body("ignore\n"), UsageClass::Ignore);
        assert_eq!(
            class_from_body("# why\nlocal-only extra\n"),
            UsageClass::LocalOnly
        );
        assert_eq!(
            class_from_body("full"),
            UsageClass::Ignore,
            "unknown tokens ignore"
        );
    }

    #[test]
    fn the_nearest_hypignore_and_the_longest_list_entry_govern() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir_all(root.join("a/bc")).unwrap();
        std::fs::write(root.join("a/b/.hypignore"), "ignore\n").unwrap();
        let list = root.join("local-only.json");
        let policy = UsagePolicy::load(&list).unwrap();
        assert!(policy.ignores(&root.join("a/b/c").display().to_string()));
        assert!(!policy.ignores(&root.join("a/bc").display().to_string()));
        std::fs::write(
            &list,
            format!(
                r#"{{"version":2,"entries":[{{"dir":"{0}/a","class":"ignore"}},{{"dir":"{0}/a/bc","class":"full"}}]}}"#,
                root.display()
            ),
        )
        .unwrap();
        let policy = UsagePolicy::load(&list).unwrap();
        assert!(!policy.ignores(&root.join("a/bc").display().to_string()));
        assert!(policy.ignores(&root.join("a/x").display().to_string()));
        std::fs::write(&list, "{not json").unwrap();
        let err = UsagePolicy::load(&list).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "local-only list at '{}' is unreadable or malformed",
                list.display()
            )
        );
    }
}
