//! The checkable invariants of `ARCHITECTURE.md`, checked: which crate may depend on
//! which (read from `cargo metadata`, so a new dependency is judged the day it is added),
//! where SQL, protobuf and tonic may appear, and who may print. A rule broken here is a
//! design discussion, not a test to relax.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Each workspace package's declared dependencies: name -> kinds (`normal`, `dev`, `build`).
fn dependencies() -> BTreeMap<String, Vec<(String, String)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(ROOT)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|d| {
                    (
                        d["name"].as_str().unwrap().to_owned(),
                        d["kind"].as_str().unwrap_or("normal").to_owned(),
                    )
                })
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

/// The normal (non-dev) dependencies of `package`.
fn normal<'a>(deps: &'a BTreeMap<String, Vec<(String, String)>>, package: &str) -> Vec<&'a str> {
    deps.get(package)
        .unwrap_or_else(|| panic!("no package {package}"))
        .iter()
        .filter(|(_, kind)| kind == "normal")
        .map(|(name, _)| name.as_str())
        .collect()
}

#[test]
fn crates_depend_only_in_the_written_direction() {
    let deps = dependencies();
    let c2m = |package: &str| -> Vec<String> {
        let mut v: Vec<String> = normal(&deps, package)
            .into_iter()
            .filter(|d| d.starts_with("c2m"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        c2m("c2m-domain"),
        Vec::<String>::new(),
        "c2m-domain depends on no c2m crate"
    );
    assert_eq!(
        c2m("c2m-planner"),
        Vec::<String>::new(),
        "c2m-planner depends on no c2m crate"
    );
    assert_eq!(
        c2m("c2m-proto"),
        Vec::<String>::new(),
        "c2m-proto is generated code only"
    );
    assert_eq!(
        c2m("c2m-store"),
        ["c2m-domain"],
        "c2m-store depends on the domain only"
    );
    for d in c2m("c2m-server") {
        assert!(
            ["c2m-domain", "c2m-store", "c2m-proto", "c2m-planner"].contains(&d.as_str()),
            "c2m-server may not depend on {d}"
        );
    }
    for (package, list) in &deps {
        if package != "c2m" {
            assert!(
                !list.iter().any(|(d, _)| d == "c2m-server"),
                "only the root package may depend on c2m-server, not {package}"
            );
        }
    }
}

#[test]
fn sql_lives_in_the_store_and_protobuf_in_the_server() {
    let deps = dependencies();
    for (package, list) in &deps {
        let has = |name: &str| list.iter().any(|(d, _)| d == name);
        if package != "c2m-store" {
            assert!(
                !has("sqlx"),
                "{package} depends on sqlx: all SQL lives in c2m-store"
            );
        }
        if ["c2m-domain", "c2m-store", "c2m-planner"].contains(&package.as_str()) {
            for edge in ["tonic", "prost", "prost-types", "tonic-types"] {
                assert!(
                    !has(edge),
                    "{package} depends on {edge}: only the server knows protobuf"
                );
            }
        }
        if ["c2m-domain", "c2m-planner"].contains(&package.as_str()) {
            assert!(
                !normal(&deps, package).contains(&"tokio"),
                "{package} depends on tokio: the domain and the planner are synchronous"
            );
        }
    }
    // And in the sources, whatever the manifests say (a path or a re-export).
    for file in rust_files(&["src", "examples", "tests", "crates"]) {
        let text = code(&file);
        let shown = file.strip_prefix(ROOT).unwrap().display().to_string();
        if shown.ends_with("tests/api/architecture.rs") {
            continue; // this file names what it looks for
        }
        if !shown.starts_with("crates/c2m-store/") {
            assert!(!text.contains("sqlx::"), "{shown} uses sqlx");
        }
        let below_server = [
            "crates/c2m-domain/",
            "crates/c2m-store/",
            "crates/c2m-planner/",
        ]
        .iter()
        .any(|p| shown.starts_with(p));
        if below_server {
            for edge in ["tonic::", "prost::", "c2m_proto"] {
                assert!(!text.contains(edge), "{shown} uses {edge}");
            }
        }
    }
}

/// Library code logs through `tracing` to standard error; only the command line
/// (`c2m_server::cli`) writes to standard output. Tests and test support may print.
#[test]
fn library_crates_do_not_print() {
    let mut checked = 0;
    for file in rust_files(&["crates"]) {
        let shown = file.strip_prefix(ROOT).unwrap().display().to_string();
        let library = shown.contains("/src/")
            && !shown.ends_with("crates/c2m-server/src/cli.rs")
            && !shown.contains("/src/conformance");
        if !library {
            continue;
        }
        checked += 1;
        let all = code(&file);
        let text = without_tests(&all);
        for printing in [
            "println!",
            "print!(",
            "eprintln!",
            "eprint!(",
            "dbg!(",
            "std::io::stdout",
            "std::io::stderr",
        ] {
            assert!(!text.contains(printing), "{shown} prints ({printing})");
        }
    }
    assert!(checked > 40, "only {checked} library files found");
}

fn rust_files(under: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in under {
        walk(&Path::new(ROOT).join(dir), &mut out);
    }
    out
}

/// The file without its comments (doc comments may name anything).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The code before the first test-only item (`#[cfg(test)]`, `#[cfg(all(test, ...))]`):
/// test modules close every file here.
fn without_tests(text: &str) -> &str {
    let end = ["#[cfg(test)]", "#[cfg(all(test"]
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

#[test]
fn the_checks_see_what_they_look_for() {
    assert_eq!(
        without_tests("fn a() {}\n#[cfg(test)]\nmod tests { fn b() { println!(); } }"),
        "fn a() {}\n"
    );
    let deps = dependencies();
    assert!(normal(&deps, "c2m-store").contains(&"sqlx"));
    assert!(normal(&deps, "c2m-server").contains(&"tonic"));
}
