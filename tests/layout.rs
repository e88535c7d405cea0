//! The image's dependencies run one way (house style 16): reads every `image/src/**/*.rs`,
//! collects the module paths each file names (`crate::a::b`, `super::x`, `self::x` and child
//! modules named directly), resolves each to the file that defines that module, and fails
//! with the cycle printed if
//! - the graph of the image's top-level modules (`arch`, `boot`, `vmx`, ...) has a cycle, or
//! - inside any one folder of the image, the graph of its files has a cycle (no two files of
//!   `vmx/`, `vmx/l1vmx/`, `drivers/`, ... import each other, directly or round a loop).
//!
//! `mod x;` declarations are not dependencies (a folder's `mod.rs` lists its rooms); a `use`
//! of a child is. A path into the crate root that names no module (the boot stub's jump to
//! `crate::kstart`) is the entry point, not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its module path (`["vmx", "l1vmx", "state"]`) and its code with comments
/// removed.
struct Source {
    file: String,
    module: Vec<String>,
    code: String,
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read image/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code without `//` comments (doc comments name paths that are not dependencies).
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

fn sources(root: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    collect(root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(root).expect("under image/src");
            let mut module: Vec<String> =
                rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            let last = module.pop().expect("a file name");
            let stem = last.trim_end_matches(".rs");
            if stem != "mod" && stem != "main" {
                module.push(stem.to_string());
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            Source {
                file: rel.to_string_lossy().replace('\\', "/"),
                module,
                code: strip_comments(&text),
            }
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `a::b::c` path in `code` (maximal runs of identifiers joined by `::`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        // A path starts at an identifier not preceded by `::` or an identifier character.
        let starts = is_ident(chars[i])
            && (i == 0 || !is_ident(chars[i - 1]))
            && !(i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':');
        if !starts {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < chars.len() && is_ident(chars[j]) {
                j += 1;
            }
            segments.push(chars[start..j].iter().collect::<String>());
            if j + 2 < chars.len() && chars[j] == ':' && chars[j + 1] == ':' {
                let mut k = j + 2;
                // `use a::{b, c::d}`: each item of the group continues the path.
                if k < chars.len() && chars[k] == '{' {
                    let mut depth = 0;
                    let mut end = k;
                    while end < chars.len() {
                        match chars[end] {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        end += 1;
                    }
                    let inner: String = chars[k + 1..end.min(chars.len())].iter().collect();
                    for sub in group_items(&inner) {
                        let mut p = segments.clone();
                        p.extend(sub);
                        out.push(p);
                    }
                    k = end;
                    j = k;
                    segments.clear();
                    break;
                }
                if k < chars.len() && is_ident(chars[k]) {
                    j = k;
                    continue;
                }
            }
            break;
        }
        if segments.len() > 1 {
            out.push(segments);
        }
        i = j.max(i + 1);
    }
    out
}

/// The paths of a `use` group's items (`b, c::d, self, e::{f, g}`), relative to the group.
fn group_items(inner: &str) -> Vec<Vec<String>> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        let item = item.split(" as ").next().unwrap_or("").trim();
        if item.is_empty() || item == "self" {
            out.push(Vec::new());
            continue;
        }
        let nested = paths(item);
        if nested.is_empty() {
            out.push(vec![item.trim_matches(|c: char| !is_ident(c)).to_string()]);
        } else {
            out.extend(nested);
        }
    }
    out
}

/// The module a path names, as an absolute module path, if it is one of the image's.
fn resolve(
    from: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &path[1..];
        }
        Some("self") => {
            base = from.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            base = from.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        Some(first) => {
            // A child module of this file's module, named directly.
            let mut child = from.to_vec();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            base = from.to_vec();
        }
        None => return None,
    }
    // The longest prefix that is a module.
    let mut best = if base.is_empty() { None } else { Some(base.clone()) };
    for seg in rest {
        base.push(seg.clone());
        if modules.contains(&base) {
            best = Some(base.clone());
        } else {
            break;
        }
    }
    best
}

/// A cycle in `graph`, as the nodes round it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Active);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Active => {
                    let at = stack.iter().position(|n| n == next).expect("on the stack");
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

struct Graphs {
    /// Top-level module → top-level modules it uses.
    top: BTreeMap<String, BTreeSet<String>>,
    /// Folder → (file → files of the same folder it uses).
    folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

fn graphs(root: &Path) -> Graphs {
    let sources = sources(root);
    let mut modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    // `mod config { include!(...) }` in main.rs: generated constants, a module without a file.
    modules.insert(vec!["config".to_string()]);
    let file_of: BTreeMap<Vec<String>, String> =
        sources.iter().map(|s| (s.module.clone(), s.file.clone())).collect();
    let folder_of = |file: &str| match file.rfind('/') {
        Some(i) => file[..i].to_string(),
        None => String::new(),
    };
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for s in &sources {
        let from_top = s.module.first().cloned().unwrap_or_else(|| "main".to_string());
        top.entry(from_top.clone()).or_default();
        folders.entry(folder_of(&s.file)).or_default().entry(s.file.clone()).or_default();
        for path in paths(&s.code) {
            let Some(target) = resolve(&s.module, &path, &modules) else { continue };
            let to_top = target[0].clone();
            if to_top != from_top {
                top.entry(from_top.clone()).or_default().insert(to_top);
            }
            if let Some(to_file) = file_of.get(&target)
                && to_file != &s.file
                && folder_of(to_file) == folder_of(&s.file)
            {
                folders
                    .entry(folder_of(&s.file))
                    .or_default()
                    .entry(s.file.clone())
                    .or_default()
                    .insert(to_file.clone());
            }
        }
    }
    Graphs { top, folders }
}

fn image_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("image/src")
}

fn show(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    graph
        .iter()
        .map(|(from, to)| {
            format!("  {from} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_modules_depend_one_way() {
    let g = graphs(&image_src());
    if let Some(cycle) = find_cycle(&g.top) {
        panic!(
            "the image's top-level modules form a cycle: {}\nthe graph:\n{}",
            cycle.join(" -> "),
            show(&g.top)
        );
    }
}

#[test]
fn files_of_each_folder_depend_one_way() {
    let g = graphs(&image_src());
    for (folder, graph) in &g.folders {
        if let Some(cycle) = find_cycle(graph) {
            panic!(
                "files in image/src/{folder} form a cycle: {}\nthe graph:\n{}",
                cycle.join(" -> "),
                show(graph)
            );
        }
    }
}

#[test]
fn the_checker_sees_dependencies_and_cycles() {
    let g = graphs(&image_src());
    // Known edges: the check is not vacuous.
    assert!(g.top["vmx"].contains("arch"), "vmx uses arch:\n{}", show(&g.top));
    assert!(g.top["main"].contains("vmx"), "main uses vmx:\n{}", show(&g.top));
    let vmx = &g.folders["vmx"];
    assert!(vmx["vmx/run.rs"].contains("vmx/guest.rs"), "run uses guest:\n{}", show(vmx));
    let l1vmx = &g.folders["vmx/l1vmx"];
    assert!(l1vmx["vmx/l1vmx/mod.rs"].contains("vmx/l1vmx/state.rs"), "{}", show(l1vmx));
    // Path forms the resolver must understand.
    let modules: BTreeSet<Vec<String>> =
        [vec!["a"], vec!["a", "b"], vec!["a", "b", "c"], vec!["d"]]
            .into_iter()
            .map(|m| m.into_iter().map(String::from).collect())
            .collect();
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let from = v(&["a", "b"]);
    for (code, want) in [
        ("use crate::d::X;", vec![v(&["d"])]),
        ("use super::b::c::f;", vec![v(&["a", "b", "c"])]),
        ("use c::Y;", vec![v(&["a", "b", "c"])]),
        ("use crate::a::{b::c, self};", vec![v(&["a", "b", "c"]), v(&["a"])]),
        ("let x = crate::d::f(); // crate::a::b", vec![v(&["d"])]),
    ] {
        let got: Vec<_> = paths(&strip_comments(code))
            .iter()
            .filter_map(|p| resolve(&from, p, &modules))
            .collect();
        assert_eq!(got, want, "{code}");
    }
    // A cycle is found and printed round.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("x".into()).or_default().insert("y".into());
    graph.entry("y".into()).or_default().insert("z".into());
    graph.entry("z".into()).or_default().insert("x".into());
    assert_eq!(find_cycle(&graph), Some(v(&["x", "y", "z", "x"])));
    graph.get_mut("z").unwrap().clear();
    assert_eq!(find_cycle(&graph), None);
}
