//! Compiles the repository's `scenarios/` into the crate, so that a `testbed` installed with
//! `cargo install --path crates/testbed` runs the whole suite from any folder.
//!
//! Writes `$OUT_DIR/embedded_scenarios.rs`: one `(relative path, include_str!(…))` per `*.toml`
//! under `scenarios/`, sorted by path.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../../scenarios");
    // A directory is scanned for changes as a whole.
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut out = String::from("/// The scenarios compiled in: (path under `scenarios/`, text).\n");
    out.push_str("pub(crate) const EMBEDDED_SCENARIOS: &[(&str, &str)] = &[\n");
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("under scenarios/")
            .to_string_lossy()
            .replace('\\', "/");
        let absolute = file.canonicalize().expect("a scenario file");
        out.push_str(&format!(
            "    ({relative:?}, include_str!({:?})),\n",
            absolute.display().to_string()
        ));
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"))
        .join("embedded_scenarios.rs");
    std::fs::write(&target, out).expect("writing embedded_scenarios.rs");
}

fn collect(directory: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("reading {}: {error}", directory.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path
            .extension()
            .is_some_and(|extension| extension == "toml")
        {
            files.push(path);
        }
    }
}
