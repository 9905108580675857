//! The roll against scripted ECS responses, on tokio's paused clock.

use std::cell::{Cell, RefCell};

use aws_sdk_ecs::primitives::DateTime;
use aws_sdk_ecs::types::{self as sdk, DeploymentRolloutState, HealthStatus as H, TaskStopCode};

use super::judge::*;
use super::*;
use crate::aws::ecs::{
    service_snapshot, task_definition_snapshot, task_snapshot, TaskPage, DESCRIBE_TASKS_BATCH,
};
use crate::aws::ecs::{HealthStatus, ServiceUpdate};
use crate::aws::logs::fake::FakeLogs;

const CLUSTER: &str = "zenn-clone-cluster";
const SERVICE: &str = "zenn-clone-backend-service";
const OLD_DEP: &str = "ecs-svc/1111111111111111111";
const NEW_DEP: &str = "ecs-svc/2222222222222222222";
const ROLLBACK_DEP: &str = "ecs-svc/3333333333333333333";
const TD: &str =
    "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/zenn-clone-task-definition-backend:7";
const RAILS_OLD: &str = "sha256:0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
const RAILS_NEW: &str = "sha256:1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b";
const NGINX_OLD: &str = "sha256:2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c";
const NGINX_NEW: &str = "sha256:3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d";
const EPOCH: i64 = 1_750_000_000;
const PULL_ERROR: &str = "CannotPullContainerError: pull image manifest has been retried 7 time(s): \
    failed to resolve ref 123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails:latest: \
    123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails:latest: not found";

fn digests() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("rails".to_string(), RAILS_NEW.to_string()),
        ("nginx".to_string(), NGINX_NEW.to_string()),
    ])
}

fn dep(
    id: &str,
    status: &str,
    rollout: DeploymentRolloutState,
    (desired, running, pending): (i32, i32, i32),
    failed: i32,
) -> sdk::Deployment {
    let reason = match rollout {
        DeploymentRolloutState::Completed => format!("ECS deployment {id} completed."),
        DeploymentRolloutState::Failed => {
            "ECS deployment circuit breaker: tasks failed to start.".to_string()
        }
        _ => format!("ECS deployment {id} in progress."),
    };
    sdk::Deployment::builder()
        .id(id)
        .status(status)
        .task_definition(TD)
        .desired_count(desired)
        .running_count(running)
        .pending_count(pending)
        .failed_tasks(failed)
        .created_at(DateTime::from_secs(EPOCH))
        .rollout_state(rollout)
        .rollout_state_reason(reason)
        .build()
}

/// A service with its events given oldest first (ECS returns them newest first).
fn service(
    (desired, running, pending): (i32, i32, i32),
    deployments: Vec<sdk::Deployment>,
    events: &[&str],
) -> sdk::Service {
    let mut b = sdk::Service::builder()
        .service_name(SERVICE)
        .status("ACTIVE")
        .desired_count(desired)
        .running_count(running)
        .pending_count(pending)
        .task_definition(TD)
        .set_deployments(Some(deployments));
    for (i, message) in events.iter().enumerate().rev() {
        b = b.events(
            sdk::ServiceEvent::builder()
                .id(format!("event-{i}"))
                .created_at(DateTime::from_secs(EPOCH + i as i64))
                .message(message.replace("{S}", SERVICE))
                .build(),
        );
    }
    b.build()
}

fn ctr(name: &str, status: &str, health: H, digest: Option<&str>) -> sdk::Container {
    let image = format!("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-{name}");
    sdk::Container::builder()
        .name(name)
        .image(image)
        .set_image_digest(digest.map(str::to_string))
        .last_status(status)
        .health_status(health)
        .build()
}

/// rails and nginx in one state, running the given digests.
fn pair(status: &str, rails: H, nginx: H, digests: Option<(&str, &str)>) -> Vec<sdk::Container> {
    vec![
        ctr("rails", status, rails, digests.map(|d| d.0)),
        ctr("nginx", status, nginx, digests.map(|d| d.1)),
    ]
}

fn task(id: &str, started_by: &str, status: &str, containers: Vec<sdk::Container>) -> sdk::Task {
    let all_healthy =
        !containers.is_empty() && containers.iter().all(|c| c.health_status() == Some(&H::Healthy));
    sdk::Task::builder()
        .task_arn(format!("arn:aws:ecs:ap-northeast-1:123456789012:task/{CLUSTER}/{id}"))
        .group(format!("service:{SERVICE}"))
        .started_by(started_by)
        .task_definition_arn(TD)
        .last_status(status)
        .desired_status("RUNNING")
        .health_status(if all_healthy { H::Healthy } else { H::UnknownValue })
        .created_at(DateTime::from_secs(EPOCH))
        .attachments(
            sdk::Attachment::builder()
                .id(format!("attachment-{id}"))
                .r#type("ElasticNetworkInterface")
                .status("ATTACHED")
                .details(
                    sdk::KeyValuePair::builder()
                        .name("networkInterfaceId")
                        .value(format!("eni-{id}"))
                        .build(),
                )
                .build(),
        )
        .set_containers(Some(containers))
        .build()
}

/// The task as ECS shows it once it is told to stop.
fn stopping(mut t: sdk::Task, last: &str, code: TaskStopCode, reason: &str) -> sdk::Task {
    t.last_status = Some(last.to_string());
    t.desired_status = Some("STOPPED".to_string());
    t.stop_code = Some(code);
    t.stopped_reason = Some(reason.to_string());
    t
}

fn in_group(mut t: sdk::Task, group: &str) -> sdk::Task {
    t.group = Some(group.to_string());
    t
}

fn old_task(id: &str) -> sdk::Task {
    task(
        id,
        OLD_DEP,
        "RUNNING",
        pair("RUNNING", H::Healthy, H::Healthy, Some((RAILS_OLD, NGINX_OLD))),
    )
}

fn task_definition() -> sdk::TaskDefinition {
    let check = |cmd: &str| {
        sdk::HealthCheck::builder()
            .command("CMD-SHELL")
            .command(cmd)
            .interval(30)
            .timeout(5)
            .retries(3)
            .build()
            .ok()
    };
    let logs = sdk::LogConfiguration::builder()
        .log_driver(sdk::LogDriver::Awslogs)
        .options("awslogs-group", "/ecs/zenn-clone-task-definition-backend")
        .options("awslogs-stream-prefix", "ecs")
        .build()
        .ok();
    let def = |name: &str, cmd: &str| {
        sdk::ContainerDefinition::builder()
            .name(name)
            .image(format!("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-{name}"))
            .essential(true)
            .set_health_check(check(cmd))
            .set_log_configuration(logs.clone())
            .build()
    };
    sdk::TaskDefinition::builder()
        .task_definition_arn(TD)
        .container_definitions(def(
            "rails",
            "curl --unix-socket /myapp/tmp/sockets/puma.sock localhost/api/v1/health_check || exit 1",
        ))
        .container_definitions(def("nginx", "curl -f http://localhost/api/v1/health_check || exit 1"))
        .build()
}

/// The cluster as ECS shows it from `at` on.
struct Frame {
    at: Duration,
    service: sdk::Service,
    tasks: Vec<sdk::Task>,
}

fn at(secs: f64, service: sdk::Service, tasks: Vec<sdk::Task>) -> Frame {
    Frame { at: Duration::from_secs_f64(secs), service, tasks }
}

/// Scripted ECS: `before` until the roll acts (UpdateService or StopTask), then `after`,
/// each frame from its time on. ListTasks ignores the service filter, as moto does.
struct Fake {
    start: Instant,
    before: Frame,
    after: Vec<Frame>,
    acted: Cell<bool>,
    actions: RefCell<Vec<String>>,
    page_size: usize,
    failing_polls: Cell<u32>,
    /// Every DescribeServices after the roll acted fails as an unreachable endpoint does.
    unreachable: Cell<bool>,
    /// DescribeServices calls that failed.
    failed_polls: Cell<u32>,
}

