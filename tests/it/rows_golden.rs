//! Issue 15.4: the rows do not change. Every column of every row that `hyp
//! backfill` writes, from the project's own generated history and from the
//! real transcripts of `../shared/differential-data` (where that folder is
//! present), compared with digests of the rows written by the build just
//! before the speed work was merged (`tests/golden/*.digests`).
//!
//! A digest file has one line per row, `<part_id>\t<digest of the row>`, so a
//! failure names the rows that changed. To write one from another build:
//! `HYP_GOLDEN_WRITE=1 HYP_GOLDEN_BIN=/path/to/old/hyp cargo test --test it
//! rows_golden`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use crate::support::TestEnv;

/// The generated history: fixed seed and anchor, so the files (and the rows)
/// are the same on every machine and every day.
const GENERATED_ARGS: &[&str] = &["--preset", "small", "--seed", "7", "--anchor", "2026-11-30"];

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.digests"))
}

/// The binary that imports: this build, or `HYP_GOLDEN_BIN` when writing
/// digests from another.
fn importer() -> PathBuf {
    std::env::var_os("HYP_GOLDEN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hyp")))
}

/// Import every line of both providers, whatever its age.
fn import(env: &TestEnv) {
    let output = env
        .command_of(&importer(), crate::corpus::IMPORT_EVERY_LINE)
        .output()
        .expect("run hyp backfill");
    assert!(
        output.status.success(),
        "hyp backfill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One cell, typed so that no two different values print alike; text with
/// the machine's own paths (`roots`) replaced by their placeholders.
fn cell(value: ValueRef<'_>, roots: &[(String, &str)]) -> String {
    match value {
        ValueRef::Null => "N".to_string(),
        ValueRef::Integer(value) => format!("i:{value}"),
        ValueRef::Real(value) => format!("r:{value:?}"),
        ValueRef::Blob(bytes) => format!("b:{}", hyp::hex::hex(bytes)),
        ValueRef::Text(bytes) => {
            let mut text = String::from_utf8_lossy(bytes).into_owned();
            for (root, placeholder) in roots {
                text = text.replace(root.as_str(), placeholder);
            }
            format!(
                "t:{}",
                serde_json::Value::String(without_path_hashes(&text))
            )
        }
    }
}

/// `attributes.gateway.source_path_hash` is a hash of the file's absolute
/// path, which is the test's temporary directory: its value is masked (its
/// computation has the reference's test vectors as unit tests).
fn without_path_hashes(text: &str) -> String {
    const KEY: &str = "\"source_path_hash\":\"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        out.push_str(head);
        let hash_len = tail.find('"').unwrap_or(tail.len());
        out.push_str("<HASH>");
        rest = &tail[hash_len..];
    }
    out.push_str(rest);
    out
}

/// part_id -> digest of the row's every column, in declared order; the
/// column names are the first entry (key "").
fn digests(db: &Path, roots: &[(String, &str)]) -> BTreeMap<String, String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the cache");
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('ai_gateway_messages')")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .expect("the cache's columns");
    let part_id = columns
        .iter()
        .position(|name| name == "part_id")
        .expect("a part_id column");
    let mut out = BTreeMap::new();
    out.insert(String::new(), short_digest(&columns.join("\t")));
    let sql = format!("SELECT {} FROM ai_gateway_messages", columns.join(", "));
    let mut statement = conn.prepare(&sql).expect("prepare the dump");
    let mut rows = statement.query([]).expect("run the dump");
    while let Some(row) = rows.next().expect("a row") {
        let cells: Vec<String> = (0..columns.len())
            .map(|index| cell(row.get_ref(index).expect("a cell"), roots))
            .collect();
        let key: String = row.get(part_id).expect("part_id text");
        out.insert(key, short_digest(&cells.join("\t")));
    }
    out
}

fn short_digest(line: &str) -> String {
    hyp::hex::hex(&Sha256::digest(line.as_bytes())[..12])
}

fn render(digests: &BTreeMap<String, String>) -> String {
    digests
        .iter()
        .map(|(part_id, digest)| format!("{part_id}\t{digest}\n"))
        .collect()
}

/// Compare with the golden file, or write it under `HYP_GOLDEN_WRITE=1`.
fn check(name: &str, digests: &BTreeMap<String, String>) {
    let path = golden_path(name);
    if std::env::var_os("HYP_GOLDEN_WRITE").is_some() {
        std::fs::create_dir_all(path.parent().expect("tests/golden")).expect("mkdir");
        std::fs::write(&path, render(digests)).expect("write the digests");
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let golden: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(part_id, digest)| (part_id.to_string(), digest.to_string()))
        .collect();
    if &golden == digests {
        return;
    }
    let mut problems = Vec::new();
    if golden.get("") != digests.get("") {
        problems.push("the columns differ".to_string());
    }
    for (part_id, digest) in digests.iter().filter(|(key, _)| !key.is_empty()) {
        match golden.get(part_id) {
            None => problems.push(format!("new row {part_id}")),
            Some(old) if old != digest => problems.push(format!("changed row {part_id}")),
            Some(_) => {}
        }
    }
    for part_id in golden
        .keys()
        .filter(|key| !key.is_empty() && !digests.contains_key(*key))
    {
        problems.push(format!("missing row {part_id}"));
    }
    let shown: Vec<&String> = problems.iter().take(20).collect();
    panic!(
        "{name}: {} of {} rows differ from {} (first 20): {shown:#?}",
        problems.len(),
        golden.len().saturating_sub(1),
        path.display()
    );
}

#[test]
fn path_hashes_are_masked_and_nothing_else() {
    assert_eq!(
        without_path_hashes(r#"{"a":1,"source_path_hash":"fecc803968e3c0d2","b":"x"}"#),
        r#"{"a":1,"source_path_hash":"<HASH>","b":"x"}"#
    );
    assert_eq!(without_path_hashes("no hash"), "no hash");
}

#[test]
fn generated_history_imports_to_the_same_rows_as_before() {
    let mut env = TestEnv::new();
    let (corpus, _) = crate::corpus::generated_corpus(&mut env, GENERATED_ARGS);
    env.set_var("HYP_NO_GIT", "1");
    import(&env);
    let roots = [
        (corpus.display().to_string(), "<CORPUS>"),
        (env.root().display().to_string(), "<TMP>"),
    ];
    let digests = digests(&env.state_root().join("cache/cache.db"), &roots);
    assert!(
        digests.len() > 1000,
        "the small corpus has rows: {}",
        digests.len()
    );
    check("generated-small", &digests);
}

#[test]
fn real_transcripts_import_to_the_same_rows_as_before() {
    let Some((mut env, data)) = crate::corpus::differential_env("rows_golden: real transcripts")
    else {
        return;
    };
    env.set_var("HYP_NO_GIT", "1");
    import(&env);
    let canonical = std::fs::canonicalize(&data).unwrap_or_else(|_| data.clone());
    let roots = [
        (data.display().to_string(), "<DATA>"),
        (canonical.display().to_string(), "<DATA>"),
        (env.root().display().to_string(), "<TMP>"),
    ];
    let digests = digests(&env.state_root().join("cache/cache.db"), &roots);
    check("differential-data", &digests);
}
