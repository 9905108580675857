//! `cargo xtask first-deploy` and `cargo xtask deploy`.

use anyhow::{anyhow, Result};
use xshell::Shell;

use crate::deploy::inflight;
use crate::deploy::lock::{self, DeployLock, WaitFlags};
use crate::deploy::plan::{Plan, PlanOptions};
use crate::deploy::target::{DeployFile, DeployFlags, Overlay, Target, TargetFlags};
use crate::deploy::{run, summary};
use crate::entrypoint::Mode;
use crate::event::Event;
use crate::failure::Failure;
use crate::report::Reporter;
use crate::sandbox;

/// Resolves the one target of this deploy (with `--sandbox`, the sandbox comes up first and
/// hands over its overlay), then runs the deploy or prints its plan.
pub fn run(sh: &Shell, report: &Reporter, args: Args, mode: Mode) -> anyhow::Result<()> {
    if args.force && mode == Mode::Later {
        return Err(anyhow!("--force applies to first-deploy only").context(Failure::Input));
    }
    let file = DeployFile::load(&crate::project::root())?;
    let env = |k: &str| std::env::var(k).ok();
    let resolve =
        |overlay: Option<&Overlay>| file.resolve(&args.target, &args.deploy, &env, overlay);
    let target = match (args.target.sandbox, args.dry_run) {
        (true, false) => {
            let opts = sandbox::UpOptions::for_deploy(mode);
            sandbox::ensure_up(sh, report, opts, &|overlay| resolve(Some(overlay)))?
        }
        (true, true) => resolve(Some(&sandbox::planned_overlay()))?,
        (false, _) => resolve(None)?,
    };
    args.run(sh, report, mode, &target)
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
    #[command(flatten)]
    pub deploy: DeployFlags,
    #[command(flatten)]
    pub wait: WaitFlags,
    /// Do not run the RSpec suite first
    #[arg(long)]
    pub skip_tests: bool,
    /// Do not start each built image once before the push (the smoke boot: deploy.toml's
    /// `smoke` commands, such as the app's eager load without a database)
    #[arg(long)]
    pub skip_smoke: bool,
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
    fn run(self, sh: &Shell, report: &Reporter, mode: Mode, target: &Target) -> Result<()> {
        let opts = PlanOptions {
            skip_tests: self.skip_tests,
            skip_smoke: self.skip_smoke,
            cache: self.cache,
            force: self.force,
            git: is_git_checkout(sh),
            wait: self.wait.wait,
            ..PlanOptions::new(crate::project::target_dir().join("xtask"))
        };
        report.info(format!(
            "{} to `{}`: service {} in cluster {} ({}{}), strategy {}",
            summary::command(mode),
            target.name,
            target.service,
            target.cluster,
            target.region,
            target.label.as_ref().map(|l| format!(", {l}")).unwrap_or_default(),
            target.strategy,
        ));
        if self.skip_tests {
            report.warn("--skip-tests: the RSpec suite does not run before this deploy");
        }
        if self.skip_smoke {
            report.warn("--skip-smoke: the built images are pushed without starting once here");
        }
        // Held until the deploy ends, before the service is looked at: one deploy per checkout.
        let _lock = match self.dry_run {
            true => None,
            false => {
                let wait = (!self.wait.no_wait).then_some(target.roll_timeout);
                Some(DeployLock::acquire(&lock::path(), wait, report)?)
            }
        };
        let attach = match mode {
            // A first deploy's later-mode image follows its roll: it does not resume.
            Mode::First => None,
            Mode::Later => inflight::detect(sh, target, mode).unwrap_or_else(|e| {
                report.info(format!(
                    "could not look for an interrupted deploy of this tree ({e:#}): planning a whole deploy"
                ));
                None
            }),
        };
        let plan = match &attach {
            Some(attach) => {
                report.info(format!(
                    "deployment {} of {} is an interrupted deploy of this tree ({}): attaching to it, no build, no push",
                    attach.deployment.id, attach.revision_name, attach.git_commit
                ));
                Plan::attach(target, attach)
            }
            None => Plan::new(target, mode, &opts),
        };
        if self.dry_run {
            for (line, view) in plan.lines().into_iter().zip(plan.views()) {
                report.line(&line);
                report.emit(Event::PlanStep(view));
            }
            report.info("dry run: nothing was changed");
            return Ok(());
        }
        let finished = run::execute(sh, report, target, &plan, &opts)?;
        summary::print(report, target, mode, &finished);
        Ok(())
    }
}

/// Whether the tree is a git checkout (images get a commit tag then).
fn is_git_checkout(sh: &Shell) -> bool {
    xshell::cmd!(sh, "git rev-parse --short HEAD")
        .quiet()
        .ignore_stderr()
        .ignore_stdout()
        .run()
        .is_ok()
}
