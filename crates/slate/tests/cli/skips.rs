//! The promise of the README: a test that cannot run here for a reason
//! known when it is built (root) is reported by `cargo test` as ignored
//! with that reason, not passed silently with a `SKIPPED:` line nobody
//! sees. A test whose body starts by skipping when not root must carry
//! `#[cfg_attr(not(test_root), ignore = "...")]`.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Tests (by file and name) that begin with a root check that skips and
/// have no `ignore` attribute.
fn unmarked(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim_start().strip_prefix("fn ") else {
            continue;
        };
        // The attributes above the function.
        let mut j = i;
        let mut attrs = String::new();
        while j > 0 {
            let a = lines[j - 1].trim();
            if a.starts_with("#[")
                || a.starts_with(')')
                || a.starts_with("not(")
                || a.starts_with("test_")
                || a.starts_with("ignore")
                || a.starts_with("all(")
                || a.ends_with(',')
            {
                attrs.push_str(a);
                j -= 1;
            } else {
                break;
            }
        }
        if !attrs.contains("#[test]") {
            continue;
        }
        let first = lines[i + 1..]
            .iter()
            .map(|l| l.trim())
            .find(|l| !l.is_empty() && !l.starts_with("//"))
            .unwrap_or("");
        let root_guard = first.starts_with("if !is_root()")
            || first.starts_with("if !crate::fsutil::is_root()")
            || first.starts_with("if !common::is_root()");
        if root_guard && !attrs.contains("ignore") {
            out.push(rest.split('(').next().unwrap_or(rest).to_string());
        }
    }
    out
}

#[test]
fn tests_that_need_root_are_reported_as_ignored() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for d in [
        "slate/tests",
        "slate-core/src",
        "slate-remote/src",
        "slate-remote/tests",
    ] {
        let p = crates.join(d);
        if p.is_dir() {
            sources(&p, &mut files);
        }
    }
    assert!(files.len() > 50, "{} files", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        for name in unmarked(&text) {
            bad.push(format!("{}: {name}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "tests that skip when not root without #[cfg_attr(not(test_root), ignore = \"...\")]:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_finds_an_unmarked_test() {
    let text = "#[test]\nfn a() {\n    if !is_root() {\n        return skip(\"root\");\n    }\n}\n\
                #[test]\n#[cfg_attr(not(test_root), ignore = \"needs root\")]\nfn b() {\n    if !is_root() {\n        return;\n    }\n}\n";
    assert_eq!(unmarked(text), ["a"]);
}
