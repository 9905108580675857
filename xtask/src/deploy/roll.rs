//! The ECS roll: put the service on the image just pushed and wait until it runs healthy.
//!
//! [`Watch::judge`] is a pure state machine over observed snapshots (DescribeServices,
//! DescribeTasks, the task definition); [`roll`] is the driver that starts the roll, polls
//! through [`EcsApi`], reports progress and stops at the first verdict. Both strategies end
//! the same way: the new tasks (not there when the roll began, of the service's `group`,
//! started by the primary deployment, of its task definition) RUNNING, every essential
//! container HEALTHY, each running the digest that was pushed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

use crate::event::{ContainerView, Detail, Event, RollProgress, RollView, TaskView};
use anyhow::{anyhow, Context, Result};
use tokio::time::Instant;

use crate::aws::ecs::{
    describe_all_tasks, list_all_tasks, Counting, DeploymentSnapshot, DesiredStatus, EcsApi,
    Health, ServiceEvent, ServiceSnapshot, TaskDefinitionSnapshot, TaskSnapshot,
};
use crate::deploy::target::{RollStrategy, Target};
use crate::failure::Failure;
use crate::report::{human_duration, Reporter};

/// The reason ECS records on the tasks the `stop-tasks` strategy stops.
pub const STOP_REASON: &str = "stopped by cargo xtask deploy to start the new image";
/// Consecutive failed polls tolerated before the roll gives up (the SDK retries each call too).
const MAX_POLL_ERRORS: u32 = 3;
/// Even when nothing seems to change, list the service's tasks this often.
const RELIST_EVERY: Duration = Duration::from_secs(15);
/// The progress line's clock ticks in these steps, so piped output prints a line per step
/// rather than per poll.
const PROGRESS_TICK: u64 = 5;
/// How many service events a failure explanation quotes.
const EVENTS_QUOTED: usize = 4;

/// What to roll and how long to wait.
#[derive(Debug, Clone)]
pub struct RollRequest {
    pub cluster: String,
    pub service: String,
    pub strategy: RollStrategy,
    /// Container name → the digest just pushed for its image (`sha256:…`).
    pub expected_digests: BTreeMap<String, String>,
    pub timeout: Duration,
    pub poll: PollSchedule,
    /// Where a stopped task's container logs are read.
    pub logs: LogSource,
}

/// Where the containers' logs go, for the hint after a task stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// CloudWatch Logs, through the task definition's awslogs settings.
    CloudWatch,
    /// A command of the target's, `{task_id}` in it.
    Command(String),
}

impl RollRequest {
    /// The target's cluster, service, strategy and roll timeout.
    pub fn for_target(target: &Target, expected_digests: BTreeMap<String, String>) -> RollRequest {
        RollRequest {
            cluster: target.cluster.clone(),
            service: target.service.clone(),
            strategy: target.strategy,
            expected_digests,
            timeout: target.roll_timeout,
            poll: PollSchedule::default(),
            logs: match &target.logs_command {
                Some(command) => LogSource::Command(command.clone()),
                None => LogSource::CloudWatch,
            },
        }
    }
}

/// How often the driver polls: quickly at first and after every change, backing off to `cap`,
/// each wait jittered by ±`jitter`. The longest wait, `cap × (1 + jitter)`, bounds how late a
/// finished roll is noticed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSchedule {
    pub first: Duration,
    pub factor: f64,
    pub cap: Duration,
    pub jitter: f64,
    pub seed: u64,
}

impl Default for PollSchedule {
    fn default() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0u8);
        PollSchedule::seeded(seed)
    }
}

impl PollSchedule {
    pub fn seeded(seed: u64) -> PollSchedule {
        PollSchedule {
            first: Duration::from_millis(500),
            factor: 1.5,
            cap: Duration::from_millis(1600),
            jitter: 0.15,
            seed,
        }
    }
}

/// The waits between polls.
struct Poller {
    schedule: PollSchedule,
    base: Duration,
    rng: u64,
}

impl Poller {
    fn new(schedule: PollSchedule) -> Poller {
        Poller { schedule, base: schedule.first, rng: schedule.seed | 1 }
    }

    /// The wait before the next poll: back to `first` after a change, else backing off.
    fn next_wait(&mut self, changed: bool) -> Duration {
        self.base = if changed {
            self.schedule.first
        } else {
            self.base.mul_f64(self.schedule.factor).min(self.schedule.cap)
        };
        let spread = self.schedule.jitter * (2.0 * self.unit() - 1.0);
        self.base.mul_f64(1.0 + spread)
    }

