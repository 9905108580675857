//! The sandbox's docker commands: its tasks' containers (`run`, `create`, `start`, `inspect`,
//! `stop`, `rm`, `logs`), its network, the images a task pulls and the ones the sandbox makes
//! (`import`), its database's `run` and `exec`, and what `down` removes.
//!
//! Each builder returns the command without running it: an `xshell::Cmd` for the caller's
//! Shell, or a [`DockerCmd`] where duct runs it (a pipeline, output copied into a file).

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use xshell::{cmd, Cmd, Shell};

use super::{Docker, DockerCmd};
use crate::aws::ecr::Secret;

/// One container as `docker run --detach` or `docker create` gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub network: Network,
    /// `--label KEY=VALUE`, in this order.
    pub labels: Vec<(String, String)>,
    pub publish: Vec<Publish>,
    /// The hard limit (`--memory`), MiB.
    pub memory_mib: Option<u64>,
    /// The soft limit (`--memory-reservation`), MiB.
    pub memory_reservation_mib: Option<u64>,
    /// `--env NAME=VALUE`.
    pub env: Vec<(String, String)>,
    /// `--env NAME` with the value in docker's own environment: never on a command line.
    pub secret_env: Vec<(String, Secret)>,
    pub volumes_from: Vec<VolumesFrom>,
    pub health: HealthCheck,
    /// `--init`: an init process as PID 1 that forwards signals and reaps children.
    pub init: bool,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// Replaces the image's entrypoint (its first word only; the rest goes to `args`).
    pub entrypoint: Option<String>,
    pub image: String,
    /// What follows the image: the command, or the entrypoint's arguments.
    pub args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// `--network NAME`: a user-defined network.
    Named(String),
    /// `--network container:NAME`: the network namespace of another container.
    Container(String),
}

/// `--publish ADDRESS:PORT:PORT/PROTOCOL`: the container's port on the same port of one host
/// address.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub address: Ipv4Addr,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// `--volumes-from NAME[:ro]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumesFrom {
    pub container: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheck {
    /// No flag: whatever the image says.
    Image,
    /// `--no-healthcheck`.
    Disabled,
    /// `--health-cmd` and its timings. Docker 20.10 runs the first check one interval after
    /// the start.
    Shell {
        /// Run by the container's `/bin/sh -c`.
        command: String,
        interval: Duration,
        timeout: Duration,
        retries: u32,
        start_period: Option<Duration>,
    },
}

/// `docker run --detach`: the container, created and started.
pub fn run_detached<'a>(sh: &'a Shell, spec: &ContainerSpec) -> Cmd<'a> {
    with_secret_env(cmd!(sh, "docker run --detach"), spec)
}

/// `docker create`: the container, created, not started.
pub fn create<'a>(sh: &'a Shell, spec: &ContainerSpec) -> Cmd<'a> {
    with_secret_env(cmd!(sh, "docker create"), spec)
}

/// The spec's arguments after `cmd`, and the secrets' values in the command's environment.
fn with_secret_env<'a>(cmd: Cmd<'a>, spec: &ContainerSpec) -> Cmd<'a> {
    let mut cmd = cmd.args(container_args(spec));
    for (name, value) in &spec.secret_env {
        cmd = cmd.env(name, value.expose());
    }
    cmd
}

fn container_args(spec: &ContainerSpec) -> Vec<String> {
    let network = match &spec.network {
        Network::Named(name) => name.clone(),
        Network::Container(name) => format!("container:{name}"),
    };
    let mut args = vec!["--name".to_string(), spec.name.clone(), "--network".to_string(), network];
    for (key, value) in &spec.labels {
        args.extend(["--label".to_string(), format!("{key}={value}")]);
    }
    for p in &spec.publish {
        args.extend([
            "--publish".to_string(),
            format!("{}:{port}:{port}/{}", p.address, p.protocol, port = p.port),
        ]);
    }
    if let Some(mib) = spec.memory_mib {
        args.extend(["--memory".to_string(), format!("{mib}m")]);
    }
    if let Some(mib) = spec.memory_reservation_mib {
        args.extend(["--memory-reservation".to_string(), format!("{mib}m")]);
    }
    for (name, value) in &spec.env {
        args.extend(["--env".to_string(), format!("{name}={value}")]);
    }
    for (name, _) in &spec.secret_env {
        args.extend(["--env".to_string(), name.clone()]);
    }
    for from in &spec.volumes_from {
        let mode = if from.read_only { ":ro" } else { "" };
        args.extend(["--volumes-from".to_string(), format!("{}{mode}", from.container)]);
    }
    args.extend(health_args(&spec.health));
    if spec.init {
        args.push("--init".to_string());
    }
    if let Some(dir) = &spec.workdir {
        args.extend(["--workdir".to_string(), dir.clone()]);
    }
    if let Some(user) = &spec.user {
        args.extend(["--user".to_string(), user.clone()]);
    }
    if let Some(entrypoint) = &spec.entrypoint {
        args.extend(["--entrypoint".to_string(), entrypoint.clone()]);
    }
    args.push(spec.image.clone());
    args.extend(spec.args.iter().cloned());
    args
}

