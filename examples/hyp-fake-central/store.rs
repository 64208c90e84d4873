//! The fake's disk, under `--data-dir`: the stored ingest bodies, the batch
//! ledger and the JWTs it issued. Only this module touches that directory.
//! Everything is append-only and read back at start, so a server killed and
//! restarted on the same directory still deduplicates and still knows the
//! credentials its clients hold ("central was down" is a kill and a restart).
//!
//! Layout:
//! - `ingest/<signal>.ndjson`: accepted bodies, verbatim, in acceptance order;
//! - `ingest/ledger.jsonl`: one [`LedgerLine`] per stored batch;
//! - `jwts.jsonl`: one [`JwtLine`] per issued JWT or `expire-tokens` call.
//!
//! A body is written before its ledger line, so a kill between the two
//! leaves bytes the ledger does not cover: they were never acknowledged, and
//! opening the store cuts them off again.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ingest::Signal;

/// One stored batch, as a line of `ingest/ledger.jsonl`.
#[derive(Serialize, Deserialize)]
struct LedgerLine {
    batch_id: String,
    gateway_id: String,
    signal: String,
    rows: u64,
    bytes: u64,
}

/// One line of `jwts.jsonl`: a JWT issued to a gateway, or every JWT issued
/// so far made unusable for anything but a refresh.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum JwtLine {
    Issued { jwt: String, gateway_id: String },
    ExpireAll { expire_all: bool },
}

/// A JWT read back from `jwts.jsonl`.
pub struct IssuedJwt {
    pub jwt: String,
    pub gateway_id: String,
    pub expired: bool,
}

/// What a previous run left: the totals of the ledger and the JWTs.
pub struct Loaded {
    pub stored_batches: u64,
    pub stored_rows: u64,
    pub issued: Vec<IssuedJwt>,
}

/// A batch to store: its body and what the ledger says about it.
pub struct Batch<'a> {
    pub gateway_id: &'a str,
    pub batch_id: &'a str,
    pub signal: Signal,
    pub rows: u64,
    pub body: &'a [u8],
}

pub enum Appended {
    Stored,
    /// The ledger already holds this batch id for this gateway.
    Duplicate,
}

/// An append-only file and its length, which is always at a body boundary.
struct Appender {
    file: File,
    len: u64,
}

impl Appender {
    fn open(path: &Path) -> io::Result<Appender> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(Appender { file, len })
    }

    /// Append `bytes` in one write; on failure cut the file back, so a torn
    /// write never sits in front of the next body.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(err) = self.file.write_all(bytes) {
            let _ = self.file.set_len(self.len);
            return Err(err);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }
}

pub struct Store {
    data_dir: PathBuf,
    signals: Vec<Appender>,
    ledger: Appender,
    /// (gateway id, batch id) of every stored batch.
    batches: HashSet<(String, String)>,
    jwts: Appender,
}

impl Store {
    /// Open (creating what is missing) the store under `data_dir` and read
    /// back what an earlier run left there.
    pub fn open(data_dir: &Path) -> Result<(Store, Loaded), String> {
        let ingest_dir = data_dir.join("ingest");
        std::fs::create_dir_all(&ingest_dir)
            .map_err(|err| format!("cannot create {}: {err}", ingest_dir.display()))?;
        let open = |path: PathBuf| {
            Appender::open(&path).map_err(|err| format!("cannot open {}: {err}", path.display()))
        };
        let mut signals = Vec::new();
        for signal in Signal::ALL {
            signals.push(open(signal_path(data_dir, signal))?);
        }
        let mut store = Store {
            data_dir: data_dir.to_path_buf(),
            signals,
            ledger: open(ingest_dir.join("ledger.jsonl"))?,
            batches: HashSet::new(),
            jwts: open(data_dir.join("jwts.jsonl"))?,
        };
        let (stored_batches, stored_rows) = store.load_ledger()?;
        let issued = store.load_jwts()?;
        Ok((
            store,
            Loaded {
                stored_batches,
                stored_rows,
                issued,
            },
        ))
    }

