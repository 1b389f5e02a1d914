//! The docs stay linked: every relative markdown link in `README.md`, `ARCHITECTURE.md`
//! and `docs/*.md` points to a file that exists (and, with a `#fragment`, to a heading
//! of that file), every page of `docs/` is listed in the index `docs/README.md`, and the
//! README stays a front door (under 15 KB; the rest belongs in `docs/`).
//!
//! Links inside code (fenced blocks and `inline code`) are not links and are skipped;
//! links with a scheme (`https:`, `mailto:`) are not checked.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The README's budget, in bytes.
const README_MAX_BYTES: u64 = 15_000;

/// A link found in a page: the line it is on and its target as written.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// The pages checked: the two at the root and every `.md` file of `docs/`.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut pages = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// `text` without its inline code spans (each replaced by `x`, so a link whose text is
/// code, like [`a.toml`](a.toml), stays a link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(fence) {
            Some(end) => {
                out.push('x');
                rest = &after[end + ticks..];
            }
            None => {
                // An unmatched backtick is text.
                out.push_str(fence);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The lines of `text` outside fenced code blocks, numbered from 1.
fn unfenced_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The lines of `text` outside fenced code blocks, numbered from 1, code spans removed.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    unfenced_lines(text)
        .into_iter()
        .map(|(n, line)| (n, without_code_spans(line)))
        .collect()
}

/// Every link of a page: inline `[text](target "title")` (images too) and reference
/// definitions `[id]: target`.
fn links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (line, prose) in prose_lines(text) {
        let trimmed = prose.trim_start();
        if trimmed.starts_with('[') {
            if let Some(close) = trimmed.find("]:") {
                let target = trimmed[close + 2..].split_whitespace().next();
                if let Some(target) = target {
                    out.push(Link {
                        line,
                        target: target.trim_matches(['<', '>']).to_owned(),
                    });
                    continue;
                }
            }
        }
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let inside = after[..end].trim();
            let target = inside.split_whitespace().next().unwrap_or("");
            out.push(Link {
                line,
                target: target.trim_matches(['<', '>']).to_owned(),
            });
            rest = &after[end + 1..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings, numbered as GitHub numbers repeated ones.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in unfenced_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// What is wrong with each relative link of `text` (a page at `page`), one line each.
fn broken_links(page: &Path, text: &str) -> Vec<String> {
    let dir = page.parent().expect("a page is in a directory");
    let mut problems = Vec::new();
    for link in links(text) {
        let t = link.target.as_str();
        let has_scheme = t
            .split_once(':')
            .is_some_and(|(s, _)| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()));
        if has_scheme || t.starts_with("//") {
            continue;
        }
        let where_ = format!("{}:{}", shown(page), link.line);
        if t.is_empty() {
            problems.push(format!("{where_}: a link with no target"));
            continue;
        }
        let (path, fragment) = match t.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (t, None),
        };
        if path.is_empty() {
            let fragment = fragment.unwrap_or_default();
            if !anchors(text).contains(fragment) {
                problems.push(format!(
                    "{where_}: {t}: no heading #{fragment} on this page"
                ));
            }
            continue;
        }
        let file = dir.join(path);
        if !file.exists() {
            problems.push(format!("{where_}: {t}: {} does not exist", shown(&file)));
            continue;
        }
        if let Some(fragment) = fragment {
            if file.extension().is_some_and(|e| e == "md") && file.is_file() {
                let target_text = std::fs::read_to_string(&file).expect("a readable page");
                if !anchors(&target_text).contains(fragment) {
                    problems.push(format!(
                        "{where_}: {t}: {} has no heading #{fragment}",
                        shown(&file)
                    ));
                }
            }
        }
    }
    problems
}

/// A path relative to the repository root, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_relative_link_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", shown(&page)));
        checked += links(&text).len();
        problems.extend(broken_links(&page, &text));
    }
    // The docs link to each other a great deal; finding none means the parser is broken.
    assert!(checked > 50, "only {checked} links found");
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn readme_is_a_front_door() {
    let size = std::fs::metadata(Path::new(ROOT).join("README.md"))
        .expect("README.md")
        .len();
    assert!(
        size < README_MAX_BYTES,
        "README.md is {size} bytes, the budget is under {README_MAX_BYTES}: move the detail to a page of docs/"
    );
}

#[test]
fn the_index_lists_every_page() {
    let docs = Path::new(ROOT).join("docs");
    let index = std::fs::read_to_string(docs.join("README.md")).expect("docs/README.md");
    let listed: BTreeSet<String> = links(&index).into_iter().map(|l| l.target).collect();
    let missing: Vec<String> = pages()
        .iter()
        .filter(|p| p.parent() == Some(docs.as_path()))
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|name| name != "README.md" && !listed.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/README.md does not list {missing:?}"
    );
}

#[test]
fn the_checker_finds_what_is_broken() {
    let page = Path::new(ROOT).join("docs").join("example.md");
    let text = "# A page\n\n## Two words\n\n\
        [ok](planning.md) and [ok too](../README.md#the-api) and [here](#two-words)\n\
        [gone](no-such-page.md), ![image](missing.png) and [bad anchor](planning.md#nowhere)\n\
        `[code](not-a-link.md)` and [out](https://example.com/x.md)\n\
        ```\n[fenced](not-a-link-either.md)\n```\n\
        [ref]: ../nowhere/file.md\n";
    let problems = broken_links(&page, text);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(
        problems[0].contains("docs/example.md:6: no-such-page.md"),
        "{problems:#?}"
    );
    assert!(problems[1].contains("missing.png"), "{problems:#?}");
    assert!(
        problems[2].contains("has no heading #nowhere"),
        "{problems:#?}"
    );
    assert!(
        problems[3].contains("docs/example.md:11: ../nowhere/file.md"),
        "{problems:#?}"
    );
}

#[test]
fn anchors_follow_github() {
    let text = "# c2m\n## The API\n## `bench_load`: a fixed rate, and overload\n## The API\n";
    let got: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(
        got,
        [
            "bench_load-a-fixed-rate-and-overload",
            "c2m",
            "the-api",
            "the-api-1"
        ]
    );
}

/// Every reason the code can send (a quoted `UPPER_SNAKE_CASE` name in the domain's
/// errors or the server's status function) is documented in `docs/api.md`, so a new
/// refusal cannot ship undocumented.
#[test]
fn every_refusal_reason_is_documented() {
    let api = std::fs::read_to_string(Path::new(ROOT).join("docs/api.md")).expect("docs/api.md");
    let mut reasons = BTreeSet::new();
    for file in [
        "crates/c2m-domain/src/error.rs",
        "crates/c2m-server/src/status.rs",
    ] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(file)).expect(file);
        for quoted in text.split('"').skip(1).step_by(2) {
            let reason = quoted.len() > 3
                && quoted.contains('_')
                && quoted.chars().all(|c| c.is_ascii_uppercase() || c == '_');
            if reason {
                reasons.insert(quoted.to_owned());
            }
        }
    }
    assert!(
        reasons.len() > 30,
        "only {} reasons found: {reasons:?}",
        reasons.len()
    );
    let missing: Vec<&String> = reasons
        .iter()
        .filter(|r| !api.contains(&format!("`{r}`")))
        .collect();
    assert!(missing.is_empty(), "docs/api.md does not list {missing:?}");
}
