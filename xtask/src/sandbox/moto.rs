//! moto (ECS, ECR and EC2 APIs) in a virtualenv the xtask makes, run through the repository's
//! launcher `moto_sandbox.py`, which adds what moto 5.2 lacks and the admin API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::state::{ensure_dir, Layout, Lock};
use crate::failure::Failure;
use crate::report::Reporter;

/// The launcher, written to `target/sandbox/moto_sandbox.py` before each start.
pub const LAUNCHER: &str = include_str!("moto_sandbox.py");
/// Every package of the venv, pinned.
pub const REQUIREMENTS: &str = include_str!("requirements.txt");
/// The account moto answers for.
pub const ACCOUNT_ID: &str = "123456789012";

/// Written into the venv once `pip install` succeeded with exactly these requirements.
const READY_MARKER: &str = "zenn-sandbox-requirements.txt";

/// Makes the venv with moto unless it is already complete; says so and how long it took.
pub fn ensure_venv(sh: &Shell, layout: &Layout, report: &Reporter) -> Result<()> {
    let marker = layout.venv.join(READY_MARKER);
    if venv_ready(&layout.venv) {
        return Ok(());
    }
    // Test sandboxes share one venv: only one of them builds it.
    let lock_path = layout.venv.with_extension("lock");
    let _lock = Lock::acquire(&lock_path, report, Duration::from_secs(600))?;
    if venv_ready(&layout.venv) {
        return Ok(());
    }
    let phase = report.phase("moto virtualenv");
    report.info(format!(
        "    creating {} with moto[server] 5.2.1 from PyPI (once; later `up`s reuse it)",
        layout.venv.display()
    ));
    if layout.venv.exists() {
        std::fs::remove_dir_all(&layout.venv).with_context(|| {
            format!("cannot remove the incomplete venv {}", layout.venv.display())
        })?;
    }
    ensure_dir(layout.venv.parent().unwrap_or(Path::new(".")))?;
    let python = python();
    let venv = &layout.venv;
    cmd!(sh, "{python} -m venv {venv}")
        .run()
        .context("`python3 -m venv` failed: install python3-venv (`apt-get install python3-venv`)")
        .context(Failure::Preflight)?;
    let requirements = venv.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS)?;
    let pip = venv.join("bin/pip");
    cmd!(sh, "{pip} install --disable-pip-version-check --no-input --quiet -r {requirements}")
        .run()
        .context("installing moto into the sandbox venv failed: check that PyPI is reachable, then run `cargo xtask sandbox up` again")
        .context(Failure::Sandbox)?;
    std::fs::write(&marker, REQUIREMENTS)?;
    phase.finish();
    Ok(())
}

fn venv_ready(venv: &Path) -> bool {
    std::fs::read_to_string(venv.join(READY_MARKER)).is_ok_and(|text| text == REQUIREMENTS)
}

/// Debian's python3 (whose venv module `setup` installs), else the first on PATH.
fn python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("python3")
    }
}

/// Writes the launcher and returns the command that runs it.
pub fn command(layout: &Layout, port: u16, region: &str, registry: &str) -> Result<Command> {
    let launcher = layout.launcher();
    std::fs::write(&launcher, LAUNCHER)
        .with_context(|| format!("cannot write {}", launcher.display()))?;
    let mut cmd = Command::new(layout.venv.join("bin/python"));
    cmd.arg(launcher).args(["--host", "127.0.0.1", "--port", &port.to_string()]).args([
        "--region",
        region,
        "--registry",
        registry,
    ]);
    Ok(cmd)
}

pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

pub fn health_url(port: u16) -> String {
    format!("{}/_sandbox/health", endpoint(port))
}

/// Clears every AWS resource moto holds (the patches stay).
pub fn reset(port: u16) -> Result<()> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    agent
        .post(format!("{}/moto-api/reset", endpoint(port)))
        .send_empty()
        .context("moto did not reset: check `cargo xtask sandbox status`")
        .context(Failure::Sandbox)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_is_pinned_and_every_requirement_has_a_version() {
        assert!(REQUIREMENTS.lines().any(|l| l == "moto[server]==5.2.1"));
        for line in REQUIREMENTS.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            assert!(line.contains("=="), "unpinned requirement `{line}`");
        }
    }

    #[test]
    fn command_runs_the_launcher_on_loopback() {
        let dir = crate::project::target_dir()
            .join("test-tmp")
            .join(format!("moto-cmd-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        let layout = Layout { venv: dir.join("venv"), dir: dir.clone() };
        let cmd = command(&layout, 5010, "ap-northeast-1", "127.0.0.1:5011").unwrap();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(cmd.get_program(), dir.join("venv/bin/python"));
        assert_eq!(
            args[1..],
            [
                "--host",
                "127.0.0.1",
                "--port",
                "5010",
                "--region",
                "ap-northeast-1",
                "--registry",
                "127.0.0.1:5011"
            ]
        );
        assert_eq!(std::fs::read_to_string(layout.launcher()).unwrap(), LAUNCHER);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
