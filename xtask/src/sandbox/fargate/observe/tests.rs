use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::*;
use crate::sandbox::fargate::definition::TaskDefinition;
use crate::sandbox::fargate::plan::{Settings, LABEL_SANDBOX, LABEL_TASK, PAUSE_IMAGE};

const TASK: &str = "feedc0de00000000feedc0de00000000";
const NEVER: &str = "0001-01-01T00:00:00Z";
const AT: &str = "2026-01-01T00:00:00.5Z";

fn settings() -> Settings {
    Settings {
        sandbox: "zenn-sandbox".to_string(),
        owner: "/repo/target/sandbox".to_string(),
        network: "zenn-sandbox".to_string(),
        pause_image: PAUSE_IMAGE.to_string(),
        secrets: Default::default(),
        health_time_scale: 10,
        start_timeout: Duration::from_secs(60),
        stop_grace: Duration::from_secs(5),
        awslogs: crate::sandbox::fargate::awslogs::Awslogs::nowhere("ap-northeast-1"),
    }
}

/// rails (health-checked) and nginx (depends on rails HEALTHY), both essential, plus a
/// non-essential `migrate` that nginx needs COMPLETE.
fn plan() -> TaskPlan {
    let def = TaskDefinition::from_json(
        r#"{"containerDefinitions": [
        {"name": "rails", "image": "r/rails", "healthCheck": {"command": ["CMD-SHELL", "true"]}},
        {"name": "migrate", "image": "r/rails", "essential": false},
        {"name": "nginx", "image": "r/nginx", "healthCheck": {"command": ["CMD-SHELL", "true"]},
         "dependsOn": [{"containerName": "rails", "condition": "HEALTHY"},
                       {"containerName": "migrate", "condition": "COMPLETE"}]}
    ]}"#,
    )
    .unwrap();
    TaskPlan::new(&settings(), TASK, Ipv4Addr::new(127, 0, 0, 9), &def).unwrap()
}

/// One container as `docker inspect` prints it.
#[derive(Clone)]
struct Fake {
    name: Option<&'static str>,
    status: &'static str,
    started: bool,
    exit: i32,
    health: Option<&'static str>,
    essential: bool,
    oom: bool,
    error: &'static str,
}

fn pause() -> Fake {
    Fake { name: None, ..running("pause") }
}

fn running(name: &'static str) -> Fake {
    Fake {
        name: Some(name),
        status: "running",
        started: true,
        exit: 0,
        health: None,
        essential: name != "migrate",
        oom: false,
        error: "",
    }
}

fn created(name: &'static str) -> Fake {
    Fake { status: "created", started: false, ..running(name) }
}

fn exited(name: &'static str, code: i32) -> Fake {
    Fake { status: "exited", exit: code, ..running(name) }
}

fn with_health(fake: Fake, health: &'static str) -> Fake {
    Fake { health: Some(health), ..fake }
}

fn inspect_json(fakes: &[Fake]) -> String {
    let list: Vec<Value> = fakes
        .iter()
        .map(|f| {
            let mut labels = json!({ LABEL_SANDBOX: "/repo/target/sandbox", LABEL_TASK: TASK });
            match f.name {
                None => {
                    labels[LABEL_ROLE] = json!("pause");
                    labels[LABEL_CONTAINERS] = json!("rails,migrate,nginx");
                }
                Some(name) => {
                    labels[LABEL_ROLE] = json!("container");
                    labels[LABEL_CONTAINER] = json!(name);
                    labels[LABEL_ESSENTIAL] = json!(f.essential.to_string());
                    labels[LABEL_IMAGE] = json!(format!("r/{name}"));
                    labels[LABEL_DIGEST] = json!(format!("sha256:{name}"));
                }
            }
            let mut state = json!({
                "Status": f.status, "Running": f.status == "running", "ExitCode": f.exit,
                "Error": f.error, "OOMKilled": f.oom,
                "StartedAt": if f.started { AT } else { NEVER }, "FinishedAt": NEVER,
            });
            if let Some(h) = f.health {
                state["Health"] = json!({ "Status": h, "FailingStreak": 0, "Log": [] });
            }
            let check = f.health.map(|_| json!({ "Test": ["CMD-SHELL", "true"] }));
            json!({
                "Id": format!("id-{}", f.name.unwrap_or("pause")),
                "Name": format!("/x-{}", f.name.unwrap_or("pause")),
                "State": state,
                "Config": { "Labels": labels, "Healthcheck": check, "Image": "whatever" },
            })
        })
        .collect();
    serde_json::to_string(&list).unwrap()
}

