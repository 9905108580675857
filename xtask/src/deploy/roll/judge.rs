//! The roll's state machine: [`Watch::judge`] is pure over observed snapshots
//! (DescribeServices, DescribeTasks, the task definition) and says whether the roll waits, is
//! done or failed, and why, in words a user can act on.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::Duration;

use super::evidence::{self, Cause};
use super::EVENTS_QUOTED;
use crate::aws::ecs::{
    DeploymentSnapshot, HealthStatus, ServiceEvent, ServiceSnapshot, TaskDefinitionSnapshot,
    TaskSnapshot,
};
use crate::deploy::target::RollStrategy;
use crate::event::{ContainerView, RollProgress, TaskView};

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
    /// How long the deployment has been waited for without DescribeServices showing it;
    /// `None` once it has shown.
    unseen_for: Option<Duration>,
    /// The flags that select the target, for the commands a failure suggests (`--sandbox`).
    cli_flags: Vec<String>,
}

/// How long a deployment UpdateService just started may be missing from DescribeServices
/// before the roll takes it as gone: ECS's results are eventually consistent.
pub const DEPLOYMENT_GRACE: Duration = Duration::from_secs(30);

/// One judgement of the observed state.
#[derive(Debug, Clone)]
pub enum RollVerdict {
    Waiting(Progress),
    Done(Progress),
    /// A new task stopped, the deployment failed or was replaced, or a task runs the wrong image.
    Failed(RollFailure),
}

/// Why a roll failed, with the stopped task whose logs complete the evidence.
#[derive(Debug, Clone)]
pub struct RollFailure {
    /// What failed, its cause and the next step, then the service events since the roll began.
    pub explanation: String,
    /// The new task that stopped, when one did.
    pub stopped: Option<Box<Stopped>>,
}

/// A new task that stopped, with the definition it ran and why it stopped.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub task: TaskSnapshot,
    pub definition: TaskDefinitionSnapshot,
    pub cause: Cause,
}

impl RollFailure {
    fn plain(explanation: String) -> RollFailure {
        RollFailure { explanation, stopped: None }
    }
}

