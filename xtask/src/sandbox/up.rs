//! Bringing the sandbox up (`up`, and `reset` for a fresh one): the host's packages and base
//! images, the data moto's state goes with, the processes, what tasks need on the host.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use xshell::Shell;

use super::components::{choose_ports, Ports};
use super::components::{ensure_processes, health_moto, health_registry, moto_fingerprint};
use super::down::remove_containers;
use super::state::{ensure_dir, Component, Layout, Lock, State};
use super::{
    check_inputs, database, ensure_network, ensure_resources, fargate, images, moto, overlay,
    overlay_with, own_target, planned_overlay, process, task_settings, UpOptions, LOCK_WAIT,
    OWNER_LABEL, REGION,
};
use crate::deploy::target::{Overlay, Target};
use crate::docker::containers;
use crate::event::Event;
use crate::failure::Failure;
use crate::report::{human_duration, Reporter};

/// What the host must have before the sandbox starts: Debian packages, then the base images
/// standing in for the official ones (built once, cached in Docker) and moto's virtualenv. The
/// last two are the slow part of a first `up` and independent: they are made side by side.
/// Called with the sandbox's lock held (the venv lives in the sandbox's directory).
pub(super) fn prepare_host(sh: &Shell, report: &Reporter, layout: &Layout) -> Result<()> {
    crate::setup::ensure(sh, report, crate::setup::Need::Sandbox)?;
    std::thread::scope(|scope| {
        let images = scope.spawn(|| images::ensure(&Shell::new()?, report));
        let venv = moto::ensure_venv(sh, layout, report);
        let images =
            images.join().unwrap_or_else(|_| Err(anyhow!("the base image build panicked")));
        images.and(venv)
    })
}

pub(super) fn up_locked(
    sh: &Shell,
    report: &Reporter,
    layout: &Layout,
    opts: UpOptions,
    ports: Ports,
    resolve: &dyn Fn(&Overlay) -> Result<Target>,
) -> Result<Target> {
    let started = Instant::now();
    let mut state = State::load(layout)?;
    let before = state.clone();
    ensure_dir(&layout.logs())?;
    ensure_dir(&layout.registry_storage())?;
    let secrets = database::SandboxSecrets::load_or_create(layout)?;
    moto::ensure_venv(sh, layout, report)?;
    let region = REGION;
    // moto keeps its AWS state in memory: when it starts anew, the registry's images and the
    // database go too, so that the sandbox is fresh as a whole, never half.
    if !moto_survives(layout, &state, region) && holds_data(layout) {
        report.info(
            "    moto starts empty, so the registry's images, the tasks and the database are cleared too (a fresh sandbox)",
        );
        let removed = clear_data(sh, layout, &mut state)?;
        state.save(layout)?;
        if removed > 0 {
            report.info(format!("    removed {removed} sandbox container(s)"));
        }
    }
    ensure_processes(report, layout, &mut state, region, ports)?;
    ensure_task_host(sh, report, layout, &secrets)?;
    let mut created = Vec::new();
    let network = ensure_network(&overlay(ports.moto, ports.registry), &mut created)?;
    state.network = Some(network);
    state.save(layout)?;
    let target = resolve(&overlay_with(ports.moto, ports.registry, state.network.as_ref()))?;
    let registry = target.registry.clone().unwrap_or_default();
    if opts != UpOptions::Bare {
        let more =
            ensure_resources(&target, &registry, opts).map_err(|e| match Failure::of(&e) {
                Some(_) => e,
                None => e.context(Failure::Sandbox),
            })?;
        created.extend(more);
    }
    for line in &created {
        report.info(format!("    created {line}"));
    }
    let how = if state == before && created.is_empty() { "already up" } else { "up" };
    report.info(format!(
        "sandbox {how} in {}: AWS APIs at {}, registry at {}",
        human_duration(started.elapsed()),
        target.endpoint_url.as_deref().unwrap_or_default(),
        registry
    ));
    report.emit(Event::Sandbox {
        endpoint_url: target.endpoint_url.clone(),
        registry: registry.to_string(),
        created,
    });
    Ok(target)
}

/// Whether `up` keeps the running moto (and so its AWS state): ours, healthy, started the way
/// `ensure_processes` would start it now.
fn moto_survives(layout: &Layout, state: &State, region: &str) -> bool {
    let (Some(moto), Some(registry)) = (&state.moto, &state.registry) else { return false };
    let alive = |c: &Component| process::alive(c.pid) && process::runs(c.pid, &layout.marker());
    alive(moto)
        && alive(registry)
        && health_moto(moto.port)
        && health_registry(registry.port)
        && moto.fingerprint == moto_fingerprint(moto.port, region, registry.port)
}

/// Whether the registry or the database holds anything of an earlier sandbox.
fn holds_data(layout: &Layout) -> bool {
    let non_empty = |dir: PathBuf| std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    non_empty(layout.registry_storage()) || non_empty(layout.database())
}

/// Stops the sandbox process (so that it starts no task meanwhile) and the registry, removes
/// the sandbox's containers and clears the registry's storage and the database; moto's state
/// is the caller's. Returns how many containers were removed.
fn clear_data(sh: &Shell, layout: &Layout, state: &mut State) -> Result<usize> {
    for component in [state.serve.take(), state.registry.take()].into_iter().flatten() {
        if process::alive(component.pid) && process::runs(component.pid, &layout.marker()) {
            process::stop_group(component.pid, Duration::from_secs(10))?;
        }
    }
    let removed = remove_containers(sh, layout)?;
    database::wipe(layout)?;
    let storage = layout.registry_storage();
    if storage.exists() {
        std::fs::remove_dir_all(&storage)
            .with_context(|| format!("cannot clear {}", storage.display()))?;
    }
    ensure_dir(&storage)?;
    Ok(removed)
}

/// What tasks need on the host: the pause image, the sandbox's Docker network, the database.
fn ensure_task_host(
    sh: &Shell,
    report: &Reporter,
    layout: &Layout,
    secrets: &database::SandboxSecrets,
) -> Result<()> {
    let settings = task_settings(layout, fargate::plan::Secrets::default());
    fargate::image::ensure_pause_image(sh, &settings.pause_image)?;
    let exists = containers::network_inspect(sh, &settings.network)
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    if !exists {
        containers::network_create(sh, (OWNER_LABEL, &settings.owner), &settings.network)
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("cannot create the Docker network {}", settings.network))
            .context(Failure::Sandbox)?;
    }
    database::ensure(sh, report, layout, &settings, secrets)
}

/// `cargo xtask sandbox reset`: a fresh sandbox on the same ports.
pub fn reset(sh: &Shell, report: &Reporter, layout: &Layout, opts: UpOptions) -> Result<()> {
    let _lock = Lock::acquire(&layout.lock(), report, LOCK_WAIT)?;
    check_inputs(&own_target(&planned_overlay())?)?;
    prepare_host(sh, report, layout)?;
    let mut state = State::load(layout)?;
    let Some(moto) = state.moto.clone().filter(|m| process::alive(m.pid) && health_moto(m.port))
    else {
        bail!("the sandbox is not running: run `cargo xtask sandbox up`");
    };
    let removed = clear_data(sh, layout, &mut state)?;
    moto::reset(moto.port)?;
    report.info(format!(
        "cleared moto's AWS state, the registry and the database; removed {removed} container(s)"
    ));
    state.save(layout)?;
    let (ports, notes) = choose_ports(&state)?;
    for note in notes {
        report.info(note);
    }
    up_locked(sh, report, layout, opts, ports, &own_target).map(drop)
}
