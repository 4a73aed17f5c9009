//! The rows of `docs/fidelity.md`, compiled in, so that a difference found by `testbed parity`
//! names the behaviours it touches: every row whose check column names the scenario.

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
    let lines: Vec<&str> = markdown.lines().collect();
    let mut rows = Vec::new();
    let mut section = String::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if let Some(heading) = line
            .strip_prefix("### ")
            .or_else(|| line.strip_prefix("## "))
        {
            section = heading.trim().to_owned();
            index += 1;
            continue;
        }
        let starts_a_table = is_table_line(line)
            && lines
                .get(index + 1)
                .is_some_and(|next| is_table_line(next) && next.contains("---"));
        if !starts_a_table {
            index += 1;
            continue;
        }
        let header: Vec<String> = split_cells(line)
            .iter()
            .map(|cell| cell.trim().to_ascii_lowercase())
            .collect();
        let case_column = header.iter().position(|name| name == "case");
        let check_column = header.iter().position(|name| name == "check");
        index += 2;
        let mut endpoint = String::new();
        while index < lines.len() && is_table_line(lines[index]) {
            let cells = split_cells(lines[index]);
            index += 1;
            let Some(check_column) = check_column else {
                continue;
            };
            if cells.len() != header.len() {
                continue;
            }
            let first = unquote(&cells[0]);
            if first != "same" {
                endpoint = first;
            }
            rows.push(Row {
                section: section.clone(),
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

fn is_table_line(line: &str) -> bool {
    line.trim_start().starts_with('|')
}

fn unquote(cell: &str) -> String {
    cell.trim().replace('`', "")
}

/// The cells of a table line: `|` splits, except inside a code span or escaped as `\|`.
fn split_cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    let mut characters = line.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\\' if characters.peek() == Some(&'|') => {
                cell.push('|');
                characters.next();
            }
            '`' => {
                in_code = !in_code;
                cell.push(character);
            }
            '|' if !in_code => cells.push(std::mem::take(&mut cell)),
            _ => cell.push(character),
        }
    }
    cells.push(cell);
    cells
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