impl fmt::Display for RollFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
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
        let shown = service.deployments.iter().any(|d| d.id == deployment_id);
        Watch {
            unseen_for: (!shown).then_some(Duration::ZERO),
            strategy,
            group: service_group(&service.name),
            deployment_id,
            expected_digests,
            before,
            shown_events: old_events.clone(),
            old_events,
            cli_flags: Vec::new(),
        }
    }

    /// The target's flags, which the commands a failure suggests carry.
    pub fn with_cli_flags(self, cli_flags: Vec<String>) -> Watch {
        Watch { cli_flags, ..self }
    }

    pub fn deployment_id(&self) -> &str {
        &self.deployment_id
    }

    /// Notes a DescribeServices answer `since_start` after the deployment started: from the
    /// first answer that shows it, a missing deployment is gone, not pending.
    pub fn note_service(&mut self, service: &ServiceSnapshot, since_start: Duration) {
        if self.unseen_for.is_some() {
            let shown = service.deployments.iter().any(|d| d.id == self.deployment_id);
            self.unseen_for = (!shown).then_some(since_start);
        }
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
    ) -> RollVerdict {
        let recent = self.recent_events(service);
        let tasks: Vec<&TaskSnapshot> =
            tasks.into_iter().filter(|t| self.is_service_task(t)).collect();
        let mut new_tasks: Vec<&TaskSnapshot> = Vec::new();
        let mut old_left = Vec::new();
        for &task in &tasks {
            if self.is_new_task(task) {
                new_tasks.push(task);
            } else if task.last_status != "STOPPED" {
                old_left.push(task.id.clone());
            }
        }
        new_tasks.sort_by(|a, b| (a.created_at, &a.arn).cmp(&(b.created_at, &b.arn)));

        let Some(deployment) = service.deployments.iter().find(|d| d.id == self.deployment_id)
        else {
            let primary = primary(service).map_or("none".to_string(), |p| p.id.clone());
            match self.unseen_for {
                Some(unseen) if unseen < DEPLOYMENT_GRACE => {
                    return RollVerdict::Waiting(self.unseen_progress(service, &tasks))
                }
                Some(_) => {
                    return self.deployment_failed(
                        format!(
                            "deployment {} that the roll started has not shown in \
                             DescribeServices within {}s (primary: {primary}): ECS may not have \
                             kept it, or another deploy replaced it; check the service's \
                             deployments (`aws ecs describe-services`) and run the deploy again",
                            self.deployment_id,
                            DEPLOYMENT_GRACE.as_secs()
                        ),
                        None,
                        &new_tasks,
                        td,
                        &recent,
                    )
                }
                None => {}
            }
            return self.deployment_failed(
                format!(
                    "deployment {} is gone from the service (primary now: {primary}): \
                     ECS rolled it back or another deploy replaced it",
                    self.deployment_id
                ),
                None,
                &new_tasks,
                td,
                &recent,
            );
        };
        if deployment.rollout_state.as_deref() == Some("FAILED") {
            return self.deployment_failed(
                format!(
                    "deployment {} failed: {}{}",
                    deployment.id,
                    deployment.rollout_state_reason.as_deref().unwrap_or("no reason given"),
                    failed_tasks_note(deployment),
                ),
                evidence::deployment_cause(deployment),
                &new_tasks,
                td,
                &recent,
            );
        }
        if deployment.status != "PRIMARY" {
            let primary = primary(service).map_or("none".to_string(), |p| p.id.clone());
            return self.deployment_failed(
                format!(
                    "deployment {} is no longer the primary (it is {}; primary now: {primary}): \
                     ECS rolled it back or another deploy replaced it{}",
                    deployment.id,
                    deployment.status,
                    rollout_note(deployment),
                ),
                None,
                &new_tasks,
                td,
                &recent,
            );
        }

        // One stopped task fails a one-task roll at once. With more tasks, ECS replaces a task
        // that stopped (tasks starting together can trip on each other: two db:migrate at once)
        // until its circuit breaker's threshold; the roll gives up there too.
        let want_tasks = usize::try_from(service.desired).unwrap_or(0);
        let mut stopped = Vec::new();
        for task in &new_tasks {
            match self.task_failure(task, deployment, td) {
                Some(TaskFailure::Stopped(why, task)) => stopped.push((why, task)),
                Some(TaskFailure::Wrong(why)) => {
                    return RollVerdict::Failed(RollFailure::plain(format!("{why}{recent}")))
                }
                None => {}
            }
        }
        let count = stopped.len();
        if let Some((first, task)) = stopped.into_iter().next() {
            let threshold = breaker_threshold(want_tasks);
            if want_tasks <= 1 || count >= threshold {
                let more = match count {
                    1 => String::new(),
                    n => format!("\n({n} new tasks stopped, the limit of {threshold} for {want_tasks} tasks)"),
                };
                return RollVerdict::Failed(RollFailure {
                    explanation: format!("{first}{more}{recent}"),
                    stopped: Some(task),
                });
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
            RollVerdict::Done(progress)
        } else {
            RollVerdict::Waiting(progress)
        }
    }

    /// Where a roll stands whose deployment DescribeServices does not show yet.
    fn unseen_progress(&self, service: &ServiceSnapshot, tasks: &[&TaskSnapshot]) -> Progress {
        Progress {
            desired: service.desired,
            running: service.running,
            pending: service.pending,
            deployment_id: self.deployment_id.clone(),
            rollout_state: None,
            failed_tasks: 0,
            new_tasks: Vec::new(),
            ready: Vec::new(),
            old_left: tasks
                .iter()
                .filter(|t| !self.is_new_task(t) && t.last_status != "STOPPED")
                .map(|t| t.id.clone())
                .collect(),
            waiting_for: format!("deployment {} to show in DescribeServices", self.deployment_id),
        }
    }

    /// Why a new task means the roll failed, if it does.
    fn task_failure(
        &self,
        task: &TaskSnapshot,
        deployment: &DeploymentSnapshot,
        td: &TaskDefinitionSnapshot,
    ) -> Option<TaskFailure> {
        let pull_failed = is_pull_error(task.stopped_reason.as_deref())
            || task.containers.iter().any(|c| is_pull_error(c.reason.as_deref()));
        let stopping = task.desired_status == "STOPPED";
        let container_ended = task
            .containers
            .iter()
            .any(|c| c.exit_code.is_some() || c.last_status.as_deref() == Some("STOPPED"));
        if pull_failed || (stopping && (task.last_status == "STOPPED" || container_ended)) {
            let (text, stopped) = self.stopped_evidence(task, td, &deployment_note(deployment));
            return Some(TaskFailure::Stopped(text, Box::new(stopped)));
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
                return Some(TaskFailure::Wrong(format!(
                    "new task {} runs {} for container `{}`, not the digest just pushed ({pushed}){hint}",
                    task.id, runs, c.name
                )));
            }
        }
        None
    }

    /// A stopped task's description, then the deployment's note, the cause and the next step.
    fn stopped_evidence(
        &self,
        task: &TaskSnapshot,
        td: &TaskDefinitionSnapshot,
        deployment_note: &str,
    ) -> (String, Stopped) {
        let cause = evidence::classify(task, td);
        let text = format!(
            "{}{deployment_note}{}",
            describe_stopped(task),
            evidence::explain(&cause, task, td, &self.cli_flags)
        );
        (text, Stopped { task: task.clone(), definition: td.clone(), cause })
    }

    /// The deployment failed or was replaced: `headline`, its cause, and the evidence of the
    /// last new task that stopped, if one did.
    fn deployment_failed(
        &self,
        headline: String,
        cause: Option<String>,
        new_tasks: &[&TaskSnapshot],
        td: &TaskDefinitionSnapshot,
        recent: &str,
    ) -> RollVerdict {
        let last_stopped = new_tasks
            .iter()
            .filter(|t| t.desired_status == "STOPPED" && t.last_status == "STOPPED")
            .max_by_key(|t| (t.stopped_at, t.created_at));
        let mut text = headline;
        if let Some(cause) = cause {
            text.push_str(&format!("\ncause: {cause}"));
        }
        let stopped = match last_stopped {
            Some(task) => {
                let (evidence, stopped) = self.stopped_evidence(task, td, "");
                text.push_str(&format!("\nthe last new task that stopped:\n{evidence}"));
                Some(Box::new(stopped))
            }
            None => {
                let logs: Vec<&str> = std::iter::once("cargo xtask logs")
                    .chain(self.cli_flags.iter().map(String::as_str))
                    .collect();
                text.push_str(&format!(
                    "\nnext: the service events below say why its tasks failed; `{}` shows the \
                     newest task's log",
                    logs.join(" ")
                ));
                None
            }
        };
        RollVerdict::Failed(RollFailure { explanation: format!("{text}{recent}"), stopped })
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

/// How a new task fails a roll.
enum TaskFailure {
    /// It stopped (or could not start): ECS may replace it.
    Stopped(String, Box<Stopped>),
    /// It runs what was not pushed: no replacement changes that.
    Wrong(String),
}

/// How many tasks of a deployment may fail before ECS's circuit breaker fails it: half the
/// desired count, at least 3 and at most 200 (the ECS developer guide).
pub(super) fn breaker_threshold(desired: usize) -> usize {
    desired.div_ceil(2).clamp(3, 200)
}

/// `service:<name>`, the group ECS gives a service's tasks.
pub fn service_group(service: &str) -> String {
    format!("service:{service}")
}

pub(super) fn primary(service: &ServiceSnapshot) -> Option<&DeploymentSnapshot> {
    service.deployments.iter().find(|d| d.status == "PRIMARY")
}

pub(super) fn is_pull_error(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.contains("CannotPullContainerError"))
}

