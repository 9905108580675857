//! `cargo xtask first-deploy` and `cargo xtask deploy`.

use std::time::Duration;

use anyhow::{anyhow, Result};
use xshell::Shell;

use crate::deploy::pipeline::{self, Deploy, Kind};
use crate::deploy::push;
use crate::deploy::target::{
    parse_duration, DeployFile, RollStrategy, SandboxEndpoints, TargetFlags,
};
use crate::failure::Failure;
use crate::report::Reporter;
use crate::sandbox;

/// `--sandbox` brings the sandbox up and hands the pipeline its endpoints: the pipeline itself
/// never knows whether it deploys to AWS or to the stand-ins.
pub fn run(sh: &Shell, report: &Reporter, args: Args, kind: Kind) -> anyhow::Result<()> {
    let endpoints = if args.target.sandbox && !args.dry_run {
        Some(sandbox::ensure_up(sh, report, sandbox::UpOptions::for_deploy(kind == Kind::First))?)
    } else if args.target.sandbox {
        sandbox::running_endpoints()
    } else {
        None
    };
    args.run(sh, report, kind, endpoints)
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
    /// How to roll the service onto the new images [default: deploy.toml's `strategy`]
    #[arg(long, value_enum)]
    pub strategy: Option<RollStrategy>,
    /// Do not run the RSpec suite first
    #[arg(long)]
    pub skip_tests: bool,
    /// Let `docker build` use its layer cache (the default, --no-cache, makes sure code
    /// changes reach the image)
    #[arg(long)]
    pub cache: bool,
    /// Print every step and command with its arguments; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The JSON `message` the health check must answer [default: deploy.toml's
    /// `verify.expect_message`, else any]
    #[arg(long, value_name = "TEXT")]
    pub expect_message: Option<String>,
    /// How long the roll may take before it fails [default: deploy.toml's `timeouts.roll`]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub timeout: Option<Duration>,
    /// first-deploy only: go on although the service already runs tasks (its database is then
    /// most likely seeded, and a second db:seed makes the new task exit)
    #[arg(long)]
    pub force: bool,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

impl Args {
    pub fn run(
        self,
        sh: &Shell,
        report: &Reporter,
        kind: Kind,
        sandbox: Option<SandboxEndpoints>,
    ) -> Result<()> {
        if self.force && kind == Kind::Later {
            return Err(anyhow!("--force applies to first-deploy only").context(Failure::Input));
        }
        let file = DeployFile::load(&crate::project::root())?;
        let mut target =
            file.resolve(&self.target, &|k| std::env::var(k).ok(), sandbox.as_ref())?;
        if let Some(strategy) = self.strategy {
            target.strategy = strategy;
        }
        if let Some(timeout) = self.timeout {
            target.roll_timeout = timeout;
        }
        if self.expect_message.is_some() {
            target.verify.expect_message = self.expect_message.clone();
        }
        let opts = push::Options { cache: self.cache, ..push::Options::new(kind == Kind::First) };
        if self.dry_run {
            for line in pipeline::plan(sh, kind, &target, &opts, self.skip_tests) {
                report.info(line);
            }
            report.info("dry run: nothing was changed");
            return Ok(());
        }
        Deploy { sh, report, kind, target: &target }.run(opts, self.skip_tests, self.force)
    }
}
