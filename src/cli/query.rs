//! `hyp query sql "<SQL>" [--format tsv|csv|json|ndjson] [--json]`:
//! read-only SQL over the cache, streamed. Each row is written to a
//! buffered stdout as SQLite hands it over and nothing is kept, so memory
//! stays flat whatever the size of the result.
//!
//! Formats: `tsv` (the default: a header line, tab-separated values, NULL
//! empty, `\`, tab, CR and newline escaped so a row stays one line), `csv`
//! (RFC 4180: header, CRLF line ends, a field quoted when it holds a comma,
//! a quote, CR or LF; NULL empty and an empty string `""`), `json` (one
//! array of row objects, one object per line) and `ndjson` (one object per
//! line, no array). `--json` is `--format json`. Blobs print as lowercase
//! hex in every format. SIGINT / SIGTERM stop a running statement: rows
//! already printed stay, `hyp query sql: interrupted`, exit 130 / 143.

use std::borrow::Cow;
use std::io::{self, Write};

use clap::{Args, Subcommand, ValueEnum};

use crate::cache::query::{Cell, QueryError, RowSink, stream_sql};
use crate::cli::interrupt::Interrupt;
use crate::cli::{CliError, Code, output};
use crate::paths::Paths;

#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct QueryArgs {
    #[command(subcommand)]
    pub command: QueryCommand,
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Run one read-only SQL statement on the cache (table ai_gateway_messages)
    Sql(SqlArgs),
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The statement, e.g. "SELECT role, count(*) FROM ai_gateway_messages GROUP BY role"
    pub sql: String,
    /// How rows are printed; rows stream out as they are read
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Tsv)]
    pub format: Format,
    /// Print a JSON array of row objects (same as --format json)
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// The shapes `hyp query sql` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A header line, then tab-separated values (escaped so a row is one line)
    Tsv,
    /// RFC 4180 comma-separated values with a header record
    Csv,
    /// One JSON array of row objects
    Json,
    /// One JSON object per line
    Ndjson,
}

pub fn run(args: QueryArgs) -> Result<Code, CliError> {
    match args.command {
        QueryCommand::Sql(sql) => run_sql_command(sql),
    }
}

fn run_sql_command(args: SqlArgs) -> Result<Code, CliError> {
    if args.sql.trim().is_empty() {
        return Err(CliError::usage("missing required <SQL>"));
    }
    let format = if args.json { Format::Json } else { args.format };
    let paths = Paths::from_env()?;
    let interrupt = Interrupt::install().map_err(|err| CliError::failed(err.to_string()))?;
    let mut stdout = output::stdout_buffered();
    let res = stream_sql(
        &paths.cache_db(),
        &args.sql,
        &mut *sink_for(format, &mut stdout),
        interrupt.shared_flag(),
    );
    if let Some(signal) = interrupt.received() {
        // Rows already printed stay printed, as after any other error.
        let _ = stdout.flush();
        return Err(CliError::Failed {
            message: "interrupted".into(),
            code: signal.code(),
        });
    }
    match res {
        Ok(_) => output::finish_stdout(stdout.flush())?,
        Err(QueryError::Write(err)) => output::finish_stdout(Err(err))?,
        Err(QueryError::Cache(err)) => {
            // Rows already printed stay printed; the error says why the
            // rest is missing.
            let _ = stdout.flush();
            return Err(CliError::failed(err.to_string()));
        }
    }
    Ok(Code::Ok)
}

fn sink_for<'a, W: Write>(format: Format, out: &'a mut W) -> Box<dyn RowSink + 'a> {
    match format {
        Format::Tsv => Box::new(Tsv { out }),
        Format::Csv => Box::new(Csv { out }),
        Format::Json => Box::new(JsonRows::new(out, JsonShape::Array)),
        Format::Ndjson => Box::new(JsonRows::new(out, JsonShape::Lines)),
    }
}

