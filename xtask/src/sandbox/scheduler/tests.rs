//! The core against scripted worlds: a fake moto applies the actions as the admin API would
//! (tasks, deployments, events), and each test scripts what the runner observes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::sandbox::admin::Container;
use crate::sandbox::fargate::observe::ContainerObservation;

const SERVICE: &str = "web-service";
const DEFINITION: &str = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/web:1";
const CLOCK: &str = "2026-01-01T00:00:00.000Z";

fn definition() -> TaskDefinition {
    TaskDefinition::from_json(
        r#"{"containerDefinitions": [
            {"name": "app", "image": "r/app", "healthCheck": {"command": ["CMD-SHELL", "true"]}},
            {"name": "web", "image": "r/web", "healthCheck": {"command": ["CMD-SHELL", "true"]},
             "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}]}]}"#,
    )
    .unwrap()
}

fn deployment(id: &str, status: &str, rollout: &str, created: &str) -> Deployment {
    Deployment {
        id: id.to_string(),
        status: status.to_string(),
        task_definition: DEFINITION.to_string(),
        desired_count: 1,
        running_count: 0,
        pending_count: 0,
        failed_tasks: 0,
        rollout_state: rollout.to_string(),
        rollout_state_reason: String::new(),
        created_at: Some(created.to_string()),
        updated_at: None,
    }
}

fn config(min: u32, max: u32, breaker: bool, rollback: bool) -> Value {
    json!({
        "minimumHealthyPercent": min,
        "maximumPercent": max,
        "deploymentCircuitBreaker": {"enable": breaker, "rollback": rollback},
    })
}

fn container_record(name: &str) -> Container {
    Container {
        name: name.to_string(),
        image: Some(format!("r/{name}")),
        image_digest: None,
        runtime_id: None,
        last_status: Some("PENDING".into()),
        health_status: Some("UNKNOWN".into()),
        exit_code: None,
        reason: None,
    }
}

fn task_record(id: &str, deployment: &str, created: &str) -> Task {
    Task {
        task_arn: format!("arn:aws:ecs:ap-northeast-1:123456789012:task/cluster/{id}"),
        task_id: id.to_string(),
        cluster: "cluster".into(),
        task_definition_arn: DEFINITION.into(),
        group: format!("service:{SERVICE}"),
        started_by: deployment.to_string(),
        launch_type: "FARGATE".into(),
        last_status: "PROVISIONING".into(),
        desired_status: "RUNNING".into(),
        health_status: "UNKNOWN".into(),
        stopped_reason: None,
        stop_code: None,
        created_at: Some(created.to_string()),
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        stopping_at: None,
        stopped_at: None,
        network_interface_id: Some(format!("eni-{id}")),
        attachment_status: Some("ATTACHED".into()),
        private_ip: Some("10.0.0.9".into()),
        public_ip: None,
        containers: vec![container_record("app"), container_record("web")],
    }
}

/// The runner's view of a task whose containers are all in `status` and `health`.
fn observed(id: &str, status: Status, health: Health, stop: Option<TaskStop>) -> TaskObservation {
    let container = |name: &str| ContainerObservation {
        name: name.to_string(),
        last_status: status,
        health_status: health,
        exit_code: None,
        reason: None,
        image: format!("r/{name}"),
        image_digest: (status != Status::Pending).then(|| "sha256:aa".to_string()),
        docker_id: (status != Status::Pending).then(|| format!("{id}-{name}")),
    };
    TaskObservation {
        task_id: id.to_string(),
        last_status: status,
        health_status: health,
        stop,
        containers: vec![container("app"), container("web")],
    }
}

/// An essential container exited with code 1 before the task became healthy.
fn exited(id: &str) -> TaskObservation {
    let mut o = observed(
        id,
        Status::Pending,
        Health::Unknown,
        Some(TaskStop::new(
            StopCode::EssentialContainerExited,
            "Essential container in task exited",
        )),
    );
    o.containers[0].last_status = Status::Stopped;
    o.containers[0].exit_code = Some(1);
    o.containers[0].docker_id = Some(format!("{id}-app"));
    o
}

/// moto and the runner as the driver sees them, changed by the actions as the driver would.
struct Sim {
    scheduler: Scheduler,
    service: Service,
    tasks: Vec<Task>,
    observations: BTreeMap<String, TaskObservation>,
    start_errors: BTreeMap<String, String>,
    definitions: BTreeMap<String, TaskDefinition>,
    now: Instant,
    next_task: u32,
    /// Stops the driver runs in its threads.
    stopping: Vec<String>,
    /// Service events, oldest first.
    events: Vec<String>,
}

impl Sim {
    fn new(desired: i32, configuration: Value, deployments: Vec<Deployment>) -> Sim {
        Sim {
            scheduler: Scheduler::default(),
            service: Service {
                service_arn: format!(
                    "arn:aws:ecs:ap-northeast-1:123456789012:service/cluster/{SERVICE}"
                ),
                service_name: SERVICE.into(),
                cluster: "cluster".into(),
                status: "ACTIVE".into(),
                desired_count: desired,
                running_count: 0,
                pending_count: 0,
                task_definition: Some(DEFINITION.into()),
                launch_type: Some("FARGATE".into()),
                network_configuration: Value::Null,
                deployment_configuration: configuration,
                deployments,
                events: Vec::new(),
            },
            tasks: Vec::new(),
            observations: BTreeMap::new(),
            start_errors: BTreeMap::new(),
            definitions: BTreeMap::from([(DEFINITION.to_string(), definition())]),
            now: Instant::now(),
            next_task: 0,
            stopping: Vec::new(),
            events: Vec::new(),
        }
    }

    /// A service in a steady state: one COMPLETED deployment `d1` with `n` healthy tasks.
    fn steady(n: i32, configuration: Value) -> Sim {
        let mut sim =
            Sim::new(n, configuration, vec![deployment("ecs-svc/1", "PRIMARY", "COMPLETED", "t1")]);
        for _ in 0..n {
            let id = sim.add_task("ecs-svc/1");
            sim.run(&id, Health::Healthy);
            sim.record_as_observed(&id);
        }
        assert_eq!(sim.tick(), [], "a steady service needs nothing");
        sim
    }

    fn add_task(&mut self, deployment: &str) -> String {
        self.next_task += 1;
        let id = format!("task{:02}", self.next_task);
        self.tasks.push(task_record(&id, deployment, &format!("c{:02}", self.next_task)));
        self.observations.insert(id.clone(), observed(&id, Status::Pending, Health::Unknown, None));
        id
    }

    fn run(&mut self, id: &str, health: Health) {
        self.observations.insert(id.to_string(), observed(id, Status::Running, health, None));
    }

    fn observe(&mut self, observation: TaskObservation) {
        self.observations.insert(observation.task_id.clone(), observation);
    }

    /// moto already holds what the runner observes (as after a tick that recorded it).
    fn record_as_observed(&mut self, id: &str) {
        let o = self.observations[id].clone();
        let update = observed_update(self.task(id), &o, CLOCK).unwrap();
        apply(self.task_mut(id), &update);
    }

    fn task(&self, id: &str) -> &Task {
        self.tasks.iter().find(|t| t.task_id == id).unwrap()
    }

    fn task_mut(&mut self, id: &str) -> &mut Task {
        self.tasks.iter_mut().find(|t| t.task_id == id).unwrap()
    }

    fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.service.deployments.iter().find(|d| d.id == id)
    }

    /// UpdateService(forceNewDeployment): a new PRIMARY, the previous one ACTIVE.
    fn force_new_deployment(&mut self, id: &str) {
        for d in &mut self.service.deployments {
            if d.status == "PRIMARY" {
                d.status = "ACTIVE".into();
            }
        }
        let created = format!("t{}", self.service.deployments.len() + 1);
        self.service.deployments.insert(0, deployment(id, "PRIMARY", "IN_PROGRESS", &created));
    }

    /// StopTask: desired STOPPED with the user's reason; the task runs on until it is stopped.
    fn stop_task(&mut self, id: &str, reason: &str) {
        let task = self.task_mut(id);
        task.desired_status = "STOPPED".into();
        task.stop_code = Some("UserInitiated".into());
        task.stopped_reason = Some(reason.into());
    }

    /// One tick: decide, then apply the actions as the driver would.
    fn tick(&mut self) -> Vec<Action> {
        let world = World {
            services: std::slice::from_ref(&self.service),
            tasks: &self.tasks,
            observations: &self.observations,
            start_errors: &self.start_errors,
            definitions: &self.definitions,
            now: self.now,
            clock: CLOCK,
        };
        let actions = self.scheduler.decide(&world);
        for action in &actions {
            match action {
                Action::Record { task_id, update } => apply(self.task_mut(task_id), update),
                Action::Stop { task_id, update, .. } => {
                    apply(self.task_mut(task_id), update);
                    self.stopping.push(task_id.clone());
                }
                Action::RemoveOrphan { task_id } => self.stopping.push(task_id.clone()),
                Action::UpdateDeployments { updates, .. } => {
                    for u in updates {
                        let d = self.service.deployments.iter_mut().find(|d| d.id == u.id).unwrap();
                        if let Some(s) = &u.status {
                            d.status = s.clone();
                        }
                        if let Some(r) = &u.rollout_state {
                            d.rollout_state = r.clone();
                        }
                        if let Some(r) = &u.rollout_state_reason {
                            d.rollout_state_reason = r.clone();
                        }
                        if let Some(n) = u.failed_tasks {
                            d.failed_tasks = n;
                        }
                    }
                    self.service.deployments.retain(|d| d.status != "INACTIVE");
                    self.service.deployments.sort_by_key(|d| d.status != "PRIMARY");
                }
                Action::Event { message, .. } => self.events.push(message.clone()),
                Action::Start { deployment, count, .. } => {
                    let ids: Vec<String> = (0..*count).map(|_| self.add_task(deployment)).collect();
                    self.events.push(started_event(SERVICE, &ids));
                }
            }
        }
        actions
    }

    /// The driver's stop threads end: containers gone, moto says STOPPED.
    fn finish_stops(&mut self) {
        for id in std::mem::take(&mut self.stopping) {
            self.observations.remove(&id);
            if let Some(task) = self.tasks.iter_mut().find(|t| t.task_id == id) {
                task.last_status = "STOPPED".into();
                task.desired_status = "STOPPED".into();
            }
            self.scheduler.stop_finished(&id);
        }
    }

    fn new_events(&mut self, since: usize) -> Vec<String> {
        self.events[since..].to_vec()
    }

    fn live(&self) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|t| t.last_status != "STOPPED")
            .map(|t| t.task_id.as_str())
            .collect()
    }
}

