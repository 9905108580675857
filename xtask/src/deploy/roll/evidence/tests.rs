//! Each cause against DescribeTasks / DescribeServices responses shaped as ECS sends them
//! (`test_data/stopped/`, checked against botocore's ECS model by `check_shapes.py`), parsed by
//! the SDK's own deserializer and converted as the roll converts them.

use std::collections::BTreeSet;

use anyhow::anyhow;

use super::*;
use crate::aws::canned::{described_service, described_task_definition, described_tasks};
use crate::aws::ecs::{service_snapshot, task_definition_snapshot, task_snapshot};
use crate::deploy::roll::{RollVerdict, Watch};
use crate::deploy::target::RollStrategy;

const TASK_ID: &str = "0f6e4a1b2c3d4e5f60718293a4b5c6d7";
const FAILED_DEP: &str = "ecs-svc/2222222222222222222";

async fn definition() -> TaskDefinitionSnapshot {
    let td = described_task_definition("stopped/task-definition.json").await;
    task_definition_snapshot(&td, "zenn-clone-task-definition-backend:7")
}

/// The one task of `stopped/<name>.json`, its definition, its cause and its explanation.
async fn stopped(name: &str) -> (TaskSnapshot, TaskDefinitionSnapshot, Cause, String) {
    let tasks = described_tasks(&format!("stopped/{name}.json")).await;
    assert_eq!(tasks.len(), 1, "{name}");
    let task = task_snapshot(&tasks[0]);
    let td = definition().await;
    let cause = classify(&task, &td);
    let text = explain(&cause, &task, &td, &[]);
    (task, td, cause, text)
}

fn logs_next(container: &str) -> String {
    format!("next: `cargo xtask logs {TASK_ID} --container {container}`")
}

/// What a failure shows of each container's log when no stream is read.
fn unread_logs(cause: &Cause, td: &TaskDefinitionSnapshot) -> String {
    let tails: Vec<(String, LogTail)> = td
        .containers
        .iter()
        .map(|d| (d.name.clone(), stream_to_read(cause, d, TASK_ID).expect_err("nothing to read")))
        .collect();
    render_logs(&tails)
}

#[tokio::test]
async fn the_definition_fixture_gives_health_checks_memory_and_log_streams() {
    let td = definition().await;
    assert_eq!(td.memory.as_deref(), Some("512"));
    let rails = &td.containers[0];
    assert_eq!(rails.name, "rails");
    assert_eq!(
        rails.health_check_command,
        [
            "CMD-SHELL",
            "curl --unix-socket /myapp/tmp/sockets/puma.sock localhost/api/v1/health_check || exit 1"
        ]
    );
    assert_eq!((rails.memory, rails.memory_reservation), (None, Some(384)));
    assert_eq!(rails.log_group.as_deref(), Some("/ecs/zenn-clone-task-definition-backend"));
    assert_eq!(rails.log_stream_prefix.as_deref(), Some("ecs"));
}