    /// xorshift64*: a uniform number in [0, 1), good enough for jitter.
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a finished roll leaves: the new tasks and what it cost.
#[derive(Debug, Clone)]
pub struct RollOutcome {
    pub strategy: RollStrategy,
    /// The deployment whose tasks were waited for (`startedBy` of the new tasks).
    pub deployment_id: String,
    /// The new tasks, RUNNING and healthy: id, ENI, containers with their digests.
    pub tasks: Vec<TaskSnapshot>,
    /// API calls by operation.
    pub api_calls: BTreeMap<&'static str, u32>,
    pub polls: u32,
    /// From the first call to the verdict.
    pub duration: Duration,
    /// Until the first new task showed up.
    pub first_task_after: Option<Duration>,
    /// Until every new task was RUNNING and healthy (the old ones may still have been stopping).
    pub healthy_after: Option<Duration>,
}

impl RollOutcome {
    pub fn api_call_total(&self) -> u32 {
        self.api_calls.values().sum()
    }

    pub fn view(&self) -> RollView {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        RollView {
            strategy: self.strategy.to_string(),
            deployment_id: self.deployment_id.clone(),
            tasks: self.tasks.iter().map(task_view).collect(),
            api_calls: self.api_calls.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            api_call_total: self.api_call_total(),
            polls: self.polls,
            duration_s: self.duration.as_secs_f64(),
            first_task_after_s: secs(self.first_task_after),
            healthy_after_s: secs(self.healthy_after),
        }
    }
}

/// The roll's state: what it knows from before it acted, and the deployment it waits for.
#[derive(Debug, Clone)]
pub struct Watch {
    strategy: RollStrategy,
    /// `service:<name>`: the `group` of every task the service starts.
    group: String,
    deployment_id: String,
    expected_digests: BTreeMap<String, String>,
    /// Task ARNs of the service when the roll began: never new, whatever else they claim.
    before: BTreeSet<String>,
    /// Service events that were there when the roll began.
    old_events: HashSet<String>,
    /// Events already shown.
    shown_events: HashSet<String>,
    logs: LogSource,
}

/// One judgement of the observed state.
#[derive(Debug, Clone)]
pub enum Verdict {
    Waiting(Progress),
    Done(Progress),
    /// A new task stopped, the deployment failed or was replaced, or a task runs the wrong image.
    Failed(String),
}

/// Where the roll stands, for the progress line, the JSON events and the timeout summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    pub deployment_id: String,
    pub rollout_state: Option<String>,
    pub failed_tasks: i32,
    /// The new tasks, oldest first.
    pub new_tasks: Vec<TaskSnapshot>,
    /// New tasks RUNNING with every essential container healthy and the pushed digests.
    pub ready: Vec<String>,
    /// Tasks of the service, not of this roll, that have not stopped.
    pub old_left: Vec<String>,
    /// What the roll waits for now.
    pub waiting_for: String,
}

impl Watch {
    pub fn new(
        service: &ServiceSnapshot,
        strategy: RollStrategy,
        deployment_id: String,
        expected_digests: BTreeMap<String, String>,
        before: BTreeSet<String>,
    ) -> Watch {
        let old_events: HashSet<String> = service.events.iter().map(|e| e.id.clone()).collect();
        Watch {
            strategy,
            group: service_group(&service.name),
            deployment_id,
            expected_digests,
            before,
            shown_events: old_events.clone(),
            old_events,
            logs: LogSource::CloudWatch,
        }
    }

    /// Where the hint after a stopped task sends the user for its logs.
    pub fn with_logs(self, logs: LogSource) -> Watch {
        Watch { logs, ..self }
    }

    pub fn deployment_id(&self) -> &str {
        &self.deployment_id
    }

    /// Service events not shown yet, oldest first.
    pub fn take_new_events(&mut self, service: &ServiceSnapshot) -> Vec<ServiceEvent> {
        let mut fresh: Vec<ServiceEvent> =
            service.events.iter().filter(|e| !self.shown_events.contains(&e.id)).cloned().collect();
        fresh.reverse();
        self.shown_events.extend(fresh.iter().map(|e| e.id.clone()));
        fresh
    }

    /// Whether a task belongs to the service (by its `group`, never by a list filter).
    pub fn is_service_task(&self, task: &TaskSnapshot) -> bool {
        task.group.as_deref() == Some(self.group.as_str())
    }

    /// Whether a task is one this roll started: of the service, not there before, started by
    /// the deployment.
    pub fn is_new_task(&self, task: &TaskSnapshot) -> bool {
        self.is_service_task(task)
            && !self.before.contains(&task.arn)
            && task.started_by.as_deref() == Some(self.deployment_id.as_str())
    }