/// The health-check flags of `docker run` and `docker create`.
pub fn health_args(check: &HealthCheck) -> Vec<String> {
    match check {
        HealthCheck::Image => Vec::new(),
        HealthCheck::Disabled => vec!["--no-healthcheck".to_string()],
        HealthCheck::Shell { command, interval, timeout, retries, start_period } => {
            let mut args = vec![
                "--health-cmd".to_string(),
                command.clone(),
                "--health-interval".to_string(),
                duration(*interval),
                "--health-timeout".to_string(),
                duration(*timeout),
                "--health-retries".to_string(),
                retries.to_string(),
            ];
            if let Some(period) = start_period {
                args.extend(["--health-start-period".to_string(), duration(*period)]);
            }
            args
        }
    }
}

/// `3s`, or `1500ms` when not whole seconds (Go's duration syntax, which docker parses).
fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

pub fn start<'a>(sh: &'a Shell, container: &str) -> Cmd<'a> {
    cmd!(sh, "docker start {container}")
}

/// One JSON array of the containers' states; docker exits 1 when one of them is gone, and
/// still prints the others.
pub fn inspect<'a, S: AsRef<OsStr>>(sh: &'a Shell, ids: &[S]) -> Cmd<'a> {
    cmd!(sh, "docker inspect --type container {ids...}")
}

/// `docker stop`: SIGTERM, then SIGKILL after `grace` (whole seconds).
pub fn stop<'a, S: AsRef<OsStr>>(sh: &'a Shell, grace: Duration, ids: &[S]) -> Cmd<'a> {
    let grace = grace.as_secs().to_string();
    cmd!(sh, "docker stop --time {grace} {ids...}")
}

/// `docker rm --force`: stops and removes, leaving the containers' anonymous volumes.
pub fn remove<'a, S: AsRef<OsStr>>(sh: &'a Shell, ids: &[S]) -> Cmd<'a> {
    cmd!(sh, "docker rm --force {ids...}")
}

/// `docker rm -f -v`: stops and removes, with the containers' anonymous volumes.
pub fn remove_with_volumes<'a, S: AsRef<OsStr>>(sh: &'a Shell, ids: &[S]) -> Cmd<'a> {
    cmd!(sh, "docker rm -f -v {ids...}")
}

/// The full ids of the containers, running or not, that carry every one of `labels`.
pub fn list<'a>(sh: &'a Shell, labels: &[(&str, &str)]) -> Cmd<'a> {
    let filters = label_filters(labels);
    cmd!(sh, "docker ps --all --quiet --no-trunc {filters...}")
}

/// Every container, running or not: `<id> <name>` per line.
pub fn list_named(sh: &Shell) -> Cmd<'_> {
    let format = "{{.ID}} {{.Names}}";
    cmd!(sh, "docker ps --all --format {format}")
}

/// The short ids of the containers, running or not, that carry `label`.
pub fn list_short<'a>(sh: &'a Shell, label: (&str, &str)) -> Cmd<'a> {
    let filters = label_filters(&[label]);
    cmd!(sh, "docker ps -aq {filters...}")
}

/// The value of label `key` on each container that carries `label`, one line per container.
#[cfg(test)]
pub fn list_label_values<'a>(sh: &'a Shell, label: (&str, &str), key: &str) -> Cmd<'a> {
    let filters = label_filters(&[label]);
    let format = format!("{{{{.Label \"{key}\"}}}}");
    cmd!(sh, "docker ps --all {filters...} --format {format}")
}

/// `STATUS VALUE`: the container's state (`running`, `exited`, …) and its label `key`; fails
/// with `No such container` when there is none.
pub fn status_and_label<'a>(sh: &'a Shell, container: &str, key: &str) -> Cmd<'a> {
    let format = format!("{{{{.State.Status}}}} {{{{index .Config.Labels \"{key}\"}}}}");
    cmd!(sh, "docker container inspect --format {format} {container}")
}

/// The last `lines` lines of the container's output.
pub fn logs_tail<'a>(sh: &'a Shell, container: &str, lines: u32) -> Cmd<'a> {
    let lines = lines.to_string();
    cmd!(sh, "docker logs --tail {lines} {container}")
}

impl Docker {
    /// `docker logs --follow`: the container's output from its start, until it stops or is
    /// removed.
    pub fn logs_follow(&self, container: &str) -> DockerCmd {
        self.cmd(["logs", "--follow", container])
    }
}

/// `docker network inspect`: succeeds when the network exists.
pub fn network_inspect<'a>(sh: &'a Shell, network: &str) -> Cmd<'a> {
    let format = "{{.Name}}";
    cmd!(sh, "docker network inspect --format {format} {network}")
}

