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
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::aws::Aws;
use crate::deploy::target::{DeployFile, SandboxEndpoints, Target, TargetFlags};
use crate::failure::Failure;
use crate::report::Reporter;
use state::{Component, Lock, State};
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