impl Fake {
    fn new(before: Frame, after: Vec<Frame>) -> Fake {
        assert_eq!(after.first().map(|f| f.at), Some(Duration::ZERO), "after must start at 0");
        Fake {
            start: Instant::now(),
            before,
            after,
            acted: Cell::new(false),
            actions: RefCell::new(Vec::new()),
            page_size: 100,
            failing_polls: Cell::new(0),
            unreachable: Cell::new(false),
            failed_polls: Cell::new(0),
        }
    }

    /// Adds the same tasks to every frame (other services sharing the cluster).
    fn with_neighbours(mut self, tasks: &[sdk::Task]) -> Fake {
        self.before.tasks.extend(tasks.iter().cloned());
        for f in &mut self.after {
            f.tasks.extend(tasks.iter().cloned());
        }
        self
    }

    fn frame(&self) -> &Frame {
        if !self.acted.get() {
            return &self.before;
        }
        let now = self.start.elapsed();
        self.after.iter().rev().find(|f| f.at <= now).unwrap_or(&self.after[0])
    }

    fn actions(&self) -> Vec<String> {
        self.actions.borrow().clone()
    }
}

impl EcsApi for Fake {
    async fn describe_service(&self, cluster: &str, service: &str) -> Result<ServiceSnapshot> {
        assert_eq!((cluster, service), (CLUSTER, SERVICE));
        if self.acted.get() && self.unreachable.get() {
            self.failed_polls.set(self.failed_polls.get() + 1);
            bail_unreachable()?;
        }
        if self.acted.get() && self.failing_polls.get() > 0 {
            self.failing_polls.set(self.failing_polls.get() - 1);
            bail_throttled()?;
        }
        Ok(service_snapshot(&self.frame().service))
    }

    async fn list_tasks_page(
        &self,
        _cluster: &str,
        _service: &str,
        desired: DesiredStatus,
        next_token: Option<&str>,
    ) -> Result<TaskPage> {
        let want = match desired {
            DesiredStatus::Running => "RUNNING",
            DesiredStatus::Stopped => "STOPPED",
        };
        let all: Vec<String> = self
            .frame()
            .tasks
            .iter()
            .filter(|t| t.desired_status() == Some(want))
            .filter_map(|t| t.task_arn().map(str::to_string))
            .collect();
        let from: usize = next_token.map_or(Ok(0), str::parse)?;
        let to = (from + self.page_size).min(all.len());
        let next_token = (to < all.len()).then(|| to.to_string());
        Ok(TaskPage { arns: all[from..to].to_vec(), next_token })
    }

    async fn describe_tasks(&self, _cluster: &str, arns: &[String]) -> Result<Vec<TaskSnapshot>> {
        assert!(arns.len() <= DESCRIBE_TASKS_BATCH, "DescribeTasks takes at most 100 tasks");
        let tasks = &self.frame().tasks;
        Ok(arns
            .iter()
            .filter_map(|arn| tasks.iter().find(|t| t.task_arn() == Some(arn.as_str())))
            .map(task_snapshot)
            .collect())
    }

    async fn stop_task(&self, _cluster: &str, arn: &str, reason: &str) -> Result<()> {
        assert_eq!(reason, STOP_REASON);
        self.actions
            .borrow_mut()
            .push(format!("StopTask {}", arn.rsplit('/').next().unwrap_or("")));
        self.acted.set(true);
        Ok(())
    }

    async fn update_service(
        &self,
        _cluster: &str,
        _service: &str,
        update: &ServiceUpdate,
    ) -> Result<ServiceSnapshot> {
        let action = match &update.task_definition {
            Some(td) => format!("UpdateService taskDefinition {td}"),
            None => "UpdateService forceNewDeployment".to_string(),
        };
        self.actions.borrow_mut().push(action);
        self.acted.set(true);
        Ok(service_snapshot(&self.after[0].service))
    }

    async fn describe_task_definition(&self, arn: &str) -> Result<TaskDefinitionSnapshot> {
        assert_eq!(arn, TD);
        Ok(task_definition_snapshot(&task_definition(), arn))
    }
}

fn bail_throttled() -> Result<()> {
    Err(anyhow!("ThrottlingException: Rate exceeded"))
}

/// What [`crate::aws::ecs::Ecs`] returns when the endpoint refuses connections (the SDK's
/// dispatch failure, after its own retries).
fn bail_unreachable() -> Result<()> {
    Err(anyhow!(
        "dispatch failure: io error: client error (Connect): tcp connect error: Connection \
         refused (os error 111) (DispatchFailure(DispatchFailure {{ source: ConnectorError {{ \
         kind: Io, .. }} }}))"
    )
    .context(format!("DescribeServices for `{SERVICE}` in cluster `{CLUSTER}` failed")))
}

/// The roll's result and how long it took on the (paused) clock.
async fn run(
    fake: &Fake,
    strategy: RollStrategy,
    timeout: Duration,
    seed: u64,
) -> (Result<RollOutcome>, Duration) {
    run_logged(fake, &FakeLogs::new(), strategy, timeout, seed).await
}

/// [`run`] with the containers' logs in `logs`.
async fn run_logged(
    fake: &Fake,
    logs: &FakeLogs,
    strategy: RollStrategy,
    timeout: Duration,
    seed: u64,
) -> (Result<RollOutcome>, Duration) {
    let req = RollRequest {
        cluster: CLUSTER.to_string(),
        service: SERVICE.to_string(),
        strategy,
        expected_digests: digests(),
        timeout,
        poll: Schedule { seed, ..poll_schedule() },
        cli_flags: Vec::new(),
        task_definition: None,
        service_created: false,
        attach: None,
        desired_count: None,
    };
    let started = Instant::now();
    let result = roll(fake, logs, &req, &Reporter::plain()).await;
    (result, started.elapsed())
}

const TEN_MINUTES: Duration = Duration::from_secs(600);

fn steady(events: &[&str]) -> sdk::Service {
    service(
        (1, 1, 0),
        vec![dep(OLD_DEP, "PRIMARY", DeploymentRolloutState::Completed, (1, 1, 0), 0)],
        events,
    )
}

const E0: &str = "({S}) has reached a steady state.";
const E_START: &str = "({S}) has started 1 tasks: (task new1).";

/// forceNewDeployment on one task; complete (new task healthy, old one stopped, rollout
/// COMPLETED) at 60 s.
fn clean_force() -> Fake {
    let deps = |new: (i32, i32, i32), state| {
        vec![
            dep(NEW_DEP, "PRIMARY", state, new, 0),
            dep(OLD_DEP, "ACTIVE", DeploymentRolloutState::Completed, (1, 1, 0), 0),
        ]
    };
    let ip = DeploymentRolloutState::InProgress;
    let new1 = |status: &str, rails: H, nginx: H, d: Option<(&str, &str)>| {
        let c = if status == "RUNNING" { "RUNNING" } else { "PENDING" };
        task("new1", NEW_DEP, status, pair(c, rails, nginx, d))
    };
    let fresh = Some((RAILS_NEW, NGINX_NEW));
    let u = H::UnknownValue;
    let ev = [
        E0,
        E_START,
        "({S}) has stopped 1 running tasks: (task old1).",
        "({S}) (deployment ecs-svc/2222222222222222222) deployment completed.",
        E0,
    ];
    let old_stopping = |last| {
        stopping(
            old_task("old1"),
            last,
            TaskStopCode::ServiceSchedulerInitiated,
            "Scaling activity initiated by (deployment ecs-svc/2222222222222222222)",
        )
    };
    Fake::new(
        at(0.0, steady(&ev[..1]), vec![old_task("old1")]),
        vec![
            at(
                0.0,
                service((1, 1, 0), deps((1, 0, 0), ip.clone()), &ev[..1]),
                vec![old_task("old1")],
            ),
            at(
                4.0,
                service((1, 1, 1), deps((1, 0, 1), ip.clone()), &ev[..2]),
                vec![old_task("old1"), new1("PROVISIONING", u.clone(), u.clone(), None)],
            ),
            at(
                20.0,
                service((1, 1, 1), deps((1, 0, 1), ip.clone()), &ev[..2]),
                vec![old_task("old1"), new1("PENDING", u.clone(), u.clone(), None)],
            ),
            at(
                33.0,
                service((1, 2, 0), deps((1, 1, 0), ip.clone()), &ev[..2]),
                vec![old_task("old1"), new1("RUNNING", u.clone(), u.clone(), fresh)],
            ),
            at(
                50.0,
                service((1, 2, 0), deps((1, 1, 0), ip.clone()), &ev[..2]),
                vec![old_task("old1"), new1("RUNNING", H::Healthy, u.clone(), fresh)],
            ),
            at(
                52.0,
                service((1, 2, 0), deps((1, 1, 0), ip.clone()), &ev[..2]),
                vec![old_task("old1"), new1("RUNNING", H::Healthy, H::Healthy, fresh)],
            ),
            at(
                53.0,
                service((1, 2, 0), deps((1, 1, 0), ip.clone()), &ev[..3]),
                vec![old_stopping("DEACTIVATING"), new1("RUNNING", H::Healthy, H::Healthy, fresh)],
            ),
            at(
                58.0,
                service((1, 1, 0), deps((1, 1, 0), ip.clone()), &ev[..3]),
                vec![old_stopping("STOPPING"), new1("RUNNING", H::Healthy, H::Healthy, fresh)],
            ),
            at(
                60.0,
                service(
                    (1, 1, 0),
                    vec![dep(NEW_DEP, "PRIMARY", DeploymentRolloutState::Completed, (1, 1, 0), 0)],
                    &ev,
                ),
                vec![old_stopping("STOPPED"), new1("RUNNING", H::Healthy, H::Healthy, fresh)],
            ),
        ],
    )
}

