//! Human tables and JSON output for the client subcommands.

use serde_json::Value;

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