/// What the admin API does with a task update.
fn apply(task: &mut Task, u: &TaskUpdate) {
    if let Some(s) = &u.last_status {
        task.last_status = s.clone();
    }
    if let Some(s) = &u.desired_status {
        task.desired_status = s.clone();
    }
    if let Some(h) = &u.health_status {
        task.health_status = h.clone();
    }
    if u.stop_code.is_some() {
        task.stop_code = u.stop_code.clone();
    }
    if u.stopped_reason.is_some() {
        task.stopped_reason = u.stopped_reason.clone();
    }
    task.pull_started_at = u.pull_started_at.clone().or(task.pull_started_at.take());
    task.pull_stopped_at = u.pull_stopped_at.clone().or(task.pull_stopped_at.take());
    for c in &u.containers {
        let r = task.containers.iter_mut().find(|r| r.name == c.name).unwrap();
        r.image_digest = c.image_digest.clone().or(r.image_digest.take());
        r.runtime_id = c.runtime_id.clone().or(r.runtime_id.take());
        r.last_status = c.last_status.clone().or(r.last_status.take());
        r.health_status = c.health_status.clone().or(r.health_status.take());
        r.exit_code = c.exit_code.or(r.exit_code);
        r.reason = c.reason.clone().or(r.reason.take());
    }
}