/// stop-tasks on one task: the old task stops, ECS starts a replacement from the same
/// deployment that runs `rails` digest `rails`; healthy at 45 s.
fn stop_tasks_script(rails: &'static str) -> Fake {
    let ev = [E0, E_START, E0];
    let u = H::UnknownValue;
    let old_stopping =
        |last| stopping(old_task("old1"), last, TaskStopCode::UserInitiated, STOP_REASON);
    let new1 = |status: &str, h: H, d: Option<(&str, &str)>| {
        let c = if status == "RUNNING" { "RUNNING" } else { "PENDING" };
        task("new1", OLD_DEP, status, pair(c, h.clone(), h, d))
    };
    let running = Some((rails, NGINX_NEW));
    Fake::new(
        at(0.0, steady(&ev[..1]), vec![old_task("old1")]),
        vec![
            at(0.0, steady(&ev[..1]), vec![old_stopping("RUNNING")]),
            at(2.0, steady(&ev[..1]), vec![old_stopping("DEACTIVATING")]),
            at(
                6.0,
                service(
                    (1, 0, 0),
                    vec![dep(OLD_DEP, "PRIMARY", DeploymentRolloutState::Completed, (1, 0, 0), 0)],
                    &ev[..1],
                ),
                vec![old_stopping("STOPPED")],
            ),
            at(
                8.0,
                service(
                    (1, 0, 1),
                    vec![dep(OLD_DEP, "PRIMARY", DeploymentRolloutState::Completed, (1, 0, 1), 0)],
                    &ev[..2],
                ),
                vec![old_stopping("STOPPED"), new1("PROVISIONING", u.clone(), None)],
            ),
            at(
                30.0,
                service(
                    (1, 1, 0),
                    vec![dep(OLD_DEP, "PRIMARY", DeploymentRolloutState::Completed, (1, 1, 0), 0)],
                    &ev[..2],
                ),
                vec![old_stopping("STOPPED"), new1("RUNNING", u.clone(), running)],
            ),
            at(
                45.0,
                service(
                    (1, 1, 0),
                    vec![dep(OLD_DEP, "PRIMARY", DeploymentRolloutState::Completed, (1, 1, 0), 0)],
                    &ev,
                ),
                vec![old_stopping("STOPPED"), new1("RUNNING", H::Healthy, running)],
            ),
        ],
    )
}

/// The clean forceNewDeployment script up to `upto` seconds, then `rest`.
fn force_then(upto: f64, rest: Vec<Frame>) -> Fake {
    let mut fake = clean_force();
    fake.after.retain(|f| f.at.as_secs_f64() < upto);
    fake.after.extend(rest);
    fake
}

fn in_progress(running: i32, pending: i32, failed: i32, events: &[&str]) -> sdk::Service {
    service(
        (1, 1 + running, pending),
        vec![
            dep(
                NEW_DEP,
                "PRIMARY",
                DeploymentRolloutState::InProgress,
                (1, running, pending),
                failed,
            ),
            dep(OLD_DEP, "ACTIVE", DeploymentRolloutState::Completed, (1, 1, 0), 0),
        ],
        events,
    )
}

fn error_text(result: Result<RollOutcome>) -> (u8, String) {
    match result {
        Ok(outcome) => panic!("the roll should fail, it finished: {outcome:?}"),
        Err(err) => (Failure::exit_code_of(&err), format!("{err:#}")),
    }
}

fn assert_within(elapsed: Duration, observable_at: f64, what: &str) {
    let late = elapsed.as_secs_f64() - observable_at;
    assert!((0.0..2.0).contains(&late), "{what}: reported {late:.2}s after it was observable");
}

#[tokio::test(start_paused = true)]
async fn clean_force_new_deployment_waits_for_the_old_task_and_completion() {
    let fake = clean_force();
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let outcome = result.expect("clean roll");
    assert_eq!(fake.actions(), ["UpdateService forceNewDeployment"]);
    assert_eq!(outcome.deployment_id, NEW_DEP);
    assert_eq!(outcome.tasks.len(), 1);
    let t = &outcome.tasks[0];
    assert_eq!((t.id.as_str(), t.eni_id.as_deref()), ("new1", Some("eni-new1")));
    let digests: Vec<(&str, Option<&str>)> =
        t.containers.iter().map(|c| (c.name.as_str(), c.image_digest.as_deref())).collect();
    assert_eq!(digests, [("rails", Some(RAILS_NEW)), ("nginx", Some(NGINX_NEW))]);
    // Healthy at 52 s, but done only once the old task stopped and the rollout completed.
    assert_within(elapsed, 60.0, "completion");
    assert!(outcome.healthy_after.is_some_and(|d| (52.0..54.0).contains(&d.as_secs_f64())));
    assert!(outcome.first_task_after.is_some_and(|d| (4.0..6.0).contains(&d.as_secs_f64())));
    assert_eq!(outcome.duration, elapsed);
    assert_eq!(outcome.api_calls.get("UpdateService"), Some(&1));
    assert_eq!(outcome.api_calls.get("DescribeTaskDefinition"), Some(&1));
    assert_eq!(outcome.api_calls.get("StopTask"), None);
}

#[tokio::test(start_paused = true)]
async fn without_a_rollout_state_the_old_task_stopping_marks_completion() {
    // moto reports no fresh rollout state: the old task's stop is what ends the roll.
    let mut fake = clean_force();
    for frame in &mut fake.after {
        for d in frame.service.deployments.iter_mut().flatten() {
            d.rollout_state = None;
            d.rollout_state_reason = None;
        }
    }
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let outcome = result.expect("clean roll");
    assert!(outcome.healthy_after.is_some_and(|d| d.as_secs_f64() < 54.0));
    assert_within(elapsed, 60.0, "old task stopped");
}

#[tokio::test(start_paused = true)]
async fn clean_stop_tasks_stops_the_old_task_and_waits_for_the_replacement() {
    let fake = stop_tasks_script(RAILS_NEW);
    let (result, elapsed) = run(&fake, RollStrategy::StopTasks, TEN_MINUTES, 7).await;
    let outcome = result.expect("clean roll");
    assert_eq!(fake.actions(), ["StopTask old1"]);
    assert_eq!(outcome.deployment_id, OLD_DEP);
    let ids: Vec<&str> = outcome.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["new1"]);
    assert_within(elapsed, 45.0, "completion");
    assert_eq!(outcome.api_calls.get("StopTask"), Some(&1));
    assert_eq!(outcome.api_calls.get("UpdateService"), None);
}

