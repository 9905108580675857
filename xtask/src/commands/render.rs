//! `cargo xtask render`: the repository's task definition as a deploy of this tree would
//! register it, as RegisterTaskDefinition's JSON input on stdout.

use anyhow::Result;
use xshell::Shell;

use crate::deploy::inspect::Inspect;
use crate::deploy::target::{DeployFlags, TargetFlags};
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        let target = super::inspect_target::resolve(&self.target, &DeployFlags::default())?;
        let inspect = Inspect::connect(&target)?;
        let rendered = inspect.render(sh, report)?;
        println!("{}", serde_json::to_string_pretty(&rendered)?);
        Ok(())
    }
}
