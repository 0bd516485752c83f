//! What the CLI prints: tables for people, JSON for scripts (`--json`: the server's answer as it
//! came, or a structured equivalent where the command combines several answers).

use comfy_table::{Table, presets};
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// `--json`: `value`, pretty; otherwise `human()`.
    pub fn print(&self, value: &Value, human: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
            );
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }
}

/// An ASCII table: one `|`-separated line per row, after the header and a `+===+` rule.
pub fn table<S: ToString>(header: &[&str], rows: impl IntoIterator<Item = Vec<S>>) -> String {
    let mut t = Table::new();
    t.load_style(presets::ASCII_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    for row in rows {
        t.add_row(row.into_iter().map(|c| c.to_string()).collect::<Vec<_>>());
    }
    t.to_string()
}

/// A JSON scalar as a table cell: strings bare, `null` as `-`.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "-".to_string(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => placement(other),
    }
}

/// `{"Attached": 1}` as `Attached(1)`; other values as JSON.
pub fn placement(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next().expect("one entry");
            format!("{k}({})", cell(Some(inner)))
        }
        other => other.to_string(),
    }
}

/// The planned moves of a dry run (`DryRunResponse`), as a table.
pub fn moves(value: &Value) -> String {
    let moves = value["moves"].as_array().cloned().unwrap_or_default();
    if moves.is_empty() {
        return "dry run: nothing would move".to_string();
    }
    let rows = moves.iter().map(|m| {
        vec![
            cell(m.get("tenant_shard_id")),
            cell(m.get("from")),
            cell(m.get("to")),
            cell(m.get("note")),
        ]
    });
    format!(
        "dry run: {} move(s), nothing changed\n{}",
        moves.len(),
        table(&["Shard", "From", "To", "Note"], rows)
    )
}
