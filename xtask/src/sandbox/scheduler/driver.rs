//! The scheduler's I/O: every half second (sooner when a stop ends) it reads the services and
//! tasks from moto's admin API and the runner's observations, lets the core decide, and
//! executes. Starts return at once (the runner pulls and starts in its threads); stops run in
//! threads of their own; so nothing blocks the loop but short local HTTP calls and two docker
//! commands.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{container_updates, started_event, Action, Scheduler, World};
use crate::sandbox::admin::{Admin, Task, TaskUpdate};
use crate::sandbox::fargate::definition::TaskDefinition;
use crate::sandbox::fargate::observe::{StopCode, TaskStop};
use crate::sandbox::fargate::Fargate;
use crate::sandbox::serve::{iso_now, log};

/// How often the loop looks when nothing wakes it.
pub const TICK: Duration = Duration::from_millis(500);

/// The first address a task gets; 127.0.0.1 stays the sandbox's own.
pub const FIRST_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The scheduler loop of one sandbox.
pub struct Driver {
    admin: Admin,
    region: String,
    cluster: String,
    fargate: Arc<Fargate>,
    addresses: Addresses,
    scheduler: Scheduler,
    definitions: BTreeMap<String, TaskDefinition>,
    start_errors: BTreeMap<String, String>,
    /// Stop threads send the task id here when they are done.
    done: (Sender<String>, Receiver<String>),
    /// The last error logged, so a lasting one is logged once.
    last_error: Option<String>,
}

impl Driver {
    pub fn new(
        admin: Admin,
        region: &str,
        cluster: &str,
        fargate: Fargate,
        addresses: Addresses,
    ) -> Driver {
        Driver {
            admin,
            region: region.to_string(),
            cluster: cluster.to_string(),
            fargate: Arc::new(fargate),
            addresses,
            scheduler: Scheduler::default(),
            definitions: BTreeMap::new(),
            start_errors: BTreeMap::new(),
            done: mpsc::channel(),
            last_error: None,
        }
    }

