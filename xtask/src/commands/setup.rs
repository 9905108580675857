//! `cargo xtask setup`: the Debian packages the host needs.

use anyhow::Result;
use xshell::Shell;

use crate::report::Reporter;
use crate::setup::{self, Need, Package};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Install only what one command needs (default: everything)
    #[arg(long, value_enum)]
    only: Option<Need>,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        let needs = match self.only {
            Some(need) => vec![need],
            None => vec![Need::Tests, Need::Sandbox],
        };
        for need in needs {
            let wanted: Vec<&Package> = setup::packages(need).collect();
            match setup::missing(sh, &wanted)? {
                None => report.warn(format!(
                    "no dpkg-query (not Debian?): install the equivalents of {} yourself",
                    setup::names(&wanted)
                )),
                Some(missing) if missing.is_empty() => report.info(format!(
                    "{}: all {} Debian packages present",
                    need.label(),
                    wanted.len()
                )),
                Some(missing) => setup::install(sh, report, need, &missing)?,
            }
        }
        Ok(())
    }
}
