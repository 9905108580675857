use super::*;
use aws_sdk_ecs::types::{
    Attachment, Container, ContainerDefinition, Deployment, DeploymentRolloutState, HealthCheck,
    HealthStatus as SdkHealthStatus, KeyValuePair, LogConfiguration, LogDriver, Service, Task,
    TaskDefinition, TaskStopCode,
};

const TASK_ARN: &str =
    "arn:aws:ecs:ap-northeast-1:123456789012:task/zenn-clone-cluster/0f6e4a1b2c3d4e5f60718293a4b5c6d7";
const TD_ARN: &str =
    "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/zenn-clone-task-definition-backend:7";

fn at(secs: i64) -> DateTime {
    DateTime::from_secs(secs)
}

#[test]
fn service_converts_counts_deployments_and_events() {
    let service = Service::builder()
        .service_name("zenn-clone-backend-service")
        .status("ACTIVE")
        .desired_count(1)
        .running_count(2)
        .pending_count(0)
        .task_definition(TD_ARN)
        .deployments(
            Deployment::builder()
                .id("ecs-svc/1234567890123456789")
                .status("PRIMARY")
                .task_definition(TD_ARN)
                .desired_count(1)
                .pending_count(0)
                .running_count(1)
                .failed_tasks(0)
                .created_at(at(1_700_000_000))
                .rollout_state(DeploymentRolloutState::InProgress)
                .rollout_state_reason("ECS deployment ecs-svc/1234567890123456789 in progress.")
                .build(),
        )
        .deployments(
            Deployment::builder()
                .id("ecs-svc/9876543210987654321")
                .status("ACTIVE")
                .task_definition(TD_ARN)
                .desired_count(1)
                .running_count(1)
                .rollout_state(DeploymentRolloutState::Completed)
                .build(),
        )
        .events(
            aws_sdk_ecs::types::ServiceEvent::builder()
                .id("5e2a1c0d-aaaa-bbbb-cccc-0123456789ab")
                .created_at(at(1_700_000_010))
                .message("(service zenn-clone-backend-service) has started 1 tasks: (task 0f6e4a1b2c3d4e5f60718293a4b5c6d7).")
                .build(),
        )
        .build();
    let s = service_snapshot(&service);
    assert_eq!((s.name.as_str(), s.status.as_str()), ("zenn-clone-backend-service", "ACTIVE"));
    assert_eq!((s.desired, s.running, s.pending), (1, 2, 0));
    assert_eq!(s.task_definition.as_deref(), Some(TD_ARN));
    assert_eq!(s.deployments.len(), 2);
    let primary = &s.deployments[0];
    assert_eq!(primary.id, "ecs-svc/1234567890123456789");
    assert_eq!(primary.status, "PRIMARY");
    assert_eq!(primary.rollout_state.as_deref(), Some("IN_PROGRESS"));
    assert_eq!(
        primary.rollout_state_reason.as_deref(),
        Some("ECS deployment ecs-svc/1234567890123456789 in progress.")
    );
    assert_eq!(
        primary.created_at,
        Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000))
    );
    assert_eq!((primary.desired, primary.running, primary.failed_tasks), (1, 1, 0));
    assert_eq!(s.deployments[1].rollout_state.as_deref(), Some("COMPLETED"));
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].id, "5e2a1c0d-aaaa-bbbb-cccc-0123456789ab");
    assert!(s.events[0].message.contains("has started 1 tasks"));
}

