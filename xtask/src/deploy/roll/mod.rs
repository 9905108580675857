//! The ECS roll: put the service on the image just pushed and wait until it runs healthy.
//!
//! [`judge`] holds the pure state machine over observed snapshots; this module is the driver
//! that starts the roll, polls through [`EcsApi`], reports progress and stops at the first
//! verdict. Both strategies end
//! the same way: the new tasks (not there when the roll began, of the service's `group`,
//! started by the primary deployment, of its task definition) RUNNING, every essential
//! container HEALTHY, each running the digest that was pushed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use crate::event::{Detail, Event, RollView};
use anyhow::{anyhow, Context, Result};
use tokio::time::Instant;

use crate::aws::ecs::{
    describe_all_tasks, list_all_tasks, Counting, DesiredStatus, EcsApi, ServiceSnapshot,
    ServiceUpdate, TaskDefinitionSnapshot, TaskSnapshot,
};
use crate::aws::logs::LogsApi;
use crate::deploy::target::{RollStrategy, Target};
use crate::failure::Failure;
use crate::poll::{Backoff, Schedule};
use crate::report::{human_duration, Reporter};

/// The reason ECS records on the tasks the `stop-tasks` strategy stops.
pub const STOP_REASON: &str = "stopped by cargo xtask deploy to start the new image";
/// Consecutive failed polls tolerated before the roll gives up (the SDK retries each call too).
const MAX_POLL_ERRORS: u32 = 3;
/// Polls in a row a listed or followed task may be answered MISSING by DescribeTasks (ECS is
/// eventually consistent) before the roll takes it as gone.
const MISSING_POLLS_TOLERATED: u32 = 10;
/// How many times the roll asks again, before it acts, for tasks it listed that DescribeTasks
/// answered MISSING: it must know every task that ran before (stop-tasks stops them).
const START_DESCRIBE_RETRIES: u32 = 3;
/// Even when nothing seems to change, list the service's tasks this often.
const RELIST_EVERY: Duration = Duration::from_secs(15);
/// The progress line's clock ticks in these steps, so piped output prints a line per step
/// rather than per poll.
const PROGRESS_TICK: u64 = 5;
/// How many service events a failure explanation quotes.
pub(super) const EVENTS_QUOTED: usize = 4;

/// What to roll and how long to wait.
#[derive(Debug, Clone)]
pub struct RollRequest {
    pub cluster: String,
    pub service: String,
    pub strategy: RollStrategy,
    /// Container name → the digest just pushed for its image (`sha256:…`).
    pub expected_digests: BTreeMap<String, String>,
    pub timeout: Duration,
    pub poll: Schedule,
    /// The flags that select the target, for the commands a failure suggests (`--sandbox`).
    pub cli_flags: Vec<String>,
    /// The revision to roll onto (just registered); `None` rolls the current one again.
    pub task_definition: Option<String>,
    /// The service was just created onto its revision: its first deployment is watched.
    pub service_created: bool,
    /// A deployment already under way (an interrupted deploy's): watched, not started; its
    /// tasks are new even when they were there before the roll began.
    pub attach: Option<String>,
    /// The task count the service must run (deploy.toml's `service.desired_count`).
    pub desired_count: Option<i32>,
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
            poll: poll_schedule(),
            task_definition: None,
            service_created: false,
            attach: None,
            desired_count: Some(target.service_settings.desired_count),
            cli_flags: target.cli_flags.clone(),
        }
    }
}

