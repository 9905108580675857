//! `cargo xtask diff`: what differs, field by field, between the repository's task definition
//! (rendered) and the revision the service runs, images aside. Exit 0 when equal, 11 when they
//! differ, another code on an error.

use anyhow::{anyhow, Result};
use xshell::Shell;

use crate::deploy::inspect::Inspect;
use crate::deploy::target::{DeployFlags, TargetFlags};
use crate::failure::Failure;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 the definitions are equal (images aside), 11 they differ, other codes an error."
)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        let target = super::inspect_target::resolve(&self.target, &DeployFlags::default())?;
        let inspect = Inspect::connect(&target)?;
        let running = inspect.running()?;
        let name = running.revision.as_ref().map_or("(none)".to_string(), |r| r.name());
        let changes = inspect.drift(sh, report, &running)?;
        for change in &changes {
            println!("{change}");
        }
        if changes.is_empty() {
            report
                .info(format!("{} equals {name} (images aside)", target.task_definition.display()));
            return Ok(());
        }
        Err(anyhow!(
            "{} differs from {name} in {} field(s), shown above: `cargo xtask deploy` registers it",
            target.task_definition.display(),
            changes.len()
        )
        .context(Failure::Drift))
    }
}