    /// Judges the service, its tasks and the deployment's task definition.
    pub fn judge<'t>(
        &self,
        service: &ServiceSnapshot,
        tasks: impl IntoIterator<Item = &'t TaskSnapshot>,
        td: &TaskDefinitionSnapshot,
    ) -> Verdict {
        let recent = self.recent_events(service);
        let Some(deployment) = service.deployments.iter().find(|d| d.id == self.deployment_id)
        else {
            let primary = primary(service).map_or("none".to_string(), |p| p.id.clone());
            return Verdict::Failed(format!(
                "deployment {} is gone from the service (primary now: {primary}): \
                 ECS rolled it back or another deploy replaced it{recent}",
                self.deployment_id
            ));
        };
        if deployment.rollout_state.as_deref() == Some("FAILED") {
            return Verdict::Failed(format!(
                "deployment {} failed: {}{}{recent}",
                deployment.id,
                deployment.rollout_state_reason.as_deref().unwrap_or("no reason given"),
                failed_tasks_note(deployment),
            ));
        }
        if deployment.status != "PRIMARY" {
            let primary = primary(service).map_or("none".to_string(), |p| p.id.clone());
            return Verdict::Failed(format!(
                "deployment {} is no longer the primary (it is {}; primary now: {primary}): \
                 ECS rolled it back or another deploy replaced it{}{recent}",
                deployment.id,
                deployment.status,
                rollout_note(deployment),
            ));
        }

        let mut new_tasks: Vec<&TaskSnapshot> = Vec::new();
        let mut old_left = Vec::new();
        for task in tasks.into_iter().filter(|t| self.is_service_task(t)) {
            if self.is_new_task(task) {
                new_tasks.push(task);
            } else if task.last_status != "STOPPED" {
                old_left.push(task.id.clone());
            }
        }
        new_tasks.sort_by(|a, b| (a.created_at, &a.arn).cmp(&(b.created_at, &b.arn)));

        for task in &new_tasks {
            if let Some(why) = self.task_failure(task, deployment, td) {
                return Verdict::Failed(format!("{why}{recent}"));
            }
        }

        let ready: Vec<String> = new_tasks
            .iter()
            .filter(|t| {
                same_task_definition(
                    t.task_definition_arn.as_deref(),
                    deployment.task_definition.as_deref(),
                )
            })
            .filter(|t| task_ready(t, td))
            .map(|t| t.id.clone())
            .collect();
        let want = usize::try_from(service.desired).unwrap_or(0);
        let rollout_done = deployment.rollout_state.as_deref().is_none_or(|r| r == "COMPLETED");
        let must_replace_all = self.strategy == RollStrategy::ForceNewDeployment;
        let done = ready.len() >= want
            && want > 0
            && (!must_replace_all || (rollout_done && old_left.is_empty()));
        let waiting_for = if done {
            "nothing".to_string()
        } else {
            waiting_for(&new_tasks, &ready, want, td, deployment, &old_left, must_replace_all)
        };
        let progress = Progress {
            desired: service.desired,
            running: service.running,
            pending: service.pending,
            deployment_id: deployment.id.clone(),
            rollout_state: deployment.rollout_state.clone(),
            failed_tasks: deployment.failed_tasks,
            new_tasks: new_tasks.into_iter().cloned().collect(),
            ready,
            old_left,
            waiting_for,
        };
        if done {
            Verdict::Done(progress)
        } else {
            Verdict::Waiting(progress)
        }
    }

    /// Why a new task means the roll failed, if it does.
    fn task_failure(
        &self,
        task: &TaskSnapshot,
        deployment: &DeploymentSnapshot,
        td: &TaskDefinitionSnapshot,
    ) -> Option<String> {
        let pull_failed = is_pull_error(task.stopped_reason.as_deref())
            || task.containers.iter().any(|c| is_pull_error(c.reason.as_deref()));
        let stopping = task.desired_status == "STOPPED";
        let container_ended = task
            .containers
            .iter()
            .any(|c| c.exit_code.is_some() || c.last_status.as_deref() == Some("STOPPED"));
        if pull_failed || (stopping && (task.last_status == "STOPPED" || container_ended)) {
            let hint = if pull_failed {
                "\nnext: check that the image exists in ECR under the name the task definition \
                 gives, and that the task execution role may pull it (ecr:GetAuthorizationToken, \
                 ecr:BatchGetImage, ecr:GetDownloadUrlForLayer) through the task's network"
                    .to_string()
            } else {
                log_hint(task, td, &self.logs)
            };
            return Some(format!(
                "{}{}{hint}",
                describe_stopped(task),
                deployment_note(deployment)
            ));
        }
        for c in &task.containers {
            let (Some(runs), Some(pushed)) = (&c.image_digest, self.expected_digests.get(&c.name))
            else {
                continue;
            };
            if runs != pushed {
                let hint = match self.strategy {
                    RollStrategy::StopTasks => {
                        "\nECS pins a deployment's image digests when the deployment starts \
                         (container image resolution), so a replacement task of the same deployment \
                         runs the old image: roll with `--strategy force-new-deployment`, or set \
                         `versionConsistency: disabled` on the container in the task definition"
                    }
                    RollStrategy::ForceNewDeployment => {
                        "\nthe task definition may pin another tag or digest, or the push did not \
                         reach the repository the task definition names: compare its `image` with \
                         the pushed repository and tag"
                    }
                };
                return Some(format!(
                    "new task {} runs {} for container `{}`, not the digest just pushed ({pushed}){hint}",
                    task.id, runs, c.name
                ));
            }
        }
        None
    }

    /// The service events since the roll began, for an explanation.
    fn recent_events(&self, service: &ServiceSnapshot) -> String {
        let recent: Vec<&ServiceEvent> = service
            .events
            .iter()
            .filter(|e| !self.old_events.contains(&e.id))
            .take(EVENTS_QUOTED)
            .collect();
        if recent.is_empty() {
            return String::new();
        }
        let mut out = String::from("\nrecent service events:");
        for e in recent.iter().rev() {
            out.push_str(&format!("\n  {}", e.message));
        }
        out
    }
}

