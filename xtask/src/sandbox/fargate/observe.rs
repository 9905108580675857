//! What a task's containers are doing, read from `docker inspect`, and what follows from it:
//! the observation the scheduler records, the task's verdict, the next step of a start.
//! Pure: the tests feed it scripted `docker inspect` output.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::definition::Condition;
use super::plan::{
    TaskPlan, LABEL_CONTAINER, LABEL_CONTAINERS, LABEL_DIGEST, LABEL_ESSENTIAL, LABEL_IMAGE,
    LABEL_ROLE, ROLE_PAUSE,
};

/// A task's or a container's `lastStatus`, as ECS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Running,
    Stopped,
}

/// A task's or a container's `healthStatus`, as ECS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

/// ECS's `stopCode` values the sandbox produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
    ServiceSchedulerInitiated,
}

/// Why a task stops: ECS's `stopCode` and `stoppedReason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStop {
    #[serde(rename = "stopCode")]
    pub code: StopCode,
    #[serde(rename = "stoppedReason")]
    pub reason: String,
}

impl TaskStop {
    pub fn new(code: StopCode, reason: impl Into<String>) -> TaskStop {
        TaskStop { code, reason: reason.into() }
    }
}

/// One task as the runner sees it; serialises with ECS's DescribeTasks field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskObservation {
    pub task_id: String,
    pub last_status: Status,
    pub health_status: Health,
    /// Set when the task must stop (then the scheduler calls `stop_task` with it) or has stopped.
    #[serde(flatten)]
    pub stop: Option<TaskStop>,
    pub containers: Vec<ContainerObservation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerObservation {
    pub name: String,
    pub last_status: Status,
    pub health_status: Health,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// The image as the task definition names it.
    pub image: String,
    /// `sha256:...` of the image the container runs, as pulled from the registry.
    pub image_digest: Option<String>,
    /// The Docker container id (ECS calls the runtime's id `runtimeId`).
    #[serde(rename = "runtimeId")]
    pub docker_id: Option<String>,
}

/// Where the start of a task is, as its launcher left it.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchState {
    /// No launcher in this process: the scheduler restarted since the task started.
    Unknown,
    InProgress,
    /// Every container has started.
    Started,
    Failed(LaunchFailure),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaunchFailure {
    pub stop: TaskStop,
    /// The container-level `reason` of the containers the failure concerns.
    pub container_reasons: BTreeMap<String, String>,
}

impl LaunchFailure {
    pub fn task(reason: impl Into<String>) -> LaunchFailure {
        LaunchFailure {
            stop: TaskStop::new(StopCode::TaskFailedToStart, reason),
            container_reasons: BTreeMap::new(),
        }
    }

    /// The task fails to start because of `containers`, each with the same reason.
    pub fn of<'a>(
        reason: impl Into<String>,
        containers: impl IntoIterator<Item = &'a str>,
    ) -> LaunchFailure {
        let reason = reason.into();
        LaunchFailure {
            container_reasons: containers
                .into_iter()
                .map(|c| (c.to_string(), reason.clone()))
                .collect(),
            stop: TaskStop::new(StopCode::TaskFailedToStart, reason),
        }
    }
}

pub const ESSENTIAL_EXITED: &str = "Essential container in task exited";

/// One container as `docker inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub docker_id: String,
    pub labels: BTreeMap<String, String>,
    pub status: Status,
    /// Docker has started it at least once.
    pub started: bool,
    pub exit_code: i32,
    pub health: Health,
    pub has_health_check: bool,
    pub oom_killed: bool,
    pub error: String,
}

impl Seen {
    pub fn is_pause(&self) -> bool {
        self.labels.get(LABEL_ROLE).map(String::as_str) == Some(ROLE_PAUSE)
    }

    /// The task definition's name for it (none for the pause container).
    pub fn container(&self) -> Option<&str> {
        self.labels.get(LABEL_CONTAINER).map(String::as_str)
    }

