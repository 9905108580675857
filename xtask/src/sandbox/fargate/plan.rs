//! One task as docker commands: which containers, in which order, with which arguments.
//! Pure: every command is a value whose text the tests read.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use xshell::{cmd, Cmd, Shell};

use super::definition::{ContainerDefinition, HealthCheck, TaskDefinition};
use crate::failure::Failure;

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
    /// `<dir>/<task id>/<container>.log`: the awslogs stand-in.
    pub logs_dir: PathBuf,
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

    /// `docker run` of the pause container: it owns the task's network namespace and publishes
    /// every container port on the task's address (awsvpc: the task's containers share it).
    pub fn pause_command<'a>(&self, sh: &'a Shell, settings: &Settings) -> Cmd<'a> {
        let mut args = vec![
            "--detach".to_string(),
            "--name".to_string(),
            self.pause.clone(),
            "--network".to_string(),
            settings.network.clone(),
        ];
        let names: Vec<&str> = self.containers.iter().map(ContainerPlan::name).collect();
        let labels = [
            (LABEL_SANDBOX, settings.owner.as_str()),
            (LABEL_TASK, self.task_id.as_str()),
            (LABEL_ROLE, ROLE_PAUSE),
            (LABEL_CONTAINERS, &names.join(",")),
            (LABEL_ADDRESS, &self.address.to_string()),
        ];
        args.extend(label_args(&labels));
        let mut published = Vec::new();
        for mapping in self.containers.iter().flat_map(|c| &c.def.port_mappings) {
            let protocol = mapping.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
            let publish =
                format!("{}:{port}:{port}/{protocol}", self.address, port = mapping.container_port);
            if !published.contains(&publish) {
                published.push(publish);
            }
        }
        for publish in published {
            args.extend(["--publish".to_string(), publish]);
        }
        let image = &settings.pause_image;
        cmd!(sh, "docker run {args...} {image} sleep 2147483647")
    }

    /// `docker create` of one container, joined to the pause container's network. `run_ref` is
    /// the image by digest after the pull. Secret values go to docker's environment, never argv.
    pub fn create_command<'a>(
        &self,
        sh: &'a Shell,
        settings: &Settings,
        container: &ContainerPlan,
        run_ref: &str,
        digest: Option<&str>,
    ) -> Result<Cmd<'a>> {
        let def = &container.def;
        let mut args = vec![
            "--name".to_string(),
            container.docker_name.clone(),
            "--network".to_string(),
            format!("container:{}", self.pause),
        ];
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
        args.extend(label_args(&labels));
        if let Some(mib) = def.memory {
            args.extend(["--memory".to_string(), format!("{mib}m")]);
        }
        if let Some(mib) = def.memory_reservation {
            args.extend(["--memory-reservation".to_string(), format!("{mib}m")]);
        }
        for kv in &def.environment {
            args.extend(["--env".to_string(), format!("{}={}", kv.name, kv.value)]);
        }
        let mut secrets = Vec::new();
        for secret in &def.secrets {
            let value = settings.secrets.get(&secret.name).with_context(|| {
                format!(
                    "the sandbox has no value for secret {} of container {}",
                    secret.name, def.name
                )
            })?;
            args.extend(["--env".to_string(), secret.name.clone()]);
            secrets.push((secret.name.as_str(), value));
        }
        for from in &def.volumes_from {
            let source = self.container(&from.source_container).with_context(|| {
                format!("volumesFrom names unknown container {}", from.source_container)
            })?;
            let mode = if from.read_only == Some(true) { ":ro" } else { "" };
            args.extend(["--volumes-from".to_string(), format!("{}{mode}", source.docker_name)]);
        }
        match &def.health_check {
            Some(check) => args.extend(health_args(check, settings.health_time_scale)?),
            None => args.push("--no-healthcheck".to_string()),
        }
        if def.linux_parameters.as_ref().and_then(|l| l.init_process_enabled) == Some(true) {
            args.push("--init".to_string());
        }
        if let Some(dir) = &def.working_directory {
            args.extend(["--workdir".to_string(), dir.clone()]);
        }
        if let Some(user) = &def.user {
            args.extend(["--user".to_string(), user.clone()]);
        }
        let mut after_image = Vec::new();
        if let Some((first, rest)) = def.entry_point.as_deref().and_then(<[String]>::split_first) {
            args.extend(["--entrypoint".to_string(), first.clone()]);
            after_image.extend(rest.iter().cloned());
        }
        after_image.extend(def.command.iter().flatten().cloned());
        let mut cmd = cmd!(sh, "docker create {args...} {run_ref} {after_image...}");
        for (name, value) in secrets {
            cmd = cmd.env(name, value);
        }
        Ok(cmd)
    }
}

