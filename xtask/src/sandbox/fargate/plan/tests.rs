use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::*;
use crate::sandbox::fargate::definition::TaskDefinition;

const TASK: &str = "0123456789abcdef0123456789abcdef";
const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const MASTER_KEY: &str = "master-key-value-0f3a";
const SECRET_KEY_BASE: &str = "secret-key-base-value-77c1";
const DATABASE_URL: &str = "mysql2://root:db-password-9d2e@zenn-sandbox-mariadb/app";

/// The repository's task definition (a copy of `rails/task-definition.json`), with its
/// placeholders filled as the sandbox registers it in moto.
fn repository_definition() -> TaskDefinition {
    let text = include_str!("../testdata/task-definition.json")
        .replace("{registry}", "127.0.0.1:5000")
        .replace("{region}", "ap-northeast-1")
        .replace("{account_id}", "123456789012");
    TaskDefinition::from_json(&text).unwrap()
}

fn settings() -> Settings {
    Settings {
        sandbox: "zenn-sandbox".to_string(),
        owner: "/repo/target/sandbox".to_string(),
        network: "zenn-sandbox".to_string(),
        pause_image: PAUSE_IMAGE.to_string(),
        secrets: [
            ("RAILS_MASTER_KEY", MASTER_KEY),
            ("SECRET_KEY_BASE", SECRET_KEY_BASE),
            ("DATABASE_URL", DATABASE_URL),
        ]
        .into_iter()
        .collect(),
        health_time_scale: 10,
        start_timeout: Duration::from_secs(300),
        stop_grace: Duration::from_secs(5),
        logs_dir: PathBuf::from("/tmp/logs"),
    }
}

fn plan_of(def: &TaskDefinition) -> Result<TaskPlan> {
    TaskPlan::new(&settings(), TASK, ADDRESS, def)
}

