//! `slate fleet`: the fleet server and its administration (the `remote`
//! feature). `serve` answers the API; `group` and `status` work on the
//! database directly (the same one `serve` uses: SQLite's file, or
//! PostgreSQL's URL), so they need no running server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use slate_fleet::{records, server, Db, Target};

use crate::output;

mod rollout;
mod state;

/// The fleet server: machines enroll with a group's token and report
/// their status, signed by their own key; the server keeps every report
/// in SQLite (one file) or PostgreSQL.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet group add --db /var/lib/slate-fleet/fleet.db web --ref origin:os/main\n  \
    slate fleet serve --db /var/lib/slate-fleet/fleet.db --bind 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem\n  \
    slate fleet status --db postgres://fleet@db.example/fleet --json\n  \
    slate fleet replace --db fleet.db 3f2a9c01 --by 4c4c4544-0042-3510-8052-b4c04f4a4d32"
)]
pub struct FleetArgs {
    #[command(subcommand)]
    command: FleetCommand,
}

/// The database: a file (SQLite, made if missing) or a
/// `postgres://USER@HOST/DB` URL. Its schema is brought up to date first.
#[derive(Args, Clone)]
pub struct DbArg {
    #[arg(long, env = "SLATE_FLEET_DB", value_name = "PATH|URL", global = true)]
    pub db: Option<String>,
}

impl DbArg {
    fn open(&self) -> anyhow::Result<Db> {
        let Some(db) = &self.db else {
            anyhow::bail!(
                "which database? give --db PATH or --db postgres://… (or set SLATE_FLEET_DB)"
            );
        };
        let target = Target::parse(db);
        Db::open(&target).with_context(|| format!("opening the fleet database {target}"))
    }
}

#[derive(Subcommand)]
enum FleetCommand {
    Serve(ServeArgs),
    /// Groups of machines: each follows a remote's ref and has an
    /// enrollment token.
    #[command(
        subcommand,
        after_help = "Examples:\n  slate fleet group add --db fleet.db web --ref origin:os/main > web.token\n  \
        slate fleet group list --db fleet.db"
    )]
    Group(GroupCommand),
    /// Rollouts: a group moved to a commit in waves.
    #[command(
        subcommand,
        after_help = "Examples:\n  slate fleet rollout start --db fleet.db web --repo /srv/os --waves 5,25,100\n  \
        slate fleet rollout status --db fleet.db web\n  slate fleet rollout pause --db fleet.db web"
    )]
    Rollout(rollout::RolloutCommand),
    /// Operators of the page.
    #[command(
        subcommand,
        after_help = "Example:\n  slate fleet operator add --db fleet.db alice < alice.password"
    )]
    Operator(OperatorCommand),
    /// Machines' kept state (SSH host keys): list, forget, a group's
    /// policy, rekey.
    #[command(
        subcommand,
        after_help = "Examples:\n  slate fleet state list --db fleet.db 3f2a9c01\n  \
        slate fleet state rekey --db fleet.db --state-key state.key"
    )]
    State(state::StateCommand),
    Replace(state::ReplaceArgs),
    #[command(hide = true)]
    BenchAgents(BenchArgs),
    Status(StatusArgs),
}

/// Answer the fleet API (`/api/v1/…`) over HTTPS.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet serve --db fleet.db --bind 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem\n  \
    slate fleet serve --db fleet.db --tls-cert cert.pem --tls-key key.pem --state-key /var/lib/slate-fleet/state.key"
)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArg,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    bind: String,
    /// The server's certificate chain (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        required_unless_present = "insecure_http"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Plain HTTP, no TLS: for a test, or behind a TLS proxy on the same
    /// host. Requests are still signed by the machines' keys.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure_http: bool,
    /// Threads answering requests.
    #[arg(long, default_value_t = 16)]
    threads: usize,
    /// Keep machines' state (SSH host keys), sealed with the keys of this
    /// file (made, 0600, when missing). Keep it apart from the database:
    /// a copy of the database without it reveals nothing. Without it, the
    /// state routes answer 503.
    #[arg(long, value_name = "FILE")]
    state_key: Option<PathBuf>,
    /// Bytes of one kept file.
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    state_max_file: u64,
    /// Kept files of one machine.
    #[arg(long, default_value_t = 64, value_name = "N")]
    state_max_files: u64,
    /// Bytes of all of one machine's kept files.
    #[arg(long, default_value_t = 1048576, value_name = "BYTES")]
    state_max_total: u64,
}

