//! `slate man`: the manual pages, made from the command line's own
//! definitions so that they never disagree with `--help`. A command's text
//! after its options (`after_help`, shown by `--help` too) is split into
//! the page's sections: paragraphs before the first heading are NOTES,
//! lines after `Example:`/`Examples:` are EXAMPLES (one command a line,
//! set as typed), lines after `Files:` are FILES.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Write the manual pages: slate(1) and one slate-COMMAND(1) per command.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate man --out /usr/local/share/man/man1 && man slate-commit\n  \
    slate man --out docs/man && man -l docs/man/slate-compose.1"
)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Every page of the command line `top`, as (file name, roff text).
pub fn pages(mut top: clap::Command) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    top.build();
    let mut pages = Vec::new();
    pages.push(("slate.1".to_owned(), render(top.clone())?));
    sub_pages(&top, "slate", &mut pages)?;
    Ok(pages)
}

/// A page for each subcommand of `cmd` (named `PREFIX-NAME`), and for
/// theirs (`slate admin deploy`: `slate-admin-deploy.1`).
fn sub_pages(
    cmd: &clap::Command,
    prefix: &str,
    pages: &mut Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{prefix}-{}", sub.get_name());
        let page = sub.clone().name(name.clone()).display_name(name.clone());
        pages.push((format!("{name}.1"), render(page)?));
        sub_pages(sub, &name, pages)?;
    }
    Ok(())
}

/// A command's text after its options, by section.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AfterHelp {
    /// Paragraphs (lines joined) before the first heading.
    pub notes: Vec<String>,
    /// Example command lines, as typed.
    pub examples: Vec<String>,
    /// Lines of the FILES section.
    pub files: Vec<String>,
}

/// Split a command's `after_help` text into its sections.
pub fn split_after_help(text: &str) -> AfterHelp {
    #[derive(Clone, Copy)]
    enum At {
        Notes,
        Examples,
        Files,
    }
    let mut out = AfterHelp::default();
    let mut at = At::Notes;
    let mut para = String::new();
    for line in text.lines() {
        let t = line.trim();
        match t {
            "Example:" | "Examples:" => {
                at = At::Examples;
                continue;
            }
            "Files:" => {
                at = At::Files;
                continue;
            }
            _ => {}
        }
        match at {
            At::Notes if t.is_empty() && !para.is_empty() => {
                out.notes.push(std::mem::take(&mut para));
            }
            At::Notes if t.is_empty() => {}
            At::Notes => {
                if !para.is_empty() {
                    para.push(' ');
                }
                para.push_str(t);
            }
            At::Examples if !t.is_empty() => out.examples.push(t.to_string()),
            At::Files if !t.is_empty() => out.files.push(t.to_string()),
            _ => {}
        }
    }
    if !para.is_empty() {
        out.notes.push(para);
    }
    out
}

/// One page: clap_mangen's sections, then EXAMPLES, FILES and NOTES
/// from the command's `after_help`, then its version.
fn render(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    use roff::{roman, Roff};
    let after = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|t| split_after_help(&t.to_string()))
        .unwrap_or_default();
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subs = cmd
        .get_subcommands()
        .any(|s| !s.is_hide_set() && s.get_name() != "help");
    let has_version = cmd.get_version().is_some() || cmd.get_long_version().is_some();
    let man = clap_mangen::Man::new(cmd);
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    if has_args {
        man.render_options_section(&mut w)?;
    }
    if has_subs {
        man.render_subcommands_section(&mut w)?;
    }
    let mut r = Roff::new();
    if !after.examples.is_empty() {
        r.control("SH", ["EXAMPLES"]);
        r.control("nf", []);
        r.control("RS", ["4"]);
        for e in &after.examples {
            r.text([roman(e.as_str())]);
        }
        r.control("RE", []);
        r.control("fi", []);
    }
    if !after.files.is_empty() {
        r.control("SH", ["FILES"]);
        for f in &after.files {
            // "PATH  what it is": the path as a tagged paragraph's tag.
            let (path, what) = f.split_once("  ").unwrap_or((f.as_str(), ""));
            r.control("TP", []);
            r.text([roff::bold(path)]);
            r.text([roman(what.trim())]);
        }
    }
    if !after.notes.is_empty() {
        r.control("SH", ["NOTES"]);
        for (i, n) in after.notes.iter().enumerate() {
            if i > 0 {
                r.control("PP", []);
            }
            r.text([roman(n.as_str())]);
        }
    }
    w.extend_from_slice(r.to_roff().as_bytes());
    if has_version {
        man.render_version_section(&mut w)?;
    }
    Ok(w)
}

