//! `hyp query sql "<SQL>" [--json]`: read-only SQL over the cache, printed
//! as a header plus tab-separated rows, or as a JSON array of row objects.
//! SIGINT / SIGTERM interrupt a running statement: nothing is printed on
//! stdout and the exit is 130 / 143.

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use crate::cache::query::{Cell, QueryResult, run_sql};
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
    /// Print a JSON array of row objects
    #[arg(long)]
    pub json: bool,
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
    let paths = Paths::from_env()?;
    let interrupt = Interrupt::install().map_err(|err| CliError::failed(err.to_string()))?;
    let outcome = run_sql(&paths.cache_db(), &args.sql, interrupt.shared_flag());
    if let Some(signal) = interrupt.received() {
        return Err(CliError::Failed {
            message: "interrupted".into(),
            code: signal.code(),
        });
    }
    let result = outcome.map_err(|err| CliError::failed(err.to_string()))?;
    if args.json {
        output::stdout_json(&json_rows(&result))?;
    } else {
        output::stdout_text(&tsv(&result))?;
    }
    Ok(Code::Ok)
}

fn json_rows(result: &QueryResult) -> Value {
    let rows = result
        .rows
        .iter()
        .map(|row| {
            let mut object = Map::new();
            for (name, cell) in result.columns.iter().zip(row) {
                let value = match cell {
                    Cell::Null => Value::Null,
                    Cell::Integer(value) => Value::from(*value),
                    Cell::Real(value) => {
                        serde_json::Number::from_f64(*value).map_or(Value::Null, Value::Number)
                    }
                    Cell::Text(text) | Cell::Blob(text) => Value::String(text.clone()),
                };
                object.insert(name.clone(), value);
            }
            Value::Object(object)
        })
        .collect();
    Value::Array(rows)
}

/// Tab-separated text; NULL is empty, and `\`, tab, newline and CR inside a
/// value are escaped so every row stays one line.
fn tsv(result: &QueryResult) -> String {
    let mut text = result.columns.join("\t");
    text.push('\n');
    for row in &result.rows {
        let cells: Vec<String> = row
            .iter()
            .map(|cell| match cell {
                Cell::Null => String::new(),
                Cell::Integer(value) => value.to_string(),
                Cell::Real(value) => value.to_string(),
                Cell::Text(text) | Cell::Blob(text) => escape(text),
            })
            .collect();
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    text
}

fn escape(text: &str) -> String {
    if !text.contains(['\\', '\t', '\n', '\r']) {
        return text.to_string();
    }
    text.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_output_is_one_line_per_row() {
        let result = QueryResult {
            columns: vec!["a".into(), "b".into()],
            rows: vec![
                vec![Cell::Text("x\ty\nz".into()), Cell::Null],
                vec![Cell::Integer(3), Cell::Real(1.5)],
            ],
        };
        assert_eq!(tsv(&result), "a\tb\nx\\ty\\nz\t\n3\t1.5\n");
        assert_eq!(
            json_rows(&result).to_string(),
            r#"[{"a":"x\ty\nz","b":null},{"a":3,"b":1.5}]"#
        );
    }
}