/// `service:<name>`, the group ECS gives a service's tasks.
pub fn service_group(service: &str) -> String {
    format!("service:{service}")
}

fn primary(service: &ServiceSnapshot) -> Option<&DeploymentSnapshot> {
    service.deployments.iter().find(|d| d.status == "PRIMARY")
}

fn is_pull_error(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.contains("CannotPullContainerError"))
}

/// Task definitions compare by `family:revision`: moto may give a service's one without the ARN prefix.
fn same_task_definition(task: Option<&str>, deployment: Option<&str>) -> bool {
    let short = |arn: &str| arn.rsplit_once("task-definition/").map_or(arn, |(_, s)| s).to_string();
    match (task, deployment) {
        (Some(t), Some(d)) => short(t) == short(d),
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// RUNNING, with every essential container healthy: HEALTHY when it has a health check,
/// RUNNING otherwise. An essential container ECS does not report (moto shows only the first)
/// counts as healthy only when the task itself is HEALTHY.
fn task_ready(task: &TaskSnapshot, td: &TaskDefinitionSnapshot) -> bool {
    task.last_status == "RUNNING"
        && task.desired_status == "RUNNING"
        && td.essential().all(|def| match task.containers.iter().find(|c| c.name == def.name) {
            Some(c) if def.has_health_check => c.health == Health::Healthy,
            Some(c) => c.last_status.as_deref() == Some("RUNNING"),
            None => task.health == Health::Healthy,
        })
}

fn waiting_for(
    new_tasks: &[&TaskSnapshot],
    ready: &[String],
    want: usize,
    td: &TaskDefinitionSnapshot,
    deployment: &DeploymentSnapshot,
    old_left: &[String],
    must_replace_all: bool,
) -> String {
    if want == 0 {
        return "the service to want a task (desired count is 0)".to_string();
    }
    let live = new_tasks.iter().filter(|t| t.desired_status != "STOPPED").count();
    if live < want {
        return format!("ECS to start {} new task(s)", want - live);
    }
    if let Some(t) = new_tasks.iter().find(|t| t.last_status != "RUNNING") {
        return format!("task {} to start ({})", short_id(&t.id), t.last_status);
    }
    if ready.len() < want {
        let unhealthy: BTreeSet<&str> = new_tasks
            .iter()
            .filter(|t| !ready.contains(&t.id))
            .flat_map(|t| {
                td.essential()
                    .filter(move |def| {
                        t.containers
                            .iter()
                            .find(|c| c.name == def.name)
                            .map_or(t.health != Health::Healthy, |c| {
                                def.has_health_check && c.health != Health::Healthy
                            })
                    })
                    .map(|def| def.name.as_str())
            })
            .collect();
        if unhealthy.is_empty() {
            return "the new tasks to run the task definition of the deployment".to_string();
        }
        let names: Vec<&str> = unhealthy.into_iter().collect();
        return format!("health checks of {} to pass", names.join(", "));
    }
    if must_replace_all && deployment.rollout_state.as_deref().is_some_and(|r| r != "COMPLETED") {
        return format!(
            "deployment {} to complete ({})",
            deployment.id,
            deployment.rollout_state.as_deref().unwrap_or("-")
        );
    }
    format!("{} old task(s) to stop", old_left.len())
}

fn rollout_note(d: &DeploymentSnapshot) -> String {
    match (&d.rollout_state, &d.rollout_state_reason) {
        (Some(state), Some(reason)) => format!("\ndeployment {}: {state}: {reason}", d.id),
        (Some(state), None) => format!("\ndeployment {}: {state}", d.id),
        _ => String::new(),
    }
}

/// The deployment's failure and failed-task count, when there is either.
fn deployment_note(d: &DeploymentSnapshot) -> String {
    let mut parts = Vec::new();
    if d.rollout_state.as_deref() == Some("FAILED") {
        parts.push(format!(
            "FAILED: {}",
            d.rollout_state_reason.as_deref().unwrap_or("no reason given")
        ));
    }
    if d.failed_tasks > 0 {
        parts.push(format!("{} failed task(s)", d.failed_tasks));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("\ndeployment {}: {}", d.id, parts.join(", "))
}

fn failed_tasks_note(d: &DeploymentSnapshot) -> String {
    if d.failed_tasks > 0 {
        format!(" ({} failed task(s))", d.failed_tasks)
    } else {
        String::new()
    }
}

/// `new task 0f6e4a1b stopped (EssentialContainerExited): reason`, then each container.
fn describe_stopped(task: &TaskSnapshot) -> String {
    let mut state = if task.last_status == "STOPPED" {
        "stopped".to_string()
    } else {
        format!("is stopping (last status {}", task.last_status)
    };
    match (&task.stop_code, task.last_status == "STOPPED") {
        (Some(code), true) => state.push_str(&format!(" ({code})")),
        (Some(code), false) => state.push_str(&format!(", {code})")),
        (None, false) => state.push(')'),
        (None, true) => {}
    }
    let reason = task.stopped_reason.as_deref().unwrap_or("no reason given");
    let mut out = format!("new task {} {state}: {reason}", task.id);
    for c in &task.containers {
        let exit = c.exit_code.map_or("no exit code".to_string(), |e| format!("exit code {e}"));
        let why = match c.reason.as_deref() {
            Some(r) if Some(r) == task.stopped_reason.as_deref() => {
                ", reason: as above".to_string()
            }
            Some(r) => format!(", reason: {r}"),
            None => String::new(),
        };
        let status = c.last_status.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "\n  container {}: {status}, {exit}{why}, health {}",
            c.name,
            c.health.as_str()
        ));
    }
    out
}

/// Where to read the log of the containers that exited, when they log to CloudWatch.
fn log_hint(task: &TaskSnapshot, td: &TaskDefinitionSnapshot, logs: &LogSource) -> String {
    if let LogSource::Command(command) = logs {
        return format!("\nnext: read its log: {}", command.replace("{task_id}", &task.id));
    }
    let exited: Vec<&str> = task
        .containers
        .iter()
        .filter(|c| c.exit_code.is_some_and(|e| e != 0))
        .map(|c| c.name.as_str())
        .collect();
    let mut out = String::new();
    for def in td.containers.iter().filter(|d| exited.contains(&d.name.as_str())) {
        if let (Some(group), Some(prefix)) = (&def.log_group, &def.log_stream_prefix) {
            out.push_str(&format!(
                "\nnext: read its log: aws logs tail {group} --log-stream-names {prefix}/{}/{}",
                def.name, task.id
            ));
        }
    }
    if out.is_empty() {
        out.push_str("\nnext: read the log of the container that exited");
    }
    out
}

fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "desired {} · running {} · pending {} · healthy {}/{}",
            self.desired,
            self.running,
            self.pending,
            self.ready.len(),
            self.desired.max(0)
        )?;
        if let Some(state) = &self.rollout_state {
            write!(f, " · deployment {state}")?;
        }
        for t in &self.new_tasks {
            write!(f, " · task {} {}", short_id(&t.id), t.last_status)?;
            let containers: Vec<String> =
                t.containers.iter().map(|c| format!("{} {}", c.name, c.health.as_str())).collect();
            if !containers.is_empty() {
                write!(f, " [{}]", containers.join(", "))?;
            }
        }
        if !self.old_left.is_empty() {
            write!(f, " · old tasks left {}", self.old_left.len())?;
        }
        Ok(())
    }
}