#[tokio::test(start_paused = true)]
async fn stale_digest_is_not_done_and_fails_with_the_reason() {
    let fake = stop_tasks_script(RAILS_OLD);
    let (result, elapsed) = run(&fake, RollStrategy::StopTasks, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(text.contains(&format!("runs {RAILS_OLD} for container `rails`")), "{text}");
    assert!(text.contains(RAILS_NEW), "{text}");
    assert!(text.contains("--strategy force-new-deployment"), "{text}");
    // The digest shows at 30 s, with the task RUNNING but not healthy yet.
    assert_within(elapsed, 30.0, "stale digest");
}

#[tokio::test(start_paused = true)]
async fn essential_container_exit_fails_fast_with_exit_code_and_log_hint() {
    let exited = stopping(
        task(
            "new1",
            NEW_DEP,
            "RUNNING",
            vec![
                {
                    let mut c = ctr("rails", "STOPPED", H::Unhealthy, Some(RAILS_NEW));
                    c.exit_code = Some(1);
                    c
                },
                ctr("nginx", "RUNNING", H::UnknownValue, Some(NGINX_NEW)),
            ],
        ),
        "RUNNING",
        TaskStopCode::EssentialContainerExited,
        "Essential container in task exited",
    );
    let fake = force_then(
        40.0,
        vec![at(40.0, in_progress(1, 0, 1, &[E0, E_START]), vec![old_task("old1"), exited])],
    );
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, 7);
    assert!(text.contains("new task new1 is stopping (last status RUNNING, EssentialContainerExited): Essential container in task exited"), "{text}");
    assert!(text.contains("container rails: STOPPED, exit code 1"), "{text}");
    assert!(text.contains("deployment ecs-svc/2222222222222222222: 1 failed task(s)"), "{text}");
    assert!(text.contains("next: `cargo xtask logs new1 --container rails`"), "{text}");
    assert!(text.contains("has started 1 tasks: (task new1)"), "recent events quoted: {text}");
    assert!(
        text.contains(&format!(
            "log of rails: no log: the container ran, yet ecs/rails/new1 in {LOG_GROUP} does not exist"
        )),
        "{text}"
    );
    assert_within(elapsed, 40.0, "container exit");
}

#[tokio::test(start_paused = true)]
async fn image_pull_failure_fails_fast_with_the_pull_error() {
    let failed = {
        let mut rails = ctr("rails", "STOPPED", H::UnknownValue, None);
        rails.reason = Some(PULL_ERROR.to_string());
        let nginx = ctr("nginx", "STOPPED", H::UnknownValue, None);
        stopping(
            task("new1", NEW_DEP, "STOPPED", vec![rails, nginx]),
            "STOPPED",
            TaskStopCode::TaskFailedToStart,
            PULL_ERROR,
        )
    };
    let fake = force_then(
        21.0,
        vec![at(21.0, in_progress(0, 0, 1, &[E0, E_START]), vec![old_task("old1"), failed])],
    );
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(
        text.contains("new task new1 stopped (TaskFailedToStart): CannotPullContainerError"),
        "{text}"
    );
    assert!(text.contains("zenn-clone-rails:latest: not found"), "{text}");
    assert!(text.contains("container rails: STOPPED, no exit code, reason: as above"), "{text}");
    assert!(text.contains("aws ecr describe-images --repository-name zenn-clone-rails"), "{text}");
    assert_within(elapsed, 21.0, "pull failure");
}

/// The task of a DescribeTasks response file (`test_data/stopped/`), as the SDK parses it: a
/// task of the new deployment (`startedBy` NEW_DEP, group of SERVICE, revision TD).
async fn stopped_fixture(name: &str) -> sdk::Task {
    let tasks = crate::aws::canned::described_tasks(&format!("stopped/{name}.json")).await;
    let task = tasks.into_iter().next().expect("one task");
    assert_eq!(task.started_by(), Some(NEW_DEP));
    assert_eq!(task.task_definition_arn(), Some(TD));
    task
}

const FIXTURE_TASK: &str = "0f6e4a1b2c3d4e5f60718293a4b5c6d7";
const LOG_GROUP: &str = "/ecs/zenn-clone-task-definition-backend";

#[tokio::test(start_paused = true)]
async fn a_crash_shows_the_cause_the_exit_code_the_last_log_lines_and_the_logs_command() {
    let crashed = stopped_fixture("essential-container-exited").await;
    let logs = FakeLogs::new();
    let lines: Vec<String> = (1..=45).map(|i| format!("boot line {i}")).collect();
    let mut lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    lines.push("ActiveRecord::RecordInvalid: Validation failed: Email has already been taken");
    logs.push(LOG_GROUP, &format!("ecs/rails/{FIXTURE_TASK}"), &lines);
    let fake = force_then(
        40.0,
        vec![at(40.0, in_progress(0, 0, 1, &[E0, E_START]), vec![old_task("old1"), crashed])],
    );
    let (result, elapsed) =
        run_logged(&fake, &logs, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    eprintln!("{text}");
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(
        text.contains(&format!(
            "new task {FIXTURE_TASK} stopped (EssentialContainerExited): Essential container in task exited"
        )),
        "{text}"
    );
    assert!(text.contains("container rails: STOPPED, exit code 1, health UNHEALTHY"), "{text}");
    assert!(text.contains("cause: the app in container `rails` exited with code 1"), "{text}");
    assert!(
        text.contains(&format!("next: `cargo xtask logs {FIXTURE_TASK} --container rails`")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "log of rails (ecs/rails/{FIXTURE_TASK} in {LOG_GROUP}), last 40 line(s):"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "
  | boot line 7
"
        ),
        "{text}"
    );
    assert!(
        !text.contains(
            "boot line 6
"
        ),
        "only the last 40 lines: {text}"
    );
    assert!(
        text.ends_with(
            "Email has already been taken
log of nginx: no log: the container never started"
        ),
        "{text}"
    );
    assert_within(elapsed, 40.0, "crash");
}

#[tokio::test(start_paused = true)]
async fn a_pull_failure_says_no_container_started_and_suggests_no_log() {
    let failed = stopped_fixture("pull-image-not-found").await;
    let logs = FakeLogs::new();
    let fake = force_then(
        21.0,
        vec![at(21.0, in_progress(0, 0, 1, &[E0, E_START]), vec![old_task("old1"), failed])],
    );
    let (result, _) =
        run_logged(&fake, &logs, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(text.contains("(TaskFailedToStart): CannotPullContainerError"), "{text}");
    assert!(
        text.contains("cause: the image or tag the task definition names is not in ECR"),
        "{text}"
    );
    assert!(text.contains("log of rails: no log: the container never started"), "{text}");
    assert!(text.contains("log of nginx: no log: the container never started"), "{text}");
    assert!(!text.contains("cargo xtask logs") && !text.contains("aws logs"), "{text}");
    assert_eq!(*logs.calls.borrow(), 0, "no stream is read when no container ran");
}

#[tokio::test(start_paused = true)]
async fn health_check_that_never_passes_ends_in_a_timeout_with_a_summary() {
    // The new task runs, its health checks never report: only the timeout ends the wait.
    let fake = force_then(50.0, Vec::new());
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, Failure::Timeout.exit_code());
    assert!(text.contains("did not finish within 10m00s"), "{text}");
    assert!(text.contains("waiting for: health checks of nginx, rails to pass"), "{text}");
    assert!(text.contains("container rails: RUNNING, health UNKNOWN"), "{text}");
    assert!(text.contains("deployment ecs-svc/2222222222222222222: IN_PROGRESS"), "{text}");
    assert!(text.contains("timeouts.roll"), "{text}");
    assert_eq!(elapsed, TEN_MINUTES);
}

#[tokio::test(start_paused = true)]
async fn unhealthy_container_whose_task_ecs_stops_fails_the_roll() {
    let unhealthy = |last: &str, exit: Option<i32>| {
        let mut rails = ctr(
            "rails",
            if exit.is_some() { "STOPPED" } else { "RUNNING" },
            H::Unhealthy,
            Some(RAILS_NEW),
        );
        rails.exit_code = exit;
        let t = task(
            "new1",
            NEW_DEP,
            last,
            vec![rails, ctr("nginx", "RUNNING", H::UnknownValue, Some(NGINX_NEW))],
        );
        stopping(
            t,
            last,
            TaskStopCode::ServiceSchedulerInitiated,
            "Task failed container health checks",
        )
    };
    let events = [E0, E_START];
    let fake = force_then(
        50.0,
        vec![
            at(
                50.0,
                in_progress(1, 0, 0, &events),
                vec![old_task("old1"), unhealthy("RUNNING", None)],
            ),
            at(
                55.0,
                in_progress(0, 0, 1, &events),
                vec![old_task("old1"), unhealthy("DEACTIVATING", Some(143))],
            ),
        ],
    );
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, 7);
    assert!(text.contains("Task failed container health checks"), "{text}");
    assert!(text.contains("container rails: STOPPED, exit code 143, health UNHEALTHY"), "{text}");
    // Told to stop at 50 s, its container ended at 55 s: the explanation needs the latter.
    assert_within(elapsed, 55.0, "unhealthy task");
}

