//! `cargo xtask sandbox up|down|status|reset`: AWS on one machine, for the same deploy code.
//!
//! | AWS       | stand-in                                               | port (default) |
//! | --------- | ------------------------------------------------------ | -------------- |
//! | ECS, ECR, EC2, CloudWatch Logs APIs | moto, through `moto_sandbox.py` (+ admin API) | 5010 |
//! | ECR's registry     | Debian's `docker-registry`                    | 5011 |
//! | push mirroring, ECS's scheduler, Fargate | `cargo xtask sandbox serve` (`serve`, `scheduler`, `fargate`) | 5012 |
//! | RDS | MariaDB in a container on the sandbox's Docker network (`database`) | - |
//!
//! Everything lives in `target/sandbox/`: `state.json` (ports, pids), `logs/` (the components'; the
//! tasks' go to moto's CloudWatch Logs, see `fargate::awslogs`), `registry/`, `mariadb/`, `secrets.json`, `addresses.json`, `venv/`. A port
//! already taken is replaced by a free one, recorded in the state file.
//!
//! `up` (and `reset`) is in `up.rs`, the three processes in `components.rs`, `down` and
//! `status` in their own files; every docker command line is in `crate::docker::containers`.

pub mod admin;
mod components;
pub mod database;
mod down;
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
mod status;
mod up;

#[cfg(test)]
mod itest;
#[cfg(test)]
mod roll_itest;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::aws::Aws;
use crate::deploy::target::{DeployFile, DeployFlags, Overlay, Target, TargetFlags, SANDBOX};
use crate::failure::Failure;
use crate::report::Reporter;
use components::{choose_ports, MOTO_PORT, REGISTRY_PORT};
use state::{Component, Lock, NetworkIds, State};
use up::{prepare_host, up_locked};

pub use down::down;
pub use state::Layout;
pub use status::status;
pub use up::reset;

/// Label on every container and network of one sandbox, valued with its directory
/// (`Layout::marker`): `down` removes what carries it, so that sandboxes of several checkouts
/// on one machine never touch each other's.
pub const OWNER_LABEL: &str = "zenn-sandbox.dir";

/// How long a second `up` waits for the first.
const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);

/// What `up` creates besides the network (an account's VPC, subnet and security group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpOptions {
    /// The repositories, cluster, task definition and service of the sandbox target.
    Everything,
    /// All of those but the ECR repositories.
    NoRepositories,
    /// None of them: an empty account, which `first-deploy` fills.
    Bare,
}

impl UpOptions {
    /// A first deploy creates what is missing itself, and shows it.
    pub fn for_deploy(mode: crate::entrypoint::Mode) -> UpOptions {
        match mode {
            crate::entrypoint::Mode::First => UpOptions::Bare,
            crate::entrypoint::Mode::Later => UpOptions::Everything,
        }
    }
}

/// The region the sandbox's AWS resources live in (moto serves one).
pub const REGION: &str = "ap-northeast-1";
/// The keys the sandbox's target signs with: moto accepts any, and real ones must never
/// reach it.
const ACCESS_KEY_ID: &str = "sandbox";
const SECRET_ACCESS_KEY: &str = "sandbox";

/// What the sandbox hands a deploy: its region, endpoints, registry, keys and network, on the
/// ports of its moto and registry.
pub fn overlay_with(moto_port: u16, registry_port: u16, network: Option<&NetworkIds>) -> Overlay {
    Overlay {
        subnets: network.map(|n| vec![n.subnet.clone()]).unwrap_or_default(),
        security_groups: network.map(|n| vec![n.security_group.clone()]).unwrap_or_default(),
        ..overlay(moto_port, registry_port)
    }
}

/// [`overlay_with`] no network.
pub fn overlay(moto_port: u16, registry_port: u16) -> Overlay {
    Overlay {
        target: SANDBOX.to_string(),
        label: "the local sandbox".to_string(),
        cli_flags: vec!["--sandbox".to_string()],
        region: REGION.to_string(),
        endpoint_url: moto::endpoint(moto_port),
        registry: format!("127.0.0.1:{registry_port}"),
        access_key_id: ACCESS_KEY_ID.to_string(),
        secret_access_key: SECRET_ACCESS_KEY.to_string(),
        subnets: Vec::new(),
        security_groups: Vec::new(),
    }
}

/// The overlay of the running sandbox, if it is up.
pub fn running_overlay() -> Option<Overlay> {
    let state = State::load(&Layout::standard()).ok()?;
    let (moto, registry) = (state.moto?, state.registry?);
    (process::alive(moto.pid) && process::alive(registry.pid))
        .then(|| overlay_with(moto.port, registry.port, state.network.as_ref()))
}

