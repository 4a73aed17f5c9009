//! Keeps `docs/fidelity.md` honest: every confidence cell uses only the fidelity reference's own
//! tags (`[C]`, `[C-obs]`, `[I]`) or `spec` / `decided`, every check cell names a scenario or a
//! test that exists, every observed cell names exactly the recordings of `fixtures/parity/` that
//! back the row's scenarios, and the Probes list is the set of `probe = true` scenarios, so the
//! table a real-environment run corrects never claims more than the evidence or points at checks
//! nobody runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use conformance::markdown;

/// The words a confidence part may start with (see the legend at the top of the table).
const TAGS: &[&str] = &["[C]", "[C-obs]", "[I]", "spec", "decided"];

/// What a check cell may name.
struct Known<'a> {
    /// Every scenario id whose file is `scenarios/**/<id>.toml`.
    scenario_ids: &'a BTreeSet<String>,
    /// The workspace root: `crates/<crate>/…`, `tests/…` and `xtask/…` are found under it.
    workspace: &'a Path,
    /// The recordings of `fixtures/parity/`: scenario id → who answered (`emulator`, `scalekit`).
    recordings: &'a BTreeMap<String, String>,
}

/// Where the recordings an observed cell names live.
const RECORDINGS: &str = "fixtures/parity";

/// What was looked at and what is wrong, one line per defect.
#[derive(Debug, Default)]
struct Findings {
    rows: usize,
    defects: Vec<String>,
}

/// Reads every markdown table of `markdown` that has a `confidence` or a `check` column and
/// checks those cells, row by row.
fn check_markdown(markdown: &str, known: &Known<'_>) -> Findings {
    let mut findings = Findings::default();
    for table in markdown::tables(markdown) {
        let confidence_column = table.column("confidence");
        let check_column = table.column("check");
        let observed_column = table.column("observed");
        if confidence_column.is_none() && check_column.is_none() {
            continue;
        }
        for row in &table.rows {
            let line_number = row.line;
            let cells = &row.cells;
            findings.rows += 1;
            if cells.len() != table.header.len() {
                findings.defects.push(format!(
                    "line {line_number}: {} cells, the header has {}",
                    cells.len(),
                    table.header.len()
                ));
                continue;
            }
            if let Some(column) = confidence_column {
                findings
                    .defects
                    .extend(confidence_defects(line_number, cells[column].trim()));
            }
            if let Some(column) = check_column {
                findings
                    .defects
                    .extend(check_defects(line_number, cells[column].trim(), known));
            }
            if let (Some(observed), Some(check)) = (observed_column, check_column) {
                findings.defects.extend(observed_defects(
                    line_number,
                    cells[observed].trim(),
                    cells[check].trim(),
                    known,
                ));
            }
        }
    }
    findings
}

/// Splits `text` at each `separator` that stands outside parentheses and code spans.
fn split_top_level(text: &str, separator: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut depth = 0usize;
    let mut in_code = false;
    let mut rest = text;
    while let Some(character) = rest.chars().next() {
        if depth == 0 && !in_code && rest.starts_with(separator) {
            parts.push(std::mem::take(&mut part));
            rest = &rest[separator.len()..];
            continue;
        }
        match character {
            '`' => in_code = !in_code,
            '(' if !in_code => depth += 1,
            ')' if !in_code => depth = depth.saturating_sub(1),
            _ => {}
        }
        part.push(character);
        rest = &rest[character.len_utf8()..];
    }
    parts.push(part);
    parts
}

/// Each `; `-separated part must be a tag, alone or followed by one parenthetical that ends the
/// part: `[C-obs] (issuer, jwks; RSTR)`.
fn confidence_defects(line_number: usize, cell: &str) -> Vec<String> {
    if cell.is_empty() {
        return vec![format!("line {line_number}: the confidence cell is empty")];
    }
    split_top_level(cell, "; ")
        .into_iter()
        .filter(|part| !is_tagged_part(part))
        .map(|part| {
            format!(
                "line {line_number}: confidence {cell:?}: part {part:?} is not one of [C], \
                 [C-obs], [I], spec, decided, alone or followed by \" (…)\""
            )
        })
        .collect()
}