impl Progress {
    pub fn view(&self, elapsed: Duration) -> RollProgress {
        RollProgress {
            desired: self.desired,
            running: self.running,
            pending: self.pending,
            healthy: self.ready.len(),
            deployment_id: self.deployment_id.clone(),
            rollout_state: self.rollout_state.clone(),
            failed_tasks: self.failed_tasks,
            new_tasks: self.new_tasks.iter().map(task_view).collect(),
            old_tasks_left: self.old_left.clone(),
            waiting_for: self.waiting_for.clone(),
            roll_elapsed_s: elapsed.as_secs_f64(),
        }
    }

    /// Where things stood, for the timeout's summary.
    fn summary(&self) -> String {
        let mut out = format!(
            "where it stood: {self}\nwaiting for: {}\ndeployment {}: {}{}",
            self.waiting_for,
            self.deployment_id,
            self.rollout_state.as_deref().unwrap_or("rollout state not reported"),
            if self.failed_tasks > 0 {
                format!(", {} failed task(s)", self.failed_tasks)
            } else {
                String::new()
            }
        );
        for t in &self.new_tasks {
            out.push_str(&format!("\nnew task {}: {}", t.id, t.last_status));
            for c in &t.containers {
                out.push_str(&format!(
                    "\n  container {}: {}, health {}{}",
                    c.name,
                    c.last_status.as_deref().unwrap_or("-"),
                    c.health.as_str(),
                    c.image_digest.as_deref().map(|d| format!(", {d}")).unwrap_or_default()
                ));
            }
        }
        out
    }
}