fn seen(fakes: &[Fake]) -> Vec<Seen> {
    parse_inspect(&inspect_json(fakes)).unwrap()
}

fn observe(launch: &LaunchState, with_plan: bool, fakes: &[Fake]) -> TaskObservation {
    let plan = plan();
    assess(TASK, with_plan.then_some(&plan), launch, &seen(fakes)).unwrap()
}

fn statuses(o: &TaskObservation) -> Vec<(&str, Status, Health, Option<i32>)> {
    o.containers
        .iter()
        .map(|c| (c.name.as_str(), c.last_status, c.health_status, c.exit_code))
        .collect()
}

#[test]
fn a_started_task_with_healthy_essentials_is_running_and_healthy() {
    let o = observe(
        &LaunchState::Started,
        true,
        &[
            pause(),
            with_health(running("rails"), "healthy"),
            exited("migrate", 0),
            with_health(running("nginx"), "healthy"),
        ],
    );
    assert_eq!(
        (o.last_status, o.health_status, &o.stop),
        (Status::Running, Health::Healthy, &None)
    );
    assert_eq!(
        statuses(&o),
        [
            ("rails", Status::Running, Health::Healthy, None),
            ("migrate", Status::Stopped, Health::Unknown, Some(0)),
            ("nginx", Status::Running, Health::Healthy, None),
        ]
    );
    let rails = &o.containers[0];
    assert_eq!(rails.image_digest.as_deref(), Some("sha256:rails"));
    assert_eq!(rails.docker_id.as_deref(), Some("id-rails"));
    assert_eq!(rails.image, "r/rails");
}

#[test]
fn an_essential_container_that_exits_stops_the_task_with_its_exit_code() {
    let o = observe(
        &LaunchState::Started,
        true,
        &[
            pause(),
            exited("rails", 1),
            exited("migrate", 0),
            with_health(running("nginx"), "healthy"),
        ],
    );
    assert_eq!(
        o.stop,
        Some(TaskStop::new(
            StopCode::EssentialContainerExited,
            "Essential container in task exited"
        ))
    );
    assert_eq!(o.containers[0].exit_code, Some(1));
    assert_eq!(o.last_status, Status::Running);
}

#[test]
fn an_essential_exit_outranks_the_dependency_failure_it_causes() {
    let failure = LaunchFailure::of(
        "Container nginx depends on rails being HEALTHY, but it exited with code 1",
        ["nginx"],
    );
    let o = observe(
        &LaunchState::Failed(failure),
        true,
        &[pause(), exited("rails", 1), exited("migrate", 0), created("nginx")],
    );
    assert_eq!(o.stop.unwrap().code, StopCode::EssentialContainerExited);
    assert!(o.containers[2].reason.as_deref().unwrap().contains("depends on rails"));
}

#[test]
fn a_non_essential_exit_does_not_stop_the_task() {
    let o = observe(
        &LaunchState::InProgress,
        true,
        &[pause(), running("rails"), exited("migrate", 2), created("nginx")],
    );
    assert_eq!(o.stop, None);
    assert_eq!(o.last_status, Status::Pending);
    assert_eq!(o.containers[1].exit_code, Some(2));
}

#[test]
fn a_pull_failure_stops_the_task_before_any_container_exists() {
    let failure = LaunchFailure::of(
        "CannotPullContainerError: manifest for r/rails:latest not found: manifest unknown",
        ["rails", "migrate"],
    );
    let o = observe(&LaunchState::Failed(failure), true, &[pause()]);
    assert_eq!(o.last_status, Status::Stopped);
    let stop = o.stop.unwrap();
    assert_eq!(stop.code, StopCode::TaskFailedToStart);
    assert!(stop.reason.starts_with("CannotPullContainerError: manifest for r/rails:latest"));
    assert!(o.containers[0].reason.as_deref().unwrap().starts_with("CannotPullContainerError"));
    assert_eq!(o.containers[2].reason, None);
    assert!(o.containers.iter().all(|c| c.docker_id.is_none() && c.last_status == Status::Stopped));
}

