//! `cargo xtask config`: the resolved deploy target, exactly as a deploy with the same flags
//! uses it (never credentials).

use anyhow::Result;

use crate::deploy::target::{DeployFile, DeployFlags, TargetFlags};
use crate::event::Event;
use crate::report::Reporter;
use crate::sandbox;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
    #[command(flatten)]
    pub deploy: DeployFlags,
}

impl Args {
    pub fn run(self, report: &Reporter) -> Result<()> {
        let file = DeployFile::load(&crate::project::root())?;
        // Nothing is started: the running sandbox's overlay, or the one `up` would make.
        let overlay = self.target.sandbox.then(sandbox::planned_overlay);
        let target =
            file.resolve(&self.target, &self.deploy, &|k| std::env::var(k).ok(), overlay.as_ref())?;
        if report.json() {
            report.emit(Event::Config { target: serde_json::to_value(&target)? });
        } else {
            print!("{}", target.describe());
        }
        Ok(())
    }
}