pub fn run(a: ManArgs, top: clap::Command) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let dir = slate_core::fsutil::open_dir(&a.out)
        .with_context(|| format!("opening {}", a.out.display()))?;
    let pages = pages(top)?;
    for (name, text) in &pages {
        slate_core::fsutil::atomic_write_at(&dir, name, text, 0o644)
            .with_context(|| format!("writing {}", a.out.join(name).display()))?;
    }
    eprintln!("wrote {} manual pages to {}", pages.len(), a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    fn pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        super::pages(crate::cli::Cli::command())
    }

    /// The pages kept in `docs/man/` are the ones the binary makes: a
    /// change to an option's help must come with the regenerated pages.
    #[test]
    fn docs_man_holds_the_current_pages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/man");
        let fix = "run `cargo run -q -- man --out docs/man` and commit the result";
        let pages = pages().expect("render");
        assert!(pages.len() > 10, "{} pages", pages.len());
        for (name, text) in &pages {
            let kept = std::fs::read(dir.join(name))
                .unwrap_or_else(|e| panic!("docs/man/{name}: {e}; {fix}"));
            assert!(kept == *text, "docs/man/{name} is out of date; {fix}");
        }
        let mut kept: Vec<String> = std::fs::read_dir(&dir)
            .expect("list docs/man")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        let mut made: Vec<String> = pages.into_iter().map(|p| p.0).collect();
        made.sort();
        assert_eq!(kept, made, "docs/man holds pages of no command; {fix}");
    }

    #[test]
    fn each_command_has_a_page_with_its_options_and_example() {
        let pages = pages().expect("render");
        let page = |n: &str| {
            let (_, t) = pages
                .iter()
                .find(|p| p.0 == n)
                .unwrap_or_else(|| panic!("no page {n}"));
            String::from_utf8(t.clone()).expect("utf-8")
        };
        let commit = page("slate-commit.1");
        assert!(commit.contains(".TH slate-commit 1"), "{commit}");
        assert!(commit.contains("\\-\\-branch"), "{commit}");
        assert!(commit.contains("SOURCE_DATE_EPOCH"), "{commit}");
        assert!(page("slate.1").contains("slate\\-checkout(1)"));
        assert!(page("slate.1").contains("slate\\-man(1)"), "man is listed");
        assert!(commit.contains(".SH EXAMPLES"), "{commit}");
    }

    /// Every command shows an example in its --help and its page, and
    /// every --json says what it prints.
    #[test]
    fn every_command_has_an_example_and_every_json_a_help() {
        fn visit(cmd: &clap::Command, name: &str, bad: &mut Vec<String>) {
            let after = cmd
                .get_after_long_help()
                .or_else(|| cmd.get_after_help())
                .map(|t| super::split_after_help(&t.to_string()))
                .unwrap_or_default();
            if after.examples.is_empty() {
                bad.push(format!(
                    "{name}: no example (an \"Examples:\" part in after_help)"
                ));
            }
            for a in cmd.get_arguments() {
                if a.get_id() == "json" && a.get_help().is_none() && a.get_long_help().is_none() {
                    bad.push(format!("{name}: --json has no help text"));
                }
            }
            for sub in cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            {
                visit(sub, &format!("{name} {}", sub.get_name()), bad);
            }
        }
        let mut top = crate::cli::Cli::command();
        top.build();
        let mut bad = Vec::new();
        visit(&top, "slate", &mut bad);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    /// The README's commands run on a minimal Debian (no `sudo`: root's
    /// commands have a `#` prompt), its two commands are there, and the
    /// options it names for `slate run` exist.
    #[test]
    fn the_readme_is_written_for_a_minimal_system() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
        )
        .expect("README.md");
        for (i, line) in readme.lines().enumerate() {
            assert!(
                !line.split_whitespace().any(|w| w == "sudo"),
                "README.md:{}: sudo, which a minimal Debian lacks: {line}",
                i + 1
            );
        }
        for cmd in [
            "    bash examples/demo.sh",
            "    cargo test --workspace --locked",
            "    # bash examples/compose.sh",
        ] {
            assert!(readme.contains(cmd), "README.md lacks {cmd:?}");
        }
        let mut top = crate::cli::Cli::command();
        top.build();
        let run = top.find_subcommand("run").expect("run");
        for opt in ["host-network", "no-autologin"] {
            assert!(
                readme.contains(&format!("--{opt}")),
                "README.md does not say --{opt}"
            );
            assert!(
                run.get_arguments().any(|a| a.get_long() == Some(opt)),
                "slate run has no --{opt}"
            );
        }
    }

    #[test]
    fn after_help_splits_into_sections() {
        let a = super::split_after_help(
            "One note\nwrapped.\n\nAnother.\n\nExamples:\n  slate x\n  slate y\n\nFiles:\n  /etc/x  the x\n",
        );
        assert_eq!(a.notes, ["One note wrapped.", "Another."]);
        assert_eq!(a.examples, ["slate x", "slate y"]);
        assert_eq!(a.files, ["/etc/x  the x"]);
    }
}