fn starts(actions: &[Action]) -> Vec<(String, usize)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { deployment, count, .. } => Some((deployment.clone(), *count)),
            _ => None,
        })
        .collect()
}

fn stops(actions: &[Action]) -> Vec<(String, TaskStop)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop { task_id, cause, .. } => Some((task_id.clone(), cause.clone())),
            _ => None,
        })
        .collect()
}

fn scaling(deployment: &str) -> TaskStop {
    TaskStop::new(StopCode::ServiceSchedulerInitiated, scaling_reason(deployment))
}

#[test]
fn a_new_service_starts_its_task_records_it_and_completes_with_a_steady_state() {
    let mut sim = Sim::new(
        1,
        config(100, 200, true, true),
        vec![deployment("ecs-svc/1", "PRIMARY", "IN_PROGRESS", "t1")],
    );
    assert_eq!(
        sim.tick(),
        [Action::Start { service: SERVICE.into(), deployment: "ecs-svc/1".into(), count: 1 }]
    );
    assert_eq!(sim.events, ["(service web-service) has started 1 tasks: (task task01)."]);

    // The start runs in the runner: PENDING, pulling; the next tick starts nothing more.
    let actions = sim.tick();
    assert_eq!(
        actions,
        [Action::Record {
            task_id: "task01".into(),
            update: TaskUpdate {
                last_status: Some("PENDING".into()),
                pull_started_at: Some(CLOCK.into()),
                ..TaskUpdate::default()
            },
        }]
    );
    assert_eq!(sim.tick(), [], "nothing changed");

    sim.run("task01", Health::Healthy);
    let actions = sim.tick();
    let Action::Record { update, .. } = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(
        (update.last_status.as_deref(), update.health_status.as_deref()),
        (Some("RUNNING"), Some("HEALTHY"))
    );
    assert_eq!(update.pull_stopped_at.as_deref(), Some(CLOCK));
    let app = &update.containers[0];
    assert_eq!(
        (app.image_digest.as_deref(), app.runtime_id.as_deref(), app.health_status.as_deref()),
        (Some("sha256:aa"), Some("task01-app"), Some("HEALTHY"))
    );
    assert_eq!(sim.deployment("ecs-svc/1").unwrap().rollout_state, "COMPLETED");
    assert_eq!(
        sim.deployment("ecs-svc/1").unwrap().rollout_state_reason,
        "ECS deployment ecs-svc/1 completed."
    );
    assert_eq!(
        sim.new_events(1),
        [
            "(service web-service) (deployment ecs-svc/1) deployment completed.",
            "(service web-service) has reached a steady state."
        ]
    );
    assert_eq!(sim.tick(), [], "steady: nothing to do, no second steady event");
}