/// Task definitions compare by `family:revision`: moto may give a service's one without the ARN prefix.
pub(super) fn same_task_definition(task: Option<&str>, deployment: Option<&str>) -> bool {
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
pub(super) fn task_ready(task: &TaskSnapshot, td: &TaskDefinitionSnapshot) -> bool {
    task.last_status == "RUNNING"
        && task.desired_status == "RUNNING"
        && td.essential().all(|def| match task.containers.iter().find(|c| c.name == def.name) {
            Some(c) if def.has_health_check => c.health == HealthStatus::Healthy,
            Some(c) => c.last_status.as_deref() == Some("RUNNING"),
            None => task.health == HealthStatus::Healthy,
        })
}

pub(super) fn waiting_for(
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
                            .map_or(t.health != HealthStatus::Healthy, |c| {
                                def.has_health_check && c.health != HealthStatus::Healthy
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

pub(super) fn rollout_note(d: &DeploymentSnapshot) -> String {
    match (&d.rollout_state, &d.rollout_state_reason) {
        (Some(state), Some(reason)) => format!("\ndeployment {}: {state}: {reason}", d.id),
        (Some(state), None) => format!("\ndeployment {}: {state}", d.id),
        _ => String::new(),
    }
}

/// The deployment's failure and failed-task count, when there is either.
pub(super) fn deployment_note(d: &DeploymentSnapshot) -> String {
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

pub(super) fn failed_tasks_note(d: &DeploymentSnapshot) -> String {
    if d.failed_tasks > 0 {
        format!(" ({} failed task(s))", d.failed_tasks)
    } else {
        String::new()
    }
}

/// `new task 0f6e4a1b stopped (EssentialContainerExited): reason`, then each container.
pub(super) fn describe_stopped(task: &TaskSnapshot) -> String {
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

pub(super) fn short_id(id: &str) -> &str {
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
    pub(super) fn summary(&self) -> String {
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

pub(super) fn task_view(t: &TaskSnapshot) -> TaskView {
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