    /// Fill the batch set from the ledger and cut each signal file back to
    /// the bytes the ledger covers. Returns the stored batches and rows.
    fn load_ledger(&mut self) -> Result<(u64, u64), String> {
        let path = self.data_dir.join("ingest/ledger.jsonl");
        let lines: Vec<LedgerLine> = read_lines(&path, &mut self.ledger)?;
        let mut covered = vec![0u64; Signal::ALL.len()];
        let mut rows = 0;
        for line in &lines {
            let signal = Signal::parse(&line.signal)
                .ok_or_else(|| format!("{}: unknown signal {:?}", path.display(), line.signal))?;
            covered[signal as usize] += line.bytes;
            rows += line.rows;
            self.batches
                .insert((line.gateway_id.clone(), line.batch_id.clone()));
        }
        for signal in Signal::ALL {
            let file = &mut self.signals[signal as usize];
            let want = covered[signal as usize];
            let signal_path = signal_path(&self.data_dir, signal);
            if file.len < want {
                return Err(format!(
                    "{} holds {} bytes but its ledger covers {want}",
                    signal_path.display(),
                    file.len
                ));
            }
            if file.len > want {
                eprintln!(
                    "hyp-fake-central: {}: dropping {} bytes no ledger line covers (never acknowledged)",
                    signal_path.display(),
                    file.len - want
                );
                file.truncate(want)
                    .map_err(|err| format!("cannot truncate {}: {err}", signal_path.display()))?;
            }
        }
        Ok((lines.len() as u64, rows))
    }

    fn load_jwts(&mut self) -> Result<Vec<IssuedJwt>, String> {
        let path = self.data_dir.join("jwts.jsonl");
        let mut issued: Vec<IssuedJwt> = Vec::new();
        for line in read_lines::<JwtLine>(&path, &mut self.jwts)? {
            match line {
                JwtLine::Issued { jwt, gateway_id } => issued.push(IssuedJwt {
                    jwt,
                    gateway_id,
                    expired: false,
                }),
                JwtLine::ExpireAll { .. } => {
                    for earlier in &mut issued {
                        earlier.expired = true;
                    }
                }
            }
        }
        Ok(issued)
    }

    /// Store `batch` unless the ledger already has its id for its gateway.
    /// The body and the ledger line are both written when this returns.
    pub fn append(&mut self, batch: &Batch) -> io::Result<Appended> {
        let key = (batch.gateway_id.to_string(), batch.batch_id.to_string());
        if self.batches.contains(&key) {
            return Ok(Appended::Duplicate);
        }
        let line = LedgerLine {
            batch_id: key.1.clone(),
            gateway_id: key.0.clone(),
            signal: batch.signal.as_str().to_string(),
            rows: batch.rows,
            bytes: batch.body.len() as u64,
        };
        let mut line = serde_json::to_vec(&line).map_err(io::Error::other)?;
        line.push(b'\n');
        let file = &mut self.signals[batch.signal as usize];
        let before = file.len;
        file.append(batch.body)?;
        if let Err(err) = self.ledger.append(&line) {
            let _ = file.truncate(before);
            return Err(err);
        }
        self.batches.insert(key);
        Ok(Appended::Stored)
    }

    /// A fresh handle on `signal`'s file and its current length: read that
    /// many bytes for a snapshot that ends at a body boundary.
    pub fn rows(&self, signal: Signal) -> io::Result<(File, u64)> {
        let file = File::open(signal_path(&self.data_dir, signal))?;
        Ok((file, self.signals[signal as usize].len))
    }

    /// Forget every stored batch: empty files, empty ledger.
    pub fn clear(&mut self) -> io::Result<()> {
        for file in &mut self.signals {
            file.truncate(0)?;
        }
        self.ledger.truncate(0)?;
        self.batches.clear();
        Ok(())
    }

    pub fn log_issued(&mut self, jwt: &str, gateway_id: &str) -> io::Result<()> {
        self.log_jwt_line(&JwtLine::Issued {
            jwt: jwt.to_string(),
            gateway_id: gateway_id.to_string(),
        })
    }

    pub fn log_expire_all(&mut self) -> io::Result<()> {
        self.log_jwt_line(&JwtLine::ExpireAll { expire_all: true })
    }

    fn log_jwt_line(&mut self, line: &JwtLine) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        self.jwts.append(&bytes)
    }
}

fn signal_path(data_dir: &Path, signal: Signal) -> PathBuf {
    data_dir
        .join("ingest")
        .join(format!("{}.ndjson", signal.as_str()))
}

/// Every complete line of a JSON-lines file. A last line without its `\n`
/// is a write the kill of an earlier run cut short: it is cut off the file.
fn read_lines<T: for<'de> Deserialize<'de>>(
    path: &Path,
    appender: &mut Appender,
) -> Result<Vec<T>, String> {
    let mut text = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut text))
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let complete = text
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |at| at + 1);
    if complete < text.len() {
        eprintln!(
            "hyp-fake-central: {}: dropping a torn last line",
            path.display()
        );
        appender
            .truncate(complete as u64)
            .map_err(|err| format!("cannot truncate {}: {err}", path.display()))?;
    }
    text[..complete]
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_slice(line)
                .map_err(|err| format!("{} line {}: {err}", path.display(), index + 1))
        })
        .collect()
}