/// The overlay of the running sandbox, else the one `up` would make first (its ports may
/// still change then): what `config --sandbox` and a dry run show without starting anything.
pub fn planned_overlay() -> Overlay {
    if let Some(running) = running_overlay() {
        return running;
    }
    let state = State::load(&Layout::standard()).unwrap_or_default();
    let port = |c: Option<&Component>, default| c.map_or(default, |c| c.port);
    let planned = overlay_with(
        port(state.moto.as_ref(), MOTO_PORT),
        port(state.registry.as_ref(), REGISTRY_PORT),
        state.network.as_ref(),
    );
    Overlay { label: "the local sandbox, not running: `cargo xtask sandbox up`".into(), ..planned }
}

/// Brings the sandbox up (idempotent). `resolve` makes the target from the sandbox's overlay:
/// once to read its task definition before anything starts, then, with the network `up` made,
/// the one the caller deploys with; what `opts` asks for of that target is created when
/// missing. Returns that target.
pub fn ensure_up(
    sh: &Shell,
    report: &Reporter,
    opts: UpOptions,
    resolve: &dyn Fn(&Overlay) -> Result<Target>,
) -> Result<Target> {
    let layout = Layout::standard();
    let _lock = Lock::acquire(&layout.lock(), report, LOCK_WAIT)?;
    let state = State::load(&layout)?;
    let (ports, notes) = choose_ports(&state)?;
    check_inputs(&resolve(&overlay(ports.moto, ports.registry))?)?;
    for note in notes {
        report.info(note);
    }
    prepare_host(sh, report, &layout)?;
    up_locked(sh, report, &layout, opts, ports, resolve)
}

/// The `sandbox` target of deploy.toml with the sandbox's overlay: the sandbox's own commands
/// (`up`, `status`, the scheduler) read its names from it.
pub fn own_target(overlay: &Overlay) -> Result<Target> {
    DeployFile::load(&crate::project::root())?.resolve(
        &TargetFlags::default(),
        &DeployFlags::default(),
        &|_| None,
        Some(overlay),
    )
}

/// The task definition, read before anything is installed or started: a broken file changes
/// nothing.
fn check_inputs(target: &Target) -> Result<()> {
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
        // `serve_process` gives the tasks moto's CloudWatch Logs.
        awslogs: fargate::awslogs::Awslogs::nowhere(REGION),
    }
}

/// The sandbox's VPC, subnet and security group in moto (found by their tag, else created).
fn ensure_network(overlay: &Overlay, created: &mut Vec<String>) -> Result<NetworkIds> {
    let target = own_target(overlay)?;
    let network = crate::aws::runtime()?.block_on(async {
        let aws = Aws::connect(&target).await;
        resources::ensure_network(&aws, REGION, created).await
    });
    let network =
        network.context("cannot make the sandbox's network in moto").context(Failure::Sandbox)?;
    Ok(NetworkIds { subnet: network.subnet, security_group: network.security_group })
}

/// The AWS resources of deploy.toml's sandbox target, created in moto when missing.
fn ensure_resources(target: &Target, registry: &str, opts: UpOptions) -> Result<Vec<String>> {
    let task_definition = crate::project::root().join(&target.task_definition);
    crate::aws::runtime()?.block_on(async {
        let aws = Aws::connect(target).await;
        let values = resources::Placeholders {
            registry,
            account_id: moto::ACCOUNT_ID,
            region: &target.region,
        };
        let repositories = opts == UpOptions::Everything;
        resources::ensure(&aws, target, &task_definition, &values, repositories).await
    })
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
    let overlay = overlay(args.moto_port, args.registry_port);
    let target = own_target(&overlay)?;
    let aws = crate::aws::runtime()?.block_on(Aws::connect(&target));
    let secrets = database::SandboxSecrets::load(&layout)?;
    let mut settings =
        task_settings(&layout, secrets.for_tasks(&database::container_name(&layout)));
    let logs = Arc::new(admin::Admin::new(&overlay.endpoint_url));
    settings.awslogs = fargate::awslogs::Awslogs::to(logs, &target.region);
    scheduler::driver::Driver::new(
        admin::Admin::new(&overlay.endpoint_url),
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
        overlay.registry,
        overlay.endpoint_url,
        target.cluster
    );
    serve::serve(listener, &serve::Mirror { aws, registry: overlay.registry })
}

/// The python of the sandbox's moto venv, made first when missing: the push tests run moto
/// from it, as a fresh host's python3 has no moto.
#[cfg(test)]
pub fn moto_python(report: &Reporter) -> Result<PathBuf> {
    let layout = Layout::standard();
    moto::ensure_venv(&Shell::new()?, &layout, report)?;
    Ok(layout.venv.join("bin/python"))
}
