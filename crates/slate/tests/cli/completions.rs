//! `slate completions bash|zsh|fish`: the scripts are made, each shell
//! reads its own, and a revision or remote is completed from the
//! repository of `--repo` (bash by calling its completion function as
//! bash does, fish with `complete -C`).

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn script(shell: &str) -> String {
    let o = Command::new(slate_bin())
        .args(["completions", shell])
        .output()
        .expect("run slate");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8")
}

/// A repository with the refs `os/main` and `os/testing` and the remote
/// `origin`.
fn repo_with_names(dir: &Path) -> std::path::PathBuf {
    let repo = init(dir, "bare-user");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
    std::fs::write(tree.join("etc/os-release"), "NAME=Slate\n").expect("write");
    let t = tree.to_str().expect("utf-8");
    ok(&repo, &["commit", "-b", "os/main", t]);
    ok(&repo, &["commit", "-b", "os/testing", t]);
    ok(
        &repo,
        &[
            "remote",
            "add",
            "--no-sign-verify",
            "origin",
            "http://127.0.0.1:9/repo",
        ],
    );
    repo
}

/// PATH with the slate binary first: the scripts call `slate complete`.
fn path_with_slate() -> String {
    let bin = slate_bin();
    format!(
        "{}:{}",
        bin.parent().expect("folder").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn scripts_are_made_and_read_by_their_shells() {
    for (shell, helper, check) in [
        ("bash", "_slate_names", "bash"),
        ("zsh", "_slate_refs", "zsh"),
        ("fish", "__slate_refs", "fish"),
    ] {
        let s = script(shell);
        assert!(s.contains(helper), "{shell}: no {helper}");
        assert!(
            s.contains("slate complete "),
            "{shell}: no call of slate complete"
        );
        if !have(check) {
            skip(&format!(
                "{check} is not installed: its script is not parsed"
            ));
            continue;
        }
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join(format!("slate.{shell}"));
        std::fs::write(&f, &s).expect("write");
        let o = Command::new(check)
            .arg("-n")
            .arg(&f)
            .output()
            .expect("run the shell");
        assert!(
            o.status.success(),
            "{shell} -n: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn complete_prints_refs_and_remotes_and_nothing_without_a_repository() {
    let d = tempfile::tempdir().expect("tmp");
    let repo = repo_with_names(d.path());
    assert_eq!(ok(&repo, &["complete", "refs"]), "os/main\nos/testing\n");
    assert_eq!(ok(&repo, &["complete", "remotes"]), "origin\n");
    let o = Command::new(slate_bin())
        .env_remove("SLATE_REPO")
        .args(["complete", "refs", "--repo"])
        .arg(d.path().join("nothing-here"))
        .output()
        .expect("run slate");
    assert!(o.status.success());
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
}

#[test]
#[cfg_attr(not(test_have = "bash"), ignore = "needs bash")]
fn bash_completes_refs_and_remotes_from_the_repository() {
    if !have("bash") {
        return skip("bash is not installed");
    }
    let d = tempfile::tempdir().expect("tmp");
    let repo = repo_with_names(d.path());
    let f = d.path().join("slate.bash");
    std::fs::write(&f, script("bash")).expect("write");
    let r = repo.to_str().expect("utf-8");
    // Each line: the words of a command line, the last being completed.
    let complete = |words: &[&str]| -> Vec<String> {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let n = words.len() - 1;
        let prog = format!(
            "source '{}' || exit 1\n\
             COMP_WORDS=({})\nCOMP_CWORD={n}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
             COMP_POINT=${{#COMP_LINE}}\n\
             _slate_with_names slate \"${{COMP_WORDS[{n}]}}\" \"${{COMP_WORDS[{}]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            f.display(),
            quoted.join(" "),
            n - 1
        );
        let o = Command::new("bash")
            .env("PATH", path_with_slate())
            .env_remove("SLATE_REPO")
            .current_dir(d.path())
            .arg("-c")
            .arg(prog)
            .output()
            .expect("bash");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let got = complete(&["slate", "log", "--repo", r, "os/t"]);
    assert!(got.contains(&"os/testing".to_string()), "{got:?}");
    assert!(!got.contains(&"os/main".to_string()), "{got:?}");
    // The second revision of diff, after an option.
    let got = complete(&["slate", "diff", "--stat", "--repo", r, "os/main", "os/"]);
    assert!(got.contains(&"os/main".to_string()), "{got:?}");
    // An option's revision.
    let got = complete(&["slate", "commit", "--repo", r, "--parent", "os/m"]);
    assert!(got.contains(&"os/main".to_string()), "{got:?}");
    // A remote.
    let got = complete(&["slate", "remote", "show", "--repo", r, "or"]);
    assert!(got.contains(&"origin".to_string()), "{got:?}");
    // Not where a path goes: ls's second argument.
    let got = complete(&["slate", "ls", "--repo", r, "os/main", "os/"]);
    assert!(!got.contains(&"os/main".to_string()), "{got:?}");
}

#[test]
#[cfg_attr(not(test_have = "fish"), ignore = "needs fish")]
fn fish_completes_refs_from_the_repository() {
    if !have("fish") {
        return skip("fish is not installed");
    }
    let d = tempfile::tempdir().expect("tmp");
    let repo = repo_with_names(d.path());
    let f = d.path().join("slate.fish");
    std::fs::write(&f, script("fish")).expect("write");
    let o = Command::new("fish")
        .env("PATH", path_with_slate())
        .env_remove("SLATE_REPO")
        .arg("-c")
        .arg(format!(
            "source '{}'; complete -C 'slate export --repo {} os/'",
            f.display(),
            repo.display()
        ))
        .output()
        .expect("fish");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("os/main")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("os/testing")), "{out}");
}