/// Tab-separated text; NULL is empty.
struct Tsv<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> RowSink for Tsv<'_, W> {
    fn columns(&mut self, names: &[&str]) -> io::Result<()> {
        for (index, name) in names.iter().enumerate() {
            if index > 0 {
                self.out.write_all(b"\t")?;
            }
            self.out.write_all(tsv_escape(name).as_bytes())?;
        }
        self.out.write_all(b"\n")
    }

    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                self.out.write_all(b"\t")?;
            }
            match cell {
                Cell::Null => {}
                Cell::Integer(value) => write!(self.out, "{value}")?,
                Cell::Real(value) => write!(self.out, "{value}")?,
                Cell::Text(bytes) => {
                    self.out
                        .write_all(tsv_escape(&String::from_utf8_lossy(bytes)).as_bytes())?;
                }
                Cell::Blob(bytes) => write_hex(self.out, bytes)?,
            }
        }
        self.out.write_all(b"\n")
    }

    fn end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `\`, tab, newline and CR escaped so a value never breaks its row.
fn tsv_escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['\\', '\t', '\n', '\r']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r"),
    )
}

/// RFC 4180: CRLF after every record, the header included.
struct Csv<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> RowSink for Csv<'_, W> {
    fn columns(&mut self, names: &[&str]) -> io::Result<()> {
        for (index, name) in names.iter().enumerate() {
            if index > 0 {
                self.out.write_all(b",")?;
            }
            write_csv_text(self.out, name)?;
        }
        self.out.write_all(b"\r\n")
    }

    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                self.out.write_all(b",")?;
            }
            match cell {
                Cell::Null => {}
                Cell::Integer(value) => write!(self.out, "{value}")?,
                Cell::Real(value) => write!(self.out, "{value}")?,
                Cell::Text(bytes) => write_csv_text(self.out, &String::from_utf8_lossy(bytes))?,
                Cell::Blob(bytes) => write_hex(self.out, bytes)?,
            }
        }
        self.out.write_all(b"\r\n")
    }

    fn end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A field quoted (inner quotes doubled) when it holds a comma, a quote,
/// CR or LF, or is empty: `""` keeps an empty string apart from NULL.
fn write_csv_text(out: &mut impl Write, text: &str) -> io::Result<()> {
    if !text.is_empty() && !text.contains([',', '"', '\r', '\n']) {
        return out.write_all(text.as_bytes());
    }
    out.write_all(b"\"")?;
    out.write_all(text.replace('"', "\"\"").as_bytes())?;
    out.write_all(b"\"")
}

fn write_hex(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pair = [0u8; 2];
    for byte in bytes {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
        out.write_all(&pair)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonShape {
    /// `[`, one object per line separated by `,`, `]`.
    Array,
    /// One object per line.
    Lines,
}

/// Row objects keyed by column name, in column order. A name given twice
/// keeps its first place and its last value (as a JSON object built key by
/// key would), so every object has unique keys.
struct JsonRows<'a, W: Write> {
    out: &'a mut W,
    shape: JsonShape,
    /// Each key, already encoded as `"name":`, and the column it takes.
    keys: Vec<(Vec<u8>, usize)>,
    n_rows: u64,
}

impl<'a, W: Write> JsonRows<'a, W> {
    fn new(out: &'a mut W, shape: JsonShape) -> JsonRows<'a, W> {
        JsonRows {
            out,
            shape,
            keys: Vec::new(),
            n_rows: 0,
        }
    }
}

impl<W: Write> RowSink for JsonRows<'_, W> {
    fn columns(&mut self, names: &[&str]) -> io::Result<()> {
        for (index, name) in names.iter().enumerate() {
            let last = names
                .iter()
                .rposition(|other| other == name)
                .unwrap_or(index);
            if names[..index].contains(name) {
                continue;
            }
            let mut key = serde_json::to_vec(name).map_err(io::Error::other)?;
            key.push(b':');
            self.keys.push((key, last));
        }
        Ok(())
    }

    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        let separator: &[u8] = match (self.shape, self.n_rows) {
            (JsonShape::Array, 0) => b"[\n",
            (JsonShape::Array, _) => b",\n",
            (JsonShape::Lines, _) => b"",
        };
        self.out.write_all(separator)?;
        self.out.write_all(b"{")?;
        for (index, (key, column)) in self.keys.iter().enumerate() {
            if index > 0 {
                self.out.write_all(b",")?;
            }
            self.out.write_all(key)?;
            write_json_cell(self.out, &cells[*column])?;
        }
        self.out.write_all(b"}")?;
        if self.shape == JsonShape::Lines {
            self.out.write_all(b"\n")?;
        }
        self.n_rows += 1;
        Ok(())
    }

    fn end(&mut self) -> io::Result<()> {
        match (self.shape, self.n_rows) {
            (JsonShape::Array, 0) => self.out.write_all(b"[]\n"),
            (JsonShape::Array, _) => self.out.write_all(b"\n]\n"),
            (JsonShape::Lines, _) => Ok(()),
        }
    }
}

/// NULL is `null`, a non-finite real `null`, a blob its hex as a string.
fn write_json_cell(out: &mut impl Write, cell: &Cell<'_>) -> io::Result<()> {
    match cell {
        Cell::Null => out.write_all(b"null"),
        Cell::Integer(value) => write!(out, "{value}"),
        Cell::Real(value) => serde_json::to_writer(&mut *out, value).map_err(io::Error::from),
        Cell::Text(bytes) => serde_json::to_writer(&mut *out, &String::from_utf8_lossy(bytes))
            .map_err(io::Error::from),
        Cell::Blob(bytes) => {
            out.write_all(b"\"")?;
            write_hex(out, bytes)?;
            out.write_all(b"\"")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result through a format's sink, as the bytes it writes.
    fn render(format: Format, columns: &[&str], rows: &[Vec<Cell<'_>>]) -> String {
        let mut out = Vec::new();
        {
            let mut sink = sink_for(format, &mut out);
            sink.columns(columns).unwrap();
            for row in rows {
                sink.row(row).unwrap();
            }
            sink.end().unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    fn sample() -> Vec<Vec<Cell<'static>>> {
        vec![
            vec![Cell::Text(b"x\ty\nz"), Cell::Null],
            vec![Cell::Integer(3), Cell::Real(1.5)],
            vec![Cell::Text(b"a,\"b\""), Cell::Blob(&[0xca, 0xfe])],
            vec![Cell::Text(b""), Cell::Real(f64::NAN)],
        ]
    }

    #[test]
    fn each_format_writes_its_bytes() {
        let rows = sample();
        assert_eq!(
            render(Format::Tsv, &["a", "b"], &rows),
            "a\tb\nx\\ty\\nz\t\n3\t1.5\na,\"b\"\tcafe\n\tNaN\n"
        );
        assert_eq!(
            render(Format::Csv, &["a", "b"], &rows),
            "a,b\r\n\"x\ty\nz\",\r\n3,1.5\r\n\"a,\"\"b\"\"\",cafe\r\n\"\",NaN\r\n"
        );
        assert_eq!(
            render(Format::Json, &["a", "b"], &rows),
            "[\n{\"a\":\"x\\ty\\nz\",\"b\":null},\n{\"a\":3,\"b\":1.5},\n{\"a\":\"a,\\\"b\\\"\",\"b\":\"cafe\"},\n{\"a\":\"\",\"b\":null}\n]\n"
        );
        assert_eq!(
            render(Format::Ndjson, &["a", "b"], &rows),
            "{\"a\":\"x\\ty\\nz\",\"b\":null}\n{\"a\":3,\"b\":1.5}\n{\"a\":\"a,\\\"b\\\"\",\"b\":\"cafe\"}\n{\"a\":\"\",\"b\":null}\n"
        );
    }

    #[test]
    fn empty_results_keep_their_shape() {
        assert_eq!(render(Format::Tsv, &["a"], &[]), "a\n");
        assert_eq!(render(Format::Csv, &["a"], &[]), "a\r\n");
        assert_eq!(render(Format::Json, &["a"], &[]), "[]\n");
        assert_eq!(render(Format::Ndjson, &["a"], &[]), "");
    }

    #[test]
    fn a_repeated_column_name_keeps_one_key() {
        let rows = vec![vec![Cell::Integer(1), Cell::Integer(2), Cell::Integer(3)]];
        assert_eq!(
            render(Format::Ndjson, &["a", "b", "a"], &rows),
            "{\"a\":3,\"b\":2}\n"
        );
        let parsed: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &["a", "b", "a"], &rows)).unwrap();
        assert_eq!(parsed, serde_json::json!([{"a": 3, "b": 2}]));
    }

    #[test]
    fn invalid_utf8_text_is_replaced_not_fatal() {
        let rows = vec![vec![Cell::Text(b"ok\xff")]];
        assert_eq!(
            render(Format::Ndjson, &["t"], &rows),
            "{\"t\":\"ok\u{fffd}\"}\n"
        );
    }
}
