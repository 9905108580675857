//! `cargo xtask sandbox up|down|status|reset|logs`: AWS on one machine, for the same deploy code.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use xshell::Shell;

use crate::deploy::target::TargetFlags;
use crate::report::Reporter;
use crate::sandbox::{self, Layout, UpOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SandboxCommand,
}

#[derive(Debug, Subcommand)]
enum SandboxCommand {
    /// Start moto, the registry and the sandbox process; create the AWS resources (idempotent)
    Up(UpArgs),
    /// Stop everything the sandbox started and remove its containers
    Down,
    /// Show each component, its address and health (exit code 10 unless all are healthy)
    Status,
    /// Clear the AWS state (moto, registry, task containers, database) and create the resources again
    Reset(UpArgs),
    /// Show the logs of a task's containers (default: the service's newest task): `logs --sandbox`
    Logs(LogsArgs),
    /// The sandbox's long-running process (started by `up`)
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Leave the ECR repositories out (so `first-deploy` shows it creates them)
    #[arg(long, conflicts_with = "bare")]
    no_repositories: bool,
    /// An empty account: only the network (VPC, subnet, security group); no repository,
    /// cluster, task definition or service (`first-deploy` creates them)
    #[arg(long)]
    bare: bool,
}

impl UpArgs {
    fn options(&self) -> UpOptions {
        match (self.bare, self.no_repositories) {
            (true, _) => UpOptions::Bare,
            (false, true) => UpOptions::NoRepositories,
            (false, false) => UpOptions::Everything,
        }
    }
}

#[derive(Debug, clap::Args)]
struct LogsArgs {
    /// The task's id (or the start of it, or its ARN) [default: the service's newest task]
    task: Option<String>,
    /// Only this container's log (`rails`, `nginx`)
    #[arg(long, short, value_name = "NAME")]
    container: Option<String>,
    /// Only what was logged in the last DURATION (`10m`, `1h`) [default: from the start]
    #[arg(long, value_name = "DURATION", value_parser = super::logs::since_arg)]
    since: Option<std::time::Duration>,
    /// Keep printing what the containers log, until Ctrl-C
    #[arg(long, short)]
    follow: bool,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The sandbox directory (marks the process as this sandbox's)
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    moto_port: u16,
    #[arg(long)]
    registry_port: u16,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        let layout = Layout::standard();
        match self.command {
            SandboxCommand::Up(args) => {
                sandbox::ensure_up(sh, report, args.options(), &sandbox::own_target).map(drop)
            }
            SandboxCommand::Down => sandbox::down(sh, report, &layout),
            SandboxCommand::Status => sandbox::status(report, &layout),
            SandboxCommand::Reset(args) => sandbox::reset(sh, report, &layout, args.options()),
            SandboxCommand::Logs(args) => logs(args, report),
            SandboxCommand::Serve(args) => sandbox::serve_process(sandbox::ServeArgs {
                dir: args.dir,
                port: args.port,
                moto_port: args.moto_port,
                registry_port: args.registry_port,
            }),
        }
    }
}

/// `cargo xtask sandbox logs …`: `cargo xtask logs --sandbox …` (the tasks log to moto's
/// CloudWatch Logs).
fn logs(args: LogsArgs, report: &Reporter) -> Result<()> {
    let LogsArgs { task, container, since, follow } = args;
    let target = TargetFlags { sandbox: true, ..TargetFlags::default() };
    super::logs::Args { task, container, since, follow, target }.run(report)
}
