//! Placeholder until its issue lands.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::config::{SandboxEndpoints, TargetFlags};
use crate::report::Reporter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    First,
    Later,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
    /// Print every step and command, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

impl Args {
    pub fn run(
        self,
        _sh: &Shell,
        _report: &Reporter,
        _kind: Kind,
        _sandbox: Option<SandboxEndpoints>,
    ) -> Result<()> {
        bail!("deploying is not implemented yet")
    }
}