fn task_view(t: &TaskSnapshot) -> TaskView {
    TaskView {
        id: t.id.clone(),
        arn: t.arn.clone(),
        eni_id: t.eni_id.clone(),
        last_status: t.last_status.clone(),
        health: t.health.as_str().to_string(),
        containers: t
            .containers
            .iter()
            .map(|c| ContainerView {
                name: c.name.clone(),
                image: c.image.clone(),
                image_digest: c.image_digest.clone(),
                last_status: c.last_status.clone(),
                health: c.health.as_str().to_string(),
                exit_code: c.exit_code,
            })
            .collect(),
    }
}

/// Rolls the service and waits for the new tasks; errors carry `Failure::Roll` or `Failure::Timeout`.
pub async fn roll(api: &impl EcsApi, req: &RollRequest, report: &Reporter) -> Result<RollOutcome> {
    let outcome = drive(&Counting::new(api), req, report).await?;
    report.emit(Event::RollDone(outcome.view()));
    Ok(outcome)
}

async fn drive<A: EcsApi>(
    api: &Counting<'_, A>,
    req: &RollRequest,
    report: &Reporter,
) -> Result<RollOutcome> {
    let started = Instant::now();
    let (cluster, name) = (req.cluster.as_str(), req.service.as_str());
    let deadline = started + req.timeout;

    let service = api.describe_service(cluster, name).await.context(Failure::Roll)?;
    if service.status != "ACTIVE" {
        return Err(anyhow!(
            "service `{name}` is {}, not ACTIVE: create it again or check `service` in deploy.toml",
            service.status
        )
        .context(Failure::Roll));
    }
    if service.desired <= 0 {
        return Err(anyhow!(
            "service `{name}` has desired count {}: no task would run the new image; \
             set it to 1 (aws ecs update-service --cluster {cluster} --service {name} --desired-count 1)",
            service.desired
        )
        .context(Failure::Roll));
    }
    let old_primary = primary(&service).map(|d| d.id.clone()).ok_or_else(|| {
        anyhow!("service `{name}` has no PRIMARY deployment").context(Failure::Roll)
    })?;

    // Every task of the service that exists now, running or recently stopped, is an old one.
    let mut tracker = Tracker::new(service_group(name));
    let mut listed =
        list_all_tasks(api, cluster, name, DesiredStatus::Running).await.context(Failure::Roll)?;
    listed.extend(
        list_all_tasks(api, cluster, name, DesiredStatus::Stopped).await.context(Failure::Roll)?,
    );
    tracker.record(describe_all_tasks(api, cluster, &listed).await.context(Failure::Roll)?);
    let before: BTreeSet<String> = tracker.known.keys().cloned().collect();
    let running_before: Vec<TaskSnapshot> =
        tracker.known.values().filter(|t| t.desired_status == "RUNNING").cloned().collect();

    let deployment_id = match req.strategy {
        RollStrategy::ForceNewDeployment => {
            let updated = api.force_new_deployment(cluster, name).await.context(Failure::Roll)?;
            let new_primary = primary(&updated).map(|d| d.id.clone()).unwrap_or_default();
            if new_primary.is_empty() || new_primary == old_primary {
                return Err(anyhow!(
                    "UpdateService with forceNewDeployment started no new deployment for `{name}` \
                     (primary still {old_primary}): run the deploy again"
                )
                .context(Failure::Roll));
            }
            report.info(format!(
                "deployment {new_primary} started (forceNewDeployment): ECS starts the new task(s) \
                 before it stops the old one(s)"
            ));
            new_primary
        }
        RollStrategy::StopTasks => {
            report.warn(format!(
                "stop-tasks: `{name}` serves nothing from when its task stops until the replacement \
                 is healthy (downtime); `--strategy force-new-deployment` avoids it"
            ));
            for task in &running_before {
                api.stop_task(cluster, &task.arn, STOP_REASON).await.context(Failure::Roll)?;
                report.info(format!("stopped task {} ({})", task.id, task.last_status));
            }
            if running_before.is_empty() {
                report.info(format!("`{name}` has no running task: waiting for ECS to start one"));
            }
            old_primary
        }
    };

    let mut watch =
        Watch::new(&service, req.strategy, deployment_id, req.expected_digests.clone(), before)
            .with_logs(req.logs.clone());
    let mut poller = Poller::new(req.poll);
    let mut polls = 0u32;
    let mut poll_errors = 0u32;
    let mut last_progress: Option<Progress> = None;
    let mut first_task_after = None;
    let mut healthy_after = None;

    loop {
        if crate::interrupt::interrupted() {
            return Err(anyhow!(
                "interrupted (Ctrl-C) while waiting for deployment {}: ECS goes on without us; \
                 `aws ecs describe-services --cluster {cluster} --services {name}` shows how it ends",
                watch.deployment_id()
            )
            .context(Failure::Roll));
        }
        polls += 1;
        let changed = match tracker.observe(api, req, &watch).await {
            Err(e) => {
                poll_errors += 1;
                if poll_errors >= MAX_POLL_ERRORS {
                    return Err(e
                        .context(format!(
                            "polling ECS failed {poll_errors} times in a row; the roll itself may \
                             still finish: `aws ecs describe-services --cluster {cluster} --services \
                             {name}` shows it"
                        ))
                        .context(Failure::Roll));
                }
                report.warn(format!("polling ECS failed, retrying: {e:#}"));
                false
            }
            Ok(seen) => {
                poll_errors = 0;
                for event in watch.take_new_events(&seen.service) {
                    report.info(format!("ecs: {}", event.message));
                }
                let service_tasks = tracker.known.values().filter(|t| watch.is_service_task(t));
                let elapsed = started.elapsed();
                match watch.judge(&seen.service, service_tasks, &seen.task_definition) {
                    Verdict::Failed(why) => return Err(anyhow!(why).context(Failure::Roll)),
                    Verdict::Done(progress) => {
                        let tasks: Vec<TaskSnapshot> = progress
                            .new_tasks
                            .iter()
                            .filter(|t| progress.ready.contains(&t.id))
                            .cloned()
                            .collect();
                        report_progress(report, &progress, elapsed);
                        report.info(format!(
                            "roll done in {}: {}",
                            human_duration(elapsed),
                            tasks.iter().map(task_line).collect::<Vec<_>>().join("; ")
                        ));
                        return Ok(RollOutcome {
                            strategy: req.strategy,
                            deployment_id: watch.deployment_id().to_string(),
                            tasks,
                            api_calls: api.calls(),
                            polls,
                            duration: elapsed,
                            first_task_after: Some(first_task_after.unwrap_or(elapsed)),
                            healthy_after: Some(healthy_after.unwrap_or(elapsed)),
                        });
                    }
                    Verdict::Waiting(progress) => {
                        if !progress.new_tasks.is_empty() {
                            first_task_after.get_or_insert(elapsed);
                        }
                        if progress.ready.len() >= usize::try_from(progress.desired).unwrap_or(0) {
                            healthy_after.get_or_insert(elapsed);
                        }
                        report_progress(report, &progress, elapsed);
                        last_progress = Some(progress);
                    }
                }
                seen.changed
            }
        };
        let now = Instant::now();
        if now >= deadline {
            let summary = last_progress
                .as_ref()
                .map_or("no observation succeeded".to_string(), Progress::summary);
            return Err(anyhow!(
                "the roll of `{name}` did not finish within {}\n{summary}\n\
                 ECS keeps going on its own: `aws ecs describe-services --cluster {cluster} \
                 --services {name}` shows how it ends; if the service needs longer, raise \
                 `timeouts.roll` in deploy.toml",
                human_duration(req.timeout)
            )
            .context(Failure::Timeout));
        }
        let wait = poller.next_wait(changed).min(deadline - now);
        tokio::time::sleep(wait).await;
    }
}

