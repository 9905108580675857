//! The sandbox's ECS service scheduler: keeps every service of the cluster at its desired count
//! as ECS does, from what moto records and what the runner (`fargate`) observes.
//!
//! [`Scheduler::decide`] is pure: given the services, moto's tasks and the runner's
//! observations, it returns the [`Action`]s of one tick and remembers what it must (the stops
//! in flight, failure streaks, whether a service was steady). [`driver`] polls moto and the
//! runner, executes the actions and runs inside `cargo xtask sandbox serve`.
//!
//! What it does, as ECS's service scheduler:
//! - starts the tasks the PRIMARY deployment lacks, within `maximumPercent` (tasks not yet
//!   STOPPED count, so a replacement may start while the task it replaces is stopping);
//! - records each observation in moto when it changed (lastStatus, health, containers);
//! - stops tasks whose desired status is STOPPED (StopTask), tasks whose observation carries a
//!   verdict (an essential container exited, a pull failed, ...) or whose health checks failed,
//!   counting those of an IN_PROGRESS deployment in its `failedTasks`;
//! - stops the older deployments' tasks while `minimumHealthyPercent` allows, drops those
//!   deployments once their tasks are stopped and the PRIMARY runs its desired count healthy,
//!   then marks it COMPLETED;
//! - circuit breaker: after max(3, min(200, ⌈desired/2⌉)) failed tasks the deployment turns
//!   FAILED and launches nothing more (as the ECS API reference says); with rollback, the last
//!   COMPLETED deployment whose tasks still run becomes PRIMARY again, so no task pulls the
//!   broken image again. Without the breaker, failing starts are retried with a backoff.
//! - service events worded as ECS words them.

pub mod driver;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::admin::{ContainerUpdate, Deployment, DeploymentUpdate, Service, Task, TaskUpdate};
use super::fargate::definition::TaskDefinition;
use super::fargate::observe::{Health, Status, StopCode, TaskObservation, TaskStop};

/// The circuit breaker's threshold of failed tasks: half the desired count, within these.
const BREAKER_MIN: usize = 3;
const BREAKER_MAX: usize = 200;
/// Consecutive failures of a deployment after which its starts are retried with a backoff.
const BACKOFF_AFTER: u32 = 3;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

pub const BREAKER_REASON: &str = "ECS deployment circuit breaker: tasks failed to start.";
pub const UNHEALTHY_REASON: &str = "Task failed container health checks";
pub const USER_STOP_REASON: &str = "Task stopped by user";

/// What the scheduler looks at in one tick.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    pub services: &'a [Service],
    /// moto's tasks of the cluster, stopped ones included.
    pub tasks: &'a [Task],
    /// The runner's observation of every task it knows, by task id.
    pub observations: &'a BTreeMap<String, TaskObservation>,
    /// Tasks the driver could not hand to the runner, with the stoppedReason to give them.
    pub start_errors: &'a BTreeMap<String, String>,
    /// Task definitions by ARN (those the driver could fetch).
    pub definitions: &'a BTreeMap<String, TaskDefinition>,
    pub now: Instant,
    /// Wall-clock now (ISO 8601), for the times recorded in moto.
    pub clock: &'a str,
}

/// One thing to do, in the order `decide` returns them.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Record in moto what the runner observed.
    Record {
        task_id: String,
        update: TaskUpdate,
    },
    /// Record `update` in moto at once, then stop the task's containers and record it STOPPED.
    Stop {
        task_id: String,
        cause: TaskStop,
        update: TaskUpdate,
    },
    /// Remove the containers of a task moto does not know, or knows as stopped.
    RemoveOrphan {
        task_id: String,
    },
    UpdateDeployments {
        service: String,
        updates: Vec<DeploymentUpdate>,
    },
    Event {
        service: String,
        message: String,
    },
    /// Start `count` tasks of the deployment; the driver then adds the "has started" event.
    Start {
        service: String,
        deployment: String,
        count: usize,
    },
}

/// What the scheduler remembers between ticks; `Scheduler::default()` is a fresh start, which
/// finds the running tasks again through moto and the runner's labels.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// Tasks whose stop runs in the driver (their observations are stale until it ends).
    stopping: BTreeSet<String>,
    /// Consecutive failed tasks, by deployment id.
    streaks: BTreeMap<String, Streak>,
    /// Whether each service (by ARN) was steady at the last tick.
    steady: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Copy)]