#[derive(Subcommand)]
enum GroupCommand {
    Add(GroupAddArgs),
    List(GroupListArgs),
}

/// Add a group of machines following a remote's ref. Its enrollment token
/// is read from --token-file, or made and printed on stdout (only its
/// hash is stored: keep it).
#[derive(Args)]
#[command(
    after_help = "Example:\n  slate fleet group add --db fleet.db web --ref origin:os/main > web.token"
)]
struct GroupAddArgs {
    #[command(flatten)]
    db: DbArg,
    /// 1 to 64 of a-z, 0-9, '-', '_', '.'.
    name: String,
    /// What the group's machines follow: REMOTE:REF.
    #[arg(long = "ref", value_name = "REMOTE:REF")]
    follows: String,
    /// A file holding the token (at least 16 characters; a final newline
    /// is not part of it).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Simulated agents for bench/fleet.sh: MACHINES enrolled, then reporting
/// as fast as the server takes them for SECONDS; JSON results on stdout.
#[derive(Args)]
struct BenchArgs {
    #[arg(long)]
    server: String,
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    group: String,
    #[arg(long)]
    token_file: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    machines: u32,
    #[arg(long, default_value_t = 32)]
    threads: u32,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn bench_agents(a: BenchArgs) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&a.token_file)
        .with_context(|| format!("reading {}", a.token_file.display()))?;
    let r = slate_fleet::bench::run(&slate_fleet::bench::Options {
        server: a.server,
        ca: a.ca,
        group: a.group,
        token: token.trim_end().to_string(),
        machines: a.machines,
        threads: a.threads,
        duration: std::time::Duration::from_secs(a.seconds.clamp(1, 3600)),
    })?;
    output::json(&r)
}

#[derive(Subcommand)]
enum OperatorCommand {
    Add(OperatorAddArgs),
}

/// Add an operator of the page (or set an operator's password). The
/// password (12 characters or more) is read from --password-file, else
/// from the first line of standard input; it is stored hashed (Argon2id).
#[derive(Args)]
#[command(after_help = "Example:\n  slate fleet operator add --db fleet.db alice < alice.password")]
struct OperatorAddArgs {
    #[command(flatten)]
    db: DbArg,
    name: String,
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

fn operator_add(a: OperatorAddArgs) -> anyhow::Result<()> {
    let text = match &a.password_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the password from {}", f.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line
        }
    };
    let password = text.lines().next().unwrap_or("");
    let db = a.db.open()?;
    slate_fleet::operators::set(&db, &a.name, password, slate_fleet::now())?;
    eprintln!("operator {} can sign in", a.name);
    Ok(())
}

/// The groups, their refs and how many machines each has.
#[derive(Args)]
#[command(after_help = "Example:\n  slate fleet group list --db fleet.db --json")]
struct GroupListArgs {
    #[command(flatten)]
    db: DbArg,
    /// Print the groups as a JSON array of {name, follows, machines, created}.
    #[arg(long)]
    json: bool,
}

/// Machines with their health, version and last report, read from the
/// database (no server needed); with MACHINE, one machine and its history.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet status --db fleet.db\n  slate fleet status --db fleet.db --json 3f2a9c01"
)]
struct StatusArgs {
    #[command(flatten)]
    db: DbArg,
    /// A machine id (or 8 or more of its first digits).
    machine: Option<String>,
    /// Machines shown (a page).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// Machines skipped before the page.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Reports of the machine's history shown.
    #[arg(long, default_value_t = 20)]
    history: u64,
    /// Print JSON: {total, offset, machines: [...]}, or with MACHINE
    /// {machine, history: [...]}.
    #[arg(long)]
    json: bool,
}