#[test]
fn a_forced_deployment_starts_a_new_task_and_stops_the_old_one_once_the_new_is_healthy() {
    let mut sim = Sim::steady(1, config(100, 200, true, true));
    sim.force_new_deployment("ecs-svc/2");
    assert_eq!(starts(&sim.tick()), [("ecs-svc/2".to_string(), 1)]);
    sim.tick();
    sim.run("task02", Health::Unknown);
    assert_eq!(stops(&sim.tick()), [], "the new task is not healthy yet: the old one stays");

    sim.run("task02", Health::Healthy);
    let actions = sim.tick();
    assert_eq!(stops(&actions), [("task01".to_string(), scaling("ecs-svc/2"))]);
    let stop = actions.iter().find(|a| matches!(a, Action::Stop { .. })).unwrap();
    let Action::Stop { update, .. } = stop else { unreachable!() };
    assert_eq!(
        (update.desired_status.as_deref(), update.last_status.as_deref()),
        (Some("STOPPED"), Some("DEACTIVATING"))
    );
    assert_eq!(
        update.stopped_reason.as_deref(),
        Some("Scaling activity initiated by (deployment ecs-svc/2)")
    );
    assert_eq!(update.stop_code.as_deref(), Some("ServiceSchedulerInitiated"));
    assert_eq!(sim.deployment("ecs-svc/2").unwrap().rollout_state, "IN_PROGRESS");
    assert_eq!(sim.tick(), [], "the stop is in flight: nothing new");

    sim.finish_stops();
    sim.tick();
    assert_eq!(sim.service.deployments.len(), 1, "the old deployment is dropped");
    assert_eq!(
        (sim.service.deployments[0].id.as_str(), sim.service.deployments[0].rollout_state.as_str()),
        ("ecs-svc/2", "COMPLETED")
    );
    assert_eq!(
        sim.events,
        [
            "(service web-service) has started 1 tasks: (task task02).",
            "(service web-service) has stopped 1 running tasks: (task task01).",
            "(service web-service) (deployment ecs-svc/2) deployment completed.",
            "(service web-service) has reached a steady state.",
        ]
    );
    assert_eq!(sim.live(), ["task02"]);
}

