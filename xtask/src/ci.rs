//! `cargo xtask ci`: the project's whole test command, as CI runs it (`.ci/run`).

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::failure::Failure;
use crate::report::Reporter;
use crate::rspec;

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        {
            let phase = report.phase("fmt");
            cmd!(sh, "cargo fmt --all -- --check")
                .run()
                .context("code is not formatted: run `cargo fmt` and commit the result")
                .context(Failure::Input)?;
            phase.finish();
        }
        {
            let phase = report.phase("clippy");
            cmd!(sh, "cargo clippy --all-targets --quiet -- -D warnings")
                .run()
                .context("clippy found problems: fix them (see above) and commit")
                .context(Failure::Input)?;
            phase.finish();
        }
        {
            let phase = report.phase("xtask tests");
            cmd!(sh, "cargo test --package xtask --quiet")
                .run()
                .context("the xtask's own tests failed (see above): rerun them with `cargo test -p xtask`")
                .context(Failure::Tests)?;
            phase.finish();
        }
        {
            let phase = report.phase("rspec");
            rspec::run_suite(sh, report, &[])?;
            phase.finish();
        }
        report.info("ci passed");
        Ok(())
    }
}