#[tokio::test(start_paused = true)]
async fn task_that_never_starts_times_out_at_the_configured_timeout() {
    let fake = force_then(20.0, Vec::new());
    let timeout = Duration::from_secs(90);
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, timeout, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, 8);
    assert!(text.contains("did not finish within 1m30s"), "{text}");
    assert!(text.contains("waiting for: task new1 to start (PROVISIONING)"), "{text}");
    assert_eq!(elapsed, timeout);
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_rollback_fails_with_the_rollout_reason() {
    let ev = [
        E0,
        "({S}) (deployment ecs-svc/2222222222222222222) failed to launch a task: ResourceInitializationError: unable to pull secrets or registry auth.",
        "({S}) (deployment ecs-svc/2222222222222222222) deployment failed: tasks failed to start.",
        "({S}) rolling back to deployment ecs-svc/1111111111111111111.",
    ];
    let failed_and_rolled_back = service(
        (1, 1, 0),
        vec![
            dep(ROLLBACK_DEP, "PRIMARY", DeploymentRolloutState::InProgress, (1, 0, 0), 0),
            dep(NEW_DEP, "ACTIVE", DeploymentRolloutState::Failed, (0, 0, 0), 3),
            dep(OLD_DEP, "ACTIVE", DeploymentRolloutState::Completed, (1, 1, 0), 0),
        ],
        &ev,
    );
    let fake = force_then(
        1.0,
        vec![
            at(20.0, in_progress(0, 0, 1, &ev[..2]), vec![old_task("old1")]),
            at(40.0, in_progress(0, 0, 2, &ev[..2]), vec![old_task("old1")]),
            at(60.0, failed_and_rolled_back, vec![old_task("old1")]),
        ],
    );
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(
        text.contains("deployment ecs-svc/2222222222222222222 failed: ECS deployment circuit breaker: tasks failed to start. (3 failed task(s))"),
        "{text}"
    );
    assert!(text.contains("rolling back to deployment ecs-svc/1111111111111111111"), "{text}");
    assert!(text.contains("ResourceInitializationError"), "{text}");
    assert_within(elapsed, 60.0, "rollback");
}

#[tokio::test(start_paused = true)]
async fn two_tasks_are_done_when_both_are_healthy_and_both_old_ones_stopped() {
    let ip = DeploymentRolloutState::InProgress;
    let svc = |running: i32, new_running: i32, old_running: i32, state: DeploymentRolloutState| {
        let mut deps = vec![dep(NEW_DEP, "PRIMARY", state, (2, new_running, 2 - new_running), 0)];
        if old_running > 0 {
            deps.push(dep(
                OLD_DEP,
                "ACTIVE",
                DeploymentRolloutState::Completed,
                (2, old_running, 0),
                0,
            ));
        }
        service((2, running, 0), deps, &[E0])
    };
    let u = H::UnknownValue;
    let fresh = Some((RAILS_NEW, NGINX_NEW));
    let new = |id: &str, status: &str, h: H| {
        let c = if status == "RUNNING" { "RUNNING" } else { "PENDING" };
        task(id, NEW_DEP, status, pair(c, h.clone(), h, fresh.filter(|_| c == "RUNNING")))
    };
    let gone = |id: &str, last: &str| {
        stopping(
            old_task(id),
            last,
            TaskStopCode::ServiceSchedulerInitiated,
            "Scaling activity initiated by (deployment ecs-svc/2222222222222222222)",
        )
    };
    let before = service(
        (2, 2, 0),
        vec![dep(OLD_DEP, "PRIMARY", DeploymentRolloutState::Completed, (2, 2, 0), 0)],
        &[E0],
    );
    let fake = Fake::new(
        at(0.0, before, vec![old_task("old1"), old_task("old2")]),
        vec![
            at(0.0, svc(2, 0, 2, ip.clone()), vec![old_task("old1"), old_task("old2")]),
            at(
                4.0,
                svc(2, 0, 2, ip.clone()),
                vec![
                    old_task("old1"),
                    old_task("old2"),
                    new("new1", "PROVISIONING", u.clone()),
                    new("new2", "PROVISIONING", u.clone()),
                ],
            ),
            at(
                30.0,
                svc(3, 1, 2, ip.clone()),
                vec![
                    old_task("old1"),
                    old_task("old2"),
                    new("new1", "RUNNING", u.clone()),
                    new("new2", "PENDING", u.clone()),
                ],
            ),
            at(
                36.0,
                svc(4, 2, 2, ip.clone()),
                vec![
                    old_task("old1"),
                    old_task("old2"),
                    new("new1", "RUNNING", u.clone()),
                    new("new2", "RUNNING", u.clone()),
                ],
            ),
            at(
                45.0,
                svc(4, 2, 2, ip.clone()),
                vec![
                    old_task("old1"),
                    old_task("old2"),
                    new("new1", "RUNNING", H::Healthy),
                    new("new2", "RUNNING", u.clone()),
                ],
            ),
            at(
                47.0,
                svc(4, 2, 2, ip.clone()),
                vec![
                    gone("old1", "DEACTIVATING"),
                    old_task("old2"),
                    new("new1", "RUNNING", H::Healthy),
                    new("new2", "RUNNING", u.clone()),
                ],
            ),
            at(
                52.0,
                svc(3, 2, 1, ip.clone()),
                vec![
                    gone("old1", "STOPPED"),
                    old_task("old2"),
                    new("new1", "RUNNING", H::Healthy),
                    new("new2", "RUNNING", u.clone()),
                ],
            ),
            at(
                70.0,
                svc(3, 2, 1, ip.clone()),
                vec![
                    gone("old1", "STOPPED"),
                    old_task("old2"),
                    new("new1", "RUNNING", H::Healthy),
                    new("new2", "RUNNING", H::Healthy),
                ],
            ),
            at(
                72.0,
                svc(3, 2, 1, ip.clone()),
                vec![
                    gone("old1", "STOPPED"),
                    gone("old2", "DEACTIVATING"),
                    new("new1", "RUNNING", H::Healthy),
                    new("new2", "RUNNING", H::Healthy),
                ],
            ),
            at(
                76.0,
                svc(2, 2, 0, DeploymentRolloutState::Completed),
                vec![
                    gone("old1", "STOPPED"),
                    gone("old2", "STOPPED"),
                    new("new1", "RUNNING", H::Healthy),
                    new("new2", "RUNNING", H::Healthy),
                ],
            ),
        ],
    );
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let outcome = result.expect("two-task roll");
    let ids: Vec<&str> = outcome.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["new1", "new2"]);
    assert!(outcome.healthy_after.is_some_and(|d| (70.0..72.0).contains(&d.as_secs_f64())));
    assert_within(elapsed, 76.0, "completion");
}