    fn exited(&self) -> bool {
        self.started && self.status == Status::Stopped
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    id: String,
    state: InspectedState,
    config: InspectedConfig,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedState {
    status: String,
    exit_code: i32,
    #[serde(default)]
    error: String,
    #[serde(rename = "OOMKilled", default)]
    oom_killed: bool,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    health: Option<InspectedHealth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedHealth {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    healthcheck: Option<InspectedHealthcheck>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedHealthcheck {
    #[serde(default)]
    test: Option<Vec<String>>,
}

/// Parses `docker inspect --type container` output (a JSON list).
pub fn parse_inspect(json: &str) -> Result<Vec<Seen>> {
    let json = if json.trim().is_empty() { "[]" } else { json };
    let inspected: Vec<Inspected> = serde_json::from_str(json)
        .context("`docker inspect` printed something other than its JSON list")?;
    Ok(inspected.into_iter().map(seen).collect())
}

fn seen(i: Inspected) -> Seen {
    let status = match i.state.status.as_str() {
        "created" => Status::Pending,
        "running" | "paused" | "restarting" => Status::Running,
        _ => Status::Stopped,
    };
    let health = match i.state.health.as_ref().map(|h| h.status.as_str()) {
        _ if status == Status::Stopped => Health::Unknown,
        Some("healthy") => Health::Healthy,
        Some("unhealthy") => Health::Unhealthy,
        _ => Health::Unknown,
    };
    let test = i.config.healthcheck.and_then(|h| h.test).unwrap_or_default();
    Seen {
        docker_id: i.id,
        labels: i.config.labels.unwrap_or_default(),
        status,
        // Docker's zero time (`0001-01-01T00:00:00Z`) means never started.
        started: !i.state.started_at.is_empty() && !i.state.started_at.starts_with("0001-"),
        exit_code: i.state.exit_code,
        health,
        has_health_check: test.first().is_some_and(|t| t != "NONE"),
        oom_killed: i.state.oom_killed,
        error: i.state.error,
    }
}

/// A container the task should have: from the plan when the launcher is known, otherwise from
/// the labels the launcher left on the containers.
struct Expected {
    name: String,
    image: String,
    essential: bool,
}

fn expected(plan: Option<&TaskPlan>, seen: &[Seen]) -> Vec<Expected> {
    if let Some(plan) = plan {
        return plan
            .containers
            .iter()
            .map(|c| Expected {
                name: c.name().to_string(),
                image: c.def.image.clone(),
                essential: c.def.is_essential(),
            })
            .collect();
    }
    let listed = seen.iter().find(|s| s.is_pause()).and_then(|p| p.labels.get(LABEL_CONTAINERS));
    let names: Vec<String> = match listed {
        Some(list) => list.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect(),
        None => seen.iter().filter_map(Seen::container).map(str::to_string).collect(),
    };
    names
        .into_iter()
        .map(|name| {
            let s = seen.iter().find(|s| s.container() == Some(name.as_str()));
            let label = |key: &str| s.and_then(|s| s.labels.get(key)).cloned();
            Expected {
                image: label(LABEL_IMAGE).unwrap_or_default(),
                essential: label(LABEL_ESSENTIAL).as_deref() == Some("true"),
                name,
            }
        })
        .collect()
}

/// The task as its containers show it, with the verdict; `None` when the runner knows nothing
/// of it (no launcher, no container in Docker).
pub fn assess(
    task_id: &str,
    plan: Option<&TaskPlan>,
    launch: &LaunchState,
    seen: &[Seen],
) -> Option<TaskObservation> {
    if plan.is_none() && seen.is_empty() {
        return None;
    }
    let find = |name: &str| seen.iter().find(|s| s.container() == Some(name));
    let launching = *launch == LaunchState::InProgress;
    let failure = match launch {
        LaunchState::Failed(f) => Some(f),
        _ => None,
    };
    let expected = expected(plan, seen);

    let mut containers = Vec::with_capacity(expected.len());
    let mut essential_exited = false;
    let mut all_started = true;
    let mut checked_health = Vec::new();
    for e in &expected {
        let s = find(&e.name);
        let launch_reason = failure.and_then(|f| f.container_reasons.get(&e.name)).cloned();
        let observation = match s {
            Some(s) => ContainerObservation {
                name: e.name.clone(),
                last_status: s.status,
                health_status: s.health,
                exit_code: s.exited().then_some(s.exit_code),
                reason: launch_reason.or_else(|| docker_reason(s)),
                image: e.image.clone(),
                image_digest: s.labels.get(LABEL_DIGEST).cloned(),
                docker_id: Some(s.docker_id.clone()),
            },
            None => ContainerObservation {
                name: e.name.clone(),
                last_status: if launching { Status::Pending } else { Status::Stopped },
                health_status: Health::Unknown,
                exit_code: None,
                reason: launch_reason.or_else(|| {
                    (*launch == LaunchState::Started)
                        .then(|| "The container was removed from Docker".to_string())
                }),
                image: e.image.clone(),
                image_digest: None,
                docker_id: None,
            },
        };
        let gone_after_start = s.is_none() && *launch == LaunchState::Started;
        if e.essential && (s.is_some_and(Seen::exited) || gone_after_start) {
            essential_exited = true;
        }
        if !s.is_some_and(|s| s.started) {
            all_started = false;
        }
        if e.essential && s.is_some_and(|s| s.has_health_check) {
            checked_health.push(observation.health_status);
        }
        containers.push(observation);
    }

    let pause_down = !seen.iter().any(|s| s.is_pause() && s.status == Status::Running);
    let stop = if essential_exited {
        Some(TaskStop::new(StopCode::EssentialContainerExited, ESSENTIAL_EXITED))
    } else if let Some(f) = failure {
        Some(f.stop.clone())
    } else if !launching && pause_down {
        Some(TaskStop::new(
            StopCode::EssentialContainerExited,
            "The task's network stopped: its pause container is gone",
        ))
    } else if *launch == LaunchState::Unknown && !all_started {
        Some(TaskStop::new(
            StopCode::TaskFailedToStart,
            "The start of the task was interrupted: the sandbox scheduler restarted before every container started",
        ))
    } else {
        None
    };

    let last_status = if containers.iter().all(|c| c.last_status == Status::Stopped) {
        Status::Stopped
    } else if all_started {
        Status::Running
    } else {
        Status::Pending
    };
    let health_status = if checked_health.contains(&Health::Unhealthy) {
        Health::Unhealthy
    } else if !checked_health.is_empty() && checked_health.iter().all(|h| *h == Health::Healthy) {
        Health::Healthy
    } else {
        Health::Unknown
    };
    Some(TaskObservation {
        task_id: task_id.to_string(),
        last_status,
        health_status,
        stop,
        containers,
    })
}

fn docker_reason(s: &Seen) -> Option<String> {
    if s.oom_killed {
        Some("OutOfMemoryError: Container killed due to memory usage".to_string())
    } else if !s.error.is_empty() {
        Some(format!("CannotStartContainerError: {}", s.error))
    } else {
        None
    }
}

/// What the launcher does next, once every container is created.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Start these containers (by their names in the task definition): their dependencies are met.
    Start(Vec<String>),
    /// Some container waits for a dependency.
    Wait,
    /// Every container has started.
    Done,
    Fail(LaunchFailure),
}

/// The next step of a start, `waited` after the containers were created. A container whose
/// dependency can no longer reach its condition (it exited), or has not within the container's
/// `startTimeout` (else `default_timeout`), fails the task.
pub fn next_step(
    plan: &TaskPlan,
    seen: &[Seen],
    waited: Duration,
    default_timeout: Duration,
) -> Step {
    let find = |name: &str| seen.iter().find(|s| s.container() == Some(name));
    let mut start = Vec::new();
    let mut all_started = true;
    for c in &plan.containers {
        let Some(s) = find(c.name()) else {
            return Step::Fail(LaunchFailure::of(
                format!("CannotStartContainerError: container {} was removed from Docker before it started", c.name()),
                [c.name()],
            ));
        };
        if s.started {
            continue;
        }
        all_started = false;
        let mut ready = true;
        for dep in &c.def.depends_on {
            let condition = dep.condition;
            let failed = |why: String| {
                Step::Fail(LaunchFailure::of(
                    format!(
                        "Container {} depends on {} being {}, but {}",
                        c.name(),
                        dep.container_name,
                        condition.as_str(),
                        why
                    ),
                    [c.name()],
                ))
            };
            let Some(d) = find(&dep.container_name) else {
                return failed(format!("{} was removed from Docker", dep.container_name));
            };
            let met = match condition {
                Condition::Start => d.started,
                Condition::Complete => d.exited(),
                Condition::Success if d.exited() && d.exit_code != 0 => {
                    return failed(format!("it exited with code {}", d.exit_code));
                }
                Condition::Success => d.exited(),
                Condition::Healthy if d.exited() => {
                    return failed(format!("it exited with code {}", d.exit_code));
                }
                Condition::Healthy => d.status == Status::Running && d.health == Health::Healthy,
            };
            ready &= met;
        }
        let timeout = c.def.start_timeout.map(Duration::from_secs).unwrap_or(default_timeout);
        if ready {
            start.push(c.name().to_string());
        } else if waited >= timeout {
            let waiting: Vec<String> = c
                .def
                .depends_on
                .iter()
                .map(|d| format!("{} {}", d.container_name, d.condition.as_str()))
                .collect();
            return Step::Fail(LaunchFailure::of(
                format!(
                    "Container {} gave up waiting for its dependencies ({}) after {}s",
                    c.name(),
                    waiting.join(", "),
                    timeout.as_secs()
                ),
                [c.name()],
            ));
        }
    }
    if all_started {
        Step::Done
    } else if start.is_empty() {
        Step::Wait
    } else {
        Step::Start(start)
    }
}

#[cfg(test)]
mod tests;
