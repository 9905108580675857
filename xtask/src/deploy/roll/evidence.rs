//! The evidence for a new task that stopped during a roll: its cause in plain words with the
//! next step, and the last lines of each container's log. Pure: the driver reads the logs and
//! hands the results to [`tail_of`] and [`render_logs`].

use anyhow::Result;

use crate::aws::ecs::{
    ContainerDefinitionSnapshot, ContainerSnapshot, DeploymentSnapshot, HealthStatus,
    TaskDefinitionSnapshot, TaskSnapshot,
};
use crate::aws::logs::{LogEvent, LogStream};

/// How many of a container's last log lines a failure quotes.
pub const LOG_LINES: i32 = 40;

/// Why a new task stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// `CannotPullContainerError`: no container ran.
    Pull(PullProblem),
    /// `ResourceInitializationError`: no container ran.
    Init(InitProblem),
    /// The container was killed for its memory (`OutOfMemoryError`).
    OutOfMemory { container: String },
    /// The container ended by SIGKILL (exit code 137) on its own, with no reason from ECS.
    Killed { container: String },
    /// ECS stopped the task because container health checks failed.
    HealthCheck { containers: Vec<String> },
    /// An essential container exited by itself.
    Exited { container: String, exit_code: i32 },
    /// Nothing above fits: the stop reason is all there is.
    Unclear,
}

/// What a `CannotPullContainerError` says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullProblem {
    /// The repository, tag or digest does not exist.
    NotFound,
    /// ECR refused the execution role.
    Denied,
    /// The task could not reach ECR.
    Unreachable,
    Unclear,
}

/// What a `ResourceInitializationError` says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitProblem {
    /// The execution role cannot read the secrets (or the registry auth).
    Secrets,
    /// awslogs cannot create the container's stream: the log group is missing.
    LogGroup,
    /// The task could not reach SSM, Secrets Manager or ECR.
    Unreachable,
    Unclear,
}

impl Cause {
    /// The task stopped before any container started, so no container has a log.
    pub fn no_container_ran(&self) -> bool {
        matches!(self, Cause::Pull(_) | Cause::Init(_))
    }
}

/// Classifies a stopped task by its stop reason, its containers' reasons and exit codes.
pub fn classify(task: &TaskSnapshot, td: &TaskDefinitionSnapshot) -> Cause {
    let reasons: Vec<&str> = task
        .stopped_reason
        .iter()
        .chain(task.containers.iter().filter_map(|c| c.reason.as_ref()))
        .map(String::as_str)
        .collect();
    if let Some(r) = reasons.iter().find(|r| r.contains("CannotPullContainerError")) {
        return Cause::Pull(pull_problem(r));
    }
    if let Some(r) = reasons.iter().find(|r| r.contains("ResourceInitializationError")) {
        return Cause::Init(init_problem(r));
    }
    let oom_reason = task
        .containers
        .iter()
        .find(|c| c.reason.as_deref().is_some_and(|r| r.contains("OutOfMemoryError")));
    if let Some(c) = oom_reason {
        return Cause::OutOfMemory { container: c.name.clone() };
    }
    let stopped_reason = task.stopped_reason.as_deref().unwrap_or_default().to_lowercase();
    if stopped_reason.contains("failed container health checks") {
        let mut containers: Vec<String> = task
            .containers
            .iter()
            .filter(|c| c.health == HealthStatus::Unhealthy)
            .map(|c| c.name.clone())
            .collect();
        if containers.is_empty() {
            containers =
                td.essential().filter(|d| d.has_health_check).map(|d| d.name.clone()).collect();
        }
        return Cause::HealthCheck { containers };
    }
    let essential = |c: &&ContainerSnapshot| {
        td.containers.iter().find(|d| d.name == c.name).is_none_or(|d| d.essential)
    };
    let exited: Vec<(&ContainerSnapshot, i32)> = task
        .containers
        .iter()
        .filter(essential)
        .filter_map(|c| c.exit_code.map(|code| (c, code)))
        .collect();
    // 137 is SIGKILL. When ECS stopped the task (a deploy, a scale-in) it is only the end of
    // the stop timeout; on its own, without ECS's `OutOfMemoryError` (caught above), something
    // killed it: the memory limit is the likely one, not a certain one.
    let ended_itself =
        task.stop_code.as_deref().is_none_or(|code| code == "EssentialContainerExited");
    if let Some((c, _)) = exited.iter().find(|(_, code)| *code == 137).filter(|_| ended_itself) {
        return Cause::Killed { container: c.name.clone() };
    }
    match exited.iter().find(|(_, code)| *code != 0).or(exited.first()) {
        Some((c, code)) => Cause::Exited { container: c.name.clone(), exit_code: *code },
        None => Cause::Unclear,
    }
}

