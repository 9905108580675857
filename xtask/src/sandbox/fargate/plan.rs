//! One task as containers: which, in which order, with which settings (`ContainerSpec`s that
//! `docker::containers` turns into `docker run` and `docker create`). Pure.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::awslogs::Awslogs;
use super::definition::{ContainerDefinition, HealthCheck, TaskDefinition};
use crate::aws::ecr::Secret;
use crate::docker::containers::{self, ContainerSpec, Network, Publish, VolumesFrom};
use crate::failure::Failure;
use anyhow::{bail, ensure, Context, Result};

/// Every container and network of the sandbox carries this label, valued with `Settings::owner`
/// (the sandbox's owner label: `down` removes what carries it).
pub const LABEL_SANDBOX: &str = crate::sandbox::OWNER_LABEL;
/// The ECS task id the container belongs to.
pub const LABEL_TASK: &str = "zenn-sandbox.task";
/// `pause` (owns the task's network) or `container` (one of the task definition's).
pub const LABEL_ROLE: &str = "zenn-sandbox.role";
pub const LABEL_CONTAINER: &str = "zenn-sandbox.container";
pub const LABEL_ESSENTIAL: &str = "zenn-sandbox.essential";
/// The image as the task definition names it.
pub const LABEL_IMAGE: &str = "zenn-sandbox.image";
/// The digest the image had when the task pulled it.
pub const LABEL_DIGEST: &str = "zenn-sandbox.image-digest";
/// On the pause container: the task's containers, comma-separated, and its address.
pub const LABEL_CONTAINERS: &str = "zenn-sandbox.containers";
pub const LABEL_ADDRESS: &str = "zenn-sandbox.address";

pub const ROLE_PAUSE: &str = "pause";
pub const ROLE_CONTAINER: &str = "container";

/// The image the sandbox runs as every task's pause container (see `image::ensure_pause_image`).
pub const PAUSE_IMAGE: &str = "zenn-sandbox/pause:busybox";

/// Values of the task definitions' `secrets`, by secret name; `Debug` shows the names only.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(BTreeMap<String, String>);

impl Secrets {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Secrets {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Secrets {
        Secrets(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// How the sandbox runs tasks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sandbox's name: the prefix of container names.
    pub sandbox: String,
    /// The value of `LABEL_SANDBOX` on everything the runner makes (the sandbox's directory).
    pub owner: String,
    /// The user-defined Docker network the tasks' pause containers join.
    pub network: String,
    /// An image present in the engine, able to run `sleep`.
    pub pause_image: String,
    pub secrets: Secrets,
    /// Health-check intervals are divided by this (floor 1 s), see `health_args`.
    pub health_time_scale: u32,
    /// How long a container waits for its `dependsOn` conditions when it sets no `startTimeout`.
    pub start_timeout: Duration,
    /// `docker stop --time`: how long a container has to exit after SIGTERM.
    pub stop_grace: Duration,
    /// Where containers logging through awslogs send their output.
    pub awslogs: Awslogs,
}

/// One task, ready to run: its pause container and its containers in creation order.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlan {
    pub task_id: String,
    /// The task's own loopback address, standing for its public IP.
    pub address: Ipv4Addr,
    /// Docker name of the pause container.
    pub pause: String,
    /// Sources of `volumesFrom` and `dependsOn` come before the containers that name them.
    pub containers: Vec<ContainerPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    pub docker_name: String,
    /// The image with its tag (`:latest` when the definition names none), as pulled.
    pub pull_ref: String,
    pub def: ContainerDefinition,
}

impl ContainerPlan {
    pub fn name(&self) -> &str {
        &self.def.name
    }
}

impl TaskPlan {
    pub fn new(
        settings: &Settings,
        task_id: &str,
        address: Ipv4Addr,
        def: &TaskDefinition,
    ) -> Result<TaskPlan> {
        validate(task_id, address, def).context(Failure::Input)?;
        let id8: String = task_id.chars().take(8).collect();
        let prefix = format!("{}-{id8}", settings.sandbox);
        let defs = &def.container_definitions;
        let containers = creation_order(defs)
            .context(Failure::Input)?
            .into_iter()
            .map(|i| ContainerPlan {
                docker_name: format!("{prefix}-{}", defs[i].name),
                pull_ref: pull_ref(&defs[i].image),
                def: defs[i].clone(),
            })
            .collect();
        Ok(TaskPlan { task_id: task_id.to_string(), address, pause: prefix, containers })
    }