#[test]
fn a_stopped_task_is_replaced_at_once_and_the_deployment_stays_completed() {
    let mut sim = Sim::steady(1, config(100, 200, true, true));
    sim.stop_task("task01", "stopped by cargo xtask deploy");
    let actions = sim.tick();
    assert_eq!(
        stops(&actions),
        [(
            "task01".to_string(),
            TaskStop::new(StopCode::UserInitiated, "stopped by cargo xtask deploy")
        )]
    );
    let Action::Stop { update, .. } = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(
        (
            update.desired_status.as_deref(),
            update.stop_code.as_deref(),
            update.stopped_reason.as_deref()
        ),
        (None, None, None),
        "moto keeps StopTask's own reason"
    );
    assert_eq!(starts(&actions), [("ecs-svc/1".to_string(), 1)], "started while the old stops");

    sim.finish_stops();
    sim.tick();
    sim.run("task02", Health::Healthy);
    sim.tick();
    assert_eq!(
        sim.events,
        [
            "(service web-service) has started 1 tasks: (task task02).",
            "(service web-service) has reached a steady state.",
        ]
    );
    assert_eq!(sim.deployment("ecs-svc/1").unwrap().rollout_state, "COMPLETED");
    assert_eq!(sim.deployment("ecs-svc/1").unwrap().failed_tasks, 0, "a user's stop is no failure");
}

#[test]
fn with_maximum_100_percent_the_replacement_waits_until_the_stopped_task_is_gone() {
    let mut sim = Sim::steady(1, config(0, 100, true, true));
    sim.stop_task("task01", "by hand");
    assert_eq!(starts(&sim.tick()), []);
    assert_eq!(starts(&sim.tick()), [], "still stopping");
    sim.finish_stops();
    assert_eq!(starts(&sim.tick()), [("ecs-svc/1".to_string(), 1)]);
}

#[test]
fn desired_2_with_min_50_and_max_100_percent_replaces_one_task_at_a_time() {
    let mut sim = Sim::steady(2, config(50, 100, true, true));
    sim.force_new_deployment("ecs-svc/2");
    // One old task may go (1 of 2 stays healthy); no room to start before it is stopped.
    let actions = sim.tick();
    assert_eq!(stops(&actions), [("task01".to_string(), scaling("ecs-svc/2"))]);
    assert_eq!(starts(&actions), []);
    sim.finish_stops();
    assert_eq!(starts(&sim.tick()), [("ecs-svc/2".to_string(), 1)]);
    sim.run("task03", Health::Unknown);
    let actions = sim.tick();
    assert_eq!(
        (stops(&actions), starts(&actions)),
        (vec![], vec![]),
        "task02 is the only healthy one"
    );

    sim.run("task03", Health::Healthy);
    let actions = sim.tick();
    assert_eq!(stops(&actions), [("task02".to_string(), scaling("ecs-svc/2"))]);
    sim.finish_stops();
    assert_eq!(starts(&sim.tick()), [("ecs-svc/2".to_string(), 1)]);
    sim.run("task04", Health::Healthy);
    sim.tick();
    assert_eq!(sim.live(), ["task03", "task04"]);
    assert_eq!(
        sim.events,
        [
            "(service web-service) has stopped 1 running tasks: (task task01).",
            "(service web-service) has started 1 tasks: (task task03).",
            "(service web-service) has stopped 1 running tasks: (task task02).",
            "(service web-service) has started 1 tasks: (task task04).",
            "(service web-service) (deployment ecs-svc/2) deployment completed.",
            "(service web-service) has reached a steady state.",
        ]
    );
}

#[test]
fn desired_2_with_min_100_and_max_200_percent_starts_both_then_stops_an_old_task_per_new_healthy_one(
) {
    let mut sim = Sim::steady(2, config(100, 200, true, true));
    sim.force_new_deployment("ecs-svc/2");
    assert_eq!(starts(&sim.tick()), [("ecs-svc/2".to_string(), 2)]);
    sim.run("task03", Health::Healthy);
    sim.run("task04", Health::Unknown);
    assert_eq!(stops(&sim.tick()), [("task01".to_string(), scaling("ecs-svc/2"))]);
    assert_eq!(stops(&sim.tick()), [], "2 healthy left: the minimum");
    sim.run("task04", Health::Healthy);
    assert_eq!(stops(&sim.tick()), [("task02".to_string(), scaling("ecs-svc/2"))]);
    sim.finish_stops();
    sim.tick();
    assert_eq!(sim.service.deployments.len(), 1);
    assert_eq!(sim.service.deployments[0].rollout_state, "COMPLETED");
}