fn is_tagged_part(part: &str) -> bool {
    TAGS.iter().any(|tag| {
        let Some(rest) = part.strip_prefix(tag) else {
            return false;
        };
        if rest.is_empty() {
            return true;
        }
        let Some(parenthetical) = rest.strip_prefix(" (") else {
            return false;
        };
        // The parenthetical opened here must close exactly at the end of the part.
        let mut depth = 1usize;
        let mut in_code = false;
        for (offset, character) in parenthetical.char_indices() {
            match character {
                '`' => in_code = !in_code,
                '(' if !in_code => depth += 1,
                ')' if !in_code => {
                    depth -= 1;
                    if depth == 0 {
                        return offset + 1 == parenthetical.len();
                    }
                }
                _ => {}
            }
        }
        false
    })
}

/// Each comma-separated item, backticks stripped, must be a scenario id or a test that exists.
fn check_defects(line_number: usize, cell: &str, known: &Known<'_>) -> Vec<String> {
    if cell.is_empty() {
        return vec![format!("line {line_number}: the check cell is empty")];
    }
    split_top_level(cell, ",")
        .iter()
        .map(|item| item.trim().replace('`', ""))
        .filter_map(|item| {
            resolve_check(&item, known)
                .err()
                .map(|problem| format!("line {line_number}: check {item:?} {problem}"))
        })
        .collect()
}

/// The recordings an observed cell must name: those of `fixtures/parity/` for the scenarios of
/// the row's check, in the check's order, each `` `fixtures/parity/<id>.json` (source) ``; `—`
/// when there is none. Each item must name a recording that exists, of a scenario the check
/// names, with its source; and none may be missing.
fn observed_defects(line_number: usize, cell: &str, check: &str, known: &Known<'_>) -> Vec<String> {
    let scenarios: Vec<String> = split_top_level(check, ",")
        .iter()
        .map(|item| item.trim().replace('`', ""))
        .collect();
    let mut defects = Vec::new();
    let mut named = Vec::new();
    if cell != "—" {
        for item in split_top_level(cell, ",") {
            let item = item.trim().replace('`', "");
            let Some((path, source)) = item
                .strip_suffix(')')
                .and_then(|rest| rest.split_once(" ("))
            else {
                defects.push(format!(
                    "line {line_number}: observed {item:?} is not `{RECORDINGS}/<id>.json` (source)"
                ));
                continue;
            };
            let Some(id) = path
                .strip_prefix(&format!("{RECORDINGS}/"))
                .and_then(|file| file.strip_suffix(".json"))
            else {
                defects.push(format!(
                    "line {line_number}: observed {path:?} is not a recording of {RECORDINGS}/"
                ));
                continue;
            };
            match known.recordings.get(id) {
                None => defects.push(format!(
                    "line {line_number}: observed {path} does not exist (or is not a recording of {id})"
                )),
                Some(actual) if actual != source => defects.push(format!(
                    "line {line_number}: observed {path} says ({source}), the recording's source is {actual}"
                )),
                Some(_) if !scenarios.iter().any(|scenario| scenario == id) => defects.push(
                    format!("line {line_number}: observed {path} is for {id}, which the row's check does not name"),
                ),
                Some(_) => named.push(id.to_owned()),
            }
        }
    }
    let expected: Vec<&String> = scenarios
        .iter()
        .filter(|scenario| known.recordings.contains_key(scenario.as_str()))
        .collect();
    for scenario in &expected {
        if !named.contains(scenario) {
            defects.push(format!(
                "line {line_number}: observed does not name {RECORDINGS}/{scenario}.json, a recording of the row's check"
            ));
        }
    }
    defects
}

/// The tables that have a confidence column but no observed column, by line number.
fn tables_without_observed(markdown: &str) -> Vec<usize> {
    markdown::tables(markdown)
        .iter()
        .filter(|table| table.column("confidence").is_some() && table.column("observed").is_none())
        .map(|table| table.line)
        .collect()
}

