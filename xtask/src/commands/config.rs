//! `cargo xtask config`: the resolved deploy target.

use anyhow::Result;

use crate::deploy::target::{DeployFile, SandboxEndpoints, TargetFlags};

/// `cargo xtask config`: print the resolved target.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
}

impl Args {
    /// Prints the target; `sandbox` holds the sandbox's endpoints when it is running.
    pub fn run(
        self,
        report: &crate::report::Reporter,
        sandbox: Option<SandboxEndpoints>,
    ) -> Result<()> {
        let file = DeployFile::load(&crate::project::root())?;
        let target = file.resolve(&self.target, &|k| std::env::var(k).ok(), sandbox.as_ref())?;
        if report.json() {
            report.event("config", serde_json::to_value(&target)?);
        } else {
            print!("{}", target.describe());
        }
        Ok(())
    }
}