struct Streak {
    failures: u32,
    last: Instant,
    /// The "unable to consistently start tasks" event was added.
    told: bool,
}

/// The service's `deploymentConfiguration`, with ECS's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeploymentConfig {
    pub minimum_healthy_percent: usize,
    pub maximum_percent: usize,
    pub breaker: bool,
    pub rollback: bool,
}

impl DeploymentConfig {
    pub fn of(value: &Value) -> DeploymentConfig {
        let percent = |key: &str, default: usize| {
            value[key].as_u64().and_then(|p| usize::try_from(p).ok()).unwrap_or(default)
        };
        let breaker = &value["deploymentCircuitBreaker"];
        DeploymentConfig {
            minimum_healthy_percent: percent("minimumHealthyPercent", 100),
            maximum_percent: percent("maximumPercent", 200),
            breaker: breaker["enable"].as_bool().unwrap_or(false),
            rollback: breaker["rollback"].as_bool().unwrap_or(false),
        }
    }
}

/// How many failed tasks fail a deployment: half the desired count, at least 3, at most 200.
pub fn breaker_threshold(desired: usize) -> usize {
    desired.div_ceil(2).clamp(BREAKER_MIN, BREAKER_MAX)
}

/// The wait before the next start after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    if failures < BACKOFF_AFTER {
        return Duration::ZERO;
    }
    let doublings = (failures - BACKOFF_AFTER).min(16);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

pub fn started_event(service: &str, task_ids: &[String]) -> String {
    format!("(service {service}) has started {} tasks: {}.", task_ids.len(), task_list(task_ids))
}

pub fn stopped_event(service: &str, task_ids: &[String]) -> String {
    format!(
        "(service {service}) has stopped {} running tasks: {}.",
        task_ids.len(),
        task_list(task_ids)
    )
}

fn task_list(task_ids: &[String]) -> String {
    task_ids.iter().map(|id| format!("(task {id})")).collect::<Vec<_>>().join(" ")
}

/// The stoppedReason of the tasks a deployment replaces.
pub fn scaling_reason(deployment: &str) -> String {
    format!("Scaling activity initiated by (deployment {deployment})")
}

/// A task of the service that is not stopping, as this tick sees it.
#[derive(Debug)]
struct Live<'t> {
    task: &'t Task,
    running: bool,
    healthy: bool,
}

impl Live<'_> {
    fn deployment(&self) -> &str {
        &self.task.started_by
    }
}

impl Scheduler {
    /// The actions of one tick.
    pub fn decide(&mut self, w: &World) -> Vec<Action> {
        let mut out = Vec::new();
        for task_id in w.observations.keys() {
            let known = w.tasks.iter().any(|t| t.task_id == *task_id && t.last_status != "STOPPED");
            if !known && self.stopping.insert(task_id.clone()) {
                out.push(Action::RemoveOrphan { task_id: task_id.clone() });
            }
        }
        for service in w.services {
            self.service(w, service, &mut out);
        }
        let deployments: BTreeSet<&str> =
            w.services.iter().flat_map(|s| &s.deployments).map(|d| d.id.as_str()).collect();
        self.streaks.retain(|id, _| deployments.contains(id.as_str()));
        self.steady.retain(|arn, _| w.services.iter().any(|s| s.service_arn == *arn));
        out
    }

    /// The driver finished a stop (or gave up on it: moto still wants the task stopped, so the
    /// next tick stops it again).
    pub fn stop_finished(&mut self, task_id: &str) {
        self.stopping.remove(task_id);
    }

    fn stop(&mut self, out: &mut Vec<Action>, task_id: &str, cause: TaskStop, update: TaskUpdate) {
        self.stopping.insert(task_id.to_string());
        out.push(Action::Stop { task_id: task_id.to_string(), cause, update });
    }

    fn fail(&mut self, deployment: &str, now: Instant) {
        let streak = self.streaks.entry(deployment.to_string()).or_insert(Streak {
            failures: 0,
            last: now,
            told: false,
        });
        streak.failures += 1;
        streak.last = now;
    }