/// How often the driver polls: quickly at first and after every change, backing off to 1.6 s,
/// each wait jittered by ±15 %: a finished roll is noticed within 1.84 s.
pub fn poll_schedule() -> Schedule {
    Schedule::new(Duration::from_millis(500), 1.5, Duration::from_millis(1600)).jittered(0.15)
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

/// Rolls the service and waits for the new tasks; errors carry `Failure::Roll` or
/// `Failure::Timeout` (no verdict: the timeout, or ECS no longer answering). When a new task stopped, its containers' logs are read through `logs`.
pub async fn roll(
    api: &impl EcsApi,
    logs: &impl LogsApi,
    req: &RollRequest,
    report: &Reporter,
) -> Result<RollOutcome> {
    let outcome = drive(&Counting::new(api), logs, req, report).await?;
    report.emit(Event::RollDone(outcome.view()));
    Ok(outcome)
}

async fn drive<A: EcsApi>(
    api: &Counting<'_, A>,
    logs: &impl LogsApi,
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
    let described =
        describe_listed(api, cluster, &listed, req.poll).await.context(Failure::Roll)?;
    tracker.record(described);
    let undescribed: Vec<String> =
        listed.iter().filter(|a| !tracker.is_described(a)).cloned().collect();
    if !undescribed.is_empty() {
        report.info(format!(
            "{} listed task(s) still MISSING in DescribeTasks (ECS is eventually consistent): \
             taken as old, asked for again while polling",
            undescribed.len()
        ));
    }
    tracker.missing.extend(undescribed.into_iter().map(|a| (a, 1)));
    // A task listed but not described yet is an old one too; so is, when attaching, every
    // task but the ones the deployment started and that still run.
    let before: BTreeSet<String> = match &req.attach {
        Some(id) => tracker
            .known
            .values()
            .filter(|t| t.started_by.as_deref() != Some(id.as_str()) || t.last_status == "STOPPED")
            .map(|t| t.arn.clone())
            .collect(),
        None => tracker.known.keys().chain(&listed).cloned().collect(),
    };
    let running_before: Vec<TaskSnapshot> =
        tracker.known.values().filter(|t| t.desired_status == "RUNNING").cloned().collect();

    let deployment_id = if let Some(id) = &req.attach {
        let Some(deployment) = service.deployments.iter().find(|d| &d.id == id) else {
            return Err(anyhow!(
                "deployment {id} is gone from service `{name}` (primary now: {old_primary}): \
                 the interrupted deploy ended or was replaced; run the deploy again"
            )
            .context(Failure::Roll));
        };
        let stopped = tracker
            .known
            .values()
            .filter(|t| t.started_by.as_deref() == Some(id.as_str()) && t.last_status == "STOPPED")
            .count();
        report.info(format!(
            "attached to deployment {id} ({}, {}): watching it, no UpdateService{}",
            deployment.status,
            deployment.rollout_state.as_deref().unwrap_or("no rollout state"),
            match stopped {
                0 => String::new(),
                n => format!("; {n} of its task(s) had stopped before and are not waited for"),
            }
        ));
        id.clone()
    } else if req.service_created {
        report.info(format!("deployment {old_primary} of the new service started"));
        old_primary
    } else if let Some(td) = &req.task_definition {
        let update =
            ServiceUpdate { task_definition: Some(td.clone()), desired_count: req.desired_count };
        let updated = api.update_service(cluster, name, &update).await.context(Failure::Roll)?;
        let new_primary = primary(&updated).map(|d| d.id.clone()).unwrap_or_default();
        if new_primary.is_empty() || new_primary == old_primary {
            return Err(anyhow!(
                "UpdateService onto {td} started no new deployment for `{name}` (primary still \
                 {old_primary}): run the deploy again"
            )
            .context(Failure::Roll));
        }
        report.info(format!("deployment {new_primary} started on {td}"));
        if req.strategy == RollStrategy::StopTasks {
            report.warn(format!(
                "stop-tasks: `{name}` serves nothing from when its task stops until the new one \
                 is healthy (downtime); `--strategy force-new-deployment` avoids it"
            ));
            for task in &running_before {
                api.stop_task(cluster, &task.arn, STOP_REASON).await.context(Failure::Roll)?;
                report.info(format!("stopped task {} ({})", task.id, task.last_status));
            }
        }
        new_primary
    } else {
        match req.strategy {
            RollStrategy::ForceNewDeployment => {
                let update = ServiceUpdate::default();
                let updated =
                    api.update_service(cluster, name, &update).await.context(Failure::Roll)?;
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
                    report.info(format!(
                        "`{name}` has no running task: waiting for ECS to start one"
                    ));
                }
                old_primary
            }
        }
    };

    let acted_at = Instant::now();
    let mut watch =
        Watch::new(&service, req.strategy, deployment_id, req.expected_digests.clone(), before)
            .with_cli_flags(req.cli_flags.clone());
    let mut poller = Backoff::new(req.poll);
    let mut polls = 0u32;
    let mut poll_errors = 0u32;
    let mut last_progress: Option<Progress> = None;
    let mut first_task_after = None;
    let mut healthy_after = None;

    loop {
        if crate::interrupt::interrupted() {
            return Err(anyhow!(
                "interrupted (Ctrl-C) while waiting for deployment {}: ECS goes on without us; \
                 `{}` (or `aws ecs describe-services --cluster {cluster} --services {name}`) shows \
                 how it ends, and the same deploy run again on this tree attaches to it",
                watch.deployment_id(),
                status_command(&req.cli_flags)
            )
            .context(Failure::Roll));
        }
        polls += 1;
        let changed = match tracker.observe(api, req, &watch).await {
            Err(e) => {
                poll_errors += 1;
                if poll_errors >= MAX_POLL_ERRORS {
                    // No verdict: like a timeout, the deployment goes on and its end is unknown.
                    return Err(e
                        .context(format!(
                            "lost sight of deployment {} of `{name}`: polling ECS failed \
                             {poll_errors} times in a row. ECS goes on without us: `{}` shows how \
                             it ends (or `aws ecs describe-services --cluster {cluster} --services \
                             {name}`), and the same deploy run again on this tree attaches to it",
                            watch.deployment_id(),
                            status_command(&req.cli_flags)
                        ))
                        .context(Failure::Timeout));
                }
                report.warn(format!("polling ECS failed, retrying: {e:#}"));
                false
            }
            Ok(seen) => {
                poll_errors = 0;
                for arn in &seen.missing {
                    report.info(format!(
                        "task {}: DescribeTasks answered MISSING (ECS is eventually consistent): \
                         asking again",
                        arn.rsplit('/').next().unwrap_or(arn)
                    ));
                }
                watch.note_service(&seen.service, acted_at.elapsed());
                for event in watch.take_new_events(&seen.service) {
                    report.info(format!("ecs: {}", event.message));
                }
                let service_tasks = tracker.known.values().filter(|t| watch.is_service_task(t));
                let elapsed = started.elapsed();
                match watch.judge(&seen.service, service_tasks, &seen.task_definition) {
                    RollVerdict::Failed(failure) => {
                        let tails = match &failure.stopped {
                            Some(stopped) => read_logs(logs, stopped).await,
                            None => Vec::new(),
                        };
                        return Err(anyhow!(
                            "{}{}",
                            failure.explanation,
                            evidence::render_logs(&tails)
                        )
                        .context(Failure::Roll));
                    }
                    RollVerdict::Done(progress) => {
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
                    RollVerdict::Waiting(progress) => {
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
                 ECS keeps going on its own: `{}` (or `aws ecs describe-services --cluster \
                 {cluster} --services {name}`) shows how it ends; if the service needs longer, \
                 raise `timeouts.roll` in deploy.toml",
                human_duration(req.timeout),
                status_command(&req.cli_flags)
            )
            .context(Failure::Timeout));
        }
        if changed {
            poller.reset();
        }
        let wait = poller.next_wait().min(deadline - now);
        tokio::time::sleep(wait).await;
    }
}

/// `cargo xtask status` on the roll's target.
fn status_command(cli_flags: &[String]) -> String {
    let mut words = vec!["cargo xtask status".to_string()];
    words.extend(cli_flags.iter().cloned());
    words.join(" ")
}

/// The last lines of each container's log of a stopped task; a failed read is shown, not raised.
async fn read_logs(logs: &impl LogsApi, stopped: &Stopped) -> Vec<(String, LogTail)> {
    let mut tails = Vec::new();
    for def in &stopped.definition.containers {
        let tail = match evidence::stream_to_read(&stopped.cause, def, &stopped.task.id) {
            Err(tail) => tail,
            Ok(stream) => {
                let read = logs.last_events(&stream, evidence::LOG_LINES).await;
                let container = stopped.task.containers.iter().find(|c| c.name == def.name);
                evidence::tail_of(stream, container, read)
            }
        };
        tails.push((def.name.clone(), tail));
    }
    tails
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
    /// Tasks listed or followed that DescribeTasks answered MISSING: polls in a row.
    missing: BTreeMap<String, u32>,
}

/// One poll's result.
struct Seen {
    service: ServiceSnapshot,
    task_definition: TaskDefinitionSnapshot,
    /// The service or one of its tasks changed since the previous poll.
    changed: bool,
    /// Tasks answered MISSING for the first time in this poll.
    missing: Vec<String>,
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
            missing: BTreeMap::new(),
        }
    }

    fn is_described(&self, arn: &str) -> bool {
        self.known.contains_key(arn) || self.ignored.contains(arn)
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
        // The service's tasks that have not stopped are followed whether listed or not, and
        // tasks answered MISSING are asked for again.
        candidates.extend(
            self.known.values().filter(|t| t.last_status != "STOPPED").map(|t| t.arn.clone()),
        );
        candidates.extend(self.missing.keys().cloned());
        let to_describe: Vec<String> = candidates
            .into_iter()
            .filter(|arn| !self.ignored.contains(arn))
            .filter(|arn| self.known.get(arn).is_none_or(|t| t.last_status != "STOPPED"))
            .collect();
        let described = describe_all_tasks(api, cluster, &to_describe).await?;
        let returned: HashSet<String> = described.iter().map(|t| t.arn.clone()).collect();
        let mut changed = self.record(described) || service_changed;
        self.missing.retain(|arn, _| !returned.contains(arn));
        // A task answered MISSING may not be visible yet (eventual consistency): it keeps its
        // last state and is asked for again; ECS also forgets a task a while after it stops,
        // so one still MISSING after MISSING_POLLS_TOLERATED polls is gone.
        let mut newly_missing = Vec::new();
        for arn in to_describe.iter().filter(|a| !returned.contains(*a)) {
            let polls = self.missing.entry(arn.clone()).or_default();
            *polls += 1;
            if *polls == 1 {
                newly_missing.push(arn.clone());
            }
            if *polls > MISSING_POLLS_TOLERATED {
                self.missing.remove(arn);
                changed |= self.known.remove(arn).is_some();
            }
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
        Ok(Seen { service, task_definition, changed, missing: newly_missing })
    }
}

/// DescribeTasks of tasks just listed; the ones answered MISSING (ListTasks may show a task
/// DescribeTasks does not know yet) are asked for again, a few times.
async fn describe_listed(
    api: &impl EcsApi,
    cluster: &str,
    arns: &[String],
    poll: Schedule,
) -> Result<Vec<TaskSnapshot>> {
    let mut described = describe_all_tasks(api, cluster, arns).await?;
    let mut backoff = Backoff::new(poll);
    for _ in 0..START_DESCRIBE_RETRIES {
        let returned: HashSet<&str> = described.iter().map(|t| t.arn.as_str()).collect();
        let missing: Vec<String> =
            arns.iter().filter(|a| !returned.contains(a.as_str())).cloned().collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(backoff.next_wait()).await;
        described.extend(describe_all_tasks(api, cluster, &missing).await?);
    }
    Ok(described)
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

mod evidence;
mod judge;

use evidence::LogTail;
use judge::{primary, task_view, Stopped};
pub use judge::{service_group, Progress, RollVerdict, Watch};

#[cfg(test)]
mod tests;