    pub fn container(&self, name: &str) -> Option<&ContainerPlan> {
        self.containers.iter().find(|c| c.name() == name)
    }

    /// The pause container (`docker run --detach`): it owns the task's network namespace and
    /// publishes every container port on the task's address (awsvpc: the task's containers
    /// share it).
    pub fn pause_spec(&self, settings: &Settings) -> ContainerSpec {
        let names: Vec<&str> = self.containers.iter().map(ContainerPlan::name).collect();
        let labels = [
            (LABEL_SANDBOX, settings.owner.as_str()),
            (LABEL_TASK, self.task_id.as_str()),
            (LABEL_ROLE, ROLE_PAUSE),
            (LABEL_CONTAINERS, &names.join(",")),
            (LABEL_ADDRESS, &self.address.to_string()),
        ];
        let mut publish = Vec::new();
        for mapping in self.containers.iter().flat_map(|c| &c.def.port_mappings) {
            let protocol = mapping.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
            let port = Publish { address: self.address, port: mapping.container_port, protocol };
            if !publish.contains(&port) {
                publish.push(port);
            }
        }
        ContainerSpec {
            name: self.pause.clone(),
            network: Network::Named(settings.network.clone()),
            labels: owned(&labels),
            publish,
            memory_mib: None,
            memory_reservation_mib: None,
            env: Vec::new(),
            secret_env: Vec::new(),
            volumes_from: Vec::new(),
            health: containers::HealthCheck::Image,
            init: false,
            workdir: None,
            user: None,
            entrypoint: None,
            image: settings.pause_image.clone(),
            args: vec!["sleep".to_string(), "2147483647".to_string()],
        }
    }