/// What the driver has seen of the cluster's tasks across polls.
struct Tracker {
    group: String,
    /// The service's tasks by ARN, as last described.
    known: BTreeMap<String, TaskSnapshot>,
    /// Tasks of other services (ListTasks' service filter is not trusted): never described again.
    ignored: HashSet<String>,
    task_definitions: HashMap<String, TaskDefinitionSnapshot>,
    last_service: Option<ServiceSnapshot>,
    last_running_list: Option<Instant>,
}

/// One poll's result.
struct Seen {
    service: ServiceSnapshot,
    task_definition: TaskDefinitionSnapshot,
    /// The service or one of its tasks changed since the previous poll.
    changed: bool,
}

impl Tracker {
    fn new(group: String) -> Tracker {
        Tracker {
            group,
            known: BTreeMap::new(),
            ignored: HashSet::new(),
            task_definitions: HashMap::new(),
            last_service: None,
            last_running_list: None,
        }
    }

    /// Files described tasks; returns whether any of the service's changed.
    fn record(&mut self, described: Vec<TaskSnapshot>) -> bool {
        let mut changed = false;
        for task in described {
            if task.group.as_deref() != Some(self.group.as_str()) {
                self.ignored.insert(task.arn);
            } else if self.known.get(&task.arn) != Some(&task) {
                changed = true;
                self.known.insert(task.arn.clone(), task);
            }
        }
        changed
    }