/// The ids listed under `## Probes`: each bullet's first code span.
fn probes_listed(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .skip_while(|line| line.trim() != "## Probes")
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("- `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// `<path>.rs::[module::…]test_name` (path under `crates/`, or under the workspace root for
/// `tests/…` and `xtask/…`), a workspace-level suite `tests/…`, or a scenario id.
fn resolve_check(item: &str, known: &Known<'_>) -> Result<(), String> {
    if let Some((path, names)) = item.split_once("::") {
        if !path.ends_with(".rs") {
            return Err("names no .rs file before \"::\"".to_owned());
        }
        let file = source_file(path, known.workspace);
        let source = std::fs::read_to_string(&file)
            .map_err(|_| format!("names {path}, which does not exist"))?;
        let names: Vec<&str> = names.split("::").collect();
        let (test_name, modules) = names.split_last().expect("split yields one item at least");
        for module in modules {
            if !declares(&source, "mod", module) {
                return Err(format!("names mod {module}, which {path} does not declare"));
            }
        }
        if !declares(&source, "fn", test_name) {
            return Err(format!(
                "names fn {test_name}, which {path} does not declare"
            ));
        }
        return Ok(());
    }
    if item.starts_with("tests/") {
        if known.workspace.join(item).exists() {
            return Ok(());
        }
        return Err("names a workspace suite that does not exist".to_owned());
    }
    let looks_like_an_id = !item.is_empty()
        && item
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !looks_like_an_id {
        return Err(
            "is neither a scenario id nor a test (path.rs::test_name, or tests/… for a \
             workspace suite)"
                .to_owned(),
        );
    }
    if known.scenario_ids.contains(item) {
        return Ok(());
    }
    Err(format!(
        "is not a scenario id (no scenarios/**/{item}.toml has id = {item:?})"
    ))
}

/// `tests/…` and `xtask/…` are the workspace's own; anything else starts with a crate's folder.
fn source_file(path: &str, workspace: &Path) -> PathBuf {
    let first_segment = path.split('/').next().unwrap_or_default();
    if first_segment == "tests" || first_segment == "xtask" {
        workspace.join(path)
    } else {
        workspace.join("crates").join(path)
    }
}

/// Whether `source` has `<keyword> <name>` followed by something other than an identifier
/// character (so `fn a` does not match `fn ab`).
fn declares(source: &str, keyword: &str, name: &str) -> bool {
    let needle = format!("{keyword} {name}");
    source.match_indices(&needle).any(|(start, _)| {
        let before_ok = source[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let after_ok = source[start + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        before_ok && after_ok
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The repository's scenarios as they are on disk now, each id checked against its file name.
fn scenario_ids(workspace: &Path) -> BTreeSet<String> {
    let scenarios = conformance::load_dir(&workspace.join("scenarios"))
        .unwrap_or_else(|error| panic!("loading scenarios/: {error}"));
    let mut ids = BTreeSet::new();
    for scenario in scenarios {
        let file_stem = scenario.path.file_stem().and_then(|stem| stem.to_str());
        if file_stem == Some(scenario.id.as_str()) {
            ids.insert(scenario.id);
        }
    }
    ids
}

/// The recordings of `fixtures/parity/`, each file named by its scenario: id → source.
fn recordings(workspace: &Path) -> BTreeMap<String, String> {
    let recordings = conformance::record::load_dir(&workspace.join(RECORDINGS))
        .unwrap_or_else(|error| panic!("loading {RECORDINGS}/: {error}"));
    recordings
        .into_iter()
        .filter(|(path, recording)| {
            path.file_stem().and_then(|stem| stem.to_str()) == Some(recording.scenario.as_str())
        })
        .map(|(_, recording)| (recording.scenario, recording.source.name().to_owned()))
        .collect()
}

#[test]
fn every_fidelity_row_has_an_allowed_confidence_and_checks_that_exist() {
    let workspace = workspace_root();
    let path = workspace.join("docs/fidelity.md");
    let markdown = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let scenario_ids = scenario_ids(&workspace);
    let recordings = recordings(&workspace);
    let known = Known {
        scenario_ids: &scenario_ids,
        workspace: &workspace,
        recordings: &recordings,
    };
    assert_eq!(
        tables_without_observed(&markdown),
        Vec::<usize>::new(),
        "docs/fidelity.md: these tables (by line) have a confidence column and no observed column"
    );
    let findings = check_markdown(&markdown, &known);
    // A parser that found no table would pass everything.
    assert!(
        findings.rows >= 100,
        "only {} rows found in docs/fidelity.md",
        findings.rows
    );
    assert!(
        findings.defects.is_empty(),
        "docs/fidelity.md: {} defects in {} rows:\n{}",
        findings.defects.len(),
        findings.rows,
        findings.defects.join("\n")
    );
    println!("docs/fidelity.md: {} rows checked", findings.rows);
}

#[test]
fn the_probes_list_is_the_set_of_probe_scenarios() {
    let workspace = workspace_root();
    let markdown = std::fs::read_to_string(workspace.join("docs/fidelity.md")).unwrap();
    let probes: BTreeSet<String> = conformance::load_dir(&workspace.join("scenarios"))
        .unwrap()
        .into_iter()
        .filter(|scenario| scenario.probe)
        .map(|scenario| scenario.id)
        .collect();
    assert!(probes.len() >= 10, "{} probes", probes.len());
    assert_eq!(
        probes_listed(&markdown),
        probes,
        "docs/fidelity.md's Probes list and the scenarios with probe = true"
    );
}

#[test]
fn observed_cells_name_exactly_the_recordings_of_the_rows_scenarios() {
    let workspace = workspace_root();
    let scenario_ids: BTreeSet<String> = ["a".to_owned(), "b".to_owned(), "c".to_owned()].into();
    let recordings: BTreeMap<String, String> = [
        ("a".to_owned(), "emulator".to_owned()),
        ("b".to_owned(), "scalekit".to_owned()),
    ]
    .into();
    let known = Known {
        scenario_ids: &scenario_ids,
        workspace: &workspace,
        recordings: &recordings,
    };
    let markdown = "\
| case | confidence | observed | check |
| --- | --- | --- | --- |
| good | spec | `fixtures/parity/a.json` (emulator), `fixtures/parity/b.json` (scalekit) | a, b, c |
| none | spec | — | c |
| missing | spec | `fixtures/parity/a.json` (emulator) | a, b |
| wrong source | spec | `fixtures/parity/a.json` (scalekit) | a |
| other scenario | spec | `fixtures/parity/b.json` (scalekit) | c |
| no file | spec | `fixtures/parity/c.json` (emulator) | c |
| dash but backed | spec | — | a |

| case | confidence | check |
| --- | --- | --- |
| old | spec | a |
";
    let findings = check_markdown(markdown, &known);
    assert_eq!(
        findings.defects,
        [
            "line 5: observed does not name fixtures/parity/b.json, a recording of the row's check",
            "line 6: observed fixtures/parity/a.json says (scalekit), the recording's source is emulator",
            "line 6: observed does not name fixtures/parity/a.json, a recording of the row's check",
            "line 7: observed fixtures/parity/b.json is for b, which the row's check does not name",
            "line 8: observed fixtures/parity/c.json does not exist (or is not a recording of c)",
            "line 9: observed does not name fixtures/parity/a.json, a recording of the row's check",
        ]
    );
    assert_eq!(tables_without_observed(markdown), [11]);
    assert_eq!(
        probes_listed("## Probes\n\ntext\n\n- `x`: why\n- `y`: why\n\n## Next\n- `z`: no\n"),
        BTreeSet::from(["x".to_owned(), "y".to_owned()])
    );
}

#[test]
fn the_parser_accepts_tagged_rows_and_names_each_bad_tag_and_missing_check() {
    let workspace = workspace_root();
    let scenario_ids: BTreeSet<String> = ["happy-path".to_owned()].into();
    let recordings = BTreeMap::new();
    let known = Known {
        scenario_ids: &scenario_ids,
        workspace: &workspace,
        recordings: &recordings,
    };
    let markdown = "\
# A table

| endpoint | confidence | check |
| --- | --- | --- |
| `a|b` | [C-obs] (issuer, `(x)`; RSTR); decided (paths) | happy-path, `conformance/build.rs::main`, conformance/build.rs::collect |
| b | spec; [I] | `tests/e2e/main.rs` |
| c | confirmed (spec) | no-such-scenario |
| d | [C] (x) trailing; decided | `conformance/build.rs::no_such_test` |
| e | | contract snapshot |

| peer | check |
| --- | :---: |
| f | `conformance/build.rs::outer::main`, tests/nowhere.rs |

| name | value |
| --- | --- |
| g | not checked |
";
    let findings = check_markdown(markdown, &known);
    assert_eq!(findings.rows, 6);
    assert_eq!(
        findings.defects,
        [
            "line 7: confidence \"confirmed (spec)\": part \"confirmed (spec)\" is not one of \
             [C], [C-obs], [I], spec, decided, alone or followed by \" (…)\"",
            "line 7: check \"no-such-scenario\" is not a scenario id (no \
             scenarios/**/no-such-scenario.toml has id = \"no-such-scenario\")",
            "line 8: confidence \"[C] (x) trailing; decided\": part \"[C] (x) trailing\" is not \
             one of [C], [C-obs], [I], spec, decided, alone or followed by \" (…)\"",
            "line 8: check \"conformance/build.rs::no_such_test\" names fn no_such_test, which \
             conformance/build.rs does not declare",
            "line 9: the confidence cell is empty",
            "line 9: check \"contract snapshot\" is neither a scenario id nor a test \
             (path.rs::test_name, or tests/… for a workspace suite)",
            "line 13: check \"conformance/build.rs::outer::main\" names mod outer, which \
             conformance/build.rs does not declare",
            "line 13: check \"tests/nowhere.rs\" names a workspace suite that does not exist",
        ]
    );
}
