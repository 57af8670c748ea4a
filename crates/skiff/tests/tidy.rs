//! Project rules checked on the source tree, as rust-analyzer's `tidy` does: the crate
//! dependencies ARCHITECTURE.md allows, a `//!` header on every module, no unused
//! dependency, and no import cycle between a crate's top-level modules. Reads files and `cargo metadata`; starts nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// `cargo metadata` of the workspace's own packages.
fn packages() -> Vec<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    meta["packages"].as_array().cloned().unwrap_or_default()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The "Dependency rules" table of ARCHITECTURE.md: crate → the workspace crates it may
/// depend on (normal dependencies; tests may use any).
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("## Dependency rules")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"Dependency rules\" section");
    let mut rules = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(krate), Some(deps)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let krate = krate.trim_matches('`');
        if !krate.starts_with("skiff") {
            continue;
        }
        let deps = deps
            .split(',')
            .map(|d| d.trim().trim_matches('`').to_string())
            .filter(|d| d.starts_with("skiff"))
            .collect();
        rules.insert(krate.to_string(), deps);
    }
    rules
}

#[test]
fn crate_dependencies_follow_architecture_md() {
    let rules = allowed();
    let mut wrong = Vec::new();
    for p in packages() {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let Some(ok) = rules.get(&name) else {
            wrong.push(format!("{name}: not in ARCHITECTURE.md's dependency rules"));
            continue;
        };
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or_default();
            if d["kind"].is_null() && dep.starts_with("skiff") && !ok.contains(dep) {
                wrong.push(format!("{name} depends on {dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_module_has_a_doc_header() {
    let mut missing = Vec::new();
    for dir in std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .flatten()
    {
        for f in rust_files(&dir.path().join("src")) {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                missing.push(f.strip_prefix(root()).unwrap_or(&f).display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a //! header:\n{}",
        missing.join("\n")
    );
}

/// Whether `text` names the crate `ident` as Rust code does.
fn uses(text: &str, ident: &str) -> bool {
    let mut from = 0;
    while let Some(i) = text[from..].find(ident) {
        let at = from + i;
        from = at + ident.len();
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let after = &text[from..];
        let prefix = text[..at].trim_end();
        if after.starts_with("::")
            || after.starts_with('!')
            || prefix.ends_with("use")
            || prefix.ends_with("extern crate")
        {
            return true;
        }
    }
    false
}

#[test]
fn no_unused_dependencies() {
    let mut unused = Vec::new();
    for p in packages() {
        let name = p["name"].as_str().unwrap_or_default();
        let dir = Path::new(p["manifest_path"].as_str().unwrap_or_default())
            .parent()
            .expect("package dir")
            .to_path_buf();
        let read = |dirs: &[&str]| -> String {
            dirs.iter()
                .flat_map(|d| rust_files(&dir.join(d)))
                .chain(Some(dir.join("build.rs")).filter(|b| b.exists()))
                .map(|f| std::fs::read_to_string(f).unwrap_or_default())
                .collect()
        };
        let src = read(&["src"]);
        let all = read(&["src", "tests", "benches", "examples"]);
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["rename"]
                .as_str()
                .or(d["name"].as_str())
                .unwrap_or_default();
            let ident = dep.replace('-', "_");
            let text = match d["kind"].as_str() {
                None => &src,
                Some(_) => &all,
            };
            if !uses(text, &ident) {
                unused.push(format!(
                    "{name}: {dep} ({})",
                    d["kind"].as_str().unwrap_or("normal")
                ));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "dependencies no code names:\n{}",
        unused.join("\n")
    );
}

#[test]
fn the_use_detector_sees_paths_macros_and_imports() {
    assert!(uses("let x = serde_json::json!({});", "serde_json"));
    assert!(uses("use tokio_stream::StreamExt;", "tokio_stream"));
    assert!(uses("anyhow!(\"x\")", "anyhow"));
    assert!(!uses("let my_serde_json = 1;", "serde_json"));
    assert!(!uses("// tower is nice", "tower"));
}

/// The top-level modules of the crate whose sources are in `src`, each with the other
/// top-level modules it names (`crate::<module>`), leaving out comments and the unit
/// tests (those that follow `#[cfg(test)]`, and `tests.rs` files).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let module = first.trim_end_matches(".rs").to_string();
        if matches!(module.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        // A unit-test module of its own file (`mod tests;` under `#[cfg(test)]`).
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let deps = graph.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                if let Some(list) = rest.strip_prefix('{') {
                    // `use crate::{a, b::c}`.
                    let end = list.find('}').unwrap_or(list.len());
                    for item in list[..end].split(',') {
                        let name = item.trim().split("::").next().unwrap_or_default();
                        if !name.is_empty() && name != module {
                            deps.insert(name.to_string());
                        }
                    }
                    continue;
                }
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A cycle in `graph`, if there is one (as the list of modules around it).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(c) = visit(m, graph, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// Layers, not a web: within each crate, the top-level modules import each other
/// without a cycle (a module's own submodules may use their parent freely).
#[test]
fn no_import_cycles_between_a_crates_modules() {
    let mut failures = Vec::new();
    for p in packages() {
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
        let src = manifest.parent().expect("crate dir").join("src");
        if let Some(cycle) = find_cycle(&module_graph(&src)) {
            failures.push(format!(
                "{}: {}",
                p["name"].as_str().unwrap_or_default(),
                cycle.join(" -> ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "import cycles:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