fn definition(containers: &str) -> TaskDefinition {
    TaskDefinition::from_json(&format!(r#"{{"containerDefinitions": {containers}}}"#)).unwrap()
}

fn create_text(plan: &TaskPlan, name: &str) -> String {
    let sh = Shell::new().unwrap();
    let c = plan.container(name).unwrap();
    plan.create_command(
        &sh,
        &settings(),
        c,
        &format!("{}@sha256:d1", repository(&c.pull_ref)),
        Some("sha256:d1"),
    )
    .unwrap()
    .to_string()
}

#[test]
fn the_repository_task_runs_rails_before_nginx_behind_one_pause_container() {
    let plan = plan_of(&repository_definition()).unwrap();
    assert_eq!(plan.pause, "zenn-sandbox-01234567");
    let order: Vec<(&str, &str, &str)> = plan
        .containers
        .iter()
        .map(|c| (c.name(), c.docker_name.as_str(), c.pull_ref.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("rails", "zenn-sandbox-01234567-rails", "127.0.0.1:5000/zenn-clone-rails:latest"),
            ("nginx", "zenn-sandbox-01234567-nginx", "127.0.0.1:5000/zenn-clone-nginx:latest"),
        ]
    );
}

#[test]
fn the_pause_container_owns_the_network_and_publishes_port_80_on_the_task_address() {
    let plan = plan_of(&repository_definition()).unwrap();
    let sh = Shell::new().unwrap();
    assert_eq!(
        plan.pause_command(&sh, &settings()).to_string(),
        "docker run --detach --name zenn-sandbox-01234567 --network zenn-sandbox \
         --label zenn-sandbox.dir=/repo/target/sandbox \
         --label zenn-sandbox.task=0123456789abcdef0123456789abcdef \
         --label zenn-sandbox.role=pause --label zenn-sandbox.containers=rails,nginx \
         --label zenn-sandbox.address=127.0.0.5 --publish 127.0.0.5:80:80/tcp \
         zenn-sandbox/pause:busybox sleep 2147483647"
    );
}

#[test]
fn rails_gets_its_environment_secret_names_and_a_compressed_health_check() {
    let plan = plan_of(&repository_definition()).unwrap();
    assert_eq!(
        create_text(&plan, "rails"),
        "docker create --name zenn-sandbox-01234567-rails \
         --network container:zenn-sandbox-01234567 \
         --label zenn-sandbox.dir=/repo/target/sandbox \
         --label zenn-sandbox.task=0123456789abcdef0123456789abcdef \
         --label zenn-sandbox.role=container --label zenn-sandbox.container=rails \
         --label zenn-sandbox.essential=true \
         --label zenn-sandbox.image=127.0.0.1:5000/zenn-clone-rails \
         --label zenn-sandbox.image-digest=sha256:d1 \
         --memory-reservation 384m \
         --env RAILS_ENV=production --env RAILS_LOG_TO_STDOUT=1 \
         --env RAILS_MASTER_KEY --env SECRET_KEY_BASE --env DATABASE_URL \
         --health-cmd \"curl --unix-socket /myapp/tmp/sockets/puma.sock localhost/api/v1/health_check || exit 1\" \
         --health-interval 3s --health-timeout 5s --health-retries 3 \
         127.0.0.1:5000/zenn-clone-rails@sha256:d1"
    );
}

#[test]
fn nginx_takes_the_rails_volumes_and_shares_the_task_network() {
    let plan = plan_of(&repository_definition()).unwrap();
    assert_eq!(
        create_text(&plan, "nginx"),
        "docker create --name zenn-sandbox-01234567-nginx \
         --network container:zenn-sandbox-01234567 \
         --label zenn-sandbox.dir=/repo/target/sandbox \
         --label zenn-sandbox.task=0123456789abcdef0123456789abcdef \
         --label zenn-sandbox.role=container --label zenn-sandbox.container=nginx \
         --label zenn-sandbox.essential=true \
         --label zenn-sandbox.image=127.0.0.1:5000/zenn-clone-nginx \
         --label zenn-sandbox.image-digest=sha256:d1 \
         --memory-reservation 64m \
         --volumes-from zenn-sandbox-01234567-rails \
         --health-cmd \"curl -f http://localhost/api/v1/health_check || exit 1\" \
         --health-interval 3s --health-timeout 5s --health-retries 3 \
         127.0.0.1:5000/zenn-clone-nginx@sha256:d1"
    );
    let nginx = plan.container("nginx").unwrap();
    assert_eq!(
        nginx.def.depends_on[0].condition,
        crate::sandbox::fargate::definition::Condition::Healthy
    );
    assert_eq!(nginx.def.log_stream(TASK), format!("ecs/nginx/{TASK}"));
}

#[test]
fn secret_values_reach_docker_through_its_environment_never_its_arguments() {
    let plan = plan_of(&repository_definition()).unwrap();
    let sh = Shell::new().unwrap();
    let rails = plan.container("rails").unwrap();
    let cmd = plan.create_command(&sh, &settings(), rails, "r@sha256:d1", None).unwrap();
    let shown = cmd.to_string();
    let command: Command = cmd.into();
    let args: Vec<&OsStr> = command.get_args().collect();
    for value in [MASTER_KEY, SECRET_KEY_BASE, DATABASE_URL] {
        assert!(!shown.contains(value), "secret in {shown}");
        assert!(args.iter().all(|a| !a.to_string_lossy().contains(value)), "secret in {args:?}");
    }
    let envs: Vec<(&OsStr, Option<&OsStr>)> = command.get_envs().collect();
    assert!(envs.contains(&(OsStr::new("RAILS_MASTER_KEY"), Some(OsStr::new(MASTER_KEY)))));
    assert!(envs.contains(&(OsStr::new("DATABASE_URL"), Some(OsStr::new(DATABASE_URL)))));
}

#[test]
fn a_secret_the_sandbox_lacks_is_named_without_any_value() {
    let plan = plan_of(&repository_definition()).unwrap();
    let sh = Shell::new().unwrap();
    let mut settings = settings();
    settings.secrets = [("RAILS_MASTER_KEY", MASTER_KEY)].into_iter().collect();
    let rails = plan.container("rails").unwrap();
    let err = plan.create_command(&sh, &settings, rails, "r", None).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("no value for secret SECRET_KEY_BASE of container rails"), "{text}");
    assert!(!text.contains(MASTER_KEY));
    assert_eq!(format!("{:?}", settings.secrets), "{\"RAILS_MASTER_KEY\"}");
}

#[test]
fn containers_are_created_after_the_ones_they_need_whatever_the_listed_order() {
    let def = definition(
        r#"[
        {"name": "web", "image": "r/web", "volumesFrom": [{"sourceContainer": "app", "readOnly": true}],
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
        {"name": "app", "image": "r/app:v2", "dependsOn": [{"containerName": "init", "condition": "COMPLETE"}]},
        {"name": "init", "image": "r/app:v2", "essential": false}
    ]"#,
    );
    let plan = plan_of(&def).unwrap();
    let order: Vec<&str> = plan.containers.iter().map(ContainerPlan::name).collect();
    assert_eq!(order, ["init", "app", "web"]);
    assert!(create_text(&plan, "web").contains("--volumes-from zenn-sandbox-01234567-app:ro"));
    assert_eq!(plan.container("app").unwrap().pull_ref, "r/app:v2");
    assert!(create_text(&plan, "init").contains("--label zenn-sandbox.essential=false"));
}

#[test]
fn entry_point_command_workdir_user_and_memory_are_passed_when_set() {
    let def = definition(
        r#"[{"name": "job", "image": "r/job", "memory": 256, "user": "1000:1000",
              "entryPoint": ["sh", "-c"], "command": ["echo \"$GREETING\"; exit 3"],
              "workingDirectory": "/srv"}]"#,
    );
    let text = create_text(&plan_of(&def).unwrap(), "job");
    assert!(
        text.ends_with(
            "--memory 256m --no-healthcheck --workdir /srv --user 1000:1000 --entrypoint sh \
             r/job@sha256:d1 -c \"echo \\\"$GREETING\\\"; exit 3\""
        ),
        "{text}"
    );
}