#[test]
fn while_the_start_runs_missing_containers_are_pending() {
    let o = observe(&LaunchState::InProgress, true, &[]);
    assert_eq!(o.last_status, Status::Pending);
    assert_eq!(o.stop, None);
    assert!(o.containers.iter().all(|c| c.last_status == Status::Pending));
}

#[test]
fn an_unhealthy_essential_container_makes_the_task_unhealthy() {
    let o = observe(
        &LaunchState::InProgress,
        true,
        &[
            pause(),
            with_health(running("rails"), "unhealthy"),
            exited("migrate", 0),
            created("nginx"),
        ],
    );
    assert_eq!(
        (o.health_status, o.last_status, o.stop),
        (Health::Unhealthy, Status::Pending, None)
    );
    let starting = observe(
        &LaunchState::InProgress,
        true,
        &[pause(), with_health(running("rails"), "starting")],
    );
    assert_eq!(starting.health_status, Health::Unknown);
}

#[test]
fn after_a_restart_the_labels_tell_the_containers_and_an_unfinished_start_is_a_verdict() {
    let fakes =
        [pause(), with_health(running("rails"), "healthy"), exited("migrate", 0), created("nginx")];
    let o = observe(&LaunchState::Unknown, false, &fakes);
    let names: Vec<&str> = o.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["rails", "migrate", "nginx"]);
    assert_eq!(o.containers[2].image, "r/nginx");
    let stop = o.stop.unwrap();
    assert_eq!(stop.code, StopCode::TaskFailedToStart);
    assert!(stop.reason.contains("scheduler restarted"), "{}", stop.reason);

    let all = [
        pause(),
        with_health(running("rails"), "healthy"),
        exited("migrate", 0),
        with_health(running("nginx"), "healthy"),
    ];
    let o = observe(&LaunchState::Unknown, false, &all);
    assert_eq!((o.last_status, o.health_status, o.stop), (Status::Running, Health::Healthy, None));
}

#[test]
fn a_task_without_its_pause_container_has_lost_its_network() {
    let o = observe(
        &LaunchState::Started,
        true,
        &[running("rails"), exited("migrate", 0), running("nginx")],
    );
    assert!(o.stop.unwrap().reason.contains("pause container"));
}

#[test]
fn an_unknown_task_is_none_and_docker_reasons_are_kept() {
    assert_eq!(assess(TASK, None, &LaunchState::Unknown, &[]), None);
    let oom = Fake { oom: true, ..exited("rails", 137) };
    let bad =
        Fake { error: "exec: \"pumax\": executable file not found", ..exited("migrate", 127) };
    let o = observe(&LaunchState::Started, true, &[pause(), oom, bad, running("nginx")]);
    assert_eq!(
        o.containers[0].reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage")
    );
    assert!(o.containers[1]
        .reason
        .as_deref()
        .unwrap()
        .starts_with("CannotStartContainerError: exec"));
}

#[test]
fn observations_serialise_with_ecs_field_names() {
    let o = observe(
        &LaunchState::Started,
        true,
        &[pause(), exited("rails", 3), exited("migrate", 0), running("nginx")],
    );
    let value = serde_json::to_value(&o).unwrap();
    assert_eq!(value["lastStatus"], "RUNNING");
    assert_eq!(value["healthStatus"], "UNKNOWN");
    assert_eq!(value["stopCode"], "EssentialContainerExited");
    assert_eq!(value["stoppedReason"], "Essential container in task exited");
    assert_eq!(
        value["containers"][0],
        json!({
            "name": "rails", "lastStatus": "STOPPED", "healthStatus": "UNKNOWN", "exitCode": 3,
            "reason": null, "image": "r/rails", "imageDigest": "sha256:rails", "runtimeId": "id-rails",
        })
    );
}