#[test]
fn stopped_task_converts_with_eni_containers_and_stop_details() {
    let task = Task::builder()
        .task_arn(TASK_ARN)
        .group("service:zenn-clone-backend-service")
        .started_by("ecs-svc/1234567890123456789")
        .task_definition_arn(TD_ARN)
        .last_status("STOPPED")
        .desired_status("STOPPED")
        .health_status(SdkHealthStatus::Unhealthy)
        .created_at(at(1_700_000_000))
        .started_at(at(1_700_000_030))
        .stopped_at(at(1_700_000_090))
        .stop_code(TaskStopCode::EssentialContainerExited)
        .stopped_reason("Essential container in task exited")
        .attachments(
            Attachment::builder()
                .id("c7a1f3e0-1111-2222-3333-444455556666")
                .r#type("ElasticNetworkInterface")
                .status("DELETED")
                .details(KeyValuePair::builder().name("subnetId").value("subnet-0abc").build())
                .details(
                    KeyValuePair::builder()
                        .name("networkInterfaceId")
                        .value("eni-0123456789abcdef0")
                        .build(),
                )
                .details(
                    KeyValuePair::builder().name("privateIPv4Address").value("10.0.1.23").build(),
                )
                .build(),
        )
        .containers(
            Container::builder()
                .name("rails")
                .image("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails")
                .image_digest(
                    "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                )
                .last_status("STOPPED")
                .exit_code(1)
                .health_status(SdkHealthStatus::Unhealthy)
                .build(),
        )
        .containers(
            Container::builder()
                .name("nginx")
                .image("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-nginx")
                .last_status("STOPPED")
                .reason("dependency rails failed")
                .health_status(SdkHealthStatus::UnknownValue)
                .build(),
        )
        .build();
    let t = task_snapshot(&task);
    assert_eq!(t.id, "0f6e4a1b2c3d4e5f60718293a4b5c6d7");
    assert_eq!(t.group.as_deref(), Some("service:zenn-clone-backend-service"));
    assert_eq!(t.started_by.as_deref(), Some("ecs-svc/1234567890123456789"));
    assert_eq!(t.task_definition_arn.as_deref(), Some(TD_ARN));
    assert_eq!((t.last_status.as_str(), t.desired_status.as_str()), ("STOPPED", "STOPPED"));
    assert_eq!(t.health, HealthStatus::Unhealthy);
    assert_eq!(t.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(t.stopped_reason.as_deref(), Some("Essential container in task exited"));
    assert!(t.created_at < t.started_at && t.started_at < t.stopped_at);
    assert_eq!(t.eni_id.as_deref(), Some("eni-0123456789abcdef0"));
    assert_eq!(t.containers.len(), 2);
    let rails = &t.containers[0];
    assert_eq!(rails.name, "rails");
    assert_eq!(rails.exit_code, Some(1));
    assert_eq!(rails.health, HealthStatus::Unhealthy);
    assert!(rails.image_digest.as_deref().is_some_and(|d| d.starts_with("sha256:1111")));
    let nginx = &t.containers[1];
    assert_eq!((nginx.exit_code, nginx.image_digest.as_deref()), (None, None));
    assert_eq!(nginx.reason.as_deref(), Some("dependency rails failed"));
    assert_eq!(nginx.health, HealthStatus::Unknown);
}

#[test]
fn task_without_attachments_has_no_eni() {
    let task = Task::builder().task_arn(TASK_ARN).last_status("PROVISIONING").build();
    let t = task_snapshot(&task);
    assert_eq!(t.eni_id, None);
    assert_eq!(t.health, HealthStatus::Unknown);
    assert!(t.containers.is_empty());
}

#[test]
fn task_definition_converts_essential_health_check_and_logs() -> Result<()> {
    let logs = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", "/ecs/zenn-clone-task-definition-backend")
        .options("awslogs-region", "ap-northeast-1")
        .options("awslogs-stream-prefix", "ecs")
        .build()?;
    let check = HealthCheck::builder()
        .command("CMD-SHELL")
        .command("curl -f http://localhost/api/v1/health_check || exit 1")
        .interval(30)
        .build()?;
    let def = TaskDefinition::builder()
        .task_definition_arn(TD_ARN)
        .container_definitions(
            ContainerDefinition::builder()
                .name("rails")
                .image("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails")
                .essential(true)
                .health_check(check)
                .log_configuration(logs)
                .build(),
        )
        .container_definitions(ContainerDefinition::builder().name("nginx").build())
        .container_definitions(
            ContainerDefinition::builder().name("log-router").essential(false).build(),
        )
        .build();
    let td = task_definition_snapshot(&def, "zenn-clone-task-definition-backend");
    assert_eq!(td.arn, TD_ARN);
    let rails = &td.containers[0];
    assert!(rails.essential && rails.has_health_check);
    assert_eq!(rails.log_group.as_deref(), Some("/ecs/zenn-clone-task-definition-backend"));
    assert_eq!(rails.log_stream_prefix.as_deref(), Some("ecs"));
    assert!(td.containers[1].essential, "essential defaults to true");
    assert!(!td.containers[1].has_health_check);
    let essential: Vec<&str> = td.essential().map(|c| c.name.as_str()).collect();
    assert_eq!(essential, ["rails", "nginx"]);
    Ok(())
}