/// Docker 20.10 runs the first check one interval after the start and has no
/// `--health-start-interval`, so the interval is divided by `scale` (floor 1 s) to keep the
/// sandbox quick. Timeout, retries and start period stay the definition's, as on ECS: a check
/// that is slow because the machine is busy (a build beside the task) must not kill the task.
pub fn health_args(check: &HealthCheck, scale: u32) -> Result<Vec<String>> {
    let Some(test) = health_test(&check.command)? else {
        return Ok(vec!["--no-healthcheck".to_string()]);
    };
    let scaled = |secs: u64| (Duration::from_secs(secs) / scale.max(1)).max(Duration::from_secs(1));
    let mut args = vec![
        "--health-cmd".to_string(),
        test,
        "--health-interval".to_string(),
        docker_duration(scaled(check.interval.unwrap_or(30))),
        "--health-timeout".to_string(),
        docker_duration(Duration::from_secs(check.timeout.unwrap_or(5))),
        "--health-retries".to_string(),
        check.retries.unwrap_or(3).to_string(),
    ];
    if let Some(secs) = check.start_period.filter(|s| *s > 0) {
        args.extend(["--health-start-period".to_string(), format!("{secs}s")]);
    }
    Ok(args)
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

/// `3s`, or `1500ms` when not whole seconds (Go's duration syntax, which docker parses).
fn docker_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn label_args(labels: &[(&str, &str)]) -> Vec<String> {
    labels.iter().flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")]).collect()
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

/// `docker pull` of one image from the sandbox registry (ECS pulls at every task start).
pub fn pull_command<'a>(sh: &'a Shell, reference: &str) -> Cmd<'a> {
    cmd!(sh, "docker pull --quiet {reference}")
}

/// The digests the engine knows for a pulled image, as a JSON list of `repo@sha256:...`.
pub fn repo_digests_command<'a>(sh: &'a Shell, reference: &str) -> Cmd<'a> {
    let format = "{{json .RepoDigests}}";
    cmd!(sh, "docker image inspect --format {format} {reference}")
}

pub fn start_command<'a>(sh: &'a Shell, docker_name: &str) -> Cmd<'a> {
    cmd!(sh, "docker start {docker_name}")
}

/// Ids of the sandbox's containers, of one task or of all.
pub fn list_command<'a>(sh: &'a Shell, settings: &Settings, task_id: Option<&str>) -> Cmd<'a> {
    let mut filters =
        vec!["--filter".to_string(), format!("label={LABEL_SANDBOX}={}", settings.owner)];
    if let Some(id) = task_id {
        filters.extend(["--filter".to_string(), format!("label={LABEL_TASK}={id}")]);
    }
    cmd!(sh, "docker ps --all --quiet --no-trunc {filters...}")
}

/// The task id of each of the sandbox's containers (one line per container).
#[cfg(test)]
pub fn list_tasks_command<'a>(sh: &'a Shell, settings: &Settings) -> Cmd<'a> {
    let sandbox = format!("label={LABEL_SANDBOX}={}", settings.owner);
    let format = format!("{{{{.Label \"{LABEL_TASK}\"}}}}");
    cmd!(sh, "docker ps --all --filter {sandbox} --format {format}")
}

pub fn inspect_command<'a>(sh: &'a Shell, ids: &[String]) -> Cmd<'a> {
    cmd!(sh, "docker inspect --type container {ids...}")
}

pub fn stop_command<'a>(sh: &'a Shell, settings: &Settings, ids: &[String]) -> Cmd<'a> {
    let grace = settings.stop_grace.as_secs().to_string();
    cmd!(sh, "docker stop --time {grace} {ids...}")
}

pub fn remove_command<'a>(sh: &'a Shell, ids: &[String]) -> Cmd<'a> {
    cmd!(sh, "docker rm --force {ids...}")
}

pub fn network_inspect_command<'a>(sh: &'a Shell, settings: &Settings) -> Cmd<'a> {
    let network = &settings.network;
    let format = "{{.Name}}";
    cmd!(sh, "docker network inspect --format {format} {network}")
}

pub fn network_create_command<'a>(sh: &'a Shell, settings: &Settings) -> Cmd<'a> {
    let label = format!("{LABEL_SANDBOX}={}", settings.owner);
    let network = &settings.network;
    cmd!(sh, "docker network create --label {label} {network}")
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
