//! Publishing: `keygen`, `sign`, `summary`, `remote` (no network code;
//! `serve` and `pull` are in `net.rs`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use slate_core::remotes::config::{self as remotes, RemoteConfig};
use slate_core::remotes::MinRate;
use slate_core::sign::{self, SecretKey};
use slate_core::store::ObjectRead;
use slate_core::summary;

use super::{GlobalRepoArg, RepoArg};
use crate::output;

/// Make an Ed25519 key pair: KEY (private, PKCS#8 PEM as `openssl genpkey
/// -algorithm ed25519` writes it) and KEY.pub (the public key).
#[derive(Args)]
#[command(after_help = "Example:\n  slate keygen /etc/slate/signing.pem\n  \
    openssl pkey -in /etc/slate/signing.pem -pubout   # the same public key")]
pub struct KeygenArgs {
    /// Where to write the private key (its public half goes to KEY.pub).
    key: PathBuf,
}

/// Sign a commit with a private key (the signature goes to
/// REPO/signatures/COMMIT/KEYID.sig).
#[derive(Args)]
#[command(
    after_help = "Example:\n  slate sign --repo /srv/os os/main --key /etc/slate/signing.pem"
)]
pub struct SignArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The commit (a revision).
    commit: String,
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Write the summary of an archive repository (its refs, packs and
/// deltas, with a timestamp that only grows), signed with --sign KEY.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate summary --repo /srv/os --update --sign /etc/slate/signing.pem\n  \
    slate summary --repo /srv/os --update --sign /etc/slate/signing.pem --expires 7d"
)]
pub struct SummaryArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Write a new summary (without it, the current one is shown).
    #[arg(long)]
    update: bool,
    /// Sign the summary with this private key.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// With --update: clients refuse the summary once this time has
    /// passed since it was written (`7d`, `12h`, `1month`): a mirror that
    /// keeps serving an old summary is noticed. Publish a new summary
    /// before then (`slate summary --update` again, even with nothing
    /// changed).
    #[arg(long, value_name = "DURATION", requires = "update", value_parser = parse_validity)]
    expires: Option<u64>,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// A validity period of a summary in seconds: a humantime duration
/// (`7d`, `36h`), at least one second.
fn parse_validity(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 7d, 12h)"))?;
    match d.as_secs() {
        0 => Err(format!("{s:?}: at least one second")),
        n => Ok(n),
    }
}

/// The slowest transfer a pull accepts.
#[derive(Args, Clone, Copy)]
pub struct MinRateArg {
    /// Give up a transfer slower than BYTES a second, averaged over
    /// SECONDS (default: less than 1 KiB/s over 30 s), even one that never
    /// stalls; it is retried, then the next mirror is asked. The response's
    /// headers must come within the stall timeout plus SECONDS. 0: no
    /// minimum.
    #[arg(
        long,
        env = "SLATE_MIN_RATE",
        value_name = "BYTES[/SECONDS]",
        default_value = "1024/30",
        value_parser = MinRate::parse
    )]
    pub min_rate: MinRate,
}

/// The remotes of a repository.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate remote add origin https://os.example/pub --sign-verify signing.pem.pub\n  \
    slate remote list\n  slate remote show --json origin\n\n\
    Files:\n  REPO/remotes/NAME/config.toml  the remote's URLs and keys\n  \
    REPO/remotes/NAME/  its state (the last summary's time) and cache"
)]
pub struct RemoteArgs {
    #[command(flatten)]
    repo: GlobalRepoArg,
    #[command(subcommand)]
    command: RemoteCommand,
}

#[derive(Subcommand)]
enum RemoteCommand {
    /// Add a remote: one or more URLs (mirrors, tried in order) and how
    /// its signatures are checked.
    #[command(
        after_help = "Examples:\n  slate remote add origin https://os.example/pub --sign-verify signing.pem.pub\n  \
        slate remote add --repo /sysroot/slate/repo origin https://a.example/pub https://b.example/pub --sign-verify k.pub\n  \
        slate remote add test http://localhost:8080 --no-sign-verify"
    )]
    Add {
        name: String,
        #[arg(required = true)]
        urls: Vec<String>,
        /// A trusted public key (PEM file; repeatable): summaries and
        /// commits must carry its signature.
        #[arg(long = "sign-verify", value_name = "PUBKEY")]
        keys: Vec<PathBuf>,
        /// Pull without checking signatures.
        #[arg(long, conflicts_with = "keys")]
        no_sign_verify: bool,
    },
    /// List the remotes.
    #[command(
        after_help = "Examples:\n  slate remote list\n  slate remote list --json | jq -r '.[].name'"
    )]
    List {
        /// Print the result as JSON on standard output (one document;
        /// messages stay on standard error) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a remote.
    #[command(
        after_help = "Examples:\n  slate remote show origin\n  slate remote show --json origin"
    )]
    Show {
        name: String,
        /// Print the result as JSON on standard output (one document;
        /// messages stay on standard error) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a remote (its configuration, state and cache).
    #[command(after_help = "Example:\n  slate remote delete origin")]
    Delete { name: String },
}

