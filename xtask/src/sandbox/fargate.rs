//! The Fargate stand-in: runs the containers of one ECS task for real in Docker, as Fargate
//! would, for the sandbox scheduler.
//!
//! A task is a pause container that owns the task's network namespace on the sandbox's Docker
//! network and publishes the containers' ports on the task's own loopback address (its public
//! IP), plus one container per container definition, joined to that namespace (awsvpc: the
//! containers of a task share localhost). Images are pulled by tag at every start and run by
//! the digest pulled; health checks are Docker's; containers start when their `dependsOn`
//! conditions are met; every container carries labels naming the sandbox, the task and itself,
//! so a restarted scheduler finds them.
//!
//! The scheduler calls `Fargate::start_task` (returns at once; a thread pulls, creates and
//! starts), polls `Fargate::observe_all` (every task, by one `docker ps` and one
//! `docker inspect`), and calls `Fargate::stop_task` when an observation carries a verdict
//! (`stop`) or when it stops the task itself. No AWS call here: the scheduler
//! records the observations in moto.

pub mod awslogs;
pub mod definition;
pub mod image;
pub mod observe;
pub mod plan;

#[cfg(test)]
mod live_tests;

#[cfg(test)]
use std::collections::BTreeSet;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use xshell::{Cmd, Shell};

use crate::docker::{self, containers};
use crate::failure::Failure;
use definition::TaskDefinition;
use image::Pulled;
use observe::{Health, LaunchFailure, LaunchState, Seen, Status, Step, TaskObservation, TaskStop};
use plan::{ContainerPlan, Settings, TaskPlan, LABEL_SANDBOX, LABEL_TASK};

/// How often a starting task looks at its containers' states.
const POLL: Duration = Duration::from_millis(200);
/// How long a stopping task waits for its containers' last lines to reach CloudWatch Logs.
const SHIP_WAIT: Duration = Duration::from_secs(10);

/// Runs tasks in Docker. One per scheduler; its methods may be called from any thread.
pub struct Fargate {
    settings: Arc<Settings>,
    launches: Mutex<HashMap<String, Launch>>,
}