    /// One poll: the service, the tasks worth describing, the deployment's task definition.
    async fn observe(
        &mut self,
        api: &impl EcsApi,
        req: &RollRequest,
        watch: &Watch,
    ) -> Result<Seen> {
        let (cluster, name) = (req.cluster.as_str(), req.service.as_str());
        let service = api.describe_service(cluster, name).await?;
        let service_changed = self.last_service.as_ref() != Some(&service);
        let live_new = self
            .known
            .values()
            .filter(|t| watch.is_new_task(t) && t.desired_status != "STOPPED")
            .count();
        let want = usize::try_from(service.desired).unwrap_or(0);
        let since_list = self.last_running_list.map(|at| at.elapsed());
        let plan = listing_plan(service_changed, live_new, want, since_list);
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        if plan.running {
            candidates.extend(list_all_tasks(api, cluster, name, DesiredStatus::Running).await?);
            self.last_running_list = Some(Instant::now());
        }
        if plan.stopped {
            candidates.extend(list_all_tasks(api, cluster, name, DesiredStatus::Stopped).await?);
        }
        // The service's tasks that have not stopped are followed whether listed or not.
        candidates.extend(
            self.known.values().filter(|t| t.last_status != "STOPPED").map(|t| t.arn.clone()),
        );
        let to_describe: Vec<String> = candidates
            .into_iter()
            .filter(|arn| !self.ignored.contains(arn))
            .filter(|arn| self.known.get(arn).is_none_or(|t| t.last_status != "STOPPED"))
            .collect();
        let described = describe_all_tasks(api, cluster, &to_describe).await?;
        let returned: HashSet<String> = described.iter().map(|t| t.arn.clone()).collect();
        let mut changed = self.record(described) || service_changed;
        // ECS forgets tasks a while after they stop: a followed task it no longer returns is gone.
        for arn in to_describe.iter().filter(|a| !returned.contains(*a)) {
            changed |= self.known.remove(arn).is_some();
        }
        let td_arn = service
            .deployments
            .iter()
            .find(|d| d.id == watch.deployment_id())
            .and_then(|d| d.task_definition.clone())
            .or_else(|| service.task_definition.clone())
            .ok_or_else(|| anyhow!("service `{name}` names no task definition"))?;
        let task_definition = match self.task_definitions.get(&td_arn) {
            Some(td) => td.clone(),
            None => {
                let td = api.describe_task_definition(&td_arn).await?;
                self.task_definitions.insert(td_arn, td.clone());
                td
            }
        };
        self.last_service = Some(service.clone());
        Ok(Seen { service, task_definition, changed })
    }
}

/// Which task lists one poll fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingPlan {
    pub running: bool,
    pub stopped: bool,
}

/// Lists are needed to find new tasks; once they are found, DescribeTasks follows them. A
/// changed service (counts, deployments, a new event) may mean a task started or stopped
/// unseen between two polls, so it triggers both lists.
pub fn listing_plan(
    service_changed: bool,
    live_new: usize,
    want: usize,
    since_running_list: Option<Duration>,
) -> ListingPlan {
    let stale = since_running_list.is_none_or(|d| d >= RELIST_EVERY);
    ListingPlan { running: service_changed || live_new < want || stale, stopped: service_changed }
}

fn report_progress(report: &Reporter, progress: &Progress, elapsed: Duration) {
    let tick = elapsed.as_secs() / PROGRESS_TICK * PROGRESS_TICK;
    let detail = Detail::Roll(progress.view(elapsed));
    report.progress("roll", format!("roll {}: {progress}", clock(tick)), Some(detail));
}

/// `0s`, `45s`, `1m05s`.
fn clock(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

fn task_line(t: &TaskSnapshot) -> String {
    let containers: Vec<String> = t
        .containers
        .iter()
        .map(|c| match &c.image_digest {
            Some(d) => format!("{} {}", c.name, d),
            None => c.name.clone(),
        })
        .collect();
    format!("task {} (eni {}) {}", t.id, t.eni_id.as_deref().unwrap_or("-"), containers.join(", "))
}

#[cfg(test)]
mod tests;