fn pull_problem(reason: &str) -> PullProblem {
    let r = reason.to_lowercase();
    if ["accessdenied", "not authorized", "403 forbidden", "denied:"].iter().any(|w| r.contains(w))
    {
        PullProblem::Denied
    } else if unreachable(&r) {
        PullProblem::Unreachable
    } else if r.contains("not found") || r.contains("manifest unknown") {
        PullProblem::NotFound
    } else {
        PullProblem::Unclear
    }
}

fn init_problem(reason: &str) -> InitProblem {
    let r = reason.to_lowercase();
    if r.contains("log group") || r.contains("logger") || r.contains("log stream") {
        InitProblem::LogGroup
    } else if unreachable(&r) {
        InitProblem::Unreachable
    } else if r.contains("secret") || r.contains("registry auth") || r.contains("ssm") {
        InitProblem::Secrets
    } else {
        InitProblem::Unclear
    }
}

/// The words ECS's agent uses when a call times out or finds no route.
fn unreachable(lower: &str) -> bool {
    ["i/o timeout", "dial tcp", "context deadline exceeded", "connection refused", "no such host"]
        .iter()
        .any(|w| lower.contains(w))
}

/// `cargo xtask logs <task> --container <name>` on the roll's target.
pub fn logs_command(task_id: &str, container: &str, cli_flags: &[String]) -> String {
    let mut words = vec![format!("cargo xtask logs {task_id} --container {container}")];
    words.extend(cli_flags.iter().cloned());
    words.join(" ")
}

/// `\ncause: …\nnext: …`: the cause in plain words and what to do about it.
pub fn explain(
    cause: &Cause,
    task: &TaskSnapshot,
    td: &TaskDefinitionSnapshot,
    cli_flags: &[String],
) -> String {
    let logs = |container: &str| logs_command(&task.id, container, cli_flags);
    let def = |name: &str| td.containers.iter().find(|d| d.name == name);
    let (cause_text, next) = match cause {
        Cause::Pull(problem) => pull_words(*problem, task, td),
        Cause::Init(problem) => init_words(*problem, td),
        Cause::OutOfMemory { container } => (
            format!(
                "container `{container}` used more memory than it may and was killed \
                 (out of memory){}",
                memory_note(td, def(container))
            ),
            format!(
                "raise `memory` of the task (or the container's `memory` / \
                 `memoryReservation`) in the task definition; `{}` shows what it was doing",
                logs(container)
            ),
        ),
        Cause::Killed { container } => (
            format!(
                "container `{container}` was killed (SIGKILL, exit 137) while it ran, and ECS \
                 gives no reason: not a stop by ECS (that sends SIGTERM first and says why); \
                 most often the kernel's out-of-memory killer{}",
                memory_note(td, def(container))
            ),
            format!(
                "`{}` shows what it was doing when it died; if it was growing, raise `memory` \
                 of the task (or the container's `memory` / `memoryReservation`) in the task \
                 definition",
                logs(container)
            ),
        ),
        Cause::HealthCheck { containers } => {
            let checks: Vec<String> = containers
                .iter()
                .map(|name| match def(name).map(|d| health_check_line(&d.health_check_command)) {
                    Some(Some(command)) => format!("`{name}`'s health check `{command}`"),
                    _ => format!("`{name}`'s health check"),
                })
                .collect();
            let checks = if checks.is_empty() {
                "a container health check".to_string()
            } else {
                checks.join(" and ")
            };
            let first = containers.first().map_or("rails", String::as_str);
            (
                format!(
                    "ECS stopped the task because {checks} kept failing; ECS does not report \
                     the check's output, so the container's log is the evidence of what the app \
                     did meanwhile"
                ),
                format!(
                    "`{}`; run the check's command in a running container to see its output; \
                     an app that boots slower than the checks allow needs a longer `startPeriod`",
                    logs(first)
                ),
            )
        }
        Cause::Exited { container, exit_code: 0 } => (
            format!(
                "container `{container}` exited with code 0: an essential container must keep \
                 running, so its command ended when it should have served"
            ),
            format!("`{}` shows how its command ended", logs(container)),
        ),
        Cause::Exited { container, exit_code } => (
            format!(
                "the app in container `{container}` exited with code {exit_code}: its log shows why"
            ),
            format!("`{}`", logs(container)),
        ),
        Cause::Unclear => {
            let ran = task.containers.iter().find(|c| c.exit_code.is_some());
            (
                "ECS gives no cause this tool recognises: the stop reason above is what it says"
                    .to_string(),
                match ran {
                    Some(c) => format!("`{}`", logs(&c.name)),
                    None => "`aws ecs describe-tasks` on the task shows every field ECS recorded"
                        .to_string(),
                },
            )
        }
    };
    format!("\ncause: {cause_text}\nnext: {next}")
}

