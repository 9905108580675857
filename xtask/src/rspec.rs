//! Placeholder until its issue lands.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(self, _sh: &Shell, _report: &Reporter) -> Result<()> {
        bail!("`rspec` is not implemented yet")
    }
}

pub fn run_suite(_sh: &Shell, _report: &Reporter, _rspec_args: &[String]) -> Result<()> {
    bail!("`test` is not implemented yet")
}
