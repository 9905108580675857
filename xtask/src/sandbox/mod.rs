//! `cargo xtask sandbox up|down|status|reset`: AWS on one machine, for the same deploy code.
//!
//! | AWS       | stand-in                                               | port (default) |
//! | --------- | ------------------------------------------------------ | -------------- |
//! | ECS, ECR, EC2 APIs | moto, through `moto_sandbox.py` (+ admin API) | 5010 |
//! | ECR's registry     | Debian's `docker-registry`                    | 5011 |
//! | push mirroring, ECS's scheduler, Fargate | `cargo xtask sandbox serve` (`serve`, `scheduler`, `fargate`) | 5012 |
//! | RDS | MariaDB in a container on the sandbox's Docker network (`database`) | - |
//!
//! Everything lives in `target/sandbox/`: `state.json` (ports, pids), `logs/` (the tasks' in
//! `logs/tasks/`), `registry/`, `mariadb/`, `secrets.json`, `addresses.json`, `venv/`. A port
//! already taken is replaced by a free one, recorded in the state file.

pub mod admin;
pub mod database;
pub mod fargate;
mod http;
pub mod images;
mod moto;
mod process;
mod registry;
mod resources;
pub mod scheduler;
mod serve;
mod state;

#[cfg(test)]
mod itest;
#[cfg(test)]
mod roll_itest;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use xshell::Shell;

use crate::aws::Aws;
use crate::deploy::target::{DeployFile, SandboxEndpoints, Target, TargetFlags};
use crate::docker::containers;
use crate::failure::Failure;
use crate::report::{human_duration, Reporter};
use state::{ensure_dir, Component, Lock, State};

pub use state::Layout;

/// Label on every container and network of one sandbox, valued with its directory
/// (`Layout::marker`): `down` removes what carries it, so that sandboxes of several checkouts
/// on one machine never touch each other's.
pub const OWNER_LABEL: &str = "zenn-sandbox.dir";

const MOTO_PORT: u16 = 5010;
const REGISTRY_PORT: u16 = 5011;
const SERVE_PORT: u16 = 5012;
/// How long a second `up` waits for the first.
const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);

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
    let state = State::load(&Layout::standard()).ok()?;
    let (moto, registry) = (state.moto?, state.registry?);
    (process::alive(moto.pid) && process::alive(registry.pid)).then(|| endpoints(&moto, &registry))
}

/// Brings the sandbox up (idempotent) and returns its endpoints.
pub fn ensure_up(sh: &Shell, report: &Reporter, opts: UpOptions) -> Result<SandboxEndpoints> {
    check_inputs()?;
    let layout = Layout::standard();
    let _lock = Lock::acquire(&layout.lock(), report, LOCK_WAIT)?;
    prepare_host(sh, report, &layout)?;
    up_locked(sh, report, &layout, opts)
}

