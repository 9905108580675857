//! The sandbox's three processes (registry, moto, the sandbox process): their ports, their
//! health, and how each is kept or (re)started.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::state::{Component, Layout, State};
use super::{moto, process, registry, serve};
use crate::failure::Failure;
use crate::report::{human_duration, Reporter};

pub(super) const MOTO_PORT: u16 = 5010;
pub(super) const REGISTRY_PORT: u16 = 5011;
const SERVE_PORT: u16 = 5012;

/// The ports the three components will use: a running healthy one keeps its own.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ports {
    pub moto: u16,
    pub registry: u16,
    pub serve: u16,
}

/// The ports the components will use (no side effect) and what to say of them: a running
/// healthy one keeps its own.
pub(super) fn choose_ports(state: &State) -> Result<(Ports, Vec<String>)> {
    let notes = &mut Vec::new();
    let ports = distinct(Ports {
        registry: choose_port(
            notes,
            "registry",
            state.registry.as_ref(),
            REGISTRY_PORT,
            health_registry,
        )?,
        moto: choose_port(notes, "moto", state.moto.as_ref(), MOTO_PORT, health_moto)?,
        serve: choose_port(
            notes,
            "sandbox process",
            state.serve.as_ref(),
            SERVE_PORT,
            health_serve,
        )?,
    })?;
    Ok((ports, std::mem::take(notes)))
}

pub(super) fn moto_fingerprint(port: u16, region: &str, registry_port: u16) -> String {
    let args = format!("{port} {region} 127.0.0.1:{registry_port}");
    fingerprint(&[moto::LAUNCHER, moto::REQUIREMENTS, &args])
}

/// Registry, moto, sandbox process: each kept when healthy and started the same way, else
/// (re)started; the state file records each as soon as it runs.
pub(super) fn ensure_processes(
    report: &Reporter,
    layout: &Layout,
    state: &mut State,
    region: &str,
    ports: Ports,
) -> Result<()> {
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

    Ok(())
}

/// How to recognise and start one component.
struct Spec {
    name: &'static str,
    log: &'static str,
    timeout: Duration,
    health: fn(u16) -> bool,
}

pub(super) fn health_moto(port: u16) -> bool {
    process::http_status(&moto::health_url(port)) == Some(200)
}
pub(super) fn health_registry(port: u16) -> bool {
    process::http_status(&registry::health_url(port)) == Some(200)
}
pub(super) fn health_serve(port: u16) -> bool {
    process::http_status(&format!("http://127.0.0.1:{port}/health")) == Some(200)
}

/// The port for a component: its current one while it runs healthy, else the default (or the
/// one it had) when free, else any free port, said out loud.
fn choose_port(
    notes: &mut Vec<String>,
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
        notes.push(format!("    port {preferred} is in use: {name} listens on {port} instead"));
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