    fn service(&mut self, w: &World, svc: &Service, out: &mut Vec<Action>) {
        let Some(primary) = svc.deployments.iter().find(|d| d.status == "PRIMARY") else {
            return;
        };
        let desired = if svc.status == "ACTIVE" {
            usize::try_from(svc.desired_count).unwrap_or(0)
        } else {
            0
        };
        let mut t = ServiceTick {
            svc,
            name: &svc.service_name,
            primary,
            config: DeploymentConfig::of(&svc.deployment_configuration),
            desired,
            events: Vec::new(),
            updates: Vec::new(),
        };
        let group = format!("service:{}", svc.service_name);
        let tasks: Vec<&Task> =
            w.tasks.iter().filter(|t| t.group == group && t.last_status != "STOPPED").collect();
        // Every task not STOPPED in moto holds its place against maximumPercent.
        let occupying = tasks.len();

        let (live, failed) = self.judge(w, &mut t, &tasks, out);
        t.count_failures(&failed);
        if t.breaker_trips(&failed) {
            t.fail_primary(&live);
            // The next tick works from the deployments as they are now.
            t.finish(out);
            return;
        }
        let stopped = self.scale_down(w, &mut t, &live, out);
        let primary_live = live.iter().filter(|l| l.deployment() == primary.id).count();
        let primary_healthy =
            live.iter().filter(|l| l.deployment() == primary.id && l.healthy).count();
        let old_left = tasks.iter().filter(|task| task.started_by != primary.id).count();
        let settled =
            primary.rollout_state != "FAILED" && primary_healthy >= desired && old_left == 0;
        let completed = settled && t.complete();
        let start = self.starts(w, &mut t, primary_live, occupying);

        let steady = settled
            && (completed || primary.rollout_state == "COMPLETED")
            && failed.is_empty()
            && stopped == 0
            && start == 0
            && occupying == desired
            && primary_healthy == desired;
        let was = self.steady.insert(svc.service_arn.clone(), steady);
        if steady && (was == Some(false) || (was.is_none() && completed)) {
            t.events.push(format!("(service {}) has reached a steady state.", t.name));
        }
        t.finish(out);
        if start > 0 {
            out.push(Action::Start {
                service: svc.service_name.clone(),
                deployment: primary.id.clone(),
                count: start,
            });
        }
    }

    /// Each task's fate this tick: stopped (asked, failed, lost), or live and recorded; with
    /// the failed tasks by deployment.
    fn judge<'w>(
        &mut self,
        w: &World<'w>,
        t: &mut ServiceTick,
        tasks: &[&'w Task],
        out: &mut Vec<Action>,
    ) -> (Vec<Live<'w>>, BTreeMap<String, i32>) {
        let mut failed: BTreeMap<String, i32> = BTreeMap::new();
        let mut live = Vec::new();
        for &task in tasks {
            let id = task.task_id.as_str();
            if self.stopping.contains(id) {
                continue;
            }
            let observation = w.observations.get(id);
            if task.desired_status == "STOPPED" {
                // StopTask (or a stop decided before the scheduler restarted): moto has the reason.
                let cause = TaskStop::new(
                    task.stop_code
                        .as_deref()
                        .and_then(stop_code)
                        .unwrap_or(StopCode::UserInitiated),
                    task.stopped_reason.clone().unwrap_or_else(|| USER_STOP_REASON.to_string()),
                );
                let update = stopping_update(task, observation, None);
                self.stop(out, id, cause, update);
                continue;
            }
            let (cause, counted) = match verdict(w, task, observation) {
                Verdict::Fine(o) => {
                    if let Some(update) = observed_update(task, o, w.clock) {
                        out.push(Action::Record { task_id: id.to_string(), update });
                    }
                    let running = o.last_status == Status::Running;
                    let checked =
                        w.definitions.get(&task.task_definition_arn).is_none_or(checks_health);
                    let healthy = running
                        && match o.health_status {
                            Health::Healthy => true,
                            Health::Unknown => !checked,
                            Health::Unhealthy => false,
                        };
                    if healthy {
                        self.streaks.remove(&task.started_by);
                    }
                    live.push(Live { task, running, healthy });
                    continue;
                }
                Verdict::Unhealthy => {
                    t.events.push(format!(
                        "(service {}) (task {id}) failed container health checks.",
                        t.name
                    ));
                    (TaskStop::new(StopCode::ServiceSchedulerInitiated, UNHEALTHY_REASON), true)
                }
                Verdict::Failed(cause) => (cause, true),
                Verdict::Lost(cause) => (cause, false),
            };
            if counted {
                *failed.entry(task.started_by.clone()).or_default() += 1;
                self.fail(&task.started_by, w.now);
            }
            let update = stopping_update(task, observation, Some(&cause));
            self.stop(out, id, cause, update);
        }
        (live, failed)
    }

