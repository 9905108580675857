//! `cargo xtask sandbox down`: what this sandbox started, stopped and removed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::Shell;

use super::state::{Layout, Lock, State};
use super::{process, LOCK_WAIT, OWNER_LABEL};
use crate::docker::containers;
use crate::report::Reporter;

/// `cargo xtask sandbox down`.
pub fn down(sh: &Shell, report: &Reporter, layout: &Layout) -> Result<()> {
    let _lock = Lock::acquire(&layout.lock(), report, LOCK_WAIT)?;
    let mut state = State::load(layout)?;
    let mut stopped = 0;
    for (name, component) in [
        ("sandbox process", state.serve.take()),
        ("moto", state.moto.take()),
        ("registry", state.registry.take()),
    ] {
        let Some(c) = component else { continue };
        if process::alive(c.pid) && process::runs(c.pid, &layout.marker()) {
            process::stop_group(c.pid, Duration::from_secs(10))?;
            report.info(format!("stopped {name} (pid {})", c.pid));
            stopped += 1;
        }
    }
    state.save(layout)?;
    let removed = remove_containers(sh, layout)?;
    if removed > 0 {
        report.info(format!("removed {removed} sandbox container(s)"));
    }
    if stopped == 0 && removed == 0 {
        report.info("the sandbox is not running");
    }
    Ok(())
}

/// Removes this sandbox's containers (and their anonymous volumes) and networks.
pub(super) fn remove_containers(sh: &Shell, layout: &Layout) -> Result<usize> {
    if find_program("docker").is_none() {
        return Ok(0);
    }
    let owner = layout.marker();
    let owner = (OWNER_LABEL, owner.as_str());
    let ids = containers::list_short(sh, owner)
        .quiet()
        .read()
        .context("cannot list the sandbox's containers")?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let count = ids.len();
    if count > 0 {
        containers::remove_with_volumes(sh, &ids)
            .quiet()
            .ignore_stdout()
            .run()
            .context("cannot remove the sandbox's containers")?;
    }
    let networks = containers::network_list(sh, owner).quiet().read()?;
    let networks: Vec<&str> = networks.split_whitespace().collect();
    if !networks.is_empty() {
        containers::network_remove(sh, &networks)
            .quiet()
            .ignore_stdout()
            .run()
            .context("cannot remove the sandbox's networks")?;
    }
    Ok(count)
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}