#[test]
fn an_essential_exit_counts_as_failed_and_the_breaker_rolls_back_to_the_deployment_still_running() {
    let mut sim = Sim::steady(1, config(100, 200, true, true));
    sim.force_new_deployment("ecs-svc/2");
    for attempt in 1..=3 {
        let actions = sim.tick();
        assert_eq!(starts(&actions), [("ecs-svc/2".to_string(), 1)], "attempt {attempt}");
        let id = format!("task{:02}", attempt + 1);
        sim.observe(exited(&id));
        let actions = sim.tick();
        let cause =
            TaskStop::new(StopCode::EssentialContainerExited, "Essential container in task exited");
        assert_eq!(stops(&actions), [(id.clone(), cause)]);
        let Action::Stop { update, .. } = &actions[0] else { panic!("{actions:?}") };
        assert_eq!(update.containers[0].exit_code, Some(1), "the exit code reaches moto at once");
        assert_eq!(update.stop_code.as_deref(), Some("EssentialContainerExited"));
        assert_eq!(starts(&actions), [], "the failed task holds its place until it is stopped");
        if attempt < 3 {
            assert_eq!(sim.deployment("ecs-svc/2").unwrap().failed_tasks, attempt);
        }
        sim.finish_stops();
    }
    let failed = sim.deployment("ecs-svc/2").unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.rollout_state.as_str(), failed.failed_tasks),
        ("ACTIVE", "FAILED", 3)
    );
    assert_eq!(failed.rollout_state_reason, BREAKER_REASON);
    let back = sim.deployment("ecs-svc/1").unwrap();
    assert_eq!((back.status.as_str(), back.rollout_state.as_str()), ("PRIMARY", "IN_PROGRESS"));
    assert_eq!(
        back.rollout_state_reason,
        "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1."
    );

    let actions = sim.tick();
    assert_eq!((starts(&actions), stops(&actions)), (vec![], vec![]), "task01 still serves");
    assert_eq!(sim.service.deployments.len(), 1, "the failed deployment is dropped");
    assert_eq!(sim.service.deployments[0].rollout_state, "COMPLETED");
    assert_eq!(sim.tick(), []);
    assert_eq!(sim.live(), ["task01"]);
    assert_eq!(
        sim.events[sim.events.len() - 4..],
        [
            "(service web-service) (deployment ecs-svc/2) deployment failed: tasks failed to start.",
            "(service web-service) rolling back to deployment ecs-svc/1.",
            "(service web-service) (deployment ecs-svc/1) deployment completed.",
            "(service web-service) has reached a steady state.",
        ]
    );
}

#[test]
fn a_pull_failure_fails_the_task_and_a_first_deployment_without_rollback_target_stops_launching() {
    let mut sim = Sim::new(
        1,
        config(100, 200, true, true),
        vec![deployment("ecs-svc/1", "PRIMARY", "IN_PROGRESS", "t1")],
    );
    let pull = "CannotPullContainerError: manifest for 127.0.0.1:5011/app:latest not found";
    assert_eq!(starts(&sim.tick()), [("ecs-svc/1".to_string(), 1)]);
    for attempt in 1..=3 {
        let id = format!("task{attempt:02}");
        let mut o = observed(
            &id,
            Status::Stopped,
            Health::Unknown,
            Some(TaskStop::new(StopCode::TaskFailedToStart, pull)),
        );
        o.containers[0].reason = Some(pull.to_string());
        sim.observe(o);
        let actions = sim.tick();
        let Action::Stop { update, .. } = &actions[0] else { panic!("{actions:?}") };
        assert_eq!(update.stopped_reason.as_deref(), Some(pull));
        assert_eq!(update.containers[0].reason.as_deref(), Some(pull));
        assert_eq!(update.stop_code.as_deref(), Some("TaskFailedToStart"));
        let replaced = if attempt < 3 { vec![("ecs-svc/1".to_string(), 1)] } else { vec![] };
        assert_eq!(starts(&actions), replaced, "no other task holds a place: replaced at once");
        sim.finish_stops();
    }
    let d = sim.deployment("ecs-svc/1").unwrap();
    assert_eq!((d.status.as_str(), d.rollout_state.as_str()), ("PRIMARY", "FAILED"));
    sim.now += Duration::from_secs(3600);
    assert_eq!(sim.tick(), [], "a FAILED deployment launches no task");
    assert!(sim.events.iter().all(|e| !e.contains("rolling back")), "{:?}", sim.events);
}

