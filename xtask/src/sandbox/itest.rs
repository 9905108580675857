//! The SDK calls the deploy makes, against the sandbox's real stand-ins: moto through the
//! launcher, the registry, the push mirror, Docker. Each test starts its own sandbox in its own
//! directory on free ports (sharing the moto venv) and stops it when done.
//!
//! They start processes and need Docker, so they are `#[ignore]`d for the quick
//! `cargo test`; `cargo xtask ci` runs them with `cargo test -p xtask -- --include-ignored`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ecs::types::{DeploymentRolloutState, DesiredStatus, TaskStopCode};
use xshell::{cmd, Shell};

use super::admin::{Admin, ContainerUpdate, DeploymentUpdate, TaskUpdate};
use super::state::{ensure_dir, Layout};
use super::{moto, process, registry, resources, serve};
use crate::aws::ecr::Secret;
use crate::aws::Aws;
use crate::deploy::target::Target;
use crate::docker::Docker;
use crate::report::Reporter;

/// A sandbox of one test: killed and removed on drop, pass or fail.
pub(super) struct TestSandbox {
    runtime: tokio::runtime::Runtime,
    pub(super) layout: Layout,
    pids: Vec<u32>,
    pub(super) target: Target,
    pub(super) registry: String,
    moto_port: u16,
    /// Docker images the test built, removed on drop.
    pub(super) images: std::cell::RefCell<Vec<String>>,
}