#[tokio::test]
async fn a_missing_image_is_a_pull_failure_with_no_log_to_read() {
    let (task, td, cause, text) = stopped("pull-image-not-found").await;
    assert_eq!(task.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(task
        .stopped_reason
        .as_deref()
        .is_some_and(|r| r.starts_with("CannotPullContainerError")));
    assert_eq!(task.containers[0].exit_code, None);
    assert_eq!(cause, Cause::Pull(PullProblem::NotFound));
    assert!(cause.no_container_ran());
    assert!(
        text.contains("cause: the image or tag the task definition names is not in ECR"),
        "{text}"
    );
    assert!(text.contains("aws ecr describe-images --repository-name zenn-clone-rails"), "{text}");
    assert!(!text.contains("log"), "no container ran, so no log to read: {text}");
    let logs = unread_logs(&cause, &td);
    assert_eq!(
        logs,
        "\nlog of rails: no log: the container never started\
         \nlog of nginx: no log: the container never started"
    );
}

#[tokio::test]
async fn unreadable_secrets_are_an_initialization_failure_naming_the_execution_role() {
    let (task, td, cause, text) = stopped("resource-init-secrets").await;
    assert_eq!(task.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert_eq!(cause, Cause::Init(InitProblem::Secrets));
    assert!(text.contains("the task execution role could not read the task's secrets"), "{text}");
    assert!(text.contains("ssm:GetParameters") && text.contains("`valueFrom`"), "{text}");
    assert!(!text.contains("cargo xtask logs"), "{text}");
    assert!(unread_logs(&cause, &td).contains("rails: no log: the container never started"));
}

#[tokio::test]
async fn a_missing_log_group_is_an_initialization_failure_that_names_the_group() {
    let (_, _, cause, text) = stopped("resource-init-log-group").await;
    assert_eq!(cause, Cause::Init(InitProblem::LogGroup));
    assert!(text.contains("the containers' log group does not exist"), "{text}");
    assert!(
        text.contains(
            "`aws logs create-log-group --log-group-name /ecs/zenn-clone-task-definition-backend`"
        ),
        "{text}"
    );
    assert!(!text.contains("cargo xtask logs"), "{text}");
}

#[tokio::test]
async fn an_app_that_exits_points_at_its_log() {
    let (task, _, cause, text) = stopped("essential-container-exited").await;
    assert_eq!(task.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(task.stopped_reason.as_deref(), Some("Essential container in task exited"));
    assert_eq!(cause, Cause::Exited { container: "rails".into(), exit_code: 1 });
    assert!(
        text.contains("cause: the app in container `rails` exited with code 1: its log shows why"),
        "{text}"
    );
    assert!(text.contains(&logs_next("rails")), "{text}");
}

#[tokio::test]
async fn out_of_memory_says_raise_the_memory_and_quotes_it() {
    let (task, _, cause, text) = stopped("out-of-memory").await;
    assert_eq!(task.containers[0].exit_code, Some(137));
    assert_eq!(cause, Cause::OutOfMemory { container: "rails".into() });
    assert!(text.contains("container `rails` used more memory than it may"), "{text}");
    assert!(text.contains("the task has 512 MiB, the container reserves 384 MiB"), "{text}");
    assert!(text.contains("raise `memory` of the task"), "{text}");
    assert!(text.contains(&format!("`cargo xtask logs {TASK_ID} --container rails`")), "{text}");
}

#[tokio::test]
async fn failed_health_checks_quote_the_check_from_the_definition() {
    let (task, _, cause, text) = stopped("health-checks").await;
    assert_eq!(task.stop_code.as_deref(), Some("ServiceSchedulerInitiated"));
    assert_eq!(cause, Cause::HealthCheck { containers: vec!["rails".into()] });
    assert!(
        text.contains(
            "`rails`'s health check `curl --unix-socket /myapp/tmp/sockets/puma.sock \
             localhost/api/v1/health_check || exit 1` kept failing"
        ),
        "{text}"
    );
    assert!(text.contains("ECS does not report the check's output"), "{text}");
    assert!(text.contains(&logs_next("rails")), "{text}");
    assert!(text.contains("`startPeriod`"), "{text}");
}

#[tokio::test]
async fn exit_137_is_a_kill_only_when_the_container_ended_on_its_own() {
    let (mut task, td, _, _) = stopped("health-checks").await;
    task.containers[0].exit_code = Some(137);
    assert!(matches!(classify(&task, &td), Cause::HealthCheck { .. }));
    task.stopped_reason = Some("Scaling activity initiated by (deployment ecs-svc/3)".into());
    assert_eq!(classify(&task, &td), Cause::Exited { container: "rails".into(), exit_code: 137 });
    task.stop_code = Some("EssentialContainerExited".into());
    assert_eq!(classify(&task, &td), Cause::Killed { container: "rails".into() });
    let text = explain(&Cause::Killed { container: "rails".into() }, &task, &td, &[]);
    assert!(text.contains("container `rails` was killed (SIGKILL, exit 137)"), "{text}");
    assert!(text.contains("most often the kernel's out-of-memory killer"), "{text}");
    assert!(text.contains(&logs_next("rails")), "{text}");
    // ECS's own word for the memory limit is a certainty, not a likelihood.
    task.containers[0].reason =
        Some("OutOfMemoryError: Container killed due to memory usage".into());
    assert_eq!(classify(&task, &td), Cause::OutOfMemory { container: "rails".into() });
}

#[tokio::test]
async fn the_circuit_breaker_gives_the_rollout_reason_and_the_last_stopped_task() {
    let service =
        service_snapshot(&described_service("stopped/circuit-breaker-services.json").await);
    let failed =
        service.deployments.iter().find(|d| d.id == FAILED_DEP).expect("failed deployment");
    assert_eq!(failed.rollout_state.as_deref(), Some("FAILED"));
    let cause = deployment_cause(failed).expect("a failed deployment has a cause");
    assert_eq!(
        cause,
        "the deployment circuit breaker gave up on deployment ecs-svc/2222222222222222222 after \
         3 failed task(s) (\"ECS deployment circuit breaker: tasks failed to start.\"); with \
         rollback on, ECS returns the service to its previous deployment"
    );
    let primary = service.deployments.iter().find(|d| d.status == "PRIMARY").expect("primary");
    assert_eq!(deployment_cause(primary), None);

    // The roll watching the failed deployment, with one of its tasks stopped on a pull error.
    let mut before = service.clone();
    before.events.retain(|e| e.message.contains("steady state"));
    let watch = Watch::new(
        &before,
        RollStrategy::ForceNewDeployment,
        FAILED_DEP.into(),
        Default::default(),
        BTreeSet::new(),
    );
    let task = task_snapshot(&described_tasks("stopped/pull-image-not-found.json").await[0]);
    let RollVerdict::Failed(failure) = watch.judge(&service, [&task], &definition().await) else {
        panic!("a failed deployment fails the roll")
    };
    let text = failure.explanation;
    assert!(
        text.starts_with(
            "deployment ecs-svc/2222222222222222222 failed: ECS deployment circuit breaker: tasks \
             failed to start. (3 failed task(s))\ncause: the deployment circuit breaker gave up"
        ),
        "{text}"
    );
    assert!(text.contains(&format!("the last new task that stopped:\nnew task {TASK_ID} stopped (TaskFailedToStart): CannotPullContainerError")), "{text}");
    assert!(text.contains("rolling back to deployment ecs-svc/3333333333333333333"), "{text}");
    let stopped = failure.stopped.expect("the stopped task comes with the failure");
    assert_eq!(stopped.cause, Cause::Pull(PullProblem::NotFound));
}

#[test]
fn pull_and_initialization_reasons_name_the_problem() {
    let pull = |r: &str| pull_problem(&format!("CannotPullContainerError: {r}"));
    assert_eq!(
        pull("Error response from daemon: pull access denied for 123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"),
        PullProblem::Denied
    );
    assert_eq!(
        pull("ref pull has been retried 1 time(s): failed to copy: httpReadSeeker: failed open: failed to do request: Get \"https://prod-ap-northeast-1-starport-layer-bucket.s3.ap-northeast-1.amazonaws.com/\": dial tcp 52.219.16.0:443: i/o timeout"),
        PullProblem::Unreachable
    );
    assert_eq!(pull("something new"), PullProblem::Unclear);
    assert_eq!(
        init_problem("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve ecr registry auth: service call has been retried 3 time(s): RequestError: send request failed caused by: Post \"https://api.ecr.ap-northeast-1.amazonaws.com/\": dial tcp 99.77.62.49:443: i/o timeout. Please check your task network configuration."),
        InitProblem::Unreachable
    );
    assert_eq!(init_problem("ResourceInitializationError: something new"), InitProblem::Unclear);
}

#[test]
fn the_logs_command_carries_the_targets_flags() {
    assert_eq!(logs_command("t1", "rails", &[]), "cargo xtask logs t1 --container rails");
    assert_eq!(
        logs_command("t1", "nginx", &["--sandbox".to_string()]),
        "cargo xtask logs t1 --container nginx --sandbox"
    );
}

#[test]
fn a_read_shows_the_lines_or_why_there_are_none() {
    let stream = LogStream {
        container: "rails".into(),
        group: "/ecs/g".into(),
        stream: "ecs/rails/t1".into(),
    };
    let ran = ContainerSnapshot {
        name: "rails".into(),
        image: None,
        image_digest: None,
        last_status: Some("STOPPED".into()),
        health: HealthStatus::Unknown,
        exit_code: Some(1),
        reason: None,
    };
    let not_ran = ContainerSnapshot { exit_code: None, ..ran.clone() };
    let event = |m: &str| LogEvent { timestamp: 1, message: m.into() };
    let tails = vec![
        ("a".to_string(), tail_of(stream.clone(), Some(&ran), Ok(Some(vec![event("boom")])))),
        ("b".to_string(), tail_of(stream.clone(), Some(&ran), Ok(Some(Vec::new())))),
        ("c".to_string(), tail_of(stream.clone(), Some(&ran), Ok(None))),
        ("d".to_string(), tail_of(stream.clone(), Some(&not_ran), Ok(None))),
        ("e".to_string(), tail_of(stream.clone(), None, Err(anyhow!("AccessDeniedException")))),
        ("f".to_string(), LogTail::NotCloudWatch),
    ];
    assert_eq!(
        render_logs(&tails),
        "\nlog of a (ecs/rails/t1 in /ecs/g), last 1 line(s):\
         \n  | boom\
         \nlog of b: no log lines: ecs/rails/t1 in /ecs/g is empty (the container wrote nothing)\
         \nlog of c: no log: the container ran, yet ecs/rails/t1 in /ecs/g does not exist: check its awslogs options\
         \nlog of d: no log: the container never started\
         \nlog of e: log not read (ecs/rails/t1 in /ecs/g): AccessDeniedException; check that the credentials allow logs:GetLogEvents\
         \nlog of f: no log: the container does not log to CloudWatch Logs (awslogs with a group and a stream prefix)"
    );
}
