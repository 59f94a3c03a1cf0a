//! The handbook cannot drift from the code (issue 37). Each test derives one side from the code
//! itself, never from a hand-kept list:
//!
//! - configuration keys: the keys the parser accepts, read from the parser (serde's
//!   `deny_unknown_fields` answer to an unknown key lists the accepted ones), against the key
//!   column of `docs/configuration.md` and the keys of the root `proxy.yaml`;
//! - error codes: every `"PROXY_…"` literal outside the tests of `src/`, against
//!   `docs/troubleshooting.md`;
//! - metrics: every family a running proxy's `/metrics` exposes, against `docs/operations.md`;
//! - links: every relative link and `#anchor` of `README.md` and `docs/*.md`;
//! - config examples: every block fenced as `yaml proxy.yaml` passes `zoho-auth-proxy check`.

mod common;

use common::*;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use zoho_auth_proxy::config::Config;

const PROBE: &str = "zz_probe";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Markdown text with fenced code blocks blanked out (line count kept).
fn prose(markdown: &str) -> String {
    let mut fenced = false;
    markdown
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return "";
            }
            if fenced {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Configuration keys

/// One step of a key path: a map key, and whether its value is a list of maps.
#[derive(Clone)]
struct Step {
    name: String,
    list: bool,
}

fn key_path(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| {
            if s.list {
                format!("{}[]", s.name)
            } else {
                s.name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The YAML with `leaf` at the end of `steps` (each list step holds one map).
fn nested(steps: &[Step], leaf: Value) -> String {
    let mut value = leaf;
    for step in steps.iter().rev() {
        let inner = if step.list {
            Value::Sequence(vec![value])
        } else {
            value
        };
        let mut map = Mapping::new();
        map.insert(Value::String(step.name.clone()), inner);
        value = Value::Mapping(map);
    }
    serde_yaml::to_string(&value).expect("YAML renders")
}

/// The parser's message for `text` (empty when it is accepted).
fn parse_error(text: &str) -> String {
    match Config::from_yaml_str_with(text, &|_| None, Path::new(".")) {
        Ok(_) => String::new(),
        Err(e) => e.message,
    }
}

/// The keys the section at `steps` accepts, if it is a section (a map with named keys): the
/// parser's answer to an unknown key there lists them.
fn section_keys(steps: &[Step]) -> Option<Vec<String>> {
    let mut probe = Mapping::new();
    probe.insert(Value::String(PROBE.into()), Value::Number(1.into()));
    let message = parse_error(&nested(steps, Value::Mapping(probe)));
    let rest = message.split_once(&format!("unknown field `{PROBE}`"))?.1;
    let expected = rest.split_once("expected")?.1;
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Every key path the parser accepts (sections included), walking each section it finds.
fn accepted_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut pending: Vec<Vec<Step>> = vec![Vec::new()];
    while let Some(section) = pending.pop() {
        let names = section_keys(&section).unwrap_or_else(|| {
            panic!(
                "`{}` is a section but the parser did not list its keys",
                key_path(&section)
            )
        });
        for name in names {
            let mut as_map = section.clone();
            as_map.push(Step {
                name: name.clone(),
                list: false,
            });
            let mut as_list = section.clone();
            as_list.push(Step { name, list: true });
            keys.insert(key_path(&as_map));
            if section_keys(&as_map).is_some() {
                pending.push(as_map);
            } else if section_keys(&as_list).is_some() {
                pending.push(as_list);
            }
        }
    }
    keys
}

/// The keys the configuration reference documents: the first cell of every table row, when it is
/// one backticked key path (`limits.max_body`, `accounts[].token.store`).
fn documented_keys() -> BTreeSet<String> {
    let text = prose(&read("docs/configuration.md"));
    text.lines()
        .filter_map(|line| {
            let cell = line.strip_prefix("| `")?.split_once("` |")?.0;
            cell.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.' || c == '[' || c == ']')
                .then(|| cell.to_string())
        })
        .collect()
}

/// The steps of a documented key path.
fn steps_of(path: &str) -> Vec<Step> {
    path.split('.')
        .map(|part| match part.strip_suffix("[]") {
            Some(name) => Step {
                name: name.into(),
                list: true,
            },
            None => Step {
                name: part.into(),
                list: false,
            },
        })
        .collect()
}

#[test]
fn every_accepted_config_key_is_documented_and_every_documented_key_is_accepted() {
    let accepted = accepted_keys();
    assert!(
        accepted.len() > 50
            && accepted.contains("limits.max_body")
            && accepted.contains("accounts[].token.store")
            && accepted.contains("clients[].key"),
        "the walk of the parser found its sections: {accepted:?}"
    );
    let documented = documented_keys();
    let undocumented: Vec<&String> = accepted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "keys the parser accepts that docs/configuration.md does not document: {undocumented:?}"
    );
    let unknown: Vec<&String> = documented.difference(&accepted).collect();
    assert!(
        unknown.is_empty(),
        "keys docs/configuration.md documents that the parser refuses: {unknown:?}"
    );
    // The same from the other side: each documented key, written alone, is not refused as
    // unknown by the parser.
    for key in &documented {
        let message = parse_error(&nested(&steps_of(key), Value::Null));
        assert!(
            !message.contains("unknown field"),
            "`{key}` is refused by the parser: {message}"
        );
    }
}

/// The key paths of a YAML config, descending only into the parser's sections.
fn keys_of(value: &Value, prefix: &str, sections: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    if let Value::Mapping(map) = value {
        {
            for (k, v) in map {
                let Some(k) = k.as_str() else { continue };
                let path = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                if sections.contains(&path) {
                    keys_of(v, &path, sections, out);
                } else if let (Value::Sequence(items), true) =
                    (v, sections.contains(&format!("{path}[]")))
                {
                    for item in items {
                        keys_of(item, &format!("{path}[]"), sections, out);
                    }
                }
            }
        }
    }
}

#[test]
fn the_example_proxy_yaml_uses_documented_keys_only_and_passes_check() {
    let accepted = accepted_keys();
    // Sections: every proper prefix of an accepted key (`accounts[]`, `accounts[].token`, …).
    let sections: BTreeSet<String> = accepted
        .iter()
        .flat_map(|k| {
            let parts: Vec<&str> = k.split('.').collect();
            (1..parts.len())
                .map(|n| parts[..n].join("."))
                .collect::<Vec<_>>()
        })
        .collect();
    let text = read("proxy.yaml");
    let value: Value = serde_yaml::from_str(&text).expect("proxy.yaml is YAML");
    let mut keys = BTreeSet::new();
    keys_of(&value, "", &sections, &mut keys);
    assert!(keys.len() > 20, "proxy.yaml's keys were read: {keys:?}");
    let documented = documented_keys();
    let missing: Vec<&String> = keys.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "proxy.yaml keys not in docs/configuration.md: {missing:?}"
    );
    let out = check(&root().join("proxy.yaml"), &text);
    assert!(out.0, "`check` accepts proxy.yaml: {}", out.1);
}

// ---------------------------------------------------------------------------------------------
// Config examples

/// Runs `zoho-auth-proxy check --config path` with every `${VAR}` of `text` set to a dummy value;
/// returns (success, output).
fn check(path: &Path, text: &str) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zoho-auth-proxy"));
    command.args(["check", "--config"]).arg(path);
    for var in text.split("${").skip(1).filter_map(|r| r.split('}').next()) {
        let name = var.split(":-").next().unwrap_or(var);
        command.env(name, format!("1000.docs-example-value-{name}"));
    }
    let out = command.output().expect("the binary runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The markdown files the handbook consists of: README.md and docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The blocks fenced as ```` ```yaml proxy.yaml ````: (file, line, text).
fn marked_configs() -> Vec<(String, usize, String)> {
    let mut blocks = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("markdown");
        let name = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        let mut current: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let fence = line.trim_start();
            match &mut current {
                Some((start, body)) => {
                    if fence.starts_with("```") {
                        blocks.push((name.clone(), *start, std::mem::take(body)));
                        current = None;
                    } else {
                        body.push_str(line);
                        body.push('\n');
                    }
                }
                None if fence.starts_with("```yaml proxy.yaml") => {
                    current = Some((i + 1, String::new()))
                }
                None => {}
            }
        }
    }
    blocks
}

#[test]
fn every_config_example_marked_proxy_yaml_passes_check() {
    let blocks = marked_configs();
    assert!(
        blocks.len() >= 3,
        "the README and the configuration reference hold marked examples: {blocks:?}"
    );
    for (file, line, text) in blocks {
        let dir = tempfile::tempdir().expect("temp dir");
        // Secret files of the examples (`/run/secrets/…`) become dummy files in the temp dir.
        let secrets = dir.path().join("run/secrets");
        let mut config = text.clone();
        for path in text
            .split("/run/secrets/")
            .skip(1)
            .filter_map(|r| r.split(|c: char| c.is_whitespace()).next())
        {
            let file = secrets.join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("secret dir");
            std::fs::write(&file, "docs-example-secret-value\n").expect("secret file");
        }
        config = config.replace("/run/secrets/", &format!("{}/", secrets.display()));
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, &config).expect("write the example");
        let (ok, out) = check(&path, &config);
        assert!(
            ok,
            "{file}:{line}: the example marked `yaml proxy.yaml` fails check:\n{out}\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Error codes

/// Every `"PROXY_…"` string literal in `src/`, outside test modules and `tests.rs` files.
fn codes_in_src() -> BTreeMap<String, String> {
    let mut codes = BTreeMap::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs")
                || path.file_name().is_some_and(|n| n == "tests.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for piece in code.split("\"PROXY_").skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if piece[name.len()..].starts_with('"') && !name.is_empty() {
                    codes
                        .entry(format!("PROXY_{name}"))
                        .or_insert_with(|| path.display().to_string());
                }
            }
        }
    }
    codes
}