pub fn run_keygen(a: KeygenArgs) -> anyhow::Result<()> {
    let k = SecretKey::generate().context("reading random numbers")?;
    let mut pubpath = a.key.clone().into_os_string();
    pubpath.push(".pub");
    let pubpath = PathBuf::from(pubpath);
    for p in [&a.key, &pubpath] {
        if p.exists() {
            anyhow::bail!("{} exists already; not overwritten", p.display());
        }
    }
    let write = |p: &PathBuf, text: &str, mode: u32| -> anyhow::Result<()> {
        let mut f = slate_core::fsutil::AtomicFile::create(p, mode)
            .with_context(|| format!("writing {}", p.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.commit()
            .with_context(|| format!("writing {}", p.display()))
    };
    write(&a.key, &k.to_pem(), 0o600)?;
    write(&pubpath, &k.public().to_pem(), 0o644)?;
    crate::outln!("{}", k.public().key_id())?;
    eprintln!(
        "wrote {} (private) and {} (public), key id {}",
        a.key.display(),
        pubpath.display(),
        k.public().key_id()
    );
    Ok(())
}

pub fn run_sign(a: SignArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let commit = repo.rev_parse(&a.commit)?;
    repo.read_commit(&commit)
        .with_context(|| format!("{} is not a commit of {}", a.commit, repo.path().display()))?;
    let key = sign::load_secret(&a.key)?;
    let path = repo.sign_commit(&commit, &key)?;
    if a.json {
        return output::json(&serde_json::json!({
            "commit": commit, "key_id": key.public().key_id(), "signature": path
        }));
    }
    crate::outln!("{}", path.display())?;
    eprintln!("signed {commit} with key {}", key.public().key_id());
    Ok(())
}

pub fn run_summary(a: SummaryArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let s = if a.update {
        let key = a.sign.as_deref().map(sign::load_secret).transpose()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        output::counted("summary: sizing", "refs", |p| {
            summary::update_with(&repo, key.as_ref(), now, a.expires, p)
        })?
    } else {
        summary::load(&repo)?.with_context(|| {
            format!(
                "{} has no summary yet (write one with --update)",
                repo.path().display()
            )
        })?
    };
    if a.json {
        return output::json(&s);
    }
    for (name, r) in &s.refs {
        crate::outln!("{name} {} ({} bytes)", r.commit, r.size)?;
    }
    for d in &s.deltas {
        crate::outln!(
            "delta {} -> {} ({} bytes)",
            d.from
                .as_deref()
                .map(|f| &f[..12.min(f.len())])
                .unwrap_or("empty"),
            &d.to[..12.min(d.to.len())],
            d.size
        )?;
    }
    eprintln!(
        "summary of {}: {} refs, {} packs, {} deltas, timestamp {}{}{}",
        repo.path().display(),
        s.refs.len(),
        s.packs.len(),
        s.deltas.len(),
        s.timestamp,
        s.expires
            .map(|e| format!(", expires {}", output::date(e)))
            .unwrap_or_default(),
        if a.update && a.sign.is_some() {
            ", signed"
        } else {
            ""
        }
    );
    Ok(())
}

pub fn run_remote(a: RemoteArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    match a.command {
        RemoteCommand::Add {
            name,
            urls,
            keys,
            no_sign_verify,
        } => {
            let keys = keys
                .iter()
                .map(|p| sign::load_public(p).map(|k| k.to_pem()))
                .collect::<Result<Vec<_>, _>>()?;
            let cfg = RemoteConfig {
                urls,
                keys,
                no_sign_verify,
            };
            remotes::add(&repo, &name, &cfg)?;
            eprintln!(
                "added remote {name} ({} URLs{})",
                cfg.urls.len(),
                if cfg.verifies() {
                    format!(", {} trusted keys", cfg.keys.len())
                } else {
                    ", signatures not checked".into()
                }
            );
        }
        RemoteCommand::List { json } => {
            let all = remotes::list(&repo)?;
            if json {
                return output::json(
                    &all.iter()
                        .map(|(n, c)| serde_json::json!({"name": n, "config": c}))
                        .collect::<Vec<_>>(),
                );
            }
            for (n, c) in all {
                crate::outln!("{n} {}", c.urls.join(" "))?;
            }
        }
        RemoteCommand::Show { name, json } => {
            let c = remotes::get(&repo, &name)?;
            let st = remotes::state(&repo, &name);
            let ids: Vec<String> = c.public_keys()?.iter().map(|k| k.key_id()).collect();
            if json {
                return output::json(&serde_json::json!({
                    "name": name, "urls": c.urls, "key_ids": ids,
                    "sign_verify": c.verifies(), "summary_timestamp": st.summary_timestamp
                }));
            }
            crate::outln!("{name}")?;
            for u in &c.urls {
                crate::outln!("  url {u}")?;
            }
            if c.verifies() {
                for k in &ids {
                    crate::outln!("  trusted key {k}")?;
                }
            } else {
                crate::outln!("  signatures not checked")?;
            }
            crate::outln!("  last summary {}", st.summary_timestamp)?;
        }
        RemoteCommand::Delete { name } => {
            remotes::delete(&repo, &name)?;
            eprintln!("deleted remote {name}");
        }
    }
    Ok(())
}