pub fn run(a: FleetArgs) -> anyhow::Result<()> {
    match a.command {
        FleetCommand::Serve(a) => serve(a),
        FleetCommand::Group(GroupCommand::Add(a)) => group_add(a),
        FleetCommand::Group(GroupCommand::List(a)) => group_list(a),
        FleetCommand::Rollout(c) => rollout::run(c),
        FleetCommand::Operator(OperatorCommand::Add(a)) => operator_add(a),
        FleetCommand::State(c) => state::run(c),
        FleetCommand::Replace(a) => state::replace(a),
        FleetCommand::BenchAgents(a) => bench_agents(a),
        FleetCommand::Status(a) => status(a),
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let db = Arc::new(a.db.open()?);
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(server::Tls { cert, key }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state = match &a.state_key {
        Some(path) => Some(Arc::new(slate_fleet::state::Service {
            keys: slate_fleet::state::KeyRing::open(path)?,
            limits: slate_fleet::state::Limits {
                file_bytes: a.state_max_file,
                files: a.state_max_files,
                total_bytes: a.state_max_total,
            },
        })),
        None => None,
    };
    let opts = server::Options {
        bind: a.bind,
        tls,
        threads: a.threads,
        state,
    };
    let running = server::start(db.clone(), &opts)?;
    eprintln!(
        "fleet server on {scheme}://{} ({} database {})",
        running.addr,
        db.kind(),
        db.target()
    );
    running.wait();
    Ok(())
}

fn group_add(a: GroupAddArgs) -> anyhow::Result<()> {
    let (token, made) = match &a.token_file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the token from {}", f.display()))?;
            let token = text.strip_suffix('\n').unwrap_or(&text).to_string();
            if token.len() < 16 || token.len() > 256 || token.chars().any(char::is_control) {
                anyhow::bail!(
                    "{}: a token is 16 to 256 characters, with no control character",
                    f.display()
                );
            }
            (token, false)
        }
        None => (slate_fleet::random_hex(32)?, true),
    };
    let db = a.db.open()?;
    records::add_group(&db, &a.name, &a.follows, &token, slate_fleet::now())?;
    if made {
        crate::outln!("{token}")?;
        eprintln!(
            "group {} follows {}; its token is above (only its hash is kept)",
            a.name, a.follows
        );
    } else {
        eprintln!("group {} follows {}", a.name, a.follows);
    }
    Ok(())
}

fn group_list(a: GroupListArgs) -> anyhow::Result<()> {
    let groups = records::groups(&a.db.open()?)?;
    if a.json {
        return output::json(&groups);
    }
    for g in groups {
        crate::outln!("{}\t{}\t{} machines", g.name, g.follows, g.machines)?;
    }
    Ok(())
}

fn short(commit: &Option<String>) -> &str {
    commit.as_deref().map_or("-", |c| c.get(..12).unwrap_or(c))
}

fn status(a: StatusArgs) -> anyhow::Result<()> {
    let db = a.db.open()?;
    if let Some(id) = &a.machine {
        let m = records::machine(&db, id)?;
        let history = records::history(&db, id, a.history)?;
        if a.json {
            return output::json(&serde_json::json!({ "machine": m, "history": history }));
        }
        crate::outln!("machine   {}", m.machine)?;
        crate::outln!(
            "hostname  {}",
            slate_core::object::name::escape(m.hostname.as_bytes())
        )?;
        crate::outln!("group     {}", m.group)?;
        crate::outln!("enrolled  {}", output::date(m.enrolled))?;
        crate::outln!("last seen {}", output::date(m.last_seen))?;
        for h in history {
            crate::outln!(
                "  {}  {:<8} {} {}",
                output::date(h.received),
                h.health.as_str(),
                short(&h.booted_commit),
                h.booted_version.as_deref().unwrap_or("")
            )?;
        }
        return Ok(());
    }
    let (list, total) = records::machines(&db, a.offset, a.limit.min(10_000))?;
    if a.json {
        return output::json(&serde_json::json!({
            "total": total,
            "offset": a.offset,
            "machines": list,
        }));
    }
    crate::outln!(
        "{:<32}  {:<24}  {:<8}  {:<12}  {:<10}  {:>5}  LAST SEEN",
        "MACHINE",
        "HOSTNAME",
        "HEALTH",
        "COMMIT",
        "VERSION",
        "DRIFT"
    )?;
    for m in &list {
        crate::outln!(
            "{:<32}  {:<24}  {:<8}  {:<12}  {:<10}  {:>5}  {}",
            m.machine,
            slate_core::object::name::escape(m.hostname.as_bytes()),
            m.health.map_or("-", |h| h.as_str()),
            short(&m.booted_commit),
            m.booted_version.as_deref().unwrap_or("-"),
            m.drift_etc.unwrap_or(0) + m.drift_var.unwrap_or(0),
            output::date(m.last_seen)
        )?;
    }
    eprintln!("{} of {total} machines (from {})", list.len(), a.offset);
    Ok(())
}