/// Tasks of other services and a standalone task in the same cluster, listed alongside
/// (the fake, like moto, ignores ListTasks' service filter): some still running, one
/// stopped with an error and even claiming the new deployment as its `startedBy`.
fn neighbours() -> Vec<sdk::Task> {
    let worker = in_group(
        task(
            "worker1",
            "ecs-svc/5555555555555555555",
            "RUNNING",
            pair("RUNNING", H::Healthy, H::Healthy, None),
        ),
        "service:zenn-clone-worker",
    );
    let canary = in_group(
        task(
            "canary1",
            "ecs-svc/6666666666666666666",
            "RUNNING",
            pair("RUNNING", H::UnknownValue, H::UnknownValue, Some((RAILS_OLD, NGINX_OLD))),
        ),
        "service:zenn-clone-backend-service-canary",
    );
    let mut crashed = ctr("rails", "STOPPED", H::UnknownValue, Some(RAILS_OLD));
    crashed.exit_code = Some(1);
    let job = stopping(
        in_group(
            task("job1", NEW_DEP, "STOPPED", vec![crashed]),
            "family:zenn-clone-task-definition-backend",
        ),
        "STOPPED",
        TaskStopCode::EssentialContainerExited,
        "Essential container in task exited",
    );
    vec![worker, canary, job]
}

#[tokio::test(start_paused = true)]
async fn other_services_tasks_in_the_cluster_are_ignored_by_both_strategies() {
    let mut fake = clean_force().with_neighbours(&neighbours());
    fake.page_size = 2;
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 3).await;
    let outcome = result.expect("force roll next to other services");
    assert_eq!(outcome.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["new1"]);
    assert_within(elapsed, 60.0, "completion");

    let mut fake = stop_tasks_script(RAILS_NEW).with_neighbours(&neighbours());
    fake.page_size = 2;
    let (result, elapsed) = run(&fake, RollStrategy::StopTasks, TEN_MINUTES, 3).await;
    let outcome = result.expect("stop-tasks roll next to other services");
    assert_eq!(fake.actions(), ["StopTask old1"], "only the service's own task is stopped");
    assert_eq!(outcome.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["new1"]);
    assert_within(elapsed, 45.0, "completion");
}

