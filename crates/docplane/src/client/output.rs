//! Human tables and JSON output for the client subcommands.

use std::io::Write;

use serde_json::Value;

/// Writes `text` to standard output. A reader that went away (`docplane ... | head`) surfaces as an
/// `io::Error` of kind `BrokenPipe`, which `main` takes as a normal end instead of a panic (Rust
/// ignores SIGPIPE, and `print!` panics on a closed pipe).
pub fn out(text: &str) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())?;
    o.flush()
}

/// `println!` through [`out`]: the calling function must return a `Result` that takes an `io::Error`.
#[macro_export]
macro_rules! outln {
    () => { $crate::client::output::out("\n")? };
    ($($arg:tt)*) => { $crate::client::output::out(&format!("{}\n", format_args!($($arg)*)))? };
}

/// `print!` through [`out`].
#[macro_export]
macro_rules! outp {
    ($($arg:tt)*) => { $crate::client::output::out(&format!($($arg)*))? };
}

/// Whether an error is standard output closed by its reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints a JSON value as the API answered it.
pub fn json(value: &Value) -> anyhow::Result<()> {
    out(&(serde_json::to_string_pretty(value)? + "\n"))?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, unchanged, for scripts.
    Json,
}

/// Renders `rows` (JSON objects) as an aligned table with the given (header, JSON field) columns.
/// Strings print bare, absent fields as `-`, long values are cut at `max_width` characters.
pub fn table(columns: &[(&str, &str)], rows: &[Value], max_width: usize) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|(_, field)| cell(row.get(*field), max_width)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (head, _))| {
            cells.iter().map(|r| r[i].chars().count()).chain([head.len()]).max().unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, values: Vec<&str>| {
        let parts: Vec<String> =
            values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}", w = *w)).collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut out, columns.iter().map(|(h, _)| *h).collect());
    for row in &cells {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out
}

fn cell(value: Option<&Value>, max_width: usize) -> String {
    let text = match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let text = text.replace(['\n', '\t'], " ");
    if text.chars().count() > max_width {
        let cut: String = text.chars().take(max_width.saturating_sub(3)).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aligns_and_fills_missing() {
        let rows = vec![json!({"id": "1", "active": true}), json!({"id": "34631"})];
        let out = table(&[("ID", "id"), ("ACTIVE", "active")], &rows, 40);
        assert_eq!(out, "ID     ACTIVE\n1      true\n34631  -\n");
    }

    #[test]
    fn cuts_long_cells() {
        let rows = vec![json!({"op": "x".repeat(50)})];
        let out = table(&[("OP", "op")], &rows, 10);
        assert!(out.lines().nth(1).is_some_and(|l| l == "xxxxxxx..."), "{out}");
    }
}