fn pull_words(
    problem: PullProblem,
    task: &TaskSnapshot,
    td: &TaskDefinitionSnapshot,
) -> (String, String) {
    // The containers whose pull failed, or every one when only the task says so.
    let failed: Vec<&ContainerDefinitionSnapshot> = td
        .containers
        .iter()
        .filter(|d| {
            task.containers.iter().any(|c| {
                c.name == d.name
                    && c.reason.as_deref().is_some_and(|r| r.contains("CannotPullContainerError"))
            })
        })
        .collect();
    let failed = if failed.is_empty() { td.containers.iter().collect() } else { failed };
    let repos: Vec<String> =
        failed.iter().filter_map(|d| repository(d.image.as_deref()?)).collect();
    let describe = if repos.is_empty() {
        "`aws ecr describe-images --repository-name <repository>`".to_string()
    } else {
        repos
            .iter()
            .map(|r| format!("`aws ecr describe-images --repository-name {r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let role = "allow the task execution role ecr:GetAuthorizationToken, ecr:BatchGetImage and \
                ecr:GetDownloadUrlForLayer (AmazonECSTaskExecutionRolePolicy has them)";
    let route = "give the task a route to ECR: `assignPublicIp: ENABLED` in a public subnet, or a \
                 NAT gateway (or ECR and S3 VPC endpoints) in a private one";
    let none = "no container started";
    match problem {
        PullProblem::NotFound => (
            format!("the image or tag the task definition names is not in ECR: {none}"),
            format!(
                "push it, or fix `image` in the task definition; {describe} lists what is there"
            ),
        ),
        PullProblem::Denied => {
            (format!("ECR refused the task execution role: {none}"), role.to_string())
        }
        PullProblem::Unreachable => {
            (format!("the task could not reach ECR: {none}"), route.to_string())
        }
        PullProblem::Unclear => (
            format!(
                "ECS could not pull an image: the image or tag is missing, the execution role \
                 may not pull from ECR, or the task has no route to ECR; {none}"
            ),
            format!("check in that order: {describe}; {role}; {route}"),
        ),
    }
}

fn init_words(problem: InitProblem, td: &TaskDefinitionSnapshot) -> (String, String) {
    let mut groups: Vec<&str> =
        td.containers.iter().filter_map(|d| d.log_group.as_deref()).collect();
    groups.dedup();
    let create = if groups.is_empty() {
        "`aws logs create-log-group --log-group-name <awslogs-group>`".to_string()
    } else {
        groups
            .iter()
            .map(|g| format!("`aws logs create-log-group --log-group-name {g}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let none = "no container started";
    let secrets = "allow the task execution role to read each `valueFrom` of the task \
                   definition's `secrets` (ssm:GetParameters, secretsmanager:GetSecretValue, \
                   kms:Decrypt for a customer key) and check that they exist in this region";
    let log_group = format!(
        "create it: {create} (`cargo xtask first-deploy` creates the definition's missing \
         groups), or let the execution role create it (logs:CreateLogGroup with \
         `awslogs-create-group`)"
    );
    match problem {
        InitProblem::Secrets => (
            format!("the task execution role could not read the task's secrets: {none}"),
            secrets.to_string(),
        ),
        InitProblem::LogGroup => {
            (format!("the containers' log group does not exist: {none}"), log_group)
        }
        InitProblem::Unreachable => (
            format!(
                "the task could not reach the services holding its secrets and registry auth \
                 (SSM, Secrets Manager, ECR): {none}"
            ),
            "give the task a route: `assignPublicIp: ENABLED` in a public subnet, or a NAT \
             gateway (or VPC endpoints) in a private one"
                .to_string(),
        ),
        InitProblem::Unclear => (
            format!(
                "ECS could not prepare the task: secrets the execution role cannot read, or \
                 the log group; {none}"
            ),
            format!("{secrets}; for the log group, {log_group}"),
        ),
    }
}

/// `zenn-clone-rails` of `123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails:latest`.
fn repository(image: &str) -> Option<String> {
    let (_, path) = image.split_once('/')?;
    let path = path.split('@').next()?;
    let path = path.rsplit_once(':').map_or(path, |(p, _)| p);
    Some(path.to_string())
}

/// `: the task has 512 MiB, the container reserves 384 MiB`.
fn memory_note(td: &TaskDefinitionSnapshot, def: Option<&ContainerDefinitionSnapshot>) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &td.memory {
        parts.push(format!("the task has {m} MiB"));
    }
    if let Some(m) = def.and_then(|d| d.memory) {
        parts.push(format!("the container may use {m} MiB"));
    } else if let Some(m) = def.and_then(|d| d.memory_reservation) {
        parts.push(format!("the container reserves {m} MiB"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}

/// The check as a shell would run it: `CMD-SHELL`'s one string, or `CMD`'s words.
fn health_check_line(command: &[String]) -> Option<String> {
    match command.split_first()? {
        (kind, rest) if kind == "CMD-SHELL" || kind == "CMD" => Some(rest.join(" ")),
        _ => Some(command.join(" ")),
    }
}

/// The deployment's failure in plain words when ECS failed it (the circuit breaker).
pub fn deployment_cause(d: &DeploymentSnapshot) -> Option<String> {
    if d.rollout_state.as_deref() != Some("FAILED") {
        return None;
    }
    let reason = d.rollout_state_reason.as_deref().unwrap_or("no reason given");
    Some(if reason.contains("circuit breaker") {
        format!(
            "the deployment circuit breaker gave up on deployment {} after {} failed task(s) \
             (\"{reason}\"); with rollback on, ECS returns the service to its previous deployment",
            d.id, d.failed_tasks
        )
    } else {
        format!("ECS failed deployment {}: {reason}", d.id)
    })
}

/// What a failure shows of one container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTail {
    /// The last lines, oldest first.
    Lines { stream: LogStream, lines: Vec<String> },
    /// The stream exists and holds nothing.
    Empty(LogStream),
    /// No stream, and the container neither runs nor has an exit code: it never started.
    NeverStarted,
    /// The container ran (it runs, or has an exit code), yet its stream is missing.
    Missing(LogStream),
    /// The container does not log through awslogs with a group and a stream prefix.
    NotCloudWatch,
    /// Reading the stream failed.
    Unreadable { stream: LogStream, error: String },
}

/// The stream to read for a container, or why there is none to read.
pub fn stream_to_read(
    cause: &Cause,
    def: &ContainerDefinitionSnapshot,
    task_id: &str,
) -> Result<LogStream, LogTail> {
    if cause.no_container_ran() {
        return Err(LogTail::NeverStarted);
    }
    LogStream::of(def, task_id).ok_or(LogTail::NotCloudWatch)
}

/// What a read of a container's stream shows.
pub fn tail_of(
    stream: LogStream,
    container: Option<&ContainerSnapshot>,
    read: Result<Option<Vec<LogEvent>>>,
) -> LogTail {
    match read {
        Ok(Some(events)) if events.is_empty() => LogTail::Empty(stream),
        Ok(Some(events)) => {
            LogTail::Lines { stream, lines: events.into_iter().map(|e| e.message).collect() }
        }
        Ok(None) if container.is_some_and(started) => LogTail::Missing(stream),
        Ok(None) => LogTail::NeverStarted,
        Err(e) => LogTail::Unreadable { stream, error: format!("{e:#}") },
    }
}

/// The container ran: it has an exit code or runs still.
fn started(c: &ContainerSnapshot) -> bool {
    c.exit_code.is_some() || c.last_status.as_deref() == Some("RUNNING")
}

/// Each container's log tail, one section per container.
pub fn render_logs(tails: &[(String, LogTail)]) -> String {
    let mut out = String::new();
    for (name, tail) in tails {
        let line = match tail {
            LogTail::Lines { stream, lines } => {
                out.push_str(&format!(
                    "\nlog of {name} ({} in {}), last {} line(s):",
                    stream.stream,
                    stream.group,
                    lines.len()
                ));
                for line in lines {
                    out.push_str(&format!("\n  | {line}"));
                }
                continue;
            }
            LogTail::Empty(stream) => format!(
                "no log lines: {} in {} is empty (the container wrote nothing)",
                stream.stream, stream.group
            ),
            LogTail::NeverStarted => "no log: the container never started".to_string(),
            LogTail::Missing(stream) => format!(
                "no log: the container ran, yet {} in {} does not exist: check its awslogs options",
                stream.stream, stream.group
            ),
            LogTail::NotCloudWatch => "no log: the container does not log to CloudWatch Logs \
                                       (awslogs with a group and a stream prefix)"
                .to_string(),
            LogTail::Unreadable { stream, error } => format!(
                "log not read ({} in {}): {error}; check that the credentials allow \
                 logs:GetLogEvents",
                stream.stream, stream.group
            ),
        };
        out.push_str(&format!("\nlog of {name}: {line}"));
    }
    out
}

#[cfg(test)]
mod tests;