#[tokio::test(start_paused = true)]
async fn a_few_failed_polls_are_retried_and_too_many_fail_the_roll() {
    let fake = clean_force();
    fake.failing_polls.set(2);
    let (result, _) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    assert!(result.is_ok(), "two failed polls are tolerated: {result:?}");

    let fake = clean_force();
    fake.failing_polls.set(3);
    let (result, _) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, Failure::Timeout.exit_code(), "no verdict: {text}");
    assert!(text.contains("polling ECS failed 3 times in a row"), "{text}");
    assert!(text.contains("ThrottlingException"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn ecs_unreachable_during_the_roll_is_retried_then_names_the_deployment_to_follow() {
    let fake = clean_force();
    fake.unreachable.set(true);
    let req = RollRequest {
        cluster: CLUSTER.to_string(),
        service: SERVICE.to_string(),
        strategy: RollStrategy::ForceNewDeployment,
        expected_digests: digests(),
        timeout: TEN_MINUTES,
        poll: Schedule { seed: 7, ..poll_schedule() },
        cli_flags: vec!["--target".into(), "staging".into()],
        task_definition: None,
        service_created: false,
        attach: None,
        desired_count: None,
    };
    let started = Instant::now();
    let result = roll(&fake, &FakeLogs::new(), &req, &Reporter::plain()).await;
    let elapsed = started.elapsed();
    let (code, text) = error_text(result);
    eprintln!("{text}");
    assert_eq!(fake.actions(), ["UpdateService forceNewDeployment"], "the roll started");
    assert_eq!(
        fake.failed_polls.get(),
        MAX_POLL_ERRORS,
        "each failed poll but the last is retried"
    );
    assert_eq!(code, Failure::Timeout.exit_code(), "no verdict, like a timeout: {text}");
    assert!(
        text.starts_with(&format!(
            "roll unfinished: lost sight of deployment {NEW_DEP} of `{SERVICE}`: polling ECS \
             failed 3 times in a row"
        )),
        "{text}"
    );
    assert!(text.contains("`cargo xtask status --target staging` shows how it ends"), "{text}");
    assert!(text.contains("run again on this tree attaches to it"), "{text}");
    assert!(text.contains("Connection refused"), "the last error is shown: {text}");
    assert!(elapsed < Duration::from_secs(5), "gave up after {elapsed:?}, not at the timeout");
}

#[tokio::test(start_paused = true)]
async fn a_new_task_killed_during_the_roll_fails_at_once_with_the_kill() {
    // new1 is RUNNING with both containers HEALTHY at 52 s; at 53 s rails is SIGKILLed from
    // outside (no reason recorded) and ECS stops the task.
    let killed = stopping(
        task(
            "new1",
            NEW_DEP,
            "STOPPING",
            vec![
                {
                    let mut c = ctr("rails", "STOPPED", H::Healthy, Some(RAILS_NEW));
                    c.exit_code = Some(137);
                    c
                },
                ctr("nginx", "RUNNING", H::Healthy, Some(NGINX_NEW)),
            ],
        ),
        "STOPPING",
        TaskStopCode::EssentialContainerExited,
        "Essential container in task exited",
    );
    let fake = force_then(
        53.0,
        vec![at(53.0, in_progress(0, 0, 1, &[E0, E_START]), vec![old_task("old1"), killed])],
    );
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    eprintln!("{text}");
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(
        text.contains(
            "new task new1 is stopping (last status STOPPING, EssentialContainerExited): \
             Essential container in task exited"
        ),
        "{text}"
    );
    assert!(text.contains("container rails: STOPPED, exit code 137"), "{text}");
    assert!(
        text.contains("cause: container `rails` was killed (SIGKILL, exit 137) while it ran"),
        "{text}"
    );
    assert!(!text.contains("used more memory than it may"), "no OutOfMemoryError: {text}");
    assert!(text.contains("next: `cargo xtask logs new1 --container rails`"), "{text}");
    assert_within(elapsed, 53.0, "the kill");
}

#[tokio::test(start_paused = true)]
async fn a_service_without_desired_tasks_fails_before_acting() {
    let idle = service(
        (0, 0, 0),
        vec![dep(OLD_DEP, "PRIMARY", DeploymentRolloutState::Completed, (0, 0, 0), 0)],
        &[E0],
    );
    let fake = Fake::new(at(0.0, idle.clone(), Vec::new()), vec![at(0.0, idle, Vec::new())]);
    let (result, _) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    let (code, text) = error_text(result);
    assert_eq!(code, 7);
    assert!(text.contains("desired count 0") && text.contains("--desired-count 1"), "{text}");
    assert!(fake.actions().is_empty());
}

#[tokio::test(start_paused = true)]
async fn list_all_tasks_reads_every_page_and_describe_batches_by_100() {
    let many: Vec<sdk::Task> = (0..150).map(|i| old_task(&format!("t{i:03}"))).collect();
    let mut fake =
        Fake::new(at(0.0, steady(&[E0]), many), vec![at(0.0, steady(&[E0]), Vec::new())]);
    fake.page_size = 40;
    let api = Counting::new(&fake);
    let arns = list_all_tasks(&api, CLUSTER, SERVICE, DesiredStatus::Running).await.expect("list");
    assert_eq!(arns.len(), 150);
    let tasks = describe_all_tasks(&api, CLUSTER, &arns).await.expect("describe");
    assert_eq!(tasks.len(), 150);
    assert_eq!(api.calls(), BTreeMap::from([("DescribeTasks", 2), ("ListTasks", 4)]));
}

#[test]
fn the_roll_polls_quickly_and_notices_a_finished_roll_within_two_seconds() {
    let schedule = poll_schedule();
    assert_eq!(schedule.first, Duration::from_millis(500));
    assert!(
        schedule.cap.mul_f64(1.0 + schedule.jitter) < Duration::from_secs(2),
        "a finished roll is seen within 2 s"
    );
}

#[test]
fn lists_are_fetched_while_tasks_are_missing_on_change_and_every_15_seconds() {
    let quiet = Some(Duration::from_secs(3));
    assert_eq!(listing_plan(false, 1, 1, quiet), ListingPlan { running: false, stopped: false });
    assert_eq!(listing_plan(false, 0, 1, quiet), ListingPlan { running: true, stopped: false });
    assert_eq!(listing_plan(true, 1, 1, quiet), ListingPlan { running: true, stopped: true });
    assert!(listing_plan(false, 1, 1, Some(RELIST_EVERY)).running);
    assert!(listing_plan(false, 1, 1, None).running);
}

#[test]
fn task_definitions_compare_by_family_and_revision() {
    assert!(same_task_definition(Some(TD), Some(TD)));
    assert!(same_task_definition(Some(TD), Some("zenn-clone-task-definition-backend:7")));
    assert!(!same_task_definition(Some(TD), Some("zenn-clone-task-definition-backend:6")));
    assert!(!same_task_definition(None, Some(TD)));
    assert!(same_task_definition(Some(TD), None));
}

#[test]
fn new_events_come_oldest_first_and_once() {
    let before = service_snapshot(&steady(&[E0]));
    let mut watch = Watch::new(
        &before,
        RollStrategy::ForceNewDeployment,
        NEW_DEP.to_string(),
        digests(),
        BTreeSet::new(),
    );
    let later = service_snapshot(&steady(&[E0, E_START, "({S}) has reached a steady state."]));
    let fresh: Vec<String> = watch.take_new_events(&later).into_iter().map(|e| e.id).collect();
    assert_eq!(fresh, ["event-1", "event-2"]);
    assert!(watch.take_new_events(&later).is_empty());
}

#[test]
fn a_container_missing_from_the_task_counts_only_when_the_task_is_healthy() {
    // moto reports only the first container of a task.
    let td = task_definition_snapshot(&task_definition(), TD);
    let mut t = task_snapshot(&task(
        "new1",
        NEW_DEP,
        "RUNNING",
        vec![ctr("rails", "PENDING", H::Healthy, None)],
    ));
    t.health = HealthStatus::Unknown;
    assert!(!task_ready(&t, &td));
    t.health = HealthStatus::Healthy;
    assert!(task_ready(&t, &td));
}

/// Sorted figures: min, median, max.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Figures for the report: how late a finished roll is reported and what a clean 60-second
/// roll costs in API calls, over 100 jitter seeds. The stop-tasks script ends after 15 quiet
/// seconds, when the polls have backed off to their cap: the worst case for lateness.
#[tokio::test(start_paused = true)]
async fn figures_completion_latency_and_api_calls_of_a_clean_roll() {
    let (mut late_force, mut late_quiet, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 0..100 {
        let (result, elapsed) =
            run(&clean_force(), RollStrategy::ForceNewDeployment, TEN_MINUTES, seed).await;
        let outcome = result.expect("clean roll");
        late_force.push(elapsed.as_secs_f64() - 60.0);
        calls.push(f64::from(outcome.api_call_total()));
        if seed == 0 {
            eprintln!("figures: seed 0: {} polls, calls {:?}", outcome.polls, outcome.api_calls);
        }
        let (result, elapsed) =
            run(&stop_tasks_script(RAILS_NEW), RollStrategy::StopTasks, TEN_MINUTES, seed).await;
        result.expect("clean stop-tasks roll");
        late_quiet.push(elapsed.as_secs_f64() - 45.0);
    }
    for (name, figures) in
        [("force-new-deployment", late_force), ("stop-tasks, after 15 s quiet", late_quiet)]
    {
        let (min, median, max) = spread(figures);
        eprintln!("figures: {name}: reported {min:.3}s / {median:.3}s / {max:.3}s (min / median / max) after observable");
        assert!(min >= 0.0 && max < 2.0, "{name}: {max:.3}s late");
    }
    let (min, median, max) = spread(calls);
    eprintln!("figures: API calls per clean 60-second roll: min {min}, median {median}, max {max}");
    assert!(max < 150.0, "a 60-second roll should cost well under 150 calls, not {max}");
}

#[test]
fn with_several_tasks_a_stopped_one_is_replaced_until_the_breaker_threshold() {
    assert_eq!((breaker_threshold(1), breaker_threshold(3), breaker_threshold(10)), (3, 3, 5));
    assert_eq!(breaker_threshold(1000), 200);
    let before = service_snapshot(&service(
        (3, 3, 0),
        vec![dep(OLD_DEP, "PRIMARY", DeploymentRolloutState::Completed, (3, 3, 0), 0)],
        &[E0],
    ));
    let now = service_snapshot(&service(
        (3, 0, 2),
        vec![dep(NEW_DEP, "PRIMARY", DeploymentRolloutState::InProgress, (3, 0, 2), 1)],
        &[E0],
    ));
    let td = task_definition_snapshot(&task_definition(), TD);
    let watch = Watch::new(
        &before,
        RollStrategy::ForceNewDeployment,
        NEW_DEP.into(),
        digests(),
        BTreeSet::new(),
    );
    let exited = |id: &str| {
        let mut rails = ctr("rails", "STOPPED", H::UnknownValue, Some(RAILS_NEW));
        rails.exit_code = Some(1);
        task_snapshot(&stopping(
            task(
                id,
                NEW_DEP,
                "STOPPED",
                vec![rails, ctr("nginx", "STOPPED", H::UnknownValue, None)],
            ),
            "STOPPED",
            TaskStopCode::EssentialContainerExited,
            "Essential container in task exited",
        ))
    };
    let starting = |id: &str| {
        task_snapshot(&task(
            id,
            NEW_DEP,
            "PENDING",
            pair("PENDING", H::UnknownValue, H::UnknownValue, None),
        ))
    };
    // Two tasks migrating at once: one exits, ECS starts another in its place.
    let tasks = [exited("new1"), starting("new2"), starting("new3")];
    match watch.judge(&now, tasks.iter(), &td) {
        RollVerdict::Waiting(progress) => {
            assert!(
                progress.waiting_for.contains("ECS to start 1 new task"),
                "{}",
                progress.waiting_for
            )
        }
        other => panic!("one stopped task of three must not fail the roll: {other:?}"),
    }
    let tasks = [exited("new1"), exited("new2"), exited("new3")];
    let RollVerdict::Failed(RollFailure { explanation: why, .. }) =
        watch.judge(&now, tasks.iter(), &td)
    else {
        panic!("three stopped tasks of three fail the roll")
    };
    assert!(
        why.contains("EssentialContainerExited")
            && why.contains("(3 new tasks stopped, the limit of 3 for 3 tasks)"),
        "{why}"
    );
}

/// The fake as an eventually consistent ECS answers: after the roll acts, the first
/// `stale_services` DescribeServices show the service as it was before; DescribeTasks answers
/// MISSING for the task `missing` the first `missing_times` times it is asked for.
struct Lagging {
    fake: Fake,
    stale_services: Cell<u32>,
    missing: &'static str,
    missing_times: Cell<u32>,
    /// MISSING answers given.
    missed: Cell<u32>,
}

impl Lagging {
    fn new(fake: Fake) -> Lagging {
        Lagging {
            fake,
            stale_services: Cell::new(0),
            missing: "",
            missing_times: Cell::new(0),
            missed: Cell::new(0),
        }
    }

    fn stale_services(self, n: u32) -> Lagging {
        self.stale_services.set(n);
        self
    }

    fn missing(self, task_id: &'static str, times: u32) -> Lagging {
        self.missing_times.set(times);
        Lagging { missing: task_id, ..self }
    }
}

impl EcsApi for Lagging {
    async fn describe_service(&self, cluster: &str, service: &str) -> Result<ServiceSnapshot> {
        if self.fake.acted.get() && self.stale_services.get() > 0 {
            self.stale_services.set(self.stale_services.get() - 1);
            return Ok(service_snapshot(&self.fake.before.service));
        }
        self.fake.describe_service(cluster, service).await
    }
    async fn list_tasks_page(
        &self,
        cluster: &str,
        service: &str,
        desired: DesiredStatus,
        next_token: Option<&str>,
    ) -> Result<TaskPage> {
        self.fake.list_tasks_page(cluster, service, desired, next_token).await
    }
    async fn describe_tasks(&self, cluster: &str, arns: &[String]) -> Result<Vec<TaskSnapshot>> {
        let mut tasks = self.fake.describe_tasks(cluster, arns).await?;
        if self.missing_times.get() > 0 && tasks.iter().any(|t| t.id == self.missing) {
            self.missing_times.set(self.missing_times.get() - 1);
            self.missed.set(self.missed.get() + 1);
            tasks.retain(|t| t.id != self.missing);
        }
        Ok(tasks)
    }
    async fn stop_task(&self, cluster: &str, arn: &str, reason: &str) -> Result<()> {
        self.fake.stop_task(cluster, arn, reason).await
    }
    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        update: &ServiceUpdate,
    ) -> Result<ServiceSnapshot> {
        self.fake.update_service(cluster, service, update).await
    }
    async fn describe_task_definition(&self, arn: &str) -> Result<TaskDefinitionSnapshot> {
        self.fake.describe_task_definition(arn).await
    }
}

async fn run_lagging(
    api: &Lagging,
    strategy: RollStrategy,
    timeout: Duration,
) -> (Result<RollOutcome>, Duration) {
    let req = RollRequest {
        cluster: CLUSTER.to_string(),
        service: SERVICE.to_string(),
        strategy,
        expected_digests: digests(),
        timeout,
        poll: Schedule { seed: 7, ..poll_schedule() },
        cli_flags: Vec::new(),
        task_definition: None,
        service_created: false,
        attach: None,
        desired_count: None,
    };
    let started = Instant::now();
    let result = roll(api, &FakeLogs::new(), &req, &Reporter::plain()).await;
    (result, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_deployment_describe_services_does_not_show_yet_is_waited_for() {
    for stale in [1, 2] {
        let api = Lagging::new(clean_force()).stale_services(stale);
        let (result, elapsed) =
            run_lagging(&api, RollStrategy::ForceNewDeployment, TEN_MINUTES).await;
        let outcome = result.expect("the roll completes once its deployment shows");
        assert_eq!(api.stale_services.get(), 0, "every stale answer was given");
        assert_eq!(outcome.deployment_id, NEW_DEP);
        assert_eq!(outcome.tasks.len(), 1);
        assert_within(elapsed, 60.0, "completion");
    }
}

#[tokio::test(start_paused = true)]
async fn a_deployment_that_never_shows_fails_the_roll_after_the_grace() {
    let api = Lagging::new(clean_force()).stale_services(u32::MAX);
    let (result, elapsed) = run_lagging(&api, RollStrategy::ForceNewDeployment, TEN_MINUTES).await;
    let (code, text) = error_text(result);
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(
        text.contains(&format!("deployment {NEW_DEP} that the roll started has not shown")),
        "{text}"
    );
    assert!(text.contains(&format!("within 30s (primary: {OLD_DEP})")), "{text}");
    assert_within(elapsed, DEPLOYMENT_GRACE.as_secs_f64(), "the end of the grace");
}

#[tokio::test(start_paused = true)]
async fn a_listed_task_missing_in_describe_tasks_is_asked_for_again() {
    // stop-tasks: the running task DescribeTasks first answers MISSING is still stopped.
    let api = Lagging::new(stop_tasks_script(RAILS_NEW)).missing("old1", 1);
    let (result, elapsed) = run_lagging(&api, RollStrategy::StopTasks, TEN_MINUTES).await;
    let outcome = result.expect("the roll completes");
    assert_eq!(api.missed.get(), 1);
    assert_eq!(api.fake.actions(), ["StopTask old1"]);
    let ids: Vec<&str> = outcome.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["new1"]);
    assert_within(elapsed, 45.0, "completion");

    // force-new-deployment: the new task is MISSING for two polls after it is listed.
    let api = Lagging::new(clean_force()).missing("new1", 2);
    let (result, elapsed) = run_lagging(&api, RollStrategy::ForceNewDeployment, TEN_MINUTES).await;
    let outcome = result.expect("the roll completes");
    assert_eq!(api.missed.get(), 2);
    assert_eq!(outcome.tasks.len(), 1);
    assert_within(elapsed, 60.0, "completion");
}

/// The roll of a deploy interrupted `since` into [`clean_force`], picked up again.
async fn run_attached(since: Duration) -> (Fake, Result<RollOutcome>, Duration) {
    let fake = clean_force();
    fake.acted.set(true);
    let fake = Fake { start: Instant::now() - since, ..fake };
    let req = RollRequest {
        cluster: CLUSTER.to_string(),
        service: SERVICE.to_string(),
        strategy: RollStrategy::ForceNewDeployment,
        expected_digests: digests(),
        timeout: TEN_MINUTES,
        poll: Schedule { seed: 7, ..poll_schedule() },
        cli_flags: Vec::new(),
        task_definition: Some(TD.to_string()),
        service_created: false,
        attach: Some(NEW_DEP.to_string()),
        desired_count: None,
    };
    let started = Instant::now();
    let result = roll(&fake, &FakeLogs::new(), &req, &Reporter::plain()).await;
    (fake, result, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn an_attached_roll_watches_the_deployment_under_way_and_starts_none() {
    let (fake, result, elapsed) = run_attached(Duration::ZERO).await;
    let outcome = result.expect("the deployment completes");
    assert!(fake.actions().is_empty(), "no UpdateService, no StopTask: {:?}", fake.actions());
    assert_eq!(outcome.deployment_id, NEW_DEP);
    assert_eq!(outcome.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["new1"]);
    assert_within(elapsed, 60.0, "completion");
}

#[tokio::test(start_paused = true)]
async fn an_attached_roll_counts_the_deployments_tasks_that_were_there_already() {
    // Interrupted at 40 s: new1 is RUNNING, not healthy yet; it is the deployment's, so new.
    let (fake, result, elapsed) = run_attached(Duration::from_secs(40)).await;
    let outcome = result.expect("the deployment completes");
    assert!(fake.actions().is_empty(), "{:?}", fake.actions());
    assert_eq!(outcome.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["new1"]);
    assert_within(elapsed, 20.0, "completion at 60 s of the deployment");
}

#[tokio::test(start_paused = true)]
async fn attaching_to_a_deployment_that_is_gone_fails_the_roll_naming_it() {
    let fake = clean_force();
    let req = RollRequest {
        cluster: CLUSTER.to_string(),
        service: SERVICE.to_string(),
        strategy: RollStrategy::ForceNewDeployment,
        expected_digests: digests(),
        timeout: TEN_MINUTES,
        poll: poll_schedule(),
        cli_flags: Vec::new(),
        task_definition: None,
        service_created: false,
        attach: Some(ROLLBACK_DEP.to_string()),
        desired_count: None,
    };
    let (code, text) = error_text(roll(&fake, &FakeLogs::new(), &req, &Reporter::plain()).await);
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(text.contains(&format!("deployment {ROLLBACK_DEP} is gone")), "{text}");
    assert!(fake.actions().is_empty());
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_during_the_roll_stops_at_once_naming_the_deployment_that_goes_on() {
    let fake = clean_force();
    // This runtime polls on this thread: Ctrl-C as the roll's loop sees it.
    crate::interrupt::raise_on_this_thread(true);
    let (result, elapsed) = run(&fake, RollStrategy::ForceNewDeployment, TEN_MINUTES, 7).await;
    crate::interrupt::raise_on_this_thread(false);
    let (code, text) = error_text(result);
    assert_eq!(code, Failure::Roll.exit_code());
    assert!(
        text.contains(&format!("interrupted (Ctrl-C) while waiting for deployment {NEW_DEP}")),
        "{text}"
    );
    assert!(text.contains("the same deploy run again on this tree attaches to it"), "{text}");
    assert_eq!(fake.actions(), ["UpdateService forceNewDeployment"]);
    assert_eq!(elapsed, Duration::ZERO, "no poll waited for");
}