    /// Stops the older deployments' tasks (those not healthy at once, healthy ones while
    /// `minimumHealthyPercent` holds) and the PRIMARY's beyond the desired count (the least
    /// ready and newest first); returns how many.
    fn scale_down(
        &mut self,
        w: &World,
        t: &mut ServiceTick,
        live: &[Live],
        out: &mut Vec<Action>,
    ) -> usize {
        let primary = &t.primary.id;
        let mut to_stop: Vec<&Task> = Vec::new();
        let min_healthy = (t.desired * t.config.minimum_healthy_percent).div_ceil(100);
        let mut healthy = live.iter().filter(|l| l.healthy).count();
        let mut old: Vec<&Live> = live.iter().filter(|l| l.deployment() != primary).collect();
        old.sort_by_key(|l| (l.healthy, l.running, l.task.created_at.clone()));
        for l in old {
            if !l.healthy {
                to_stop.push(l.task);
            } else if healthy > min_healthy {
                healthy -= 1;
                to_stop.push(l.task);
            }
        }
        let mut current: Vec<&Live> = live.iter().filter(|l| l.deployment() == primary).collect();
        let extra = current.len().saturating_sub(t.desired);
        current.sort_by_key(|l| (l.healthy, l.running, Reverse(l.task.created_at.clone())));
        to_stop.extend(current.into_iter().take(extra).map(|l| l.task));
        if to_stop.is_empty() {
            return 0;
        }
        let reason = scaling_reason(primary);
        let ids: Vec<String> = to_stop.iter().map(|task| task.task_id.clone()).collect();
        for task in &to_stop {
            let cause = TaskStop::new(StopCode::ServiceSchedulerInitiated, reason.clone());
            let update = stopping_update(task, w.observations.get(&task.task_id), Some(&cause));
            self.stop(out, &task.task_id, cause, update);
        }
        t.events.push(stopped_event(t.name, &ids));
        to_stop.len()
    }

    /// How many tasks the PRIMARY may start now: what it lacks, within `maximumPercent`, none
    /// while it is FAILED or backs off after failing tasks.
    fn starts(
        &mut self,
        w: &World,
        t: &mut ServiceTick,
        primary_live: usize,
        occupying: usize,
    ) -> usize {
        if t.primary.rollout_state == "FAILED" {
            return 0;
        }
        let max_total = t.desired * t.config.maximum_percent / 100;
        let start = t.desired.saturating_sub(primary_live).min(max_total.saturating_sub(occupying));
        let Some(streak) = self.streaks.get_mut(&t.primary.id).filter(|_| start > 0) else {
            return start;
        };
        let wait = backoff(streak.failures);
        if wait.is_zero() {
            return start;
        }
        if !streak.told {
            streak.told = true;
            t.events.push(format!(
                "(service {}) is unable to consistently start tasks successfully.",
                t.name
            ));
        }
        if w.now < streak.last + wait {
            0
        } else {
            start
        }
    }
}

/// One service's decisions in one tick, gathered before they become actions.
struct ServiceTick<'s> {
    svc: &'s Service,
    name: &'s str,
    primary: &'s Deployment,
    config: DeploymentConfig,
    desired: usize,
    events: Vec<String>,
    updates: Vec<DeploymentUpdate>,
}

