//! `slate completions SHELL`: the completion script clap_complete makes of
//! the command line, with revisions and remotes completed from the
//! repository the command line names (`--repo`, else `SLATE_REPO`): the
//! scripts call the hidden `slate complete refs|remotes`, which prints the
//! names one a line and nothing at all when there is no repository.
//!
//! Which arguments take a revision or a remote is read from the command
//! line's own definition (value names `REV`, `COMMIT`, `A`, `B`, `BRANCH`,
//! `PARENT`; `REMOTE`, and `remote`'s `NAME`), so new commands get it.
//! clap_complete's generators know value hints only; the arguments are
//! given the hints `Hostname` (revisions) and `Username` (remotes), which
//! no Slate argument has, and their zsh and fish actions are replaced by
//! Slate's functions. Bash's generator ignores hints: its script gets a
//! wrapper that adds the names after clap's own completion.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Command, ValueEnum, ValueHint};
use clap_complete::Shell;

/// Print a shell completion script (bash, zsh or fish).
#[derive(Args)]
#[command(
    after_help = "Revisions and remotes are completed from the repository the command line \
    names with --repo, else SLATE_REPO.\n\n\
    Examples:\n  \
    slate completions bash > /etc/bash_completion.d/slate   # or ~/.local/share/bash-completion/completions/slate\n  \
    slate completions zsh > ~/.zfunc/_slate                 # with fpath+=(~/.zfunc) before compinit\n  \
    slate completions fish > ~/.config/fish/completions/slate.fish"
)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    shell: Sh,
}

#[derive(Clone, Copy, ValueEnum)]
enum Sh {
    Bash,
    Zsh,
    Fish,
}

/// Print the names the completion scripts offer (for the scripts).
#[derive(Args)]
pub struct CompleteArgs {
    #[arg(value_parser = ["refs", "remotes"])]
    what: String,
    /// Repository directory.
    #[arg(long, env = "SLATE_REPO", value_name = "DIR")]
    repo: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rev,
    Remote,
    Other,
}

/// What an argument of the command at `path` takes.
fn kind(path: &[String], a: &clap::Arg) -> Kind {
    if path.first().is_some_and(|c| c == "admin") {
        // A sysroot's revisions: not those of --repo.
        return Kind::Other;
    }
    let name = a
        .get_value_names()
        .and_then(|v| v.first())
        .map(|s| s.to_string())
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
    match name.as_str() {
        "REV" | "COMMIT" | "A" | "B" | "BRANCH" | "PARENT" => Kind::Rev,
        "REMOTE" => Kind::Remote,
        "NAME" if path.len() == 2 && path[0] == "remote" && path[1] != "add" => Kind::Remote,
        _ => Kind::Other,
    }
}