#[test]
fn without_the_breaker_failing_starts_are_retried_with_a_backoff() {
    let mut sim = Sim::steady(1, config(100, 200, false, false));
    sim.force_new_deployment("ecs-svc/2");
    for attempt in 1..=3 {
        assert_eq!(starts(&sim.tick()), [("ecs-svc/2".to_string(), 1)], "attempt {attempt}");
        sim.observe(exited(&format!("task{:02}", attempt + 1)));
        sim.tick();
        sim.finish_stops();
    }
    let since = sim.events.len();
    assert_eq!(starts(&sim.tick()), [], "three failures in a row: wait a second");
    assert_eq!(
        sim.new_events(since),
        ["(service web-service) is unable to consistently start tasks successfully."]
    );
    assert_eq!(starts(&sim.tick()), []);
    sim.now += backoff(3);
    assert_eq!(starts(&sim.tick()), [("ecs-svc/2".to_string(), 1)]);
    let d = sim.deployment("ecs-svc/2").unwrap();
    assert_eq!((d.rollout_state.as_str(), d.failed_tasks), ("IN_PROGRESS", 3));
    assert_eq!(sim.live(), ["task01", "task05"], "the old task serves meanwhile");

    sim.run("task05", Health::Healthy);
    sim.tick();
    sim.finish_stops();
    sim.tick();
    assert_eq!(sim.live(), ["task05"]);
    assert_eq!(sim.service.deployments[0].rollout_state, "COMPLETED");
}

#[test]
fn backoff_and_breaker_threshold_follow_ecs() {
    assert_eq!([1, 2, 3, 4, 5, 6, 20].map(breaker_threshold), [3, 3, 3, 3, 3, 3, 10]);
    assert_eq!(breaker_threshold(1000), 200);
    assert_eq!(
        [0, 2, 3, 4, 5, 9, 40].map(backoff),
        [0, 0, 1, 2, 4, 60, 60].map(Duration::from_secs)
    );
}

#[test]
fn an_unhealthy_running_task_is_stopped_replaced_and_counted() {
    let mut sim = Sim::steady(1, config(100, 200, true, true));
    sim.force_new_deployment("ecs-svc/2");
    sim.tick();
    sim.run("task02", Health::Unhealthy);
    let since = sim.events.len();
    let actions = sim.tick();
    assert_eq!(
        stops(&actions),
        [(
            "task02".to_string(),
            TaskStop::new(StopCode::ServiceSchedulerInitiated, UNHEALTHY_REASON)
        )]
    );
    assert_eq!(sim.deployment("ecs-svc/2").unwrap().failed_tasks, 1);
    assert_eq!(
        sim.new_events(since),
        ["(service web-service) (task task02) failed container health checks."]
    );
}

#[test]
fn a_task_the_runner_refused_fails_with_the_reason() {
    let mut sim = Sim::new(
        1,
        config(100, 200, true, true),
        vec![deployment("ecs-svc/1", "PRIMARY", "IN_PROGRESS", "t1")],
    );
    sim.tick();
    sim.observations.remove("task01");
    let reason = "CannotStartContainerError: volumesFrom names unknown container db";
    sim.start_errors.insert("task01".into(), reason.into());
    let actions = sim.tick();
    assert_eq!(
        stops(&actions),
        [("task01".to_string(), TaskStop::new(StopCode::TaskFailedToStart, reason))]
    );
    assert_eq!(sim.deployment("ecs-svc/1").unwrap().failed_tasks, 1);
}