impl ServiceTick<'_> {
    fn failed_tasks(&self, d: &Deployment, failed: &BTreeMap<String, i32>) -> i32 {
        d.failed_tasks + failed.get(&d.id).copied().unwrap_or(0)
    }

    /// `failedTasks` of the IN_PROGRESS deployments that lost tasks this tick.
    fn count_failures(&mut self, failed: &BTreeMap<String, i32>) {
        for d in &self.svc.deployments {
            if d.rollout_state == "IN_PROGRESS" && failed.contains_key(&d.id) {
                let n = self.failed_tasks(d, failed);
                self.update(&d.id).failed_tasks = Some(n);
            }
        }
    }

    fn breaker_trips(&self, failed: &BTreeMap<String, i32>) -> bool {
        let failures = usize::try_from(self.failed_tasks(self.primary, failed)).unwrap_or(0);
        self.config.breaker
            && self.primary.rollout_state == "IN_PROGRESS"
            && failures >= breaker_threshold(self.desired)
    }

    /// The PRIMARY FAILED; with rollback, the last COMPLETED deployment whose tasks still run
    /// is PRIMARY again.
    fn fail_primary(&mut self, live: &[Live]) {
        let (name, primary) = (self.name, self.primary);
        let update = self.update(&primary.id);
        update.rollout_state = Some("FAILED".into());
        update.rollout_state_reason = Some(BREAKER_REASON.into());
        self.events.push(format!(
            "(service {name}) (deployment {}) deployment failed: tasks failed to start.",
            primary.id
        ));
        let target = self.config.rollback.then(|| rollback_target(self.svc, live)).flatten();
        if let Some(target) = target {
            self.update(&primary.id).status = Some("ACTIVE".into());
            let back = self.update(&target.id);
            back.status = Some("PRIMARY".into());
            back.rollout_state = Some("IN_PROGRESS".into());
            back.rollout_state_reason = Some(format!(
                "ECS deployment circuit breaker: rolling back to deploymentId {}.",
                target.id
            ));
            self.events.push(format!("(service {name}) rolling back to deployment {}.", target.id));
        }
    }

    /// The PRIMARY runs its desired count healthy and nothing older is left: the older
    /// deployments go and an IN_PROGRESS PRIMARY is COMPLETED (then `true`).
    fn complete(&mut self) -> bool {
        let (name, primary) = (self.name, self.primary);
        for d in self.svc.deployments.iter().filter(|d| d.id != primary.id) {
            self.update(&d.id).status = Some("INACTIVE".into());
        }
        if primary.rollout_state != "IN_PROGRESS" {
            return false;
        }
        let update = self.update(&primary.id);
        update.rollout_state = Some("COMPLETED".into());
        update.rollout_state_reason = Some(format!("ECS deployment {} completed.", primary.id));
        self.events
            .push(format!("(service {name}) (deployment {}) deployment completed.", primary.id));
        true
    }

    /// The update of deployment `id`, made on first use.
    fn update(&mut self, id: &str) -> &mut DeploymentUpdate {
        let at = match self.updates.iter().position(|u| u.id == id) {
            Some(at) => at,
            None => {
                self.updates
                    .push(DeploymentUpdate { id: id.to_string(), ..DeploymentUpdate::default() });
                self.updates.len() - 1
            }
        };
        &mut self.updates[at]
    }

    fn finish(self, out: &mut Vec<Action>) {
        let service = self.name.to_string();
        if !self.updates.is_empty() {
            out.push(Action::UpdateDeployments { service: service.clone(), updates: self.updates });
        }
        out.extend(
            self.events
                .into_iter()
                .map(|message| Action::Event { service: service.clone(), message }),
        );
    }
}

/// What becomes of a task that is not asked to stop.
fn verdict<'o>(w: &World, task: &Task, observation: Option<&'o TaskObservation>) -> Verdict<'o> {
    match observation {
        None => match w.start_errors.get(&task.task_id) {
            Some(reason) => {
                Verdict::Failed(TaskStop::new(StopCode::TaskFailedToStart, reason.clone()))
            }
            // Its containers are gone from Docker: removed by hand, or the scheduler restarted
            // before it started them. Not the task's own failure.
            None if task.last_status == "RUNNING" => Verdict::Lost(TaskStop::new(
                StopCode::EssentialContainerExited,
                "Essential container in task exited: its containers are gone from Docker",
            )),
            None => Verdict::Lost(TaskStop::new(
                StopCode::TaskFailedToStart,
                "The sandbox scheduler restarted before the task's containers started",
            )),
        },
        Some(o) => match &o.stop {
            Some(stop) => Verdict::Failed(stop.clone()),
            None if o.last_status == Status::Running && o.health_status == Health::Unhealthy => {
                Verdict::Unhealthy
            }
            None => Verdict::Fine(o),
        },
    }
}

enum Verdict<'o> {
    Fine(&'o TaskObservation),
    /// The task failed: counted against its deployment.
    Failed(TaskStop),
    /// RUNNING, but an essential container failed its health checks: failed too.
    Unhealthy,
    /// The sandbox lost it: stopped, not counted.
    Lost(TaskStop),
}

/// The newest COMPLETED deployment, other than the PRIMARY, with a task still running.
fn rollback_target<'s>(svc: &'s Service, live: &[Live]) -> Option<&'s Deployment> {
    svc.deployments
        .iter()
        .filter(|d| d.status != "PRIMARY" && d.rollout_state == "COMPLETED")
        .filter(|d| live.iter().any(|t| t.running && t.deployment() == d.id))
        .max_by(|a, b| a.created_at.cmp(&b.created_at))
}

