//! The target of the commands that read what runs (`render`, `diff`, `status`, `rollback`):
//! resolved as a deploy resolves it, with the running sandbox's overlay for `--sandbox`.

use anyhow::{anyhow, Result};

use crate::deploy::target::{DeployFile, DeployFlags, Target, TargetFlags};
use crate::failure::Failure;
use crate::sandbox;

pub fn resolve(flags: &TargetFlags, deploy: &DeployFlags) -> Result<Target> {
    let file = DeployFile::load(&crate::project::root())?;
    let overlay = match flags.sandbox {
        true => Some(sandbox::running_overlay().ok_or_else(|| {
            anyhow!("the sandbox is not running: run `cargo xtask sandbox up` (or a first deploy)")
                .context(Failure::Sandbox)
        })?),
        false => None,
    };
    file.resolve(flags, deploy, &|k| std::env::var(k).ok(), overlay.as_ref())
}