/// The command with its revision and remote arguments hinted, and the
/// kinds of each leaf command's positional arguments (for bash).
fn hinted(
    mut cmd: Command,
    path: &mut Vec<String>,
    table: &mut Vec<(String, Vec<Kind>)>,
) -> Command {
    let args: Vec<(String, Kind, bool)> = cmd
        .get_arguments()
        .map(|a| (a.get_id().to_string(), kind(path, a), a.is_positional()))
        .collect();
    let mut positional = Vec::new();
    for (id, k, is_pos) in args {
        if is_pos {
            positional.push(k);
        }
        // Every argument is passed through `mut_arg`, in order: it puts
        // the argument it changes last, and positional arguments take
        // their places from that order.
        cmd = cmd.mut_arg(id, |a| match k {
            Kind::Rev => a.value_hint(ValueHint::Hostname),
            Kind::Remote => a.value_hint(ValueHint::Username),
            Kind::Other => a,
        });
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .filter(|n| n != "help")
        .collect();
    if subs.is_empty() && !path.is_empty() {
        table.push((path.join(" "), positional));
    }
    for s in subs {
        path.push(s.clone());
        cmd = cmd.mut_subcommand(s, |c| hinted(c, path, table));
        path.pop();
    }
    cmd
}

/// Options taking a value, anywhere in the command line (bash skips
/// their values when it counts positional arguments), and those taking a
/// revision.
fn options(cmd: &Command, valued: &mut Vec<String>, revs: &mut Vec<String>) {
    for a in cmd.get_arguments().filter(|a| !a.is_positional()) {
        if !a.get_action().takes_values() {
            continue;
        }
        let mut names: Vec<String> = a
            .get_long_and_visible_aliases()
            .unwrap_or_default()
            .into_iter()
            .map(|l| format!("--{l}"))
            .collect();
        names.extend(a.get_short().map(|s| format!("-{s}")));
        if a.get_value_hint() == ValueHint::Hostname {
            revs.extend(names.iter().cloned());
        }
        valued.extend(names);
    }
    for s in cmd.get_subcommands() {
        options(s, valued, revs);
    }
}

const ZSH_HELPERS: &str = r#"
# Slate: revisions and remotes from the repository of --repo (or SLATE_REPO).
_slate_repo_args() {
    local i
    reply=()
    for ((i = 1; i < ${#words}; i++)); do
        case ${words[i]} in
            --repo) reply=(--repo "${words[i+1]}"); return ;;
            --repo=*) reply=(--repo "${words[i]#--repo=}"); return ;;
        esac
    done
}
_slate_refs() {
    local -a reply names
    _slate_repo_args
    names=(${(f)"$(slate complete refs $reply 2>/dev/null)"})
    compadd -a names
}
_slate_remotes() {
    local -a reply names
    _slate_repo_args
    names=(${(f)"$(slate complete remotes $reply 2>/dev/null)"})
    compadd -a names
}
"#;

const FISH_HELPERS: &str = r#"# Slate: revisions and remotes from the repository of --repo (or SLATE_REPO).
function __slate_repo_args
    set -l tokens (commandline -opc)
    for i in (seq (count $tokens))
        if test "$tokens[$i]" = --repo; and test $i -lt (count $tokens)
            echo --repo
            echo $tokens[(math $i + 1)]
            return
        end
        if string match -q -- '--repo=*' $tokens[$i]
            echo --repo
            string replace -- '--repo=' '' $tokens[$i]
            return
        end
    end
end
function __slate_refs
    slate complete refs (__slate_repo_args) 2>/dev/null
end
function __slate_remotes
    slate complete remotes (__slate_repo_args) 2>/dev/null
end
"#;

/// Bash: clap's `_slate`, then the revisions or remotes the word being
/// completed may be, from the table of each command's positional
/// arguments.
fn bash_wrapper(table: &[(String, Vec<Kind>)], valued: &[String], revs: &[String]) -> String {
    let mut cases = String::new();
    for (path, kinds) in table {
        if kinds.iter().all(|k| *k == Kind::Other) {
            continue;
        }
        let k: Vec<&str> = kinds
            .iter()
            .map(|k| match k {
                Kind::Rev => "rev",
                Kind::Remote => "remote",
                Kind::Other => "-",
            })
            .collect();
        cases.push_str(&format!(
            "        \"{path}\") echo \"{}\" ;;\n",
            k.join(" ")
        ));
    }
    format!(
        r#"
# Slate: revisions and remotes from the repository of --repo (or SLATE_REPO).
_slate_positionals() {{
    case "$1" in
{cases}        *) return 1 ;;
    esac
}}
_slate_names() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local valued=" {valued} " revopts=" {revs} "
    local repo=${{SLATE_REPO:-}} skip=0 i w
    local -a words=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        if ((skip)); then
            skip=0
            [[ ${{COMP_WORDS[i-1]}} == --repo ]] && repo=$w
            continue
        fi
        case $w in
            --repo=*) repo=${{w#--repo=}} ;;
            --*=*) ;;
            -*) [[ $valued == *" $w "* ]] && skip=1 ;;
            *) words+=("$w") ;;
        esac
    done
    local kind=-
    if [[ $revopts == *" $prev "* ]]; then
        kind=rev
    elif ((skip)) || [[ $cur == -* ]]; then
        return 0
    else
        local n=${{#words[@]}} k kinds
        for ((k = n; k >= 1; k--)); do
            if kinds=$(_slate_positionals "${{words[*]:0:k}}"); then
                local -a ks=($kinds)
                local at=$((n - k))
                ((at < ${{#ks[@]}})) && kind=${{ks[at]}}
                break
            fi
        done
    fi
    local what
    case $kind in
        rev) what=refs ;;
        remote) what=remotes ;;
        *) return 0 ;;
    esac
    local names
    names=$(slate complete "$what" ${{repo:+--repo "$repo"}} 2>/dev/null) || return 0
    local IFS=$'\n'
    COMPREPLY+=($(compgen -W "$names" -- "$cur"))
}}
_slate_with_names() {{
    _slate "$@"
    _slate_names
}}
complete -F _slate_with_names -o nosort -o bashdefault -o default slate
"#,
        valued = valued.join(" "),
        revs = revs.join(" "),
    )
}

