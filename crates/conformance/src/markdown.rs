//! The markdown tables of the project's docs, as `docs/fidelity.md` writes them: one parser for
//! `testbed parity` (which rows a difference touches) and the test that keeps the table honest.

/// A table: a line of cells, a separator line (`| --- | :---: |`), then its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The `##` or `###` heading the table stands under (empty before the first).
    pub section: String,
    /// The header line's number, from 1.
    pub line: usize,
    /// The column names, trimmed and in lower case.
    pub header: Vec<String>,
    /// The rows, in order.
    pub rows: Vec<TableRow>,
}

/// One row of a [`Table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    /// The line's number, from 1.
    pub line: usize,
    /// The cells as written (not trimmed), code spans and `\|` kept whole.
    pub cells: Vec<String>,
}

impl Table {
    /// The index of the column named `name` (lower case).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|column| column == name)
    }
}

/// Every table of `markdown`, with the heading each stands under.
pub fn tables(markdown: &str) -> Vec<Table> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut tables = Vec::new();
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
                .is_some_and(|next| is_separator_line(next));
        if !starts_a_table {
            index += 1;
            continue;
        }
        let mut table = Table {
            section: section.clone(),
            line: index + 1,
            header: split_cells(line)
                .iter()
                .map(|cell| cell.trim().to_ascii_lowercase())
                .collect(),
            rows: Vec::new(),
        };
        index += 2;
        while index < lines.len() && is_table_line(lines[index]) {
            table.rows.push(TableRow {
                line: index + 1,
                cells: split_cells(lines[index]),
            });
            index += 1;
        }
        tables.push(table);
    }
    tables
}

fn is_table_line(line: &str) -> bool {
    line.trim_start().starts_with('|')
}

/// `| --- | :---: |`: every cell dashes, with optional alignment colons.
fn is_separator_line(line: &str) -> bool {
    is_table_line(line)
        && split_cells(line).iter().all(|cell| {
            let cell = cell.trim().trim_matches(':');
            !cell.is_empty() && cell.chars().all(|c| c == '-')
        })
}

/// The cells of a table line: `|` splits, except inside a code span or escaped as `\|`.
pub fn split_cells(line: &str) -> Vec<String> {
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
    fn tables_carry_their_heading_line_numbers_and_cells_with_code_spans_whole() {
        let markdown = "\
# Title

| not | a table |
without a separator

## Token endpoint

| Endpoint | Check |
| :--- | ---: |
| `a|b` | x \\| y |

text
";
        let tables = tables(markdown);
        assert_eq!(
            tables,
            [Table {
                section: "Token endpoint".to_owned(),
                line: 8,
                header: vec!["endpoint".to_owned(), "check".to_owned()],
                rows: vec![TableRow {
                    line: 10,
                    cells: vec![" `a|b` ".to_owned(), " x | y ".to_owned()],
                }],
            }]
        );
        assert_eq!(tables[0].column("check"), Some(1));
        assert_eq!(tables[0].column("case"), None);
    }
}