#[test]
fn containers_start_once_their_dependencies_meet_their_conditions() {
    let plan = plan();
    let step = |fakes: &[Fake]| {
        next_step(&plan, &seen(fakes), Duration::from_secs(1), Duration::from_secs(60))
    };
    let start = |names: &[&str]| Step::Start(names.iter().map(|n| n.to_string()).collect());
    assert_eq!(
        step(&[pause(), created("rails"), created("migrate"), created("nginx")]),
        start(&["rails", "migrate"])
    );
    assert_eq!(
        step(&[
            pause(),
            with_health(running("rails"), "starting"),
            exited("migrate", 0),
            created("nginx")
        ]),
        Step::Wait
    );
    assert_eq!(
        step(&[
            pause(),
            with_health(running("rails"), "healthy"),
            running("migrate"),
            created("nginx")
        ]),
        Step::Wait
    );
    assert_eq!(
        step(&[
            pause(),
            with_health(running("rails"), "healthy"),
            exited("migrate", 1),
            created("nginx")
        ]),
        start(&["nginx"])
    );
    assert_eq!(
        step(&[
            pause(),
            with_health(running("rails"), "healthy"),
            exited("migrate", 0),
            running("nginx")
        ]),
        Step::Done
    );
}

#[test]
fn a_dependency_that_exits_or_takes_too_long_fails_the_start() {
    let plan = plan();
    let Step::Fail(exited_dep) = next_step(
        &plan,
        &seen(&[pause(), exited("rails", 1), exited("migrate", 0), created("nginx")]),
        Duration::from_secs(1),
        Duration::from_secs(60),
    ) else {
        panic!("expected a failure")
    };
    assert_eq!(exited_dep.stop.code, StopCode::TaskFailedToStart);
    assert_eq!(
        exited_dep.stop.reason,
        "Container nginx depends on rails being HEALTHY, but it exited with code 1"
    );
    assert_eq!(exited_dep.container_reasons.keys().collect::<Vec<_>>(), ["nginx"]);

    let unhealthy = [
        pause(),
        with_health(running("rails"), "unhealthy"),
        exited("migrate", 0),
        created("nginx"),
    ];
    assert_eq!(
        next_step(&plan, &seen(&unhealthy), Duration::from_secs(59), Duration::from_secs(60)),
        Step::Wait
    );
    let Step::Fail(late) =
        next_step(&plan, &seen(&unhealthy), Duration::from_secs(60), Duration::from_secs(60))
    else {
        panic!("expected a failure")
    };
    assert_eq!(
        late.stop.reason,
        "Container nginx gave up waiting for its dependencies (rails HEALTHY, migrate COMPLETE) after 60s"
    );
}

#[test]
fn success_needs_exit_code_zero_and_start_needs_only_a_start() {
    let def = TaskDefinition::from_json(
        r#"{"containerDefinitions": [
        {"name": "init", "image": "i", "essential": false},
        {"name": "side", "image": "i", "essential": false},
        {"name": "app", "image": "i", "startTimeout": 5, "dependsOn": [
            {"containerName": "init", "condition": "SUCCESS"},
            {"containerName": "side", "condition": "START"}]}
    ]}"#,
    )
    .unwrap();
    let plan = TaskPlan::new(&settings(), TASK, Ipv4Addr::new(127, 0, 0, 9), &def).unwrap();
    let step = |fakes: &[Fake], waited: u64| {
        next_step(&plan, &seen(fakes), Duration::from_secs(waited), Duration::from_secs(60))
    };
    assert_eq!(
        step(&[exited("init", 0), running("side"), created("app")], 1),
        Step::Start(vec!["app".to_string()])
    );
    assert_eq!(
        step(&[exited("init", 0), exited("side", 0), created("app")], 1),
        Step::Start(vec!["app".to_string()])
    );
    let Step::Fail(f) = step(&[exited("init", 4), running("side"), created("app")], 1) else {
        panic!()
    };
    assert!(
        f.stop.reason.ends_with("being SUCCESS, but it exited with code 4"),
        "{}",
        f.stop.reason
    );
    assert!(matches!(step(&[running("init"), running("side"), created("app")], 5), Step::Fail(_)));
}
