//! `cargo xtask rollback`: puts the service back on an earlier revision of its family — by
//! default the newest verified one before the revision it runs — whose images are exact, by
//! digest. It waits and verifies like a deploy, with a deploy's exit codes.

use anyhow::{anyhow, Result};
use xshell::Shell;

use crate::aws::ecs_json::{revision_of, Revision};
use crate::deploy::inspect::Inspect;
use crate::deploy::lock::{self, DeployLock, WaitFlags};
use crate::deploy::plan::{Plan, PlanOptions};
use crate::deploy::render::RevisionTags;
use crate::deploy::run;
use crate::deploy::target::{DeployFlags, Target, TargetFlags};
use crate::entrypoint::Mode;
use crate::event::Event;
use crate::failure::Failure;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
    #[command(flatten)]
    pub deploy: DeployFlags,
    #[command(flatten)]
    pub wait: WaitFlags,
    /// The revision to go back to (its number in the family) [default: the newest verified
    /// revision before the one the service runs]
    #[arg(long, value_name = "REVISION")]
    pub to: Option<i64>,
    /// Print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Go back to a first-deploy-mode revision although it runs db:create and db:seed again
    #[arg(long)]
    pub force: bool,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        let target = super::inspect_target::resolve(&self.target, &self.deploy)?;
        // Held until the rollback ends: no deploy from this checkout runs beside it.
        let _lock = match self.dry_run {
            true => None,
            false => {
                let wait = (!self.wait.no_wait).then_some(target.roll_timeout);
                Some(DeployLock::acquire(&lock::path(), wait, report)?)
            }
        };
        let inspect = Inspect::connect(&target)?;
        let running = inspect.running()?;
        let current = running.revision.ok_or_else(|| {
            anyhow!(
                "service `{}` runs no task definition: nothing to roll back from",
                target.service
            )
            .context(Failure::Preflight)
        })?;
        let chosen = self.choose(&inspect, &current)?;
        let tags = RevisionTags::from_json(&chosen.tags);
        if tags.mode == Some(Mode::First) && !self.force {
            return Err(anyhow!(
                "{} was registered by a first deploy: its entrypoint runs db:create and db:seed, and a second db:seed makes the task exit; roll back to a later revision, or pass --force if the database is empty",
                chosen.name()
            )
            .context(Failure::Preflight));
        }
        let digests = tags.digests.clone();
        if !tags.is_ours() || digests.is_empty() {
            report.warn(format!(
                "{} carries no digest tags (not registered by this tool): its images are checked against nothing",
                chosen.name()
            ));
        }
        report.info(format!(
            "rollback of {} in {}: {} → {} (commit {})",
            target.service,
            target.cluster,
            current.name(),
            chosen.name(),
            tags.git_commit.as_deref().unwrap_or("-")
        ));
        let plan = Plan::rollback(&target, &chosen.arn, digests, tags.mode, self.wait.wait);
        if self.dry_run {
            for (line, view) in plan.lines().into_iter().zip(plan.views()) {
                report.line(&line);
                report.emit(Event::PlanStep(view));
            }
            report.info("dry run: nothing was changed");
            return Ok(());
        }
        let opts = PlanOptions::new(crate::project::target_dir().join("xtask"));
        let finished = run::execute(sh, report, &target, &plan, &opts)?;
        summary(report, &target, &chosen, &finished);
        Ok(())
    }

    /// `--to N`, or the newest verified revision below the current one.
    fn choose(&self, inspect: &Inspect, current: &Revision) -> Result<Revision> {
        let family = &current.family;
        if let Some(n) = self.to {
            if n == current.revision {
                return Err(
                    anyhow!("the service already runs {family}:{n}").context(Failure::Input)
                );
            }
            return inspect.revision(&format!("{family}:{n}")).map_err(|e| {
                e.context(format!(
                    "there is no revision {family}:{n}: `cargo xtask status` shows the revisions"
                ))
                .context(Failure::Input)
            });
        }
        for arn in inspect.revisions(family)? {
            let Some((_, n)) = revision_of(&arn) else { continue };
            if n >= current.revision {
                continue;
            }
            let revision = inspect.revision(&arn)?;
            if RevisionTags::from_json(&revision.tags).verified.is_some() {
                return Ok(revision);
            }
        }
        Err(anyhow!(
            "there is nothing to roll back to: no verified revision of {family} before {} (a revision is verified once its deploy answered the health check); `--to N` names one",
            current.name()
        )
        .context(Failure::Preflight))
    }
}

fn summary(report: &Reporter, target: &Target, chosen: &Revision, finished: &run::Finished) {
    report.line("");
    report.line(&format!("rollback succeeded: {} runs {}", target.service, chosen.name()));
    if let Some(shipped) = finished.shipped.last() {
        for task in &shipped.outcome.tasks {
            report.line(&format!("  task    {}", task.id));
        }
        report.line(&format!(
            "  health  {} → {}{}",
            shipped.verified.url,
            shipped.verified.status,
            shipped.verified.message.as_deref().map(|m| format!(" {m:?}")).unwrap_or_default()
        ));
    }
    crate::deploy::summary::emit_result(report, target, "rollback", finished);
}
