//! `cargo xtask first-deploy` and `cargo xtask deploy`.

use anyhow::{anyhow, Result};
use xshell::Shell;

use crate::deploy::pipeline::{self, Deploy, Kind};
use crate::deploy::push;
use crate::deploy::target::{DeployFile, DeployFlags, Overlay, Target, TargetFlags};
use crate::failure::Failure;
use crate::report::Reporter;
use crate::sandbox;

/// Resolves the one target of this deploy (with `--sandbox`, the sandbox comes up first and
/// hands over its overlay), then runs the deploy or prints its plan.
pub fn run(sh: &Shell, report: &Reporter, args: Args, kind: Kind) -> anyhow::Result<()> {
    if args.force && kind == Kind::Later {
        return Err(anyhow!("--force applies to first-deploy only").context(Failure::Input));
    }
    let file = DeployFile::load(&crate::project::root())?;
    let env = |k: &str| std::env::var(k).ok();
    let resolve =
        |overlay: Option<&Overlay>| file.resolve(&args.target, &args.deploy, &env, overlay);
    let target = match (args.target.sandbox, args.dry_run) {
        (true, false) => {
            let opts = sandbox::UpOptions::for_deploy(kind == Kind::First);
            sandbox::ensure_up(sh, report, opts, &|overlay| resolve(Some(overlay)))?
        }
        (true, true) => resolve(Some(&sandbox::planned_overlay()))?,
        (false, _) => resolve(None)?,
    };
    args.run(sh, report, kind, &target)
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
    #[command(flatten)]
    pub deploy: DeployFlags,
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
    /// first-deploy only: go on although the service already runs tasks (its database is then
    /// most likely seeded, and a second db:seed makes the new task exit)
    #[arg(long)]
    pub force: bool,
}

impl Args {
    fn run(self, sh: &Shell, report: &Reporter, kind: Kind, target: &Target) -> Result<()> {
        let opts = push::Options { cache: self.cache, ..push::Options::new(kind == Kind::First) };
        if self.dry_run {
            for line in pipeline::plan(sh, kind, target, &opts, self.skip_tests) {
                report.info(line);
            }
            report.info("dry run: nothing was changed");
            return Ok(());
        }
        Deploy { sh, report, kind, target }.run(opts, self.skip_tests, self.force)
    }
}
