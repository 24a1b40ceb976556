//! The command line: global definitions and dispatch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

#[derive(Parser)]
#[command(
    name = "slate",
    version,
    about = "Slate: stateless Linux machines from one versioned, read-only OS image",
    long_about = "Slate stores operating-system trees in a content-addressed, versioned repository \
                  (\"git for operating system binaries\"), checks them out by hard link, and rebuilds \
                  /etc and /var from the image's factory defaults.",
    after_help = "Example:\n  slate init --repo repo --mode bare-user\n  slate commit --repo repo --branch os/main -s 'first' rootfs/\n  slate log --repo repo os/main\n  slate checkout --repo repo os/main /tmp/os"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(cmd::init::InitArgs),
    Commit(cmd::commit::CommitArgs),
    Compose(cmd::compose::ComposeArgs),
    Log(cmd::log::LogArgs),
    Show(cmd::log::ShowArgs),
    Ls(cmd::ls::LsArgs),
    Cat(cmd::ls::CatArgs),
    Refs(cmd::refs::RefsArgs),
    RevParse(cmd::refs::RevParseArgs),
    Reset(cmd::refs::ResetArgs),
    Checkout(cmd::checkout::CheckoutArgs),
    Fsck(cmd::fsck::FsckArgs),
    Export(cmd::export::ExportArgs),
    Diff(cmd::diff::DiffArgs),
    PullLocal(cmd::pull::PullLocalArgs),
    #[cfg(feature = "remote")]
    Pull(cmd::net::PullArgs),
    Remote(cmd::remote::RemoteArgs),
    Summary(cmd::remote::SummaryArgs),
    #[cfg(feature = "remote")]
    Serve(cmd::net::ServeArgs),
    #[cfg(feature = "remote")]
    Fleet(cmd::fleet::FleetArgs),
    #[cfg(feature = "remote")]
    Agent(cmd::agent::AgentArgs),
    Keygen(cmd::remote::KeygenArgs),
    Sign(cmd::remote::SignArgs),
    Delta(cmd::delta::DeltaArgs),
    Prune(cmd::prune::PruneArgs),
    Sysusers(cmd::sysusers::SysusersArgs),
    Tmpfiles(cmd::tmpfiles::TmpfilesArgs),
    Admin(cmd::admin::AdminArgs),
    Run(cmd::run::RunArgs),
    Vm(cmd::vm::VmArgs),
    Man(cmd::man::ManArgs),
    Completions(cmd::completions::CompletionsArgs),
    #[command(hide = true)]
    Complete(cmd::completions::CompleteArgs),
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Init(a) => cmd::init::run(a),
        Command::Commit(a) => cmd::commit::run(a),
        Command::Compose(a) => cmd::compose::run(a),
        Command::Log(a) => cmd::log::run_log(a),
        Command::Show(a) => cmd::log::run_show(a),
        Command::Ls(a) => cmd::ls::run_ls(a),
        Command::Cat(a) => cmd::ls::run_cat(a),
        Command::Refs(a) => cmd::refs::run_refs(a),
        Command::RevParse(a) => cmd::refs::run_rev_parse(a),
        Command::Reset(a) => cmd::refs::run_reset(a),
        Command::Checkout(a) => cmd::checkout::run(a),
        Command::Fsck(a) => cmd::fsck::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Diff(a) => cmd::diff::run(a),
        Command::PullLocal(a) => cmd::pull::run(a),
        #[cfg(feature = "remote")]
        Command::Pull(a) => cmd::net::run_pull(a),
        Command::Remote(a) => cmd::remote::run_remote(a),
        Command::Summary(a) => cmd::remote::run_summary(a),
        #[cfg(feature = "remote")]
        Command::Serve(a) => cmd::net::run_serve(a),
        #[cfg(feature = "remote")]
        Command::Fleet(a) => cmd::fleet::run(a),
        #[cfg(feature = "remote")]
        Command::Agent(a) => cmd::agent::run(a),
        Command::Keygen(a) => cmd::remote::run_keygen(a),
        Command::Sign(a) => cmd::remote::run_sign(a),
        Command::Delta(a) => cmd::delta::run(a),
        Command::Prune(a) => cmd::prune::run(a),
        Command::Admin(a) => cmd::admin::run(a),
        Command::Man(a) => cmd::man::run(a, <Cli as clap::CommandFactory>::command()),
        Command::Completions(a) => {
            cmd::completions::run(a, <Cli as clap::CommandFactory>::command())
        }
        Command::Complete(a) => cmd::completions::run_complete(a),
        Command::Sysusers(a) => return cmd::sysusers::run(a),
        Command::Tmpfiles(a) => return cmd::tmpfiles::run(a),
        Command::Run(a) => return cmd::run::run(a),
        Command::Vm(a) => return cmd::vm::run(a),
    }?;
    Ok(ExitCode::SUCCESS)
}