pub fn network_create<'a>(sh: &'a Shell, label: (&str, &str), network: &str) -> Cmd<'a> {
    let label = format!("{}={}", label.0, label.1);
    cmd!(sh, "docker network create --label {label} {network}")
}

/// The ids of the networks that carry `label`.
pub fn network_list<'a>(sh: &'a Shell, label: (&str, &str)) -> Cmd<'a> {
    let filters = label_filters(&[label]);
    cmd!(sh, "docker network ls -q {filters...}")
}

pub fn network_remove<'a, S: AsRef<OsStr>>(sh: &'a Shell, networks: &[S]) -> Cmd<'a> {
    cmd!(sh, "docker network rm {networks...}")
}

fn label_filters(labels: &[(&str, &str)]) -> Vec<String> {
    labels.iter().flat_map(|(k, v)| ["--filter".to_string(), format!("label={k}={v}")]).collect()
}

/// `docker pull --quiet`: prints only the reference pulled.
pub fn pull<'a>(sh: &'a Shell, reference: &str) -> Cmd<'a> {
    cmd!(sh, "docker pull --quiet {reference}")
}

/// The digests the engine knows for an image, as a JSON list of `repo@sha256:…`.
pub fn image_repo_digests<'a>(sh: &'a Shell, image: &str) -> Cmd<'a> {
    let format = "{{json .RepoDigests}}";
    cmd!(sh, "docker image inspect --format {format} {image}")
}

/// The image's ID (`sha256:…`); fails when the engine has no such image.
pub fn image_id<'a>(sh: &'a Shell, image: &str) -> Cmd<'a> {
    let format = "{{.Id}}";
    cmd!(sh, "docker image inspect --format {format} {image}")
}

/// The image's label `key` (`<no value>` when it has none); fails with `No such image` when
/// the engine has no such image.
pub fn image_label<'a>(sh: &'a Shell, image: &str, key: &str) -> Cmd<'a> {
    let format = format!("{{{{ index .Config.Labels \"{key}\" }}}}");
    cmd!(sh, "docker image inspect --format {format} {image}")
}

/// The image's size in bytes.
pub fn image_size<'a>(sh: &'a Shell, image: &str) -> Cmd<'a> {
    let format = "{{.Size}}";
    cmd!(sh, "docker image inspect --format {format} {image}")
}

pub fn image_remove<'a>(sh: &'a Shell, image: &str) -> Cmd<'a> {
    cmd!(sh, "docker image rm {image}")
}

/// `docker import` of a root filesystem tarball as `tag`; `changes` are Dockerfile
/// instructions (`VOLUME /srv`, `CMD ["sh"]`).
pub fn import<'a>(sh: &'a Shell, changes: &[&str], tar: &Path, tag: &str) -> Cmd<'a> {
    let changes = change_args(changes);
    cmd!(sh, "docker import {changes...} {tar} {tag}")
}

impl Docker {
    /// `docker import` of the tarball on stdin, as `tag` (the end of a pipeline).
    pub fn import_stdin(&self, changes: &[&str], tag: &str) -> DockerCmd {
        let mut args = vec!["import".to_string()];
        args.extend(change_args(changes));
        args.extend(["-".to_string(), tag.to_string()]);
        self.cmd(args)
    }
}

fn change_args(changes: &[&str]) -> Vec<String> {
    changes.iter().flat_map(|c| ["--change".to_string(), c.to_string()]).collect()
}

/// A server of the sandbox's own (its database), for `docker run --detach`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub name: String,
    pub label: (String, String),
    pub network: String,
    /// `--volume HOST:CONTAINER`: a directory of the host, mounted.
    pub volume: (PathBuf, String),
    /// `--env NAME` with the value in docker's own environment: never on a command line.
    pub secret_env: (String, Secret),
    pub image: String,
}

pub fn run_server<'a>(sh: &'a Shell, spec: &ServerSpec) -> Cmd<'a> {
    let ServerSpec { name, label, network, volume, secret_env, image } = spec;
    let label = format!("{}={}", label.0, label.1);
    let volume = format!("{}:{}", volume.0.display(), volume.1);
    let secret = &secret_env.0;
    cmd!(
        sh,
        "docker run --detach --name {name} --label {label} --network {network} --volume {volume} --env {secret} {image}"
    )
    .env(secret, secret_env.1.expose())
}

/// `docker exec` of `command` in a running container; each of `secret_env` is passed as
/// `--env NAME`, its value in docker's own environment.
pub fn exec<'a>(
    sh: &'a Shell,
    container: &str,
    secret_env: &[(&str, &str)],
    command: &[&str],
) -> Cmd<'a> {
    let env: Vec<&str> = secret_env.iter().flat_map(|(name, _)| ["--env", name]).collect();
    let mut cmd = cmd!(sh, "docker exec {env...} {container} {command...}");
    for (name, value) in secret_env {
        cmd = cmd.env(name, value);
    }
    cmd
}

#[cfg(test)]
mod tests;
