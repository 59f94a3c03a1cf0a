//! Keeps `src/` layered: reads every production source file, derives the imports between
//! top-level modules (`crate::x` paths, grouped `use crate::{x, y}` included; comments, strings
//! and `#[cfg(test)]` code left out), and checks each against the layer table published in
//! `src/lib.rs`'s `//!` documentation (the one place the table is written; the handbook's
//! architecture page repeats it for readers).
//!
//! A module may import a module of a lower layer, or one its row names in "may import". A side
//! module (the fake Zoho) imports only what its row names, and nothing imports it unless its row
//! is named. Any cycle between top-level modules fails too. A failure names the file, the line
//! and the rule it breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One row of the layer table.
#[derive(Debug, Clone)]
struct Row {
    /// Position of the row's layer among the table's layers, in table order (`None`: side).
    rank: Option<usize>,
    layer: String,
    /// Modules the row names in its "may import" column.
    explicit: BTreeSet<String>,
    /// Whether the column says "below": every module of a lower layer too, besides those named.
    below: bool,
}

/// An import of another top-level module, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    from: String,
    to: String,
    file: String,
    line: usize,
}

/// A broken rule.
#[derive(Debug)]
struct Violation {
    what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// Reads the layer table from `lib.rs`'s `//!` lines: a Markdown table whose header row starts
/// with `| layer | module |` and has a `may import` column. A module cell may name several
/// modules (`` `metrics`, `logging` ``); `side` is the layer of modules outside the stack. The
/// "may import" cell lists the modules a row may import in backticks; when it says "below",
/// every module of a lower layer is allowed as well.
fn read_table(lib_rs: &str) -> BTreeMap<String, Row> {
    let doc: Vec<&str> = lib_rs
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("//!"))
        .map(str::trim)
        .collect();
    let start = doc
        .iter()
        .position(|l| l.starts_with("| layer | module |"))
        .expect("src/lib.rs's //! documentation has the layer table (`| layer | module | … |`)");
    let header: Vec<&str> = cells(doc[start]);
    let may = header
        .iter()
        .position(|c| *c == "may import")
        .expect("the layer table has a `may import` column");
    let mut layers: Vec<String> = Vec::new();
    let mut rows = BTreeMap::new();
    for line in doc[start + 2..].iter().take_while(|l| l.starts_with('|')) {
        let c = cells(line);
        let layer = c[0].to_string();
        let rank = if layer == "side" {
            None
        } else {
            if !layers.contains(&layer) {
                layers.push(layer.clone());
            }
            layers.iter().position(|l| *l == layer)
        };
        let explicit = code_spans(c[may]).into_iter().collect::<BTreeSet<_>>();
        let below = c[may].contains("below");
        for module in code_spans(c[1]) {
            let previous = rows.insert(
                module.clone(),
                Row {
                    rank,
                    layer: layer.clone(),
                    explicit: explicit.clone(),
                    below,
                },
            );
            assert!(previous.is_none(), "`{module}` has two rows in the table");
        }
    }
    rows
}

fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// The module names in backticks, without a trailing `/` or `.rs`.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim_end_matches('/').trim_end_matches(".rs").to_string())
        .collect()
}

/// The source with comments, string and char literals blanked (line breaks kept, so line
/// numbers hold) and `#[cfg(test)]` items removed.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && !ident(b, i) {
            // Raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"'
                    && b[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|h| **h == b'#')
                        .count()
                        == hashes
                {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a): only literals close.
            let close = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|x| *x == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    out.extend(std::iter::repeat_n(b' ', end + 1 - i));
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    let code = String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII replaced)");
    strip_cfg_test(&code)
}

