//! The rows of `docs/fidelity.md`, compiled in, so that a difference found by `testbed parity`
//! names the behaviours it touches: every row whose check column names the scenario.

use crate::markdown;

/// `docs/fidelity.md` as this build knows it.
pub const FIDELITY_TABLE: &str = include_str!("../../../../docs/fidelity.md");

/// One row of a fidelity table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The heading the table stands under (`Token endpoint`).
    pub section: String,
    /// The first column (`endpoint` or `piece`), `same` resolved to the row above's.
    pub endpoint: String,
    /// The `case` column.
    pub case: String,
    /// The scenario ids and tests of the `check` column.
    pub checks: Vec<String>,
}

impl Row {
    /// `section › endpoint › case`, code spans unquoted.
    pub fn title(&self) -> String {
        let mut parts = vec![self.section.as_str(), self.endpoint.as_str()];
        if !self.case.is_empty() {
            parts.push(self.case.as_str());
        }
        parts.join(" › ")
    }
}

/// Every row of every table in `markdown` that has a `check` column.
pub fn parse(markdown: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for table in markdown::tables(markdown) {
        let Some(check_column) = table.column("check") else {
            continue;
        };
        let case_column = table.column("case");
        let mut endpoint = String::new();
        for row in &table.rows {
            let cells = &row.cells;
            if cells.len() != table.header.len() {
                continue;
            }
            let first = unquote(&cells[0]);
            if first != "same" {
                endpoint = first;
            }
            rows.push(Row {
                section: table.section.clone(),
                endpoint: endpoint.clone(),
                case: case_column
                    .map(|column| unquote(&cells[column]))
                    .unwrap_or_default(),
                checks: cells[check_column]
                    .split(',')
                    .map(|item| item.trim().replace('`', ""))
                    .filter(|item| !item.is_empty())
                    .collect(),
            });
        }
    }
    rows
}

/// The rows whose check column names `scenario_id`.
pub fn for_scenario<'a>(rows: &'a [Row], scenario_id: &str) -> Vec<&'a Row> {
    rows.iter()
        .filter(|row| row.checks.iter().any(|check| check == scenario_id))
        .collect()
}

fn unquote(cell: &str) -> String {
    cell.trim().replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_their_section_and_the_endpoint_above_for_same() {
        let markdown = "\
## Token endpoint

| endpoint | case | the emulator | confidence | observed | check |
| --- | --- | --- | --- | --- | --- |
| `POST /oauth/token` | code | 200 `a|b` | spec | — | code-exchange-succeeds |
| same | code reused | 400 | decided | — | code-reuse-is-refused, `x.rs::y` |

### Pieces

| piece | case | the emulator | check |
| --- | --- | --- | --- |
| MCP server | | checks | happy-path |
";
        let rows = parse(markdown);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1].title(),
            "Token endpoint › POST /oauth/token › code reused"
        );
        assert_eq!(rows[1].checks, ["code-reuse-is-refused", "x.rs::y"]);
        assert_eq!(rows[2].title(), "Pieces › MCP server");
        assert_eq!(for_scenario(&rows, "happy-path"), [&rows[2]]);
    }

    #[test]
    fn the_compiled_in_table_names_the_happy_path() {
        let rows = parse(FIDELITY_TABLE);
        assert!(rows.len() >= 100, "{} rows", rows.len());
        assert!(!for_scenario(&rows, "code-reuse-is-refused").is_empty());
    }
}
