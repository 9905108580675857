//! Placeholder until its issue lands.

pub mod images;

use anyhow::{bail, Result};
use xshell::Shell;

use crate::config::SandboxEndpoints;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(self, _sh: &Shell, _report: &Reporter) -> Result<()> {
        bail!("`sandbox` is not implemented yet")
    }
}

/// What `up` creates.
#[derive(Debug, Clone, Copy)]
pub struct UpOptions {
    /// Create the ECR repositories (a first deploy creates them itself when missing).
    pub repositories: bool,
}

impl UpOptions {
    pub fn for_deploy(first: bool) -> UpOptions {
        UpOptions { repositories: !first }
    }
}

/// The endpoints of the running sandbox, if it is up.
pub fn running_endpoints() -> Option<SandboxEndpoints> {
    None
}

/// Brings the sandbox up (idempotent) and returns its endpoints.
pub fn ensure_up(_sh: &Shell, _report: &Reporter, _opts: UpOptions) -> Result<SandboxEndpoints> {
    bail!("the sandbox is not implemented yet")
}