/// Fish: clap_complete's script completes options only; the positional
/// revisions and remotes of each command are offered beside its files.
fn fish_positionals(table: &[(String, Vec<Kind>)]) -> String {
    let mut out = String::from("# Slate: positional revisions and remotes.\n");
    for (path, kinds) in table {
        let mut words = path.split(' ');
        let first = words.next().unwrap_or_default();
        let mut cond = format!("__fish_slate_using_subcommand {first}");
        for w in words {
            cond.push_str(&format!("; and __fish_seen_subcommand_from {w}"));
        }
        for (k, f) in [
            (Kind::Rev, "__slate_refs"),
            (Kind::Remote, "__slate_remotes"),
        ] {
            if kinds.contains(&k) {
                out.push_str(&format!("complete -c slate -n \"{cond}\" -a \"({f})\"\n"));
            }
        }
    }
    out
}

pub fn run(a: CompletionsArgs, cmd: Command) -> anyhow::Result<()> {
    let mut table = Vec::new();
    let mut cmd = hinted(cmd, &mut Vec::new(), &mut table);
    let shell = match a.shell {
        Sh::Bash => Shell::Bash,
        Sh::Zsh => Shell::Zsh,
        Sh::Fish => Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "slate", &mut buf);
    let script = String::from_utf8(buf).expect("clap_complete writes UTF-8");
    let script = match a.shell {
        Sh::Bash => {
            let (mut valued, mut revs) = (Vec::new(), Vec::new());
            options(&cmd, &mut valued, &mut revs);
            valued.sort();
            valued.dedup();
            revs.sort();
            revs.dedup();
            script + &bash_wrapper(&table, &valued, &revs)
        }
        Sh::Zsh => {
            let s = script
                .replace(":_hosts", ":_slate_refs")
                .replace(":_users", ":_slate_remotes");
            match s.split_once("autoload -U is-at-least\n") {
                Some((head, tail)) => format!("{head}autoload -U is-at-least\n{ZSH_HELPERS}{tail}"),
                None => format!("{s}{ZSH_HELPERS}"),
            }
        }
        Sh::Fish => {
            let s = script
                .replace("(__fish_print_hostnames)", "(__slate_refs)")
                .replace("(__fish_complete_users)", "(__slate_remotes)");
            format!("{FISH_HELPERS}{s}{}", fish_positionals(&table))
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(script.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `slate complete refs|remotes`: the names, one a line; nothing (and
/// success) without a repository, so a completion never prints an error.
pub fn run_complete(a: CompleteArgs) -> anyhow::Result<()> {
    let Some(path) = a.repo else {
        return Ok(());
    };
    let Ok(repo) = slate_core::store::Repo::open(&path) else {
        return Ok(());
    };
    let names: Vec<String> = match a.what.as_str() {
        "refs" => repo
            .list_refs()
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect(),
        _ => slate_core::remotes::config::list(&repo)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    for n in names {
        writeln!(out, "{n}")?;
    }
    Ok(())
}