impl TestSandbox {
    /// moto alone, or with the registry and the push mirror (in a thread of this test).
    pub(super) fn start(name: &str, with_registry: bool) -> TestSandbox {
        let dir = crate::project::target_dir()
            .join("test-tmp")
            .join(format!("sandbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout { dir, venv: Layout::standard().venv };
        ensure_dir(&layout.logs()).unwrap();
        let report = Reporter::plain();
        moto::ensure_venv(&Shell::new().unwrap(), &layout, &report).unwrap();

        let moto_port = process::pick_port(0).unwrap();
        let mirror_listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let mirror_port = mirror_listener.local_addr().unwrap().port();
        let mut registry_port = process::pick_port(0).unwrap();
        while registry_port == moto_port {
            registry_port = process::pick_port(0).unwrap();
        }
        let registry = format!("127.0.0.1:{registry_port}");
        let mut target = super::own_target(&super::overlay(moto_port, registry_port)).unwrap();
        target.task_definition =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/task-definition.json");
        let runtime = crate::aws::runtime().unwrap();
        let mut sandbox = TestSandbox {
            runtime,
            layout,
            pids: Vec::new(),
            target,
            registry,
            moto_port,
            images: Default::default(),
        };

        let log = sandbox.layout.log("moto");
        let cmd =
            moto::command(&sandbox.layout, moto_port, &sandbox.target.region, &sandbox.registry)
                .unwrap();
        let mut child = process::spawn_detached(cmd, &log).unwrap();
        sandbox.pids.push(child.id());
        process::wait_ready(&report, "moto", &mut child, &log, Duration::from_secs(90), || {
            super::components::health_moto(moto_port)
        })
        .unwrap();

        if with_registry {
            let storage = sandbox.layout.registry_storage();
            let notify = format!("http://127.0.0.1:{mirror_port}{}", serve::EVENTS_PATH);
            std::fs::write(
                sandbox.layout.registry_config(),
                registry::config(registry_port, &storage, &notify),
            )
            .unwrap();
            let log = sandbox.layout.log("registry");
            let mut child =
                process::spawn_detached(registry::command(&sandbox.layout.registry_config()), &log)
                    .unwrap();
            sandbox.pids.push(child.id());
            process::wait_ready(
                &report,
                "registry",
                &mut child,
                &log,
                Duration::from_secs(20),
                || super::components::health_registry(registry_port),
            )
            .unwrap();
            // Connecting makes no call: the mirror's runtime is the one `serve` makes.
            let aws = sandbox.aws();
            let mirror = serve::Mirror { aws, registry: sandbox.registry.clone() };
            std::thread::spawn(move || serve::serve(mirror_listener, &mirror));
        }
        sandbox
    }

    pub(super) fn aws(&self) -> Aws {
        self.block(Aws::connect(&self.target))
    }

    /// Runs an SDK call on the test's one runtime (pooled connections stay with it).
    pub(super) fn block<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub(super) fn admin(&self) -> Admin {
        Admin::new(&moto::endpoint(self.moto_port))
    }

    fn ensure_resources(&self, aws: &Aws, repositories: bool) -> Vec<String> {
        let values = resources::Placeholders {
            registry: &self.registry,
            account_id: moto::ACCOUNT_ID,
            region: &self.target.region,
        };
        self.block(resources::ensure(
            aws,
            &self.target,
            &self.target.task_definition,
            &values,
            repositories,
        ))
        .unwrap()
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        let images = self.images.take();
        if !images.is_empty() {
            if let Ok(sh) = Shell::new() {
                let _ = cmd!(sh, "docker rmi --force {images...}").quiet().ignore_stdout().run();
            }
        }
        for pid in &self.pids {
            let _ = process::stop_group(*pid, Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(&self.layout.dir);
    }
}

#[test]
#[ignore = "needs moto (the sandbox's venv, made with python3-venv from PyPI once): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn ecs_and_ec2_calls_of_the_deploy_answer_as_on_aws() {
    let sandbox = TestSandbox::start("ecs", false);
    let aws = sandbox.aws();
    let admin = sandbox.admin();
    let (cluster, service) = (sandbox.target.cluster.clone(), sandbox.target.service.clone());

    let created = sandbox.ensure_resources(&aws, false);
    assert!(
        created.iter().any(|c| c.starts_with("service zenn-clone-backend-service")),
        "{created:?}"
    );
    assert!(!created.iter().any(|c| c.starts_with("ECR repository")), "{created:?}");
    assert!(sandbox.ensure_resources(&aws, false).is_empty(), "a second ensure creates nothing");

    // DescribeServices: the service as the chapter's console shows it.
    let described = sandbox
        .block(aws.ecs.describe_services().cluster(&cluster).services(&service).send())
        .unwrap();
    let svc = &described.services()[0];
    assert_eq!((svc.status(), svc.desired_count(), svc.running_count()), (Some("ACTIVE"), 1, 0));
    assert_eq!(svc.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    let config = svc.deployment_configuration().unwrap();
    assert_eq!(
        (config.minimum_healthy_percent(), config.maximum_percent()),
        (Some(100), Some(200))
    );
    let breaker = config.deployment_circuit_breaker().unwrap();
    assert!(breaker.enable() && breaker.rollback());
    let vpc = svc.network_configuration().unwrap().awsvpc_configuration().unwrap();
    assert_eq!(vpc.assign_public_ip().map(|a| a.as_str()), Some("ENABLED"));
    assert_eq!(svc.deployments().len(), 1);
    let first = svc.deployments()[0].id().unwrap().to_string();
    assert!(first.starts_with("ecs-svc/"), "{first}");

    // The scheduler starts a task and records it RUNNING with both containers and a public IP.
    let task = admin.start_task(&cluster, &service, None).unwrap();
    assert_eq!(
        (task.last_status.as_str(), task.desired_status.as_str()),
        ("PROVISIONING", "RUNNING")
    );
    assert_eq!(
        (task.group.as_str(), task.started_by.as_str()),
        ("service:zenn-clone-backend-service", first.as_str())
    );
    let digest = format!("sha256:{}", "ab".repeat(32));
    let update = TaskUpdate {
        last_status: Some("RUNNING".into()),
        health_status: Some("HEALTHY".into()),
        public_ip: Some(Some("127.0.0.5".into())),
        containers: ["rails", "nginx"]
            .iter()
            .map(|name| ContainerUpdate {
                name: name.to_string(),
                image_digest: Some(digest.clone()),
                runtime_id: Some(format!("zenn-sandbox-{name}")),
                last_status: Some("RUNNING".into()),
                health_status: Some("HEALTHY".into()),
                ..ContainerUpdate::default()
            })
            .collect(),
        ..TaskUpdate::default()
    };
    let update = TaskUpdate { pull_started_at: Some("2025-01-31T12:00:00.250Z".into()), ..update };
    let recorded = admin.update_task(&task.task_id, &update).unwrap();
    assert!(recorded.started_at.is_some());
    assert_eq!(recorded.pull_started_at.as_deref(), Some("2025-01-31T12:00:00.250Z"));
    assert_eq!(admin.tasks(&cluster).unwrap(), std::slice::from_ref(&recorded));
    let err = admin.tasks("no-such-cluster").unwrap_err();
    assert!(format!("{err:#}").contains("answered 404: no cluster `no-such-cluster`"), "{err:#}");
    let bad = TaskUpdate {
        containers: vec![ContainerUpdate { name: "redis".into(), ..ContainerUpdate::default() }],
        ..TaskUpdate::default()
    };
    let err = admin.update_task(&task.task_id, &bad).unwrap_err();
    assert!(format!("{err:#}").contains("no container `redis`"), "{err:#}");

    // ListTasks by service, DescribeTasks with every container.
    let listed = sandbox
        .block(aws.ecs.list_tasks().cluster(&cluster).service_name(&service).send())
        .unwrap();
    assert_eq!(listed.task_arns(), std::slice::from_ref(&task.task_arn));
    let tasks = sandbox
        .block(aws.ecs.describe_tasks().cluster(&cluster).tasks(&task.task_arn).send())
        .unwrap();
    let described = &tasks.tasks()[0];
    assert_eq!(
        (described.last_status(), described.desired_status()),
        (Some("RUNNING"), Some("RUNNING"))
    );
    assert_eq!(described.health_status().map(|h| h.as_str()), Some("HEALTHY"));
    let containers: Vec<_> = described
        .containers()
        .iter()
        .map(|c| {
            (
                c.name().unwrap(),
                c.image().unwrap(),
                c.image_digest().unwrap(),
                c.health_status().unwrap().as_str(),
            )
        })
        .collect();
    let rails_image = format!("{}/zenn-clone-rails", sandbox.registry);
    let nginx_image = format!("{}/zenn-clone-nginx", sandbox.registry);
    assert_eq!(
        containers,
        [
            ("rails", rails_image.as_str(), digest.as_str(), "HEALTHY"),
            ("nginx", nginx_image.as_str(), digest.as_str(), "HEALTHY")
        ]
    );
    let eni = described.attachments()[0]
        .details()
        .iter()
        .find(|d| d.name() == Some("networkInterfaceId"))
        .and_then(|d| d.value())
        .unwrap()
        .to_string();

    // EC2: the task's ENI → the public IP the admin API gave it.
    assert_eq!(
        sandbox.block(crate::aws::ec2::public_ip(&aws, &eni)).unwrap().as_deref(),
        Some("127.0.0.5")
    );
    let interface = sandbox.block(crate::aws::ec2::network_interface(&aws, &eni)).unwrap().unwrap();
    assert_eq!(interface.status, "in-use");
    assert_eq!(interface.private_ip, task.private_ip);

    let running = sandbox
        .block(aws.ecs.describe_services().cluster(&cluster).services(&service).send())
        .unwrap();
    assert_eq!(running.services()[0].running_count(), 1);

    // UpdateService(forceNewDeployment): a new PRIMARY, the old one ACTIVE.
    sandbox
        .block(
            aws.ecs
                .update_service()
                .cluster(&cluster)
                .service(&service)
                .force_new_deployment(true)
                .send(),
        )
        .unwrap();
    let rolled = sandbox
        .block(aws.ecs.describe_services().cluster(&cluster).services(&service).send())
        .unwrap();
    let deployments: Vec<_> = rolled.services()[0]
        .deployments()
        .iter()
        .map(|d| {
            (
                d.id().unwrap().to_string(),
                d.status().unwrap().to_string(),
                d.rollout_state().cloned(),
                d.running_count(),
            )
        })
        .collect();
    assert_eq!(deployments.len(), 2, "{deployments:?}");
    assert_ne!(deployments[0].0, first);
    assert_eq!(
        (deployments[0].1.as_str(), &deployments[0].2, deployments[0].3),
        ("PRIMARY", &Some(DeploymentRolloutState::InProgress), 0)
    );
    assert_eq!(
        (deployments[1].0.as_str(), deployments[1].1.as_str(), deployments[1].3),
        (first.as_str(), "ACTIVE", 1)
    );

    // StopTask: desired STOPPED at once; lastStatus STOPPED once the scheduler says so.
    let stopped = sandbox
        .block(aws.ecs.stop_task().cluster(&cluster).task(&task.task_arn).reason("redeploy").send())
        .unwrap();
    let stopped = stopped.task().unwrap();
    assert_eq!(
        (stopped.last_status(), stopped.desired_status()),
        (Some("RUNNING"), Some("STOPPED"))
    );
    assert_eq!(
        (stopped.stop_code(), stopped.stopped_reason()),
        (Some(&TaskStopCode::UserInitiated), Some("redeploy"))
    );
    let listed = sandbox
        .block(aws.ecs.list_tasks().cluster(&cluster).service_name(&service).send())
        .unwrap();
    assert!(listed.task_arns().is_empty(), "ListTasks lists desired RUNNING tasks by default");
    let listed = sandbox
        .block(
            aws.ecs
                .list_tasks()
                .cluster(&cluster)
                .service_name(&service)
                .desired_status(DesiredStatus::Stopped)
                .send(),
        )
        .unwrap();
    assert_eq!(listed.task_arns(), std::slice::from_ref(&task.task_arn));
    let gone = admin
        .update_task(
            &task.task_id,
            &TaskUpdate { last_status: Some("STOPPED".into()), ..TaskUpdate::default() },
        )
        .unwrap();
    assert_eq!(
        (gone.attachment_status.as_deref(), gone.stopped_at.is_some()),
        (Some("DELETED"), true)
    );
    assert_eq!(
        sandbox.block(crate::aws::ec2::public_ip(&aws, &eni)).unwrap(),
        None,
        "ECS deletes a stopped task's ENI"
    );

    // Events and deployment bookkeeping, as the scheduler will write them.
    admin
        .add_event(
            &cluster,
            &service,
            "(service zenn-clone-backend-service) has reached a steady state.",
        )
        .unwrap();
    let done = DeploymentUpdate {
        id: first.clone(),
        status: Some("INACTIVE".into()),
        ..DeploymentUpdate::default()
    };
    let after = admin.update_deployments(&cluster, &service, &[done]).unwrap();
    assert_eq!(after.deployments.len(), 1);
    let described = sandbox
        .block(aws.ecs.describe_services().cluster(&cluster).services(&service).send())
        .unwrap();
    let svc = &described.services()[0];
    assert_eq!(
        svc.events()[0].message(),
        Some("(service zenn-clone-backend-service) has reached a steady state.")
    );
    assert_eq!(svc.deployments().len(), 1);
    let rollback = admin.new_deployment(&cluster, &service, None, Some("rolling back")).unwrap();
    assert_eq!(
        (rollback.status.as_str(), rollback.rollout_state_reason.as_str()),
        ("PRIMARY", "rolling back")
    );
}

#[test]
#[ignore = "needs Docker, docker-registry and moto (the sandbox's venv): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn a_docker_push_shows_in_describe_images_with_its_digest() {
    let sandbox = TestSandbox::start("ecr", true);
    let aws = sandbox.aws();
    let sh = Shell::new().unwrap();
    let created = sandbox.ensure_resources(&aws, true);
    assert!(created.contains(&"ECR repository zenn-clone-rails".to_string()), "{created:?}");
    let repos = sandbox
        .block(
            aws.ecr
                .describe_repositories()
                .repository_names("zenn-clone-rails")
                .repository_names("zenn-clone-nginx")
                .send(),
        )
        .unwrap();
    assert_eq!(repos.repositories().len(), 2);

    // The ECR token logs docker in to the sandbox registry, as the deploy will do.
    let token = sandbox.block(aws.ecr.get_authorization_token().send()).unwrap();
    let data = &token.authorization_data()[0];
    assert_eq!(data.proxy_endpoint(), Some(format!("http://{}", sandbox.registry).as_str()));
    let expires = data.expires_at().unwrap().secs();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(expires > now + 3600, "the token expires in the future");
    let decoded = aws_smithy_types::base64::decode(data.authorization_token().unwrap()).unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    let password = decoded.strip_prefix("AWS:").expect("token is AWS:<password>").to_string();
    let docker_config = sandbox.layout.dir.join("docker-config");
    ensure_dir(&docker_config).unwrap();
    let registry = &sandbox.registry;
    Docker::default()
        .login(registry, "AWS", Secret::new(password), &docker_config)
        .run_captured(&sh)
        .unwrap();

    let image = format!("{registry}/zenn-clone-rails");
    let first = build_and_push(&sh, &sandbox, &docker_config, &image, "first");
    let details = wait_for_latest(&sandbox, &aws, &first);
    let latest = details.iter().find(|d| d.image_digest() == Some(first.as_str())).unwrap();
    assert_eq!(
        latest.image_manifest_media_type(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    let pushed = latest.image_pushed_at().unwrap().secs();
    assert!((now - 60..now + 60).contains(&pushed), "push time {pushed} is about now ({now})");

    // A second push moves `latest`; the first image stays, untagged, as in ECR.
    let second = build_and_push(&sh, &sandbox, &docker_config, &image, "second");
    assert_ne!(first, second);
    let details = wait_for_latest(&sandbox, &aws, &second);
    let tags: Vec<_> = details
        .iter()
        .map(|d| (d.image_digest().unwrap().to_string(), d.image_tags().to_vec()))
        .collect();
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert!(tags.contains(&(first.clone(), vec![])), "{tags:?}");
    assert!(tags.contains(&(second.clone(), vec!["latest".to_string()])), "{tags:?}");
}

/// Builds a `FROM scratch` image holding `content`, pushes it as `latest`, and returns the
/// digest `docker push` printed.
fn build_and_push(
    sh: &Shell,
    sandbox: &TestSandbox,
    config: &std::path::Path,
    image: &str,
    content: &str,
) -> String {
    let context = sandbox.layout.dir.join(format!("image-{content}"));
    ensure_dir(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY content.txt /\n").unwrap();
    std::fs::write(context.join("content.txt"), content).unwrap();
    let tag = format!("{image}:latest");
    let id = cmd!(sh, "docker build --quiet --tag {tag} {context}")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap();
    sandbox.images.borrow_mut().push(id.trim().to_string());
    let out = Docker::default().push(&tag, config).read(sh).unwrap();
    let digest = out
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in the push output:\n{out}"));
    digest.to_string()
}

/// DescribeImages until `latest` carries `digest` (the mirror follows the push by a moment).
fn wait_for_latest(
    sandbox: &TestSandbox,
    aws: &Aws,
    digest: &str,
) -> Vec<aws_sdk_ecr::types::ImageDetail> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = sandbox
            .block(aws.ecr.describe_images().repository_name("zenn-clone-rails").send())
            .unwrap();
        let details = out.image_details().to_vec();
        if details.iter().any(|d| {
            d.image_digest() == Some(digest) && d.image_tags().iter().any(|t| t == "latest")
        }) {
            return details;
        }
        assert!(Instant::now() < deadline, "ECR never showed {digest} as latest: {details:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
