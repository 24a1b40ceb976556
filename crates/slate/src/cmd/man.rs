//! `slate man`: the manual pages, made from the command line's own
//! definitions so that they never disagree with `--help`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Write the manual pages: slate(1) and one slate-COMMAND(1) per command.
#[derive(Args)]
#[command(
    hide = true,
    after_help = "Example:\n  slate man --out /usr/local/share/man/man1 && man slate-commit"
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
    let mut text = Vec::new();
    clap_mangen::Man::new(top.clone()).render(&mut text)?;
    pages.push(("slate.1".to_owned(), text));
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
        let mut text = Vec::new();
        clap_mangen::Man::new(page).render(&mut text)?;
        pages.push((format!("{name}.1"), text));
        sub_pages(sub, &name, pages)?;
    }
    Ok(())
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
        assert!(!pages.iter().any(|p| p.0 == "slate-man.1"), "man is hidden");
    }
}
