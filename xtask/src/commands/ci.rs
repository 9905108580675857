//! `cargo xtask ci`: the project's whole test command, as CI runs it (`.ci/run`).

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::commands::rehearse;
use crate::failure::Failure;
use crate::report::Reporter;
use crate::rspec;
use crate::sandbox::images;
use crate::setup::{self, Need};

mod leftovers;
mod lint;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the rehearsal's sandbox running afterwards (and skip the check that the run left
    /// no container or process behind)
    #[arg(long)]
    pub keep: bool,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        {
            // The xtask's Docker tests need the sandbox's packages and base images too.
            let phase = report.phase("setup");
            setup::ensure(sh, report, Need::Tests)?;
            setup::ensure(sh, report, Need::Sandbox)?;
            images::ensure(sh, report)?;
            phase.finish();
        }
        let containers_before = leftovers::containers(sh)?;
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
            let phase = report.phase("lint workflows");
            lint::workflows(sh, report)?;
            phase.finish();
        }
        {
            let phase = report.phase("xtask tests");
            // The ignored tests need Docker, moto and a registry (each starts its own); the
            // push benchmark is a measurement, not a test.
            cmd!(sh, "cargo test --package xtask --quiet -- --include-ignored --skip bench_")
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
        {
            let phase = report.phase("rehearsal");
            rehearse::Args { keep: self.keep }.run(sh, report)?;
            phase.finish();
        }
        if !self.keep {
            let phase = report.phase("nothing left behind");
            let after = leftovers::containers(sh)?;
            let processes = leftovers::processes_under(&crate::project::target_dir());
            leftovers::check(&containers_before, &after, &processes)
                .map_err(anyhow::Error::msg)
                .context(Failure::Tests)?;
            report.info(format!(
                "no container and no process of the run is left ({} container(s) were there before it)",
                containers_before.len()
            ));
            phase.finish();
        }
        report.info("ci passed");
        Ok(())
    }
}