#[test]
fn health_checks_keep_timeout_retries_and_start_period_and_scale_the_interval_with_a_floor_of_one_second(
) {
    let check = |json: &str, scale: u32| {
        let check: HealthCheck = serde_json::from_str(json).unwrap();
        health_args(&check, scale).unwrap().join(" ")
    };
    assert_eq!(
        check(
            r#"{"command": ["CMD", "wget", "-q", "http://localhost/a b"], "interval": 15, "timeout": 2, "retries": 5, "startPeriod": 20}"#,
            10
        ),
        "--health-cmd wget -q 'http://localhost/a b' --health-interval 1500ms --health-timeout 2s \
         --health-retries 5 --health-start-period 20s"
    );
    assert_eq!(
        check(r#"{"command": ["CMD-SHELL", "exit 0"]}"#, 1),
        "--health-cmd exit 0 --health-interval 30s --health-timeout 5s --health-retries 3"
    );
    assert_eq!(check(r#"{"command": ["NONE"]}"#, 10), "--no-healthcheck");
    let bad: HealthCheck = serde_json::from_str(r#"{"command": ["curl", "-f", "x"]}"#).unwrap();
    assert!(health_args(&bad, 10).is_err());
}

#[test]
fn definitions_the_sandbox_cannot_run_are_refused_as_input_errors() {
    let refused = |containers: &str, task: &str, address: Ipv4Addr| {
        let err = TaskPlan::new(&settings(), task, address, &definition(containers)).unwrap_err();
        assert_eq!(Failure::of(&err), Some(Failure::Input), "{err:#}");
        format!("{err:#}")
    };
    let one = r#"[{"name": "a", "image": "i"}]"#;
    let local = ADDRESS;
    assert!(refused(one, "../etc", local).contains("not an ECS task id"));
    assert!(refused(one, TASK, Ipv4Addr::new(10, 0, 0, 1)).contains("not a loopback address"));
    assert!(refused(
        r#"[{"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "START"}]}]"#,
        TASK,
        local
    )
    .contains("depends on b, which is not another container"));
    assert!(refused(
        r#"[{"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "START"}]},
            {"name": "b", "image": "i", "volumesFrom": [{"sourceContainer": "a"}]}]"#,
        TASK,
        local
    )
    .contains("containers a, b depend on each other in a cycle"));
    assert!(refused(
        r#"[{"name": "a", "image": "i", "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]"#,
        TASK,
        local
    )
    .contains("hostPort must equal containerPort 80"));
    assert!(refused(
        r#"[{"name": "a", "image": "i", "secrets": [{"name": "DOCKER_HOST", "valueFrom": "x"}]}]"#,
        TASK,
        local
    )
    .contains("would configure the docker client"));
    assert!(refused(r#"[{"name": "a", "image": "i"}, {"name": "a", "image": "j"}]"#, TASK, local)
        .contains("two containers are named a"));
}

#[test]
fn images_are_pulled_by_tag_latest_when_none_is_named() {
    assert_eq!(
        pull_ref("127.0.0.1:5000/zenn-clone-rails"),
        "127.0.0.1:5000/zenn-clone-rails:latest"
    );
    assert_eq!(pull_ref("127.0.0.1:5000/app:v1"), "127.0.0.1:5000/app:v1");
    assert_eq!(pull_ref("r/app@sha256:ab"), "r/app@sha256:ab");
    assert_eq!(repository("127.0.0.1:5000/app:v1"), "127.0.0.1:5000/app");
    assert_eq!(repository("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
    assert_eq!(repository("r/app:v1@sha256:ab"), "r/app");
}

#[test]
fn the_other_docker_commands_name_only_the_sandbox_and_task_they_are_for() {
    let sh = Shell::new().unwrap();
    let s = settings();
    let ids = ["c1".to_string(), "c2".to_string()];
    let texts = [
        pull_command(&sh, "127.0.0.1:5000/zenn-clone-rails:latest").to_string(),
        repo_digests_command(&sh, "r/app:latest").to_string(),
        list_command(&sh, &s, Some(TASK)).to_string(),
        list_tasks_command(&sh, &s).to_string(),
        inspect_command(&sh, &ids).to_string(),
        stop_command(&sh, &s, &ids).to_string(),
        remove_command(&sh, &ids).to_string(),
        network_create_command(&sh, &s).to_string(),
    ];
    assert_eq!(
        texts,
        [
            "docker pull --quiet 127.0.0.1:5000/zenn-clone-rails:latest".to_string(),
            "docker image inspect --format \"{{json .RepoDigests}}\" r/app:latest".to_string(),
            format!(
                "docker ps --all --quiet --no-trunc --filter label=zenn-sandbox.dir=/repo/target/sandbox \
                 --filter label=zenn-sandbox.task={TASK}"
            ),
            concat!(
                "docker ps --all --filter label=zenn-sandbox.dir=/repo/target/sandbox ",
                r#"--format "{{.Label \"zenn-sandbox.task\"}}""#
            )
            .to_string(),
            "docker inspect --type container c1 c2".to_string(),
            "docker stop --time 5 c1 c2".to_string(),
            "docker rm --force c1 c2".to_string(),
            "docker network create --label zenn-sandbox.dir=/repo/target/sandbox zenn-sandbox".to_string(),
        ]
    );
}