#[test]
fn a_restarted_scheduler_finds_its_tasks_removes_strays_and_replaces_a_start_it_lost() {
    let mut sim = Sim::steady(2, config(100, 200, true, true));
    // The scheduler restarts: it remembers nothing, the runner has no launch.
    sim.scheduler = Scheduler::default();
    assert_eq!(sim.tick(), [], "running tasks found again by the runner's labels: nothing to do");

    // Containers of a task moto does not know (moto restarted), and one moto records
    // PROVISIONING whose containers never came (the scheduler died between the two).
    sim.observations
        .insert("stray".into(), observed("stray", Status::Running, Health::Healthy, None));
    sim.scheduler = Scheduler::default();
    let lost = sim.add_task("ecs-svc/1");
    sim.observations.remove(&lost);
    sim.service.desired_count = 3;
    let actions = sim.tick();
    assert_eq!(actions[0], Action::RemoveOrphan { task_id: "stray".into() });
    assert_eq!(
        stops(&actions),
        [(
            lost.clone(),
            TaskStop::new(
                StopCode::TaskFailedToStart,
                "The sandbox scheduler restarted before the task's containers started"
            )
        )]
    );
    assert_eq!(starts(&actions), [("ecs-svc/1".to_string(), 1)]);
    assert_eq!(sim.deployment("ecs-svc/1").unwrap().failed_tasks, 0, "not the task's failure");
    assert_eq!(sim.tick().iter().filter(|a| matches!(a, Action::RemoveOrphan { .. })).count(), 0);
}

#[test]
fn a_lower_desired_count_stops_the_newest_task_and_settles() {
    let mut sim = Sim::steady(2, config(100, 200, true, true));
    sim.service.desired_count = 1;
    let actions = sim.tick();
    assert_eq!(stops(&actions), [("task02".to_string(), scaling("ecs-svc/1"))]);
    sim.finish_stops();
    sim.tick();
    assert_eq!(sim.live(), ["task01"]);
    assert_eq!(
        sim.events,
        [
            "(service web-service) has stopped 1 running tasks: (task task02).",
            "(service web-service) has reached a steady state.",
        ]
    );
}

#[test]
fn observations_are_recorded_only_when_they_differ_from_moto() {
    let mut task = task_record("t", "ecs-svc/1", "c");
    let running = observed("t", Status::Running, Health::Healthy, None);
    let update = observed_update(&task, &running, CLOCK).unwrap();
    assert_eq!(update.containers.len(), 2);
    apply(&mut task, &update);
    assert_eq!(observed_update(&task, &running, CLOCK), None);

    let mut exited = running.clone();
    exited.containers[1].last_status = Status::Stopped;
    exited.containers[1].health_status = Health::Unknown;
    exited.containers[1].exit_code = Some(137);
    exited.containers[1].reason =
        Some("OutOfMemoryError: Container killed due to memory usage".into());
    let update = observed_update(&task, &exited, CLOCK).unwrap();
    assert_eq!(
        update,
        TaskUpdate {
            containers: vec![ContainerUpdate {
                name: "web".into(),
                last_status: Some("STOPPED".into()),
                health_status: Some("UNKNOWN".into()),
                exit_code: Some(137),
                reason: Some("OutOfMemoryError: Container killed due to memory usage".into()),
                ..ContainerUpdate::default()
            }],
            ..TaskUpdate::default()
        }
    );
}

#[test]
fn the_deployment_configuration_has_ecs_defaults() {
    assert_eq!(
        DeploymentConfig::of(&Value::Null),
        DeploymentConfig {
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            breaker: false,
            rollback: false
        }
    );
    assert_eq!(
        DeploymentConfig::of(&config(50, 150, true, false)),
        DeploymentConfig {
            minimum_healthy_percent: 50,
            maximum_percent: 150,
            breaker: true,
            rollback: false
        }
    );
}

#[test]
fn a_task_without_health_checks_is_healthy_once_running() {
    let mut sim = Sim::new(
        1,
        config(100, 200, true, true),
        vec![deployment("ecs-svc/1", "PRIMARY", "IN_PROGRESS", "t1")],
    );
    sim.definitions.insert(
        DEFINITION.into(),
        TaskDefinition::from_json(
            r#"{"containerDefinitions": [{"name": "app", "image": "r/app"}]}"#,
        )
        .unwrap(),
    );
    sim.tick();
    sim.run("task01", Health::Unknown);
    sim.tick();
    assert_eq!(sim.deployment("ecs-svc/1").unwrap().rollout_state, "COMPLETED");
}