/// What the host must have before the sandbox starts: Debian packages, then the base images
/// standing in for the official ones (built once, cached in Docker) and moto's virtualenv. The
/// last two are the slow part of a first `up` and independent: they are made side by side.
/// Called with the sandbox's lock held (the venv lives in the sandbox's directory).
fn prepare_host(sh: &Shell, report: &Reporter, layout: &Layout) -> Result<()> {
    crate::setup::ensure(sh, report, crate::setup::Need::Sandbox)?;
    std::thread::scope(|scope| {
        let images = scope.spawn(|| images::ensure(&Shell::new()?, report));
        let venv = moto::ensure_venv(sh, layout, report);
        let images =
            images.join().unwrap_or_else(|_| Err(anyhow!("the base image build panicked")));
        images.and(venv)
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// deploy.toml and the task definition, read before anything is installed or started: a
/// broken file changes nothing.
fn check_inputs() -> Result<()> {
    let target = sandbox_target(None)?;
    let path = crate::project::root().join(&target.task_definition);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the task definition {}", path.display()))
        .context(Failure::Input)?;
    let values = resources::Placeholders {
        registry: "127.0.0.1:5011",
        account_id: moto::ACCOUNT_ID,
        region: &target.region,
    };
    resources::render_task_definition(&text, &values)
        .with_context(|| format!("{} is invalid", path.display()))
        .context(Failure::Input)?;
    Ok(())
}

/// The `sandbox` target of deploy.toml, with the sandbox's endpoints when known.
fn sandbox_target(endpoints: Option<&SandboxEndpoints>) -> Result<Target> {
    let flags = TargetFlags { sandbox: true, ..TargetFlags::default() };
    DeployFile::load(&crate::project::root())?.resolve(
        &flags,
        &|k| std::env::var(k).ok(),
        endpoints,
    )
}

fn endpoints(moto: &Component, registry: &Component) -> SandboxEndpoints {
    SandboxEndpoints {
        endpoint_url: moto::endpoint(moto.port),
        registry: format!("127.0.0.1:{}", registry.port),
    }
}

/// The ports the three components will use: a running healthy one keeps its own.
#[derive(Debug, Clone, Copy)]
struct Ports {
    moto: u16,
    registry: u16,
    serve: u16,
}

fn up_locked(
    sh: &Shell,
    report: &Reporter,
    layout: &Layout,
    opts: UpOptions,
) -> Result<SandboxEndpoints> {
    let started = Instant::now();
    let mut state = State::load(layout)?;
    let before = state.clone();
    ensure_dir(&layout.logs())?;
    ensure_dir(&layout.registry_storage())?;
    let secrets = database::SandboxSecrets::load_or_create(layout)?;
    moto::ensure_venv(sh, layout, report)?;
    let region = sandbox_target(None)?.region;
    // moto keeps its AWS state in memory: when it starts anew, the registry's images and the
    // database go too, so that the sandbox is fresh as a whole, never half.
    if !moto_survives(layout, &state, &region) && holds_data(layout) {
        report.info(
            "    moto starts empty, so the registry's images, the tasks and the database are cleared too (a fresh sandbox)",
        );
        let removed = clear_data(sh, layout, &mut state)?;
        state.save(layout)?;
        if removed > 0 {
            report.info(format!("    removed {removed} sandbox container(s)"));
        }
    }
    let endpoints = ensure_processes(report, layout, &mut state, &region)?;
    ensure_task_host(sh, report, layout, &secrets)?;
    let created = ensure_resources(&endpoints, opts).map_err(|e| match Failure::of(&e) {
        Some(_) => e,
        None => e.context(Failure::Sandbox),
    })?;
    for line in &created {
        report.info(format!("    created {line}"));
    }
    let how = if state == before && created.is_empty() { "already up" } else { "up" };
    report.info(format!(
        "sandbox {how} in {}: AWS APIs at {}, registry at {}",
        human_duration(started.elapsed()),
        endpoints.endpoint_url,
        endpoints.registry
    ));
    report.event(
        "sandbox",
        json!({ "endpoint_url": endpoints.endpoint_url, "registry": endpoints.registry, "created": created }),
    );
    Ok(endpoints)
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

fn moto_fingerprint(port: u16, region: &str, registry_port: u16) -> String {
    let args = format!("{port} {region} 127.0.0.1:{registry_port}");
    fingerprint(&[moto::LAUNCHER, moto::REQUIREMENTS, &args])
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

/// Registry, moto, sandbox process: each kept when healthy and started the same way, else
/// (re)started; the state file records each as soon as it runs.
fn ensure_processes(
    report: &Reporter,
    layout: &Layout,
    state: &mut State,
    region: &str,
) -> Result<SandboxEndpoints> {
    let ports = distinct(Ports {
        registry: choose_port(
            report,
            "registry",
            state.registry.as_ref(),
            REGISTRY_PORT,
            health_registry,
        )?,
        moto: choose_port(report, "moto", state.moto.as_ref(), MOTO_PORT, health_moto)?,
        serve: choose_port(
            report,
            "sandbox process",
            state.serve.as_ref(),
            SERVE_PORT,
            health_serve,
        )?,
    })?;
    let registry_address = format!("127.0.0.1:{}", ports.registry);

    let notify_url = format!("http://127.0.0.1:{}{}", ports.serve, serve::EVENTS_PATH);
    let config = registry::config(ports.registry, &layout.registry_storage(), &notify_url);
    let spec = Spec {
        name: "registry",
        log: "registry",
        timeout: Duration::from_secs(20),
        health: health_registry,
    };
    let current = state.registry.take();
    state.registry = Some(ensure_component(
        report,
        layout,
        spec,
        current,
        ports.registry,
        fingerprint(&[&config]),
        || {
            std::fs::write(layout.registry_config(), &config)?;
            Ok(registry::command(&layout.registry_config()))
        },
    )?);
    state.save(layout)?;

    let spec =
        Spec { name: "moto", log: "moto", timeout: Duration::from_secs(90), health: health_moto };
    let current = state.moto.take();
    let print = moto_fingerprint(ports.moto, region, ports.registry);
    state.moto = Some(ensure_component(report, layout, spec, current, ports.moto, print, || {
        moto::command(layout, ports.moto, region, &registry_address)
    })?);
    state.save(layout)?;

    let exe = crate::project::xtask_binary()?;
    let serve_args = format!("{} {} {}", ports.serve, ports.moto, ports.registry);
    let spec = Spec {
        name: "sandbox process",
        log: "serve",
        timeout: Duration::from_secs(20),
        health: health_serve,
    };
    let current = state.serve.take();
    let print = fingerprint(&[&binary_identity(&exe), &serve_args, &layout.marker()]);
    state.serve =
        Some(ensure_component(report, layout, spec, current, ports.serve, print, || {
            let mut cmd = Command::new(&exe);
            cmd.args(["sandbox", "serve", "--dir"])
                .arg(&layout.dir)
                .args(["--port", &ports.serve.to_string()])
                .args(["--moto-port", &ports.moto.to_string()])
                .args(["--registry-port", &ports.registry.to_string()]);
            Ok(cmd)
        })?);
    state.save(layout)?;

    Ok(SandboxEndpoints { endpoint_url: moto::endpoint(ports.moto), registry: registry_address })
}

/// The name of this sandbox's Docker network and the prefix of its containers' names: its own,
/// so that sandboxes of several checkouts run side by side.
pub fn sandbox_name(layout: &Layout) -> String {
    let hash = crate::fingerprint::hex(&[layout.marker().as_bytes()]);
    format!("zenn-sandbox-{}", &hash[..6])
}

/// How the scheduler's runner runs this sandbox's tasks.
pub fn task_settings(layout: &Layout, secrets: fargate::plan::Secrets) -> fargate::plan::Settings {
    let name = sandbox_name(layout);
    fargate::plan::Settings {
        sandbox: name.clone(),
        owner: layout.marker(),
        network: name,
        pause_image: fargate::plan::PAUSE_IMAGE.to_string(),
        secrets,
        health_time_scale: 10,
        start_timeout: Duration::from_secs(300),
        stop_grace: Duration::from_secs(5),
        logs_dir: layout.task_logs(),
    }
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

/// The AWS resources of deploy.toml's sandbox target, created in moto when missing.
fn ensure_resources(endpoints: &SandboxEndpoints, opts: UpOptions) -> Result<Vec<String>> {
    let target = sandbox_target(Some(endpoints))?;
    let task_definition = crate::project::root().join(&target.task_definition);
    crate::aws::runtime()?.block_on(async {
        let aws = Aws::connect(&target).await;
        let values = resources::Placeholders {
            registry: &endpoints.registry,
            account_id: moto::ACCOUNT_ID,
            region: &target.region,
        };
        resources::ensure(&aws, &target, &task_definition, &values, opts.repositories).await
    })
}

/// How to recognise and start one component.
struct Spec {
    name: &'static str,
    log: &'static str,
    timeout: Duration,
    health: fn(u16) -> bool,
}

fn health_moto(port: u16) -> bool {
    process::http_status(&moto::health_url(port)) == Some(200)
}
fn health_registry(port: u16) -> bool {
    process::http_status(&registry::health_url(port)) == Some(200)
}
fn health_serve(port: u16) -> bool {
    process::http_status(&format!("http://127.0.0.1:{port}/health")) == Some(200)
}

/// The port for a component: its current one while it runs healthy, else the default (or the
/// one it had) when free, else any free port, said out loud.
fn choose_port(
    report: &Reporter,
    name: &str,
    current: Option<&Component>,
    default: u16,
    health: fn(u16) -> bool,
) -> Result<u16> {
    if let Some(c) = current {
        if process::alive(c.pid) && health(c.port) {
            return Ok(c.port);
        }
    }
    let preferred = current.map_or(default, |c| c.port);
    let port = process::pick_port(preferred)?;
    if port != preferred {
        report.info(format!("    port {preferred} is in use: {name} listens on {port} instead"));
    }
    Ok(port)
}

/// Three different ports (a kernel-chosen port could repeat a default one).
fn distinct(mut ports: Ports) -> Result<Ports> {
    while ports.moto == ports.registry {
        ports.moto = process::pick_port(0)?;
    }
    while ports.serve == ports.registry || ports.serve == ports.moto {
        ports.serve = process::pick_port(0)?;
    }
    Ok(ports)
}

/// Keeps a healthy component started the same way; otherwise stops it and starts it anew.
fn ensure_component(
    report: &Reporter,
    layout: &Layout,
    spec: Spec,
    current: Option<Component>,
    port: u16,
    fingerprint: String,
    command: impl FnOnce() -> Result<Command>,
) -> Result<Component> {
    if let Some(c) = current {
        let ours = process::alive(c.pid) && process::runs(c.pid, &layout.marker());
        if ours && c.port == port && c.fingerprint == fingerprint && (spec.health)(c.port) {
            return Ok(c);
        }
        if ours {
            report.info(format!(
                "    restarting {} (pid {}): its configuration changed or it is unhealthy",
                spec.name, c.pid
            ));
            process::stop_group(c.pid, Duration::from_secs(10))?;
        }
    }
    if !process::port_free(port) {
        return Err(anyhow!(
            "port {port} for {} was taken while the sandbox started: run `cargo xtask sandbox up` again",
            spec.name
        )
        .context(Failure::Sandbox));
    }
    let log = layout.log(spec.log);
    let mut child = process::spawn_detached(command()?, &log).context(Failure::Sandbox)?;
    let pid = child.id();
    let took = process::wait_ready(report, spec.name, &mut child, &log, spec.timeout, || {
        (spec.health)(port)
    })?;
    report.info(format!(
        "    started {} on 127.0.0.1:{port} (pid {pid}) in {}; log {}",
        spec.name,
        human_duration(took),
        log.display()
    ));
    Ok(Component { pid, port, fingerprint })
}

fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Size and modification time of the xtask binary: a rebuilt xtask restarts its process.
fn binary_identity(exe: &Path) -> String {
    std::fs::metadata(exe)
        .and_then(|m| Ok(format!("{} {:?}", m.len(), m.modified()?)))
        .unwrap_or_default()
}

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
fn remove_containers(sh: &Shell, layout: &Layout) -> Result<usize> {
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

/// `cargo xtask sandbox status`.
pub fn status(report: &Reporter, layout: &Layout) -> Result<()> {
    let state = State::load(layout)?;
    let rows = [
        ("moto", state.moto.as_ref(), health_moto as fn(u16) -> bool, "http://"),
        ("registry", state.registry.as_ref(), health_registry, ""),
        ("sandbox process", state.serve.as_ref(), health_serve, "http://"),
    ];
    let mut healthy = 0;
    report.line(&format!("{:<16} {:<28} {:<8} health", "component", "address", "pid"));
    for (name, component, health, scheme) in rows {
        let (address, pid, verdict) = match component {
            None => ("-".to_string(), "-".to_string(), "not started"),
            Some(c) => {
                let verdict = if !process::alive(c.pid) {
                    "stopped"
                } else if health(c.port) {
                    healthy += 1;
                    "healthy"
                } else {
                    "unhealthy"
                };
                (format!("{scheme}127.0.0.1:{}", c.port), c.pid.to_string(), verdict)
            }
        };
        report.line(&format!("{name:<16} {address:<28} {pid:<8} {verdict}"));
        report.event("component", json!({ "name": name, "address": address, "pid": component.map(|c| c.pid), "health": verdict }));
    }
    let sh = Shell::new()?;
    let verdict = match database::state(&sh, layout) {
        Ok(database::State::Running) => {
            if database::ping_command(&sh, layout)
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_ok()
            {
                healthy += 1;
                "healthy"
            } else {
                "unhealthy"
            }
        }
        Ok(database::State::Stopped) => "stopped",
        Ok(database::State::Absent) => "not started",
        Ok(database::State::Foreign(_)) => "another sandbox's",
        Err(_) => "unknown (docker does not answer)",
    };
    let address = format!("{}:3306", database::container_name(layout));
    report.line(&format!("{:<16} {address:<28} {:<8} {verdict}", "database", "-"));
    report.event("component", json!({ "name": "database", "address": address, "health": verdict }));
    if let Some(moto) = state.moto.as_ref().filter(|m| health_moto(m.port)) {
        describe_services(report, &moto::endpoint(moto.port));
    }
    if healthy < rows.len() + 1 {
        return Err(anyhow!("the sandbox is not fully up: run `cargo xtask sandbox up`")
            .context(Failure::Sandbox));
    }
    Ok(())
}

/// One line per ECS service in moto, as the admin API sees it.
fn describe_services(report: &Reporter, endpoint: &str) {
    let Ok(target) = sandbox_target(None) else { return };
    let admin = admin::Admin::new(endpoint);
    match admin.services(&target.cluster) {
        Ok(services) => {
            for s in services {
                let primary = s.deployments.first().map_or("no deployment".to_string(), |d| {
                    format!("{} {} {}", d.status, d.id, d.rollout_state)
                });
                report.line(&format!(
                    "service {}/{}: desired {}, running {}, pending {} ({primary})",
                    s.cluster, s.service_name, s.desired_count, s.running_count, s.pending_count
                ));
            }
            for t in admin.tasks(&target.cluster).unwrap_or_default() {
                if t.last_status == "STOPPED" {
                    continue;
                }
                report.line(&format!(
                    "  task {} {} {} at {} ({})",
                    t.task_id,
                    t.last_status,
                    t.health_status,
                    t.public_ip.as_deref().unwrap_or("no address yet"),
                    t.started_by
                ));
            }
        }
        Err(_) => report.line(&format!(
            "cluster {}: not created (run `cargo xtask sandbox up`)",
            target.cluster
        )),
    }
}

/// `cargo xtask sandbox reset`: a fresh sandbox on the same ports.
pub fn reset(sh: &Shell, report: &Reporter, layout: &Layout, opts: UpOptions) -> Result<()> {
    check_inputs()?;
    let _lock = Lock::acquire(&layout.lock(), report, LOCK_WAIT)?;
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
    up_locked(sh, report, layout, opts).map(drop)
}

/// `cargo xtask sandbox serve`: runs until stopped by `down`.
pub struct ServeArgs {
    pub dir: PathBuf,
    pub port: u16,
    pub moto_port: u16,
    pub registry_port: u16,
}

pub fn serve_process(args: ServeArgs) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let layout = Layout { venv: args.dir.join("venv"), dir: args.dir.clone() };
    let endpoints = SandboxEndpoints {
        endpoint_url: moto::endpoint(args.moto_port),
        registry: format!("127.0.0.1:{}", args.registry_port),
    };
    let target = sandbox_target(Some(&endpoints))?;
    let aws = crate::aws::runtime()?.block_on(Aws::connect(&target));
    let secrets = database::SandboxSecrets::load(&layout)?;
    let settings = task_settings(&layout, secrets.for_tasks(&database::container_name(&layout)));
    scheduler::driver::Driver::new(
        admin::Admin::new(&endpoints.endpoint_url),
        &target.region,
        &target.cluster,
        fargate::Fargate::new(settings),
        scheduler::driver::Addresses::new(layout.addresses()),
    )
    .spawn()?;
    println!(
        "sandbox process for {} listening on 127.0.0.1:{}: mirrors pushes to {} into {}; \
         schedules the tasks of cluster {}",
        args.dir.display(),
        args.port,
        endpoints.registry,
        endpoints.endpoint_url,
        target.cluster
    );
    serve::serve(listener, &serve::Mirror { aws, registry: endpoints.registry })
}