/// A task this process started: its plan and how far its start has come.
struct Launch {
    plan: Arc<TaskPlan>,
    state: Arc<Mutex<LaunchState>>,
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    /// The threads sending the containers' output to CloudWatch Logs.
    shippers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Fargate {
    pub fn new(settings: Settings) -> Fargate {
        Fargate { settings: Arc::new(settings), launches: Mutex::new(HashMap::new()) }
    }

    #[cfg(test)]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Starts task `task_id` of `definition`, answering on `address` (a loopback address of its
    /// own). Returns once the start runs in its thread; an invalid definition fails here.
    pub fn start_task(
        &self,
        task_id: &str,
        address: Ipv4Addr,
        definition: &TaskDefinition,
    ) -> Result<()> {
        let plan = Arc::new(TaskPlan::new(&self.settings, task_id, address, definition)?);
        let mut launches = lock(&self.launches);
        if launches.contains_key(task_id) {
            return Err(anyhow!("task {task_id} is already running in the sandbox")
                .context(Failure::Sandbox));
        }
        let state = Arc::new(Mutex::new(LaunchState::InProgress));
        let cancel = Arc::new(AtomicBool::new(false));
        let shippers = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::Builder::new()
            .name(format!("task {}", plan.pause))
            .spawn({
                let (settings, plan, state, cancel, shippers) = (
                    self.settings.clone(),
                    plan.clone(),
                    state.clone(),
                    cancel.clone(),
                    shippers.clone(),
                );
                move || {
                    let outcome = launch(&settings, &plan, &cancel, &shippers);
                    *lock(&state) = match outcome {
                        Ok(()) => LaunchState::Started,
                        Err(failure) => LaunchState::Failed(failure),
                    };
                }
            })
            .context("could not start a thread for the task")
            .context(Failure::Sandbox)?;
        launches.insert(task_id.to_string(), Launch { plan, state, cancel, thread, shippers });
        Ok(())
    }

    /// One task as [`Fargate::observe_all`] sees it, for the tests (the scheduler polls
    /// `observe_all`): the containers labelled with the task (`docker ps`), inspected (one
    /// `docker inspect`, none when there is no container), assessed with this runner's launch
    /// state, verdict (`stop`) included. `None` when this runner has no launch of the task and
    /// Docker no container of it (never started here, or stopped by [`Fargate::stop_task`]).
    #[cfg(test)]
    pub fn observe_task(&self, task_id: &str) -> Result<Option<TaskObservation>> {
        let (plan, state) = self.launch_of(task_id);
        let sh = Shell::new()?;
        let seen = self.inspect_task(&sh, task_id)?;
        Ok(observe::assess(task_id, plan.as_deref(), &state, &seen))
    }

    /// Every task of the sandbox this runner knows (containers in Docker or a start in
    /// progress here), observed by one `docker ps` and one `docker inspect` whatever their
    /// number: what the scheduler polls, also after a restart.
    pub fn observe_all(&self) -> Result<BTreeMap<String, TaskObservation>> {
        let sh = Shell::new()?;
        let ids = docker::output(list(&sh, &self.settings, None))
            .map_err(|e| anyhow!("could not list the sandbox's containers: {e}"))
            .context(Failure::Sandbox)?;
        let ids: Vec<String> = ids.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        let mut by_task: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
        for seen in inspect(&sh, &ids).context(Failure::Sandbox)? {
            if let Some(task) = seen.labels.get(LABEL_TASK).cloned() {
                by_task.entry(task).or_default().push(seen);
            }
        }
        let launched: Vec<String> = lock(&self.launches).keys().cloned().collect();
        for task in launched {
            by_task.entry(task).or_default();
        }
        Ok(by_task
            .into_iter()
            .filter_map(|(task, seen)| {
                let (plan, state) = self.launch_of(&task);
                observe::assess(&task, plan.as_deref(), &state, &seen).map(|o| (task, o))
            })
            .collect())
    }

    /// Stops the task (`docker stop` with the sandbox's grace, then `docker rm --force`, the
    /// pause container last) and returns its last observation, STOPPED with `cause` (pass the
    /// observation's own `stop` when it has one). `None` when the task is unknown.
    pub fn stop_task(&self, task_id: &str, cause: TaskStop) -> Result<Option<TaskObservation>> {
        let launch = lock(&self.launches).remove(task_id);
        let (plan, state, shippers) = match launch {
            Some(launch) => {
                launch.cancel.store(true, Ordering::SeqCst);
                // The launcher checks `cancel` between steps; after it ends nothing new appears.
                let _ = launch.thread.join();
                let state = lock(&launch.state).clone();
                let shippers = std::mem::take(&mut *lock(&launch.shippers));
                (Some(launch.plan), state, shippers)
            }
            None => (None, LaunchState::Unknown, Vec::new()),
        };
        let sh = Shell::new()?;
        let mut seen = self.inspect_task(&sh, task_id)?;
        let running: Vec<String> = seen
            .iter()
            .filter(|s| !s.is_pause() && s.status == Status::Running)
            .map(|s| s.docker_id.clone())
            .collect();
        if !running.is_empty() {
            // A container that exits or vanishes meanwhile fails `docker stop`; the removal
            // below and its check cover every container anyway.
            let _ = docker::output(containers::stop(&sh, self.settings.stop_grace, &running));
            seen = self.inspect_task(&sh, task_id)?;
        }
        let observation = observe::assess(task_id, plan.as_deref(), &state, &seen);
        let (pause, containers): (Vec<&Seen>, Vec<&Seen>) = seen.iter().partition(|s| s.is_pause());
        for group in [containers, pause] {
            let ids: Vec<String> = group.iter().map(|s| s.docker_id.clone()).collect();
            if !ids.is_empty() {
                docker::output(containers::remove(&sh, &ids))
                    .map_err(|e| anyhow!("could not remove the containers of task {task_id}: {e}"))
                    .context(Failure::Sandbox)?;
            }
        }
        // As awslogs does, the containers' last lines reach CloudWatch Logs before the task is
        // STOPPED: a roll that reads a stopped task's log finds them. Each shipper ends once
        // `docker logs --follow` does (the container is gone), bounded all the same.
        let deadline = Instant::now() + SHIP_WAIT;
        while shippers.iter().any(|s| !s.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let left = self.inspect_task(&sh, task_id)?;
        if !left.is_empty() {
            return Err(anyhow!(
                "{} container(s) of task {task_id} are still in Docker after `docker rm --force`: \
                 check `docker ps --all --filter label={}={task_id}`",
                left.len(),
                LABEL_TASK
            )
            .context(Failure::Sandbox));
        }
        Ok(observation.map(|mut o| {
            o.last_status = Status::Stopped;
            o.stop = Some(cause);
            for c in &mut o.containers {
                c.last_status = Status::Stopped;
                c.health_status = Health::Unknown;
            }
            o
        }))
    }

    /// The tasks of this sandbox that have containers in Docker or a start in progress here;
    /// after a restart, the scheduler reconciles these with the tasks moto records.
    #[cfg(test)]
    pub fn task_ids(&self) -> Result<Vec<String>> {
        let sh = Shell::new()?;
        let sandbox = (LABEL_SANDBOX, self.settings.owner.as_str());
        let listed = docker::output(containers::list_label_values(&sh, sandbox, LABEL_TASK))
            .map_err(|e| anyhow!("could not list the sandbox's tasks in Docker: {e}"))
            .context(Failure::Sandbox)?;
        let mut ids: BTreeSet<String> =
            listed.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        ids.extend(lock(&self.launches).keys().cloned());
        Ok(ids.into_iter().collect())
    }

    fn launch_of(&self, task_id: &str) -> (Option<Arc<TaskPlan>>, LaunchState) {
        match lock(&self.launches).get(task_id) {
            Some(launch) => (Some(launch.plan.clone()), lock(&launch.state).clone()),
            None => (None, LaunchState::Unknown),
        }
    }

    /// Every container labelled with the task, in one `docker inspect`.
    fn inspect_task(&self, sh: &Shell, task_id: &str) -> Result<Vec<Seen>> {
        let ids = docker::output(list(sh, &self.settings, Some(task_id)))
            .map_err(|e| anyhow!("could not list the containers of task {task_id}: {e}"))
            .context(Failure::Sandbox)?;
        let ids: Vec<String> = ids.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        inspect(sh, &ids).context(Failure::Sandbox)
    }
}

/// `docker inspect` of these containers; one removed since it was listed is left out.
fn inspect(sh: &Shell, ids: &[String]) -> Result<Vec<Seen>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Docker exits 1 when one of them is gone, and still prints the others.
    let out = containers::inspect(sh, ids)
        .quiet()
        .ignore_status()
        .output()
        .context("could not run `docker inspect`")?;
    observe::parse_inspect(&String::from_utf8_lossy(&out.stdout))
}

/// Starts a task: secrets, network, pause container, pulls, creates, then starts each
/// container once its dependencies are met. Ends when all have started or the start fails.
fn launch(
    settings: &Settings,
    plan: &TaskPlan,
    cancel: &AtomicBool,
    shippers: &Mutex<Vec<JoinHandle<()>>>,
) -> Result<(), LaunchFailure> {
    let sh = Shell::new()
        .map_err(|e| LaunchFailure::task(format!("ResourceInitializationError: {e}")))?;
    // ECS fetches secrets before it pulls: a missing one fails the task before anything runs.
    for c in &plan.containers {
        if let Some(missing) =
            c.def.secrets.iter().find(|s| settings.secrets.get(&s.name).is_none())
        {
            return Err(LaunchFailure::of(
                format!(
                    "ResourceInitializationError: unable to pull secrets: the sandbox has no value \
                     for secret {} (add it to the sandbox's secrets)",
                    missing.name
                ),
                [c.name()],
            ));
        }
    }
    ensure_network(&sh, settings).map_err(|e| {
        LaunchFailure::task(format!(
            "ResourceInitializationError: could not create Docker network {}: {e}",
            settings.network
        ))
    })?;
    docker::output(containers::run_detached(&sh, &plan.pause_spec(settings))).map_err(|e| {
        LaunchFailure::task(format!(
            "ResourceInitializationError: could not set up the task's network: {e}"
        ))
    })?;

    let mut pulled: Vec<(&ContainerPlan, Pulled)> = Vec::with_capacity(plan.containers.len());
    for c in &plan.containers {
        cancelled(cancel)?;
        let earlier = pulled.iter().find(|(p, _)| p.pull_ref == c.pull_ref).map(|(_, p)| p.clone());
        let image = match earlier {
            Some(image) => image,
            None => image::pull(&sh, &c.pull_ref).map_err(|e| {
                let users = plan.containers.iter().filter(|o| o.pull_ref == c.pull_ref);
                LaunchFailure::of(
                    format!("CannotPullContainerError: {e}"),
                    users.map(ContainerPlan::name),
                )
            })?,
        };
        pulled.push((c, image));
    }
    // The log driver's group and stream, before any container is created.
    for c in &plan.containers {
        settings
            .awslogs
            .prepare(&c.def, &plan.task_id)
            .map_err(|e| LaunchFailure::of(e, [c.name()]))?;
    }
    for (c, image) in &pulled {
        cancelled(cancel)?;
        let cannot_create =
            |e: String| LaunchFailure::of(format!("CannotCreateContainerError: {e}"), [c.name()]);
        let spec = plan
            .container_spec(settings, c, &image.run_ref, image.digest.as_deref())
            .map_err(|e| cannot_create(format!("{e:#}")))?;
        docker::output(containers::create(&sh, &spec)).map_err(cannot_create)?;
    }

    let names: Vec<String> = plan.containers.iter().map(|c| c.docker_name.clone()).collect();
    let created = Instant::now();
    loop {
        cancelled(cancel)?;
        let seen = inspect(&sh, &names).map_err(|e| LaunchFailure::task(format!("{e:#}")))?;
        match observe::next_step(plan, &seen, created.elapsed(), settings.start_timeout) {
            Step::Done => return Ok(()),
            Step::Fail(failure) => return Err(failure),
            Step::Wait => std::thread::sleep(POLL),
            Step::Start(ready) => {
                for c in plan.containers.iter().filter(|c| ready.iter().any(|r| r == c.name())) {
                    docker::output(containers::start(&sh, &c.docker_name)).map_err(|e| {
                        LaunchFailure::of(format!("CannotStartContainerError: {e}"), [c.name()])
                    })?;
                    let shipper =
                        settings.awslogs.ship(&c.def, &plan.task_id, &c.docker_name).map_err(|e| {
                            LaunchFailure::of(
                                format!("ResourceInitializationError: could not read the container's output: {e}"),
                                [c.name()],
                            )
                        })?;
                    lock(shippers).extend(shipper);
                }
            }
        }
    }
}

fn cancelled(cancel: &AtomicBool) -> Result<(), LaunchFailure> {
    if cancel.load(Ordering::SeqCst) {
        Err(LaunchFailure::task("The task was stopped while it started"))
    } else {
        Ok(())
    }
}

fn ensure_network(sh: &Shell, settings: &Settings) -> Result<(), String> {
    let exists = || docker::output(containers::network_inspect(sh, &settings.network)).is_ok();
    if exists() {
        return Ok(());
    }
    let owner = (LABEL_SANDBOX, settings.owner.as_str());
    match docker::output(containers::network_create(sh, owner, &settings.network)) {
        Ok(_) => Ok(()),
        // Another task's start may have created it meanwhile.
        Err(_) if exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The ids of the sandbox's containers, of one task or of all.
fn list<'a>(sh: &'a Shell, settings: &Settings, task_id: Option<&str>) -> Cmd<'a> {
    let mut labels = vec![(LABEL_SANDBOX, settings.owner.as_str())];
    labels.extend(task_id.map(|id| (LABEL_TASK, id)));
    containers::list(sh, &labels)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runner_can_be_shared_between_the_scheduler_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Fargate>();
    }
}
