//! Keeps the layering `src/lib.rs` describes true: the top-level modules
//! import each other without a cycle, and the domain (plan, approval,
//! command, config) never imports the words (`messages`).
//!
//! Imports are read from the source: every `crate::MODULE` outside a
//! comment, in every file under `src/MODULE/` or `src/MODULE.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs and main.rs).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// Code without `//` comments (doc comments name modules in links).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module `crate::X` names in `code`.
fn imported(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if modules.contains(&name) {
            found.insert(name);
        }
    }
    // `use crate::{a, b::c}` groups.
    for (at, _) in code.match_indices("crate::{") {
        let rest = &code[at + "crate::{".len()..];
        let group = &rest[..rest.find('}').unwrap_or(rest.len())];
        for item in group.split(',') {
            let name = item.trim().split("::").next().unwrap_or("").trim();
            if modules.contains(name) {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

/// Module → the modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).expect("a readable source file"));
        let mut uses = imported(&code, &modules);
        uses.remove(&module);
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

/// A cycle through `start`, as the path of modules, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = graph();
    assert!(
        graph.len() > 10,
        "expected the crate's modules, found {graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|path| path.join(" → "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules (move the shared type down a layer):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_domain_does_not_import_the_words() {
    let graph = graph();
    for domain in ["plan", "approval", "command", "config"] {
        let uses = &graph[domain];
        assert!(
            !uses.contains("messages"),
            "{domain} imports messages: the domain owns its errors, messages only renders"
        );
    }
}

#[test]
fn drills_are_computed_below_the_engine_and_the_words() {
    // The scorecard and the chart are facts from timings: the engine and
    // the words use them, never the other way round.
    let graph = graph();
    let uses = &graph["drill"];
    for above in [
        "engine", "messages", "notice", "journal", "slack", "sandbox",
    ] {
        assert!(!uses.contains(above), "drill imports {above}: {uses:?}");
    }
}

#[test]
fn the_reader_finds_imports_in_every_form() {
    let modules: BTreeSet<String> = ["plan", "ids", "messages", "config"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let code = code_of(
        "use crate::plan::Weights;\nuse crate::{ids::UserId, config};\n// crate::messages in a comment\nlet x = crate::plan::shift;",
    );
    let found = imported(&code, &modules);
    assert_eq!(
        found,
        ["config", "ids", "plan"]
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycle_from(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