fn ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Blanks each item under `#[cfg(test)]`: up to its first `;` at depth 0 or its closing brace.
fn strip_cfg_test(code: &str) -> String {
    let mut b = code.as_bytes().to_vec();
    let marker = b"#[cfg(test)]";
    let mut from = 0;
    while let Some(p) = find(&b[from..], marker).map(|p| p + from) {
        let mut depth = 0usize;
        let mut end = b.len();
        for (j, ch) in b.iter().enumerate().skip(p + marker.len()) {
            match ch {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        for ch in &mut b[p..end] {
            if *ch != b'\n' {
                *ch = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(b).expect("only ASCII replaced")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The top-level modules named after `crate::` on each line (a grouped `crate::{a::x, b}`
/// names each of its members).
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let needle = b"crate::";
    let mut from = 0;
    while let Some(p) = find(&b[from..], needle).map(|p| p + from) {
        from = p + needle.len();
        if p > 0 && (b[p - 1].is_ascii_alphanumeric() || b[p - 1] == b'_' || b[p - 1] == b'$') {
            continue;
        }
        let line_of = |at: usize| code[..at].matches('\n').count() + 1;
        let rest = &code[from..];
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let start = code.len() - group.len();
            let mut depth = 1;
            let mut member_start = start;
            for (k, ch) in code[start..].char_indices() {
                let at = start + k;
                match ch {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        let member = code[member_start..at].trim();
                        if let Some(name) = leading_ident(member) {
                            let offset =
                                member_start + code[member_start..].find(&name[..]).unwrap_or(0);
                            found.push((line_of(offset), name));
                        }
                        member_start = at + 1;
                        if ch == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else if let Some(name) = leading_ident(rest) {
            found.push((line_of(p), name));
        }
    }
    found
}

fn leading_ident(s: &str) -> Option<String> {
    let name: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// Every production `.rs` file under `src` (test files and folders left out; `main.rs` is the
/// binary's own crate and imports the library by name).
fn sources(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != "tests" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" && path != src.join("main.rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The top-level module a file belongs to (`src/proxy/send.rs` → `proxy`, `src/lib.rs` → `lib`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let first = rel
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("");
    first.trim_end_matches(".rs").to_string()
}

/// The imports between top-level modules.
fn imports(src: &Path) -> Vec<Import> {
    let modules: BTreeSet<String> = sources(src).iter().map(|f| module_of(src, f)).collect();
    let mut all = BTreeSet::new();
    for file in sources(src) {
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let from = module_of(src, &file);
        let rel = file
            .strip_prefix(src.parent().unwrap_or(src))
            .unwrap_or(&file);
        for (line, name) in crate_paths(&code_only(&text)) {
            // `crate::Item` names an item of lib.rs itself: an import of the wiring layer.
            let to = if modules.contains(&name) {
                name
            } else {
                "lib".to_string()
            };
            if to != from {
                all.insert(Import {
                    from: from.clone(),
                    to,
                    file: rel.display().to_string(),
                    line,
                });
            }
        }
    }
    all.into_iter().collect()
}

/// The rules' verdict on a tree: every import against the table, then cycles.
fn check(src: &Path) -> Vec<Violation> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let table = read_table(&lib);
    let mut out = Vec::new();
    let mut modules = BTreeSet::new();
    for file in sources(src) {
        modules.insert(module_of(src, &file));
    }
    for m in &modules {
        if !table.contains_key(m) {
            out.push(Violation {
                what: format!(
                    "src/{m}: the top-level module `{m}` has no row in the layer table in src/lib.rs; add it to its layer"
                ),
            });
        }
    }
    let imports = imports(src);
    for i in &imports {
        let (Some(from), Some(to)) = (table.get(&i.from), table.get(&i.to)) else {
            continue; // a module without a row, reported above
        };
        let lower = matches!((from.rank, to.rank), (Some(f), Some(t)) if t < f);
        let allowed = from.explicit.contains(&i.to) || (from.below && lower);
        if !allowed {
            let rule = match (from.rank, to.rank) {
                (_, None) => "a side module is imported only by the rows that name it".to_string(),
                (None, _) => "a side module imports only what its row names".to_string(),
                (Some(f), Some(t)) if t == f => format!(
                    "modules of one layer ({}) do not import each other unless the row names it; move the shared item down",
                    from.layer
                ),
                (Some(f), Some(t)) if t > f => format!(
                    "a lower module never imports a higher one (layer {} → {}); move the item down to the lowest module both may import",
                    from.layer, to.layer
                ),
                _ => format!(
                    "its row in the table names what it may import, and `{}` is not among them",
                    i.to
                ),
            };
            out.push(Violation {
                what: format!(
                    "{}:{}: `{}` imports `{}`: {rule}",
                    i.file, i.line, i.from, i.to
                ),
            });
        }
    }
    out.extend(cycles(&imports));
    out
}

/// Each cycle between top-level modules, found by depth-first search, with one import per edge.
fn cycles(imports: &[Import]) -> Vec<Violation> {
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for i in imports {
        edges.entry(&i.from).or_default().entry(&i.to).or_insert(i);
    }
    let mut out = Vec::new();
    let mut reported = BTreeSet::new();
    for start in edges.keys().copied() {
        // Paths from `start` back to `start`, shortest first (breadth-first).
        let mut queue = std::collections::VecDeque::from([vec![start]]);
        let mut seen = BTreeSet::from([start]);
        while let Some(path) = queue.pop_front() {
            let last = *path.last().expect("paths are never empty");
            for next in edges
                .get(last)
                .map(|m| m.keys().copied().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if next == start {
                    let mut members: Vec<&str> = path.clone();
                    members.sort_unstable();
                    if reported.insert(members) {
                        let mut steps = Vec::new();
                        let mut cycle = path.clone();
                        cycle.push(start);
                        for w in cycle.windows(2) {
                            let i = edges[w[0]][w[1]];
                            steps
                                .push(format!("`{}` → `{}` ({}:{})", i.from, i.to, i.file, i.line));
                        }
                        out.push(Violation {
                            what: format!(
                                "import cycle between top-level modules: {}",
                                steps.join(", ")
                            ),
                        });
                    }
                } else if seen.insert(next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    queue.push_back(longer);
                }
            }
        }
    }
    out
}

#[test]
fn src_follows_the_published_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = check(&src);
    assert!(
        violations.is_empty(),
        "{} import(s) break the layer table in src/lib.rs:\n{}",
        violations.len(),
        violations
            .iter()
            .map(|v| format!("  {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The check saw the real graph: the request path's top imports the layers below it.
    let found = imports(&src);
    assert!(
        found.iter().any(|i| i.from == "proxy" && i.to == "policy"),
        "the scan found proxy → policy (it reads the real tree)"
    );
}

#[test]
fn config_imports_nothing_above_policy() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let table = read_table(&std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs"));
    let policy = table["policy"].rank.expect("policy is in the stack");
    let above: Vec<Import> = imports(&src)
        .into_iter()
        .filter(|i| i.from == "config")
        .filter(|i| {
            table
                .get(&i.to)
                .and_then(|r| r.rank)
                .is_none_or(|r| r > policy)
        })
        .collect();
    assert!(above.is_empty(), "config/ imports above policy/: {above:?}");
}

/// The checker itself, on a small tree with one of each mistake and each thing it must not count.
#[test]
fn the_check_finds_each_kind_of_mistake() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("src");
    let write = |rel: &str, text: &str| {
        let path = src.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(
        "lib.rs",
        "//! | layer | module | its one job | may import |\n\
         //! |---|---|---|---|\n\
         //! | 0 | `util/` | helpers | crates only |\n\
         //! | 0 | `web/` | HTTP helpers | `util` |\n\
         //! | 1 | `policy/` | decisions | `util` |\n\
         //! | 2 | `proxy/` | requests | the layers below |\n\
         //! | 2 | `tight/` | a row that names its imports | `util` |\n\
         //! | 3 | `lib` | wiring | the layers below, and `sandbox` |\n\
         //! | side | `sandbox/` | fake | `util` |\n\
         pub mod util; pub mod web; pub mod policy; pub mod proxy; pub mod sandbox;\n",
    );
    write(
        "util/mod.rs",
        "// crate::proxy in a comment is no import\nconst S: &str = \"crate::proxy\";\n",
    );
    write("web/mod.rs", "use crate::util::x;\n");
    write(
        "policy/mod.rs",
        "use crate::util::y;\nuse crate::{util::z,\n    proxy::Up};\n#[cfg(test)]\nmod tests { use crate::sandbox::Fake; }\n",
    );
    write("policy/tests.rs", "use crate::sandbox::Fake;\n");
    write(
        "proxy/mod.rs",
        "pub fn f() { crate::policy::decide(); crate::sandbox::serve(); }\n",
    );
    write(
        "tight/mod.rs",
        "use crate::util::ok;\nuse crate::policy::not_named;\n",
    );
    write(
        "sandbox/mod.rs",
        "use crate::util::a;\nuse crate::policy::b;\n",
    );
    write("mystery.rs", "use crate::util::q;\n");
    write("web/error.rs", "fn f() -> crate::StartError { todo!() }\n");
    let found: Vec<String> = check(&src).iter().map(|v| v.to_string()).collect();
    let expect = [
        "src/mystery: the top-level module `mystery` has no row",
        "src/policy/mod.rs:3: `policy` imports `proxy`: a lower module never imports a higher one (layer 1 → 2)",
        "src/proxy/mod.rs:1: `proxy` imports `sandbox`: a side module is imported only by the rows that name it",
        "src/sandbox/mod.rs:2: `sandbox` imports `policy`: a side module imports only what its row names",
        "src/tight/mod.rs:2: `tight` imports `policy`: its row in the table names what it may import, and `policy` is not among them",
        "src/web/error.rs:1: `web` imports `lib`: a lower module never imports a higher one (layer 0 → 3)",
        "import cycle between top-level modules: `policy` → `proxy` (src/policy/mod.rs:3), `proxy` → `policy` (src/proxy/mod.rs:1)",
        "import cycle between top-level modules: `policy` → `proxy` (src/policy/mod.rs:3), `proxy` → `sandbox` (src/proxy/mod.rs:1), `sandbox` → `policy` (src/sandbox/mod.rs:2)",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.starts_with(e)),
            "expected a violation starting {e:?}; found:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(
        found.len(),
        expect.len(),
        "nothing else is reported (comments, strings, cfg(test) code, tests.rs and the explicit `web` → `util` are fine):\n{}",
        found.join("\n")
    );
}

/// The handbook's architecture page repeats the table for readers: row for row, the same.
#[test]
fn the_handbook_shows_the_same_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The table that starts at `| layer | module |`, one row a line.
    let table = |lines: Vec<&str>| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.trim())
            .skip_while(|l| !l.starts_with("| layer | module |"))
            .take_while(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect()
    };
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let page =
        std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let published = table(lib.lines().filter_map(|l| l.strip_prefix("//!")).collect());
    let shown = table(page.lines().collect());
    assert!(
        published.len() > 5,
        "the table in src/lib.rs was found: {published:?}"
    );
    assert_eq!(
        shown, published,
        "docs/architecture.md shows the layer table of src/lib.rs, row for row (copy it again)"
    );
}