/// Whether the task's health depends on health checks: an essential container has one.
pub fn checks_health(def: &TaskDefinition) -> bool {
    def.container_definitions.iter().any(|c| {
        c.is_essential()
            && c.health_check
                .as_ref()
                .is_some_and(|h| h.command.first().is_some_and(|k| k != "NONE"))
    })
}

fn stop_code(code: &str) -> Option<StopCode> {
    Some(match code {
        "TaskFailedToStart" => StopCode::TaskFailedToStart,
        "EssentialContainerExited" => StopCode::EssentialContainerExited,
        "UserInitiated" => StopCode::UserInitiated,
        "ServiceSchedulerInitiated" => StopCode::ServiceSchedulerInitiated,
        _ => return None,
    })
}

pub fn stop_code_name(code: StopCode) -> &'static str {
    match code {
        StopCode::TaskFailedToStart => "TaskFailedToStart",
        StopCode::EssentialContainerExited => "EssentialContainerExited",
        StopCode::UserInitiated => "UserInitiated",
        StopCode::ServiceSchedulerInitiated => "ServiceSchedulerInitiated",
    }
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "PENDING",
        Status::Running => "RUNNING",
        Status::Stopped => "STOPPED",
    }
}

pub fn health_name(health: Health) -> &'static str {
    match health {
        Health::Healthy => "HEALTHY",
        Health::Unhealthy => "UNHEALTHY",
        Health::Unknown => "UNKNOWN",
    }
}

/// What moto must learn when the scheduler decides to stop a task: desired STOPPED, the
/// containers as last seen (an exit code says why at once) and, unless moto has it from
/// StopTask, the reason.
fn stopping_update(
    task: &Task,
    observation: Option<&TaskObservation>,
    cause: Option<&TaskStop>,
) -> TaskUpdate {
    TaskUpdate {
        desired_status: (task.desired_status != "STOPPED").then(|| "STOPPED".to_string()),
        last_status: Some("DEACTIVATING".to_string()),
        stop_code: cause.map(|c| stop_code_name(c.code).to_string()),
        stopped_reason: cause.map(|c| c.reason.clone()),
        containers: observation.map(|o| container_updates(task, o)).unwrap_or_default(),
        ..TaskUpdate::default()
    }
}

/// The observation as a change to moto's record of the task; `None` when moto has it all.
pub fn observed_update(task: &Task, o: &TaskObservation, clock: &str) -> Option<TaskUpdate> {
    let status = match o.last_status {
        Status::Stopped => None,
        s => Some(status_name(s)),
    };
    let health = health_name(o.health_status);
    let pulled = !o.containers.is_empty() && o.containers.iter().all(|c| c.docker_id.is_some());
    let update = TaskUpdate {
        last_status: status.filter(|s| *s != task.last_status).map(str::to_string),
        health_status: (health != task.health_status).then(|| health.to_string()),
        pull_started_at: task.pull_started_at.is_none().then(|| clock.to_string()),
        pull_stopped_at: (pulled && task.pull_stopped_at.is_none()).then(|| clock.to_string()),
        containers: container_updates(task, o),
        ..TaskUpdate::default()
    };
    (update != TaskUpdate::default()).then_some(update)
}

/// The containers whose observation differs from moto's record, with the fields that differ.
pub fn container_updates(task: &Task, o: &TaskObservation) -> Vec<ContainerUpdate> {
    let differs =
        |now: Option<&str>, was: Option<&str>| now.filter(|n| was != Some(*n)).map(str::to_string);
    let mut updates = Vec::new();
    for c in &o.containers {
        let r = task.containers.iter().find(|r| r.name == c.name);
        let update = ContainerUpdate {
            name: c.name.clone(),
            image_digest: differs(
                c.image_digest.as_deref(),
                r.and_then(|r| r.image_digest.as_deref()),
            ),
            runtime_id: differs(c.docker_id.as_deref(), r.and_then(|r| r.runtime_id.as_deref())),
            last_status: differs(
                Some(status_name(c.last_status)),
                r.and_then(|r| r.last_status.as_deref()),
            ),
            health_status: differs(
                Some(health_name(c.health_status)),
                r.and_then(|r| r.health_status.as_deref()),
            ),
            exit_code: c.exit_code.filter(|code| r.and_then(|r| r.exit_code) != Some(*code)),
            reason: differs(c.reason.as_deref(), r.and_then(|r| r.reason.as_deref())),
        };
        if update != (ContainerUpdate { name: c.name.clone(), ..ContainerUpdate::default() }) {
            updates.push(update);
        }
    }
    updates
}
