//! `cargo xtask sandbox status`: each component, its address and health, and what moto runs.

use anyhow::{anyhow, Result};
use xshell::Shell;

use super::components::{health_moto, health_registry, health_serve};
use super::state::{Layout, State};
use super::{admin, database, moto, own_target, planned_overlay, process};
use crate::event::Event;
use crate::failure::Failure;
use crate::report::Reporter;

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
        report.emit(Event::Component {
            name: name.to_string(),
            address: address.clone(),
            pid: component.map(|c| c.pid),
            health: verdict.to_string(),
        });
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
    report.emit(Event::Component {
        name: "database".to_string(),
        address,
        pid: None,
        health: verdict.to_string(),
    });
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
    let Ok(target) = own_target(&planned_overlay()) else { return };
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