    /// One container (`docker create`), joined to the pause container's network. `run_ref` is
    /// the image by digest after the pull. Secret values go to docker's environment, never argv.
    pub fn container_spec(
        &self,
        settings: &Settings,
        container: &ContainerPlan,
        run_ref: &str,
        digest: Option<&str>,
    ) -> Result<ContainerSpec> {
        let def = &container.def;
        let essential = def.is_essential().to_string();
        let mut labels = vec![
            (LABEL_SANDBOX, settings.owner.as_str()),
            (LABEL_TASK, self.task_id.as_str()),
            (LABEL_ROLE, ROLE_CONTAINER),
            (LABEL_CONTAINER, def.name.as_str()),
            (LABEL_ESSENTIAL, essential.as_str()),
            (LABEL_IMAGE, def.image.as_str()),
        ];
        if let Some(digest) = digest {
            labels.push((LABEL_DIGEST, digest));
        }
        let mut secret_env = Vec::new();
        for secret in &def.secrets {
            let value = settings.secrets.get(&secret.name).with_context(|| {
                format!(
                    "the sandbox has no value for secret {} of container {}",
                    secret.name, def.name
                )
            })?;
            secret_env.push((secret.name.clone(), Secret::new(value)));
        }
        let mut volumes_from = Vec::new();
        for from in &def.volumes_from {
            let source = self.container(&from.source_container).with_context(|| {
                format!("volumesFrom names unknown container {}", from.source_container)
            })?;
            volumes_from.push(VolumesFrom {
                container: source.docker_name.clone(),
                read_only: from.read_only == Some(true),
            });
        }
        let health = match &def.health_check {
            Some(check) => health(check, settings.health_time_scale)?,
            None => containers::HealthCheck::Disabled,
        };
        let (entrypoint, mut args) =
            match def.entry_point.as_deref().and_then(<[String]>::split_first) {
                Some((first, rest)) => (Some(first.clone()), rest.to_vec()),
                None => (None, Vec::new()),
            };
        args.extend(def.command.iter().flatten().cloned());
        Ok(ContainerSpec {
            name: container.docker_name.clone(),
            network: Network::Container(self.pause.clone()),
            labels: owned(&labels),
            publish: Vec::new(),
            memory_mib: def.memory,
            memory_reservation_mib: def.memory_reservation,
            env: def.environment.iter().map(|kv| (kv.name.clone(), kv.value.clone())).collect(),
            secret_env,
            volumes_from,
            health,
            init: def.linux_parameters.as_ref().and_then(|l| l.init_process_enabled) == Some(true),
            workdir: def.working_directory.clone(),
            user: def.user.clone(),
            entrypoint,
            image: run_ref.to_string(),
            args,
        })
    }
}

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Docker 20.10 runs the first check one interval after the start and has no
/// `--health-start-interval`, so the interval is divided by `scale` (floor 1 s) to keep the
/// sandbox quick. Timeout, retries and start period stay the definition's, as on ECS: a check
/// that is slow because the machine is busy (a build beside the task) must not kill the task.
pub fn health(check: &HealthCheck, scale: u32) -> Result<containers::HealthCheck> {
    let Some(command) = health_test(&check.command)? else {
        return Ok(containers::HealthCheck::Disabled);
    };
    let scaled = |secs: u64| (Duration::from_secs(secs) / scale.max(1)).max(Duration::from_secs(1));
    Ok(containers::HealthCheck::Shell {
        command,
        interval: scaled(check.interval.unwrap_or(30)),
        timeout: Duration::from_secs(check.timeout.unwrap_or(5)),
        retries: check.retries.unwrap_or(3),
        start_period: check.start_period.filter(|s| *s > 0).map(Duration::from_secs),
    })
}

/// The shell command docker runs for an ECS health check; `None` for `["NONE"]`.
fn health_test(command: &[String]) -> Result<Option<String>> {
    match command.split_first() {
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => Ok(Some(rest.join(" "))),
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => {
            Ok(Some(rest.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")))
        }
        Some((kind, _)) if kind == "NONE" => Ok(None),
        _ => bail!(
            "healthCheck.command must start with CMD-SHELL or CMD and name a command, not {command:?}"
        ),
    }
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The image with a tag: ECS pulls `latest` when the definition names none.
pub fn pull_ref(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The repository of an image reference: no tag, no digest.
pub fn repository(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => without_digest,
    }
}

fn validate(task_id: &str, address: Ipv4Addr, def: &TaskDefinition) -> Result<()> {
    ensure!(
        !task_id.is_empty()
            && task_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "task id {task_id:?} is not an ECS task id (letters, digits, - and _)"
    );
    ensure!(
        address.is_loopback(),
        "task address {address} is not a loopback address (127.0.0.0/8)"
    );
    let defs = &def.container_definitions;
    ensure!(!defs.is_empty(), "the task definition has no containerDefinitions");
    for (i, c) in defs.iter().enumerate() {
        ensure!(
            !c.name.is_empty()
                && c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
            "container name {:?} is not valid (letters, digits, - and _)",
            c.name
        );
        ensure!(
            defs[..i].iter().all(|other| other.name != c.name),
            "two containers are named {}",
            c.name
        );
        let known = |name: &str| defs.iter().any(|d| d.name == name && d.name != c.name);
        for dep in &c.depends_on {
            ensure!(
                known(&dep.container_name),
                "container {} depends on {}, which is not another container of the task",
                c.name,
                dep.container_name
            );
        }
        for from in &c.volumes_from {
            ensure!(
                known(&from.source_container),
                "container {} takes volumes from {}, which is not another container of the task",
                c.name,
                from.source_container
            );
        }
        for mapping in &c.port_mappings {
            ensure!(
                mapping.host_port.is_none_or(|p| p == mapping.container_port),
                "container {}: hostPort must equal containerPort {} in awsvpc mode",
                c.name,
                mapping.container_port
            );
        }
        for secret in &c.secrets {
            ensure!(
                !secret.name.starts_with("DOCKER_"),
                "secret {} of container {} would configure the docker client itself: rename it",
                secret.name,
                c.name
            );
        }
        if let Some(check) = &c.health_check {
            health_test(&check.command).with_context(|| format!("container {}", c.name))?;
        }
    }
    Ok(())
}

/// Indexes of the containers, each after the containers it needs (`dependsOn`, `volumesFrom`),
/// otherwise in the definition's order.
fn creation_order(defs: &[ContainerDefinition]) -> Result<Vec<usize>> {
    let needs = |c: &ContainerDefinition| -> Vec<String> {
        let deps = c.depends_on.iter().map(|d| d.container_name.clone());
        deps.chain(c.volumes_from.iter().map(|v| v.source_container.clone())).collect()
    };
    let mut order: Vec<usize> = Vec::with_capacity(defs.len());
    while order.len() < defs.len() {
        let placed = |name: &String| order.iter().any(|&j| &defs[j].name == name);
        let next =
            (0..defs.len()).find(|i| !order.contains(i) && needs(&defs[*i]).iter().all(&placed));
        match next {
            Some(i) => order.push(i),
            None => {
                let stuck: Vec<&str> = (0..defs.len())
                    .filter(|i| !order.contains(i))
                    .map(|i| defs[i].name.as_str())
                    .collect();
                bail!("containers {} depend on each other in a cycle", stuck.join(", "))
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests;