#[test]
fn every_error_code_the_proxy_sends_is_in_troubleshooting() {
    let codes = codes_in_src();
    assert!(
        codes.contains_key("PROXY_SCOPE_DENIED") && codes.contains_key("PROXY_HOST_NOT_ALLOWED"),
        "the scan of src/ found the codes: {codes:?}"
    );
    let page = read("docs/troubleshooting.md");
    let missing: Vec<String> = codes
        .iter()
        .filter(|(code, _)| !page.contains(&format!("`{code}`")))
        .map(|(code, file)| format!("{code} (from {file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "codes missing from docs/troubleshooting.md: {missing:?}"
    );
    // And no page names a code the proxy cannot send.
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("markdown");
        let pieces = text.split("PROXY_").collect::<Vec<_>>();
        for (before, piece) in pieces.iter().zip(pieces.iter().skip(1)) {
            // A word of its own (`ZOHO_AUTH_PROXY_PGO` is not a code).
            if before
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                continue;
            }
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            let code = format!("PROXY_{}", name.trim_end_matches('_'));
            if name.len() > 2 && !name.ends_with('_') {
                assert!(
                    codes.contains_key(&code),
                    "{} names {code}, which the proxy never sends",
                    file.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

#[tokio::test]
async fn every_metric_the_proxy_registers_is_on_the_operations_page() {
    let (_zoho, proxy) = start_proxy(&["ZohoCRM.modules.leads.READ"], "").await;
    let text = proxy.metrics_text().await;
    // OpenMetrics: `# TYPE name counter` has samples `name_total`.
    let families: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (name, kind) = (parts.next()?, parts.next()?);
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            })
        })
        .collect();
    assert!(
        families.len() >= 15 && families.iter().any(|f| f == "zoho_proxy_requests_total"),
        "/metrics lists the families:\n{text}"
    );
    let page = read("docs/operations.md");
    let missing: Vec<&String> = families
        .iter()
        .filter(|f| !page.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from docs/operations.md: {missing:?}"
    );
    // And the page's metric table lists nothing the proxy does not expose.
    for row in prose(&page).lines() {
        if let Some(name) = row
            .strip_prefix("| `zoho_proxy_")
            .and_then(|r| r.split('`').next())
        {
            let name = format!("zoho_proxy_{name}");
            assert!(
                families.contains(&name),
                "docs/operations.md lists {name}, which /metrics does not have"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Links and anchors

/// GitHub's anchor for a heading: lower case, inline markup dropped, anything but letters,
/// digits, spaces, `-` and `_` removed, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings (GitHub numbers repeats `-1`, `-2`, …).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for line in prose(markdown).lines() {
        let trimmed = line.trim_start_matches('#');
        if trimmed.len() == line.len() || !trimmed.starts_with(' ') {
            continue;
        }
        // Link text stays, the target goes: `[text](url)` → `text`.
        let mut text = String::new();
        let mut rest = trimmed.trim();
        while let Some(open) = rest.find("](") {
            text.push_str(&rest[..open]);
            rest = rest[open + 2..].split_once(')').map_or("", |(_, r)| r);
        }
        text.push_str(rest);
        let base = slug(text.replace('[', "").trim());
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The inline links of a markdown text outside code: `[text](target)` and `![alt](target)`.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in prose(markdown).lines().enumerate() {
        // Inline code spans hold examples, not links.
        let line: String = line
            .split('`')
            .enumerate()
            .filter(|(n, _)| n % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((i + 1, after[..end].trim().to_string()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("markdown");
        let dir = file.parent().expect("folder");
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let name = format!("{}:{line}: {target}", file.display());
            if !resolved.exists() {
                broken.push(format!("{name} (no such file)"));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&target_text).contains(anchor) {
                broken.push(format!("{name} (no such heading)"));
            }
        }
    }
    assert!(checked > 50, "links were found: {checked}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn slugs_follow_github() {
    for (heading, want) in [
        (
            "Headless machines: `zoho-auth-proxy authorize`",
            "headless-machines-zoho-auth-proxy-authorize",
        ),
        (
            "Profile-guided optimisation: `bench/pgo.sh`",
            "profile-guided-optimisation-benchpgosh",
        ),
        (
            "Admin listener: probes, status, metrics",
            "admin-listener-probes-status-metrics",
        ),
        (
            "Zoho's 429: back-off without a storm",
            "zohos-429-back-off-without-a-storm",
        ),
        ("`admin`", "admin"),
    ] {
        assert_eq!(slug(heading.replace('`', "").as_str()), want, "{heading}");
    }
    let repeated = anchors("# A\n## Tests\n```\n# not a heading\n```\n## Tests\n");
    assert!(
        repeated.contains("tests")
            && repeated.contains("tests-1")
            && !repeated.contains("not-a-heading"),
        "{repeated:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Shape

#[test]
fn the_readme_is_short_and_the_handbook_has_its_pages() {
    let readme = read("README.md");
    assert!(
        readme.lines().count() <= 400,
        "README.md has {} lines; the limit is 400",
        readme.lines().count()
    );
    let summary = read("docs/SUMMARY.md");
    for page in [
        "self-client-token.md",
        "configuration.md",
        "decisions.md",
        "fleet.md",
        "credits.md",
        "accounts.md",
        "security.md",
        "operations.md",
        "performance.md",
        "troubleshooting.md",
        "architecture.md",
    ] {
        assert!(
            root().join("docs").join(page).exists(),
            "docs/{page} exists"
        );
        assert!(
            summary.contains(&format!("]({page})")),
            "docs/SUMMARY.md lists {page}"
        );
        assert!(
            read("docs/README.md").contains(&format!("]({page})")),
            "docs/README.md lists {page}"
        );
    }
}
