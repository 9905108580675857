use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use xshell::Shell;

use super::*;
use crate::docker::containers::HealthCheck as Health;
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
        awslogs: crate::sandbox::fargate::awslogs::Awslogs::nowhere("ap-northeast-1"),
    }
}

fn plan_of(def: &TaskDefinition) -> Result<TaskPlan> {
    TaskPlan::new(&settings(), TASK, ADDRESS, def)
}

fn definition(containers: &str) -> TaskDefinition {
    TaskDefinition::from_json(&format!(r#"{{"containerDefinitions": {containers}}}"#)).unwrap()
}

fn spec_of(plan: &TaskPlan, name: &str) -> ContainerSpec {
    let c = plan.container(name).unwrap();
    let run_ref = format!("{}@sha256:d1", repository(&c.pull_ref));
    plan.container_spec(&settings(), c, &run_ref, Some("sha256:d1")).unwrap()
}

fn create_text(plan: &TaskPlan, name: &str) -> String {
    let sh = Shell::new().unwrap();
    containers::create(&sh, &spec_of(plan, name)).to_string()
}

fn labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A container of the repository's task with these labels, as `docker create` gets it.
fn repository_container(name: &str, labels: Vec<(String, String)>) -> ContainerSpec {
    ContainerSpec {
        name: format!("zenn-sandbox-01234567-{name}"),
        network: Network::Container("zenn-sandbox-01234567".into()),
        labels,
        publish: vec![],
        memory_mib: None,
        memory_reservation_mib: None,
        env: vec![],
        secret_env: vec![],
        volumes_from: vec![],
        health: Health::Disabled,
        init: false,
        workdir: None,
        user: None,
        entrypoint: None,
        image: format!("127.0.0.1:5000/zenn-clone-{name}@sha256:d1"),
        args: vec![],
    }
}

fn task_labels(container: &str) -> Vec<(String, String)> {
    labels(&[
        ("zenn-sandbox.dir", "/repo/target/sandbox"),
        ("zenn-sandbox.task", TASK),
        ("zenn-sandbox.role", "container"),
        ("zenn-sandbox.container", container),
        ("zenn-sandbox.essential", "true"),
        ("zenn-sandbox.image", &format!("127.0.0.1:5000/zenn-clone-{container}")),
        ("zenn-sandbox.image-digest", "sha256:d1"),
    ])
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
    assert_eq!(
        plan.pause_spec(&settings()),
        ContainerSpec {
            name: "zenn-sandbox-01234567".into(),
            network: Network::Named("zenn-sandbox".into()),
            labels: labels(&[
                ("zenn-sandbox.dir", "/repo/target/sandbox"),
                ("zenn-sandbox.task", TASK),
                ("zenn-sandbox.role", "pause"),
                ("zenn-sandbox.containers", "rails,nginx"),
                ("zenn-sandbox.address", "127.0.0.5"),
            ]),
            publish: vec![Publish { address: ADDRESS, port: 80, protocol: "tcp".into() }],
            health: Health::Image,
            image: "zenn-sandbox/pause:busybox".into(),
            args: vec!["sleep".into(), "2147483647".into()],
            ..repository_container("", vec![])
        }
    );
}

#[test]
fn rails_gets_its_environment_secret_names_and_a_compressed_health_check() {
    let plan = plan_of(&repository_definition()).unwrap();
    assert_eq!(
        spec_of(&plan, "rails"),
        ContainerSpec {
            memory_reservation_mib: Some(384),
            env: vec![
                ("RAILS_ENV".into(), "production".into()),
                ("RAILS_LOG_TO_STDOUT".into(), "1".into()),
            ],
            secret_env: vec![
                ("RAILS_MASTER_KEY".into(), Secret::new(MASTER_KEY)),
                ("SECRET_KEY_BASE".into(), Secret::new(SECRET_KEY_BASE)),
                ("DATABASE_URL".into(), Secret::new(DATABASE_URL)),
            ],
            health: Health::Shell {
                command: "curl --unix-socket /myapp/tmp/sockets/puma.sock localhost/api/v1/health_check || exit 1".into(),
                interval: Duration::from_secs(3),
                timeout: Duration::from_secs(5),
                retries: 3,
                start_period: None,
            },
            ..repository_container("rails", task_labels("rails"))
        }
    );
}

#[test]
fn nginx_takes_the_rails_volumes_and_shares_the_task_network() {
    let plan = plan_of(&repository_definition()).unwrap();
    assert_eq!(
        spec_of(&plan, "nginx"),
        ContainerSpec {
            memory_reservation_mib: Some(64),
            volumes_from: vec![VolumesFrom {
                container: "zenn-sandbox-01234567-rails".into(),
                read_only: false,
            }],
            health: Health::Shell {
                command: "curl -f http://localhost/api/v1/health_check || exit 1".into(),
                interval: Duration::from_secs(3),
                timeout: Duration::from_secs(5),
                retries: 3,
                start_period: None,
            },
            ..repository_container("nginx", task_labels("nginx"))
        }
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
    let spec = plan.container_spec(&settings(), rails, "r@sha256:d1", None).unwrap();
    assert!(!format!("{spec:?}").contains(MASTER_KEY), "Debug shows a secret: {spec:?}");
    let cmd = containers::create(&sh, &spec);
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
    let mut settings = settings();
    settings.secrets = [("RAILS_MASTER_KEY", MASTER_KEY)].into_iter().collect();
    let rails = plan.container("rails").unwrap();
    let err = plan.container_spec(&settings, rails, "r", None).unwrap_err();
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
        containers::health_args(&health(&check, scale).unwrap()).join(" ")
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
    assert!(health(&bad, 10).is_err());
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
