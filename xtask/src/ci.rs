//! Placeholder until its issue lands.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(self, _sh: &Shell, _report: &Reporter) -> Result<()> {
        bail!("`ci` is not implemented yet")
    }
}