    /// Runs the loop in a thread of its own, for the life of the process.
    pub fn spawn(mut self) -> Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || loop {
                match self.tick() {
                    Ok(()) => self.last_error = None,
                    Err(e) => {
                        let message = format!("{e:#}");
                        if self.last_error.as_ref() != Some(&message) {
                            log(&format!("scheduler: {message} (retrying every tick)"));
                            self.last_error = Some(message);
                        }
                    }
                }
                self.wait();
            })
            .context("cannot start the scheduler thread")
    }

    /// Until the next tick: `TICK`, or less when a stop ends.
    fn wait(&mut self) {
        match self.done.1.recv_timeout(TICK) {
            Ok(task_id) => self.scheduler.stop_finished(&task_id),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    }

    /// One look and the actions it calls for.
    pub fn tick(&mut self) -> Result<()> {
        while let Ok(task_id) = self.done.1.try_recv() {
            self.scheduler.stop_finished(&task_id);
        }
        let services = self.admin.services(&self.cluster)?;
        let tasks = self.admin.tasks(&self.cluster)?;
        let observations = self.fargate.observe_all()?;
        let live: Vec<&Task> = tasks.iter().filter(|t| t.last_status != "STOPPED").collect();
        self.start_errors.retain(|id, _| live.iter().any(|t| t.task_id == *id));
        for task in &live {
            if !self.definitions.contains_key(&task.task_definition_arn) {
                // A definition that cannot be read leaves the task judged by HEALTHY alone.
                if let Err(e) = self.definition(&task.task_definition_arn) {
                    log(&format!("scheduler: {e:#}"));
                }
            }
        }
        let clock = iso_now();
        let world = World {
            services: &services,
            tasks: &tasks,
            observations: &observations,
            start_errors: &self.start_errors,
            definitions: &self.definitions,
            now: Instant::now(),
            clock: &clock,
        };
        let actions = self.scheduler.decide(&world);
        let mut in_use: BTreeSet<Ipv4Addr> =
            live.iter().filter_map(|t| t.public_ip.as_deref()?.parse().ok()).collect();
        for action in actions {
            if let Err(e) = self.execute(action, &tasks, &mut in_use) {
                log(&format!("scheduler: {e:#}"));
            }
        }
        Ok(())
    }

    fn execute(
        &mut self,
        action: Action,
        tasks: &[Task],
        in_use: &mut BTreeSet<Ipv4Addr>,
    ) -> Result<()> {
        match action {
            Action::Record { task_id, update } => {
                if update.last_status.is_some() || update.health_status.is_some() {
                    log(&format!(
                        "task {task_id}: {}",
                        [update.last_status.as_deref(), update.health_status.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
                self.admin.update_task(&task_id, &update).map(drop)
            }
            Action::Stop { task_id, cause, update } => {
                log(&format!(
                    "stopping task {task_id}: {} ({})",
                    cause.reason,
                    super::stop_code_name(cause.code)
                ));
                let recorded = self.admin.update_task(&task_id, &update);
                let task = tasks.iter().find(|t| t.task_id == task_id).cloned();
                self.stop_in_thread(task_id, cause, task);
                recorded.map(drop)
            }
            Action::RemoveOrphan { task_id } => {
                log(&format!("removing the containers of task {task_id}: ECS does not run it"));
                let cause = TaskStop::new(
                    StopCode::ServiceSchedulerInitiated,
                    "The task is not one the sandbox's ECS runs",
                );
                self.stop_in_thread(task_id, cause, None);
                Ok(())
            }
            Action::UpdateDeployments { service, updates } => {
                for u in &updates {
                    log(&format!(
                        "deployment {}: {}",
                        u.id,
                        serde_json::to_string(u).unwrap_or_default()
                    ));
                }
                self.admin.update_deployments(&self.cluster, &service, &updates).map(drop)
            }
            Action::Event { service, message } => {
                log(&message);
                self.admin.add_event(&self.cluster, &service, &message).map(drop)
            }
            Action::Start { service, deployment, count } => {
                let mut started = Vec::new();
                let mut result = Ok(());
                for _ in 0..count {
                    match self.start(&service, &deployment, in_use) {
                        Ok(id) => started.push(id),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                if !started.is_empty() {
                    let message = started_event(&service, &started);
                    log(&message);
                    self.admin.add_event(&self.cluster, &service, &message)?;
                }
                result
            }
        }
    }

    /// Starts one task: moto records it, it gets an address, the runner starts it in a thread.
    /// A task moto has but the runner could not take fails at the next tick, with the reason.
    fn start(
        &mut self,
        service: &str,
        deployment: &str,
        in_use: &mut BTreeSet<Ipv4Addr>,
    ) -> Result<String> {
        let task = self.admin.start_task(&self.cluster, service, Some(deployment))?;
        let id = task.task_id.clone();
        let prepared = self.definition(&task.task_definition_arn).and_then(|definition| {
            let address = self.addresses.allocate(&host_ports(&definition), in_use)?;
            Ok((definition, address))
        });
        let (definition, address) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                self.start_errors.insert(id.clone(), format!("ResourceInitializationError: {e:#}"));
                return Ok(id);
            }
        };
        in_use.insert(address);
        let public_ip =
            TaskUpdate { public_ip: Some(Some(address.to_string())), ..TaskUpdate::default() };
        self.admin.update_task(&id, &public_ip)?;
        if let Err(e) = self.fargate.start_task(&id, address, &definition) {
            self.start_errors.insert(id.clone(), format!("CannotStartContainerError: {e:#}"));
            return Ok(id);
        }
        log(&format!("task {id} of {deployment} starts on {address}"));
        Ok(id)
    }

    /// Stops the task's containers in a thread, then records it STOPPED (when moto has it).
    fn stop_in_thread(&self, task_id: String, cause: TaskStop, task: Option<Task>) {
        let (fargate, admin, done) =
            (self.fargate.clone(), self.admin.clone(), self.done.0.clone());
        let spawned = std::thread::Builder::new().name(format!("stop {task_id}")).spawn({
            let task_id = task_id.clone();
            move || {
                let outcome = fargate.stop_task(&task_id, cause).and_then(|last| {
                    let Some(task) = task else { return Ok(()) };
                    let update = TaskUpdate {
                        last_status: Some("STOPPED".into()),
                        containers: last.map(|o| container_updates(&task, &o)).unwrap_or_default(),
                        ..TaskUpdate::default()
                    };
                    admin.update_task(&task_id, &update).map(drop)
                });
                match outcome {
                    Ok(()) => log(&format!("task {task_id}: STOPPED")),
                    Err(e) => log(&format!("scheduler: stopping task {task_id}: {e:#}")),
                }
                let _ = done.send(task_id);
            }
        });
        if let Err(e) = spawned {
            log(&format!("scheduler: cannot start a thread to stop task {task_id}: {e}"));
            let _ = self.done.0.send(task_id);
        }
    }

    /// The task definition, from the cache or moto.
    fn definition(&mut self, arn: &str) -> Result<TaskDefinition> {
        if let Some(definition) = self.definitions.get(arn) {
            return Ok(definition.clone());
        }
        let text = self.admin.describe_task_definition(&self.region, arn)?;
        let definition = TaskDefinition::from_json(&text)
            .with_context(|| format!("task definition {arn} as moto describes it"))?;
        self.definitions.insert(arn.to_string(), definition.clone());
        Ok(definition)
    }
}

/// The TCP ports a task publishes on its address.
fn host_ports(definition: &TaskDefinition) -> Vec<u16> {
    definition
        .container_definitions
        .iter()
        .flat_map(|c| &c.port_mappings)
        .filter(|m| m.protocol.as_deref().is_none_or(|p| p.eq_ignore_ascii_case("tcp")))
        .map(|m| m.host_port.unwrap_or(m.container_port))
        .collect()
}

/// The loopback addresses given to tasks: each one once while the sandbox lives, the next one
/// kept in a file so a restarted scheduler does not give a live task's address again.
#[derive(Debug, Clone)]
pub struct Addresses {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct AddressFile {
    next: Ipv4Addr,
}

/// How many taken addresses a start skips before it gives up.
const ADDRESS_TRIES: usize = 1000;

impl Addresses {
    pub fn new(path: PathBuf) -> Addresses {
        Addresses { path }
    }

    /// The next address not in `in_use` whose `ports` nothing listens on (another sandbox's
    /// task may hold it), recorded as given before it is returned.
    pub fn allocate(&self, ports: &[u16], in_use: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr> {
        let mut candidate = self.next()?;
        for _ in 0..ADDRESS_TRIES {
            if !in_use.contains(&candidate) && ports_free(candidate, ports) {
                self.save(next_address(candidate)?)?;
                return Ok(candidate);
            }
            candidate = next_address(candidate)?;
        }
        bail!("no free loopback address for a task after {ADDRESS_TRIES} tries from {candidate}")
    }

    fn next(&self) -> Result<Ipv4Addr> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(serde_json::from_str::<AddressFile>(&text)
                .with_context(|| format!("{} is not an address file", self.path.display()))?
                .next),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FIRST_ADDRESS),
            Err(e) => Err(anyhow!("cannot read {}: {e}", self.path.display())),
        }
    }

    fn save(&self, next: Ipv4Addr) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string(&AddressFile { next })? + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The loopback address after `address`, skipping the `.0` and `.255` ones.
pub fn next_address(address: Ipv4Addr) -> Result<Ipv4Addr> {
    let mut bits = address.to_bits();
    loop {
        bits += 1;
        let next = Ipv4Addr::from_bits(bits);
        if !next.is_loopback() {
            bail!("the sandbox has given every loopback address to a task: run `cargo xtask sandbox reset`");
        }
        if !matches!(next.octets()[3], 0 | 255) {
            return Ok(next);
        }
    }
}

/// Nothing listens on these ports of `address` (a bind refused for lack of privilege says
/// nothing, so it counts as free).
fn ports_free(address: Ipv4Addr, ports: &[u16]) -> bool {
    ports.iter().all(|port| match TcpListener::bind((address, *port)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_and_broadcast_endings_and_stay_in_loopback() {
        let next = |a: [u8; 4]| next_address(Ipv4Addr::from(a)).map(|a| a.octets());
        assert_eq!(next([127, 0, 0, 2]).unwrap(), [127, 0, 0, 3]);
        assert_eq!(next([127, 0, 0, 254]).unwrap(), [127, 0, 1, 1]);
        assert_eq!(next([127, 0, 255, 254]).unwrap(), [127, 1, 0, 1]);
        assert!(next([127, 255, 255, 254]).is_err());
    }

    #[test]
    fn an_address_is_given_once_skipping_live_and_listened_ones_and_survives_a_restart() {
        let dir = crate::project::target_dir()
            .join("test-tmp")
            .join(format!("addresses-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("addresses.json");
        let addresses = Addresses::new(path.clone());
        let none = BTreeSet::new();
        assert_eq!(addresses.allocate(&[], &none).unwrap(), FIRST_ADDRESS);
        let live = BTreeSet::from([Ipv4Addr::new(127, 0, 0, 3)]);
        assert_eq!(addresses.allocate(&[], &live).unwrap(), Ipv4Addr::new(127, 0, 0, 4));

        // Something listens on 127.0.0.5:<port>: a task publishing that port goes to .6.
        let taken = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 5), 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let restarted = Addresses::new(path);
        assert_eq!(restarted.allocate(&[port], &none).unwrap(), Ipv4Addr::new(127, 0, 0, 6));
        assert_eq!(restarted.allocate(&[port], &none).unwrap(), Ipv4Addr::new(127, 0, 0, 7));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn published_tcp_ports_are_checked_udp_ones_are_not() {
        let definition = TaskDefinition::from_json(
            r#"{"containerDefinitions": [
                {"name": "web", "image": "i", "portMappings": [
                    {"containerPort": 80},
                    {"containerPort": 8443, "hostPort": 443, "protocol": "tcp"},
                    {"containerPort": 53, "protocol": "udp"}]}]}"#,
        )
        .unwrap();
        assert_eq!(host_ports(&definition), [80, 443]);
    }
}
