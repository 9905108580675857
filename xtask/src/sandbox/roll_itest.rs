//! The roll against the sandbox's AWS side: the SDK talking to moto, the sandbox scheduler and
//! its Fargate runner running the tasks in Docker, and a second service whose tasks share the
//! cluster. Both strategies roll our service onto a new push and must leave the other service's
//! tasks alone, also when ListTasks ignores `serviceName` as stock moto does.
//!
//! It starts processes and needs Docker, so it is `#[ignore]`d for the quick `cargo test`;
//! `cargo xtask ci` runs it with `cargo test -p xtask -- --include-ignored`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use xshell::{cmd, Shell};

use super::admin::{Admin, Task};
use super::fargate::image::ensure_pause_image;
use super::fargate::plan::{Secrets, LABEL_SANDBOX, PAUSE_IMAGE};
use super::fargate::Fargate;
use super::itest::TestSandbox;
use super::scheduler::driver::{Addresses, Driver, TICK};
use super::{moto, resources};
use crate::aws::ecs::{
    list_all_tasks, DesiredStatus, Ecs, EcsApi, HealthStatus, ServiceSnapshot, ServiceUpdate,
    TaskDefinitionSnapshot, TaskPage, TaskSnapshot,
};
use crate::aws::logs::Logs;
use crate::aws::Aws;
use crate::deploy::roll::{self, RollOutcome, RollRequest};
use crate::deploy::target::{RollStrategy, Target};
use crate::deploy::verify::{self, VerifyRequest};
use crate::docker::containers;
use crate::report::Reporter;

/// The other service: its own family, image and name, two tasks.
const OTHER_SERVICE: &str = "zenn-clone-worker-service";
const OTHER_REPOSITORY: &str = "zenn-clone-worker";
const OTHER_COUNT: usize = 2;
/// How long any one condition may take (the machine is small and shared).
const DEADLINE: Duration = Duration::from_secs(180);

/// Ours, as the chapter's: `rails` writes the health-check answer and turns HEALTHY, `nginx`
/// serves it on port 80 once `rails` is HEALTHY.
const OUR_TASK_DEFINITION: &str = r#"{
  "family": "zenn-clone-task-definition-backend",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["FARGATE"],
  "cpu": "256",
  "memory": "512",
  "containerDefinitions": [
    {
      "name": "rails",
      "image": "{registry}/zenn-clone-rails",
      "essential": true,
      "healthCheck": { "command": ["CMD-SHELL", "test -s /srv/api/v1/health_check"], "interval": 5, "timeout": 5, "retries": 3 }
    },
    {
      "name": "nginx",
      "image": "{registry}/zenn-clone-nginx",
      "essential": true,
      "portMappings": [{ "containerPort": 80, "hostPort": 80, "protocol": "tcp" }],
      "volumesFrom": [{ "sourceContainer": "rails", "readOnly": true }],
      "dependsOn": [{ "containerName": "rails", "condition": "HEALTHY" }],
      "healthCheck": { "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1/api/v1/health_check || exit 1"], "interval": 5, "timeout": 5, "retries": 3 }
    }
  ]
}"#;

const OTHER_TASK_DEFINITION: &str = r#"{
  "family": "zenn-clone-worker",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["FARGATE"],
  "cpu": "256",
  "memory": "512",
  "containerDefinitions": [
    {
      "name": "worker",
      "image": "{registry}/zenn-clone-worker",
      "essential": true,
      "portMappings": [{ "containerPort": 80, "hostPort": 80, "protocol": "tcp" }],
      "healthCheck": { "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1/ || exit 1"], "interval": 5, "timeout": 5, "retries": 3 }
    }
  ]
}"#;

/// The health-check answer names the release, so the verification tells releases apart.
const APP: &str = "trap 'exit 0' TERM; mkdir -p /srv/api/v1; printf '{\"message\":\"hello %s\"}' \"$RELEASE\" > /srv/api/v1/health_check; echo app ready; sleep 2147483647 & wait";
const WEB: &str = "trap 'exit 0' TERM; httpd -f -p 80 -h /srv & wait";
const WORKER: &str =
    "trap 'exit 0' TERM; echo \"worker $RELEASE\" > /srv/index.html; httpd -f -p 80 -h /srv & wait";

/// `sandbox serve`'s scheduler loop, in a thread of the test that ends when told to.
struct SchedulerThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SchedulerThread {
    fn start(mut driver: Driver) -> SchedulerThread {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("test scheduler".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::SeqCst) {
                        if let Err(e) = driver.tick() {
                            eprintln!("scheduler: {e:#}");
                        }
                        std::thread::park_timeout(TICK);
                    }
                }
            })
            .unwrap();
        SchedulerThread { stop, thread: Some(thread) }
    }

    /// Ends the loop and waits for it, so it starts nothing more.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// moto, the registry and the push mirror (`TestSandbox`), the scheduler, and both services.
/// On drop, pass or fail: the scheduler stops, the task containers and the network go, then
/// the processes, the images and the directory.
struct RollSandbox {
    base: TestSandbox,
    scheduler: SchedulerThread,
    aws: Aws,
    admin: Admin,
    report: Reporter,
}

impl RollSandbox {
    fn start() -> RollSandbox {
        let mut base = TestSandbox::start("roll", true);
        let sh = Shell::new().unwrap();
        ensure_pause_image(&sh, PAUSE_IMAGE).unwrap();
        let ours = write(&base, "ours.json", OUR_TASK_DEFINITION);
        let other = write(&base, "other.json", OTHER_TASK_DEFINITION);
        base.target.task_definition = ours.clone();
        let other_target = Target { service: OTHER_SERVICE.to_string(), ..base.target.clone() };
        let aws = base.aws();
        let values = resources::Placeholders {
            registry: &base.registry,
            account_id: moto::ACCOUNT_ID,
            region: &base.target.region,
        };
        base.block(resources::ensure(&aws, &base.target, &ours, &values, true)).unwrap();
        base.block(resources::ensure(&aws, &other_target, &other, &values, false)).unwrap();
        base.block(aws.ecr.create_repository().repository_name(OTHER_REPOSITORY).send()).unwrap();
        base.block(
            aws.ecs
                .update_service()
                .cluster(&base.target.cluster)
                .service(OTHER_SERVICE)
                .desired_count(OTHER_COUNT as i32)
                .send(),
        )
        .unwrap();

        // Both services' first deployments find their images.
        push(&base, &sh, OTHER_REPOSITORY, "w1", WORKER);
        push(&base, &sh, "zenn-clone-rails", "r1", APP);
        push(&base, &sh, "zenn-clone-nginx", "r1", WEB);

        // `up` makes the network before the scheduler runs: tasks starting at once would race
        // to create it, and Docker may then hold several networks of that name.
        let mut settings = super::task_settings(&base.layout, Secrets::default());
        let logs = std::sync::Arc::new(base.admin());
        settings.awslogs = super::fargate::awslogs::Awslogs::to(logs, &base.target.region);
        let owner = (LABEL_SANDBOX, settings.owner.as_str());
        containers::network_create(&sh, owner, &settings.network)
            .quiet()
            .ignore_stdout()
            .run()
            .unwrap();
        let driver = Driver::new(
            base.admin(),
            &base.target.region,
            &base.target.cluster,
            Fargate::new(settings),
            Addresses::new(base.layout.addresses()),
        );
        let scheduler = SchedulerThread::start(driver);
        let admin = base.admin();
        RollSandbox { base, scheduler, aws, admin, report: Reporter::plain() }
    }

    fn cluster(&self) -> &str {
        &self.base.target.cluster
    }

    fn service(&self) -> &str {
        &self.base.target.service
    }

    /// Pushes release `release` of our two images; their digests by container.
    fn push_release(&self, release: &str) -> BTreeMap<String, String> {
        let sh = Shell::new().unwrap();
        BTreeMap::from([
            ("rails".to_string(), push(&self.base, &sh, "zenn-clone-rails", release, APP)),
            ("nginx".to_string(), push(&self.base, &sh, "zenn-clone-nginx", release, WEB)),
        ])
    }

    /// Every task of `service` moto records, stopped ones included.
    fn tasks_of(&self, service: &str) -> Vec<Task> {
        let group = roll::service_group(service);
        self.admin.tasks(self.cluster()).unwrap().into_iter().filter(|t| t.group == group).collect()
    }

    fn task(&self, arn: &str) -> Task {
        self.admin.tasks(self.cluster()).unwrap().into_iter().find(|t| t.task_arn == arn).unwrap()
    }

    fn primary(&self, service: &str) -> String {
        let services = self.admin.services(self.cluster()).unwrap();
        let found = services.iter().find(|s| s.service_name == service).unwrap();
        found.deployments.iter().find(|d| d.status == "PRIMARY").unwrap().id.clone()
    }

    /// The service's live tasks once it is steady: one COMPLETED deployment, `count` tasks
    /// RUNNING and HEALTHY, none starting or stopping.
    fn steady(&self, service: &str, count: usize) -> Option<Vec<Task>> {
        let services = self.admin.services(self.cluster()).ok()?;
        let found = services.iter().find(|s| s.service_name == service)?;
        let [deployment] = found.deployments.as_slice() else { return None };
        if deployment.rollout_state != "COMPLETED" {
            return None;
        }
        let live: Vec<Task> =
            self.tasks_of(service).into_iter().filter(|t| t.last_status != "STOPPED").collect();
        let healthy = live.iter().all(|t| {
            t.last_status == "RUNNING"
                && t.desired_status == "RUNNING"
                && t.health_status == "HEALTHY"
        });
        (live.len() == count && healthy).then_some(live)
    }

    /// Waits until `check` returns a value; the panic shows the services and tasks.
    fn wait<T>(&self, what: &str, mut check: impl FnMut(&RollSandbox) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{what}: not within {DEADLINE:?}\n{}",
                self.state()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The services and tasks, for a failure's message.
    fn state(&self) -> String {
        format!(
            "services: {:#?}\ntasks: {:#?}",
            self.admin.services(self.cluster()),
            self.admin.tasks(self.cluster())
        )
    }

    fn roll(
        &self,
        api: &impl EcsApi,
        strategy: RollStrategy,
        digests: BTreeMap<String, String>,
    ) -> RollOutcome {
        let mut req = RollRequest::for_target(&self.base.target, digests);
        req.strategy = strategy;
        req.timeout = DEADLINE;
        let logs = Logs::new(self.aws.logs.clone());
        self.base
            .block(roll::roll(api, &logs, &req, &self.report))
            .unwrap_or_else(|e| panic!("the {strategy} roll failed: {e:#}\n{}", self.state()))
    }
}

impl Drop for RollSandbox {
    fn drop(&mut self) {
        self.scheduler.stop();
        // Before the base removes the images the containers run.
        if let Ok(sh) = Shell::new() {
            let _ = super::down::remove_containers(&sh, &self.base.layout);
        }
    }
}

fn write(base: &TestSandbox, name: &str, text: &str) -> PathBuf {
    let path = base.layout.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Builds `repository:latest` from the pause image's busybox, running `script` with
/// `RELEASE=<release>`, pushes it to the sandbox's registry and returns the digest of the push.
fn push(base: &TestSandbox, sh: &Shell, repository: &str, release: &str, script: &str) -> String {
    let context = base.layout.dir.join(format!("image-{repository}-{release}"));
    std::fs::create_dir_all(&context).unwrap();
    let command = serde_json::to_string(&["sh", "-c", script]).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {PAUSE_IMAGE}\nVOLUME /srv\nENV RELEASE={release}\nCMD {command}\n"),
    )
    .unwrap();
    let tag = format!("{}/{repository}:latest", base.registry);
    let id = docker(cmd!(sh, "docker build --quiet --tag {tag} {context}"));
    base.images.borrow_mut().push(id.trim().to_string());
    let out = docker(cmd!(sh, "docker push {tag}"));
    out.lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in the push output:\n{out}"))
        .to_string()
}

/// Runs a docker command quietly; its stdout, or a panic with its stderr.
fn docker(command: xshell::Cmd) -> String {
    let shown = command.to_string();
    let out = command.quiet().ignore_status().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{shown} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The roll's ECS calls, except that ListTasks ignores `serviceName` as stock moto does: every
/// task of the cluster comes back, so only the roll's own `group` check keeps other services'
/// tasks out.
struct ClusterWide {
    ecs: Ecs,
    /// Every task ARN ListTasks returned.
    listed: RefCell<BTreeSet<String>>,
    /// How many times each task was described.
    described: RefCell<BTreeMap<String, u32>>,
}

impl ClusterWide {
    fn new(client: aws_sdk_ecs::Client) -> ClusterWide {
        ClusterWide {
            ecs: Ecs::new(client),
            listed: RefCell::default(),
            described: RefCell::default(),
        }
    }
}

impl EcsApi for ClusterWide {
    async fn describe_service(&self, cluster: &str, service: &str) -> Result<ServiceSnapshot> {
        self.ecs.describe_service(cluster, service).await
    }

    async fn list_tasks_page(
        &self,
        cluster: &str,
        _service: &str,
        desired: DesiredStatus,
        next_token: Option<&str>,
    ) -> Result<TaskPage> {
        let page = self.ecs.list_tasks_of(cluster, None, desired, next_token).await?;
        self.listed.borrow_mut().extend(page.arns.iter().cloned());
        Ok(page)
    }

    async fn describe_tasks(&self, cluster: &str, arns: &[String]) -> Result<Vec<TaskSnapshot>> {
        for arn in arns {
            *self.described.borrow_mut().entry(arn.clone()).or_default() += 1;
        }
        self.ecs.describe_tasks(cluster, arns).await
    }

    async fn stop_task(&self, cluster: &str, arn: &str, reason: &str) -> Result<()> {
        self.ecs.stop_task(cluster, arn, reason).await
    }

    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        update: &ServiceUpdate,
    ) -> Result<ServiceSnapshot> {
        self.ecs.update_service(cluster, service, update).await
    }

    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<TaskDefinitionSnapshot> {
        self.ecs.describe_task_definition(task_definition).await
    }
}

/// How the roll lists the service's tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Listing {
    /// `Ecs`: ListTasks with `serviceName`, which the sandbox's moto honours.
    ByService,
    /// `ClusterWide`: every task of the cluster.
    ClusterWide,
}

fn arns(tasks: &[Task]) -> BTreeSet<String> {
    tasks.iter().map(|t| t.task_arn.clone()).collect()
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64()))
}

#[test]
#[ignore = "needs Docker, docker-registry, busybox-static and moto (the sandbox's venv): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn both_strategies_roll_only_our_service_when_another_shares_the_cluster() {
    let sandbox = RollSandbox::start();
    let (cluster, service) = (sandbox.cluster().to_string(), sandbox.service().to_string());
    let (first, others) = sandbox.wait("both services to run steady", |s| {
        Some((s.steady(&service, 1)?, s.steady(OTHER_SERVICE, OTHER_COUNT)?))
    });
    let others = arns(&others);

    // The sandbox's moto honours ListTasks' serviceName, as ECS does.
    let ecs = Ecs::new(sandbox.aws.ecs.clone());
    for (name, expected) in [(service.as_str(), arns(&first)), (OTHER_SERVICE, others.clone())] {
        let listed =
            sandbox.base.block(list_all_tasks(&ecs, &cluster, name, DesiredStatus::Running));
        assert_eq!(listed.unwrap().into_iter().collect::<BTreeSet<_>>(), expected, "{name}");
    }

    let mut old = first[0].clone();
    let rolls = [
        (RollStrategy::ForceNewDeployment, Listing::ByService),
        (RollStrategy::StopTasks, Listing::ByService),
        (RollStrategy::ForceNewDeployment, Listing::ClusterWide),
        (RollStrategy::StopTasks, Listing::ClusterWide),
    ];
    for (n, (strategy, listing)) in rolls.into_iter().enumerate() {
        let release = format!("r{}", n + 2);
        let digests = sandbox.push_release(&release);
        let primary_before = sandbox.primary(&service);
        let wide = ClusterWide::new(sandbox.aws.ecs.clone());
        let outcome = match listing {
            Listing::ByService => sandbox.roll(&ecs, strategy, digests.clone()),
            Listing::ClusterWide => sandbox.roll(&wide, strategy, digests.clone()),
        };
        let what = format!("roll {} ({strategy}, {listing:?})", n + 1);

        // The outcome is our service's one new task, of the deployment the strategy implies.
        assert_eq!(outcome.strategy, strategy);
        let [new] = outcome.tasks.as_slice() else {
            panic!("{what}: expected one new task, got {:#?}", outcome.tasks)
        };
        assert_eq!(new.group.as_deref(), Some(roll::service_group(&service).as_str()), "{what}");
        assert_eq!(new.started_by.as_deref(), Some(outcome.deployment_id.as_str()), "{what}");
        match strategy {
            RollStrategy::ForceNewDeployment => {
                assert_ne!(outcome.deployment_id, primary_before, "{what}: a new deployment");
                assert_eq!(outcome.deployment_id, sandbox.primary(&service), "{what}");
            }
            RollStrategy::StopTasks => {
                assert_eq!(outcome.deployment_id, primary_before, "{what}: the same deployment");
            }
        }
        assert_ne!(new.arn, old.task_arn, "{what}");
        assert!(!others.contains(&new.arn), "{what}");
        assert_eq!(
            (new.last_status.as_str(), new.health),
            ("RUNNING", HealthStatus::Healthy),
            "{what}"
        );
        let running: BTreeMap<String, String> = new
            .containers
            .iter()
            .filter(|c| c.health == HealthStatus::Healthy)
            .filter_map(|c| Some((c.name.clone(), c.image_digest.clone()?)))
            .collect();
        assert_eq!(running, digests, "{what}: each container HEALTHY on the digest just pushed");

        // The old task of ours is stopped, by the scheduler or by the roll.
        let stopped = sandbox.wait("the old task to be STOPPED", |s| {
            Some(s.task(&old.task_arn)).filter(|t| t.last_status == "STOPPED")
        });
        let calls = |op: &str| outcome.api_calls.get(op).copied().unwrap_or(0);
        match strategy {
            RollStrategy::ForceNewDeployment => {
                assert_eq!(stopped.stop_code.as_deref(), Some("ServiceSchedulerInitiated"));
                assert_eq!((calls("UpdateService"), calls("StopTask")), (1, 0), "{what}");
            }
            RollStrategy::StopTasks => {
                assert_eq!(
                    (stopped.stop_code.as_deref(), stopped.stopped_reason.as_deref()),
                    (Some("UserInitiated"), Some(roll::STOP_REASON)),
                    "{what}"
                );
                assert_eq!((calls("UpdateService"), calls("StopTask")), (0, 1), "{what}");
            }
        }

        // The other service's tasks: the same ones, still RUNNING and HEALTHY, none stopped.
        let theirs = sandbox.tasks_of(OTHER_SERVICE);
        assert_eq!(arns(&theirs), others, "{what}: the other service's tasks changed");
        for task in &theirs {
            assert_eq!(
                (
                    task.last_status.as_str(),
                    task.desired_status.as_str(),
                    task.health_status.as_str()
                ),
                ("RUNNING", "RUNNING", "HEALTHY"),
                "{what}: {task:#?}"
            );
        }
        if listing == Listing::ClusterWide {
            assert!(wide.listed.borrow().is_superset(&others), "{what}: ListTasks hid them");
            let described = wide.described.borrow();
            for arn in &others {
                assert!(described.get(arn).copied().unwrap_or(0) <= 1, "{what}: {described:?}");
            }
        }

        // The new task's public IP, as the deploy finds it, is its loopback address and serves.
        let eni = new.eni_id.as_deref().expect("the new task has a network interface");
        let ip = sandbox.base.block(crate::aws::ec2::public_ip(&sandbox.aws, eni)).unwrap();
        let ip = ip.unwrap_or_else(|| panic!("{what}: no public IP for {eni}"));
        assert_eq!(Some(&ip), sandbox.task(&new.arn).public_ip.as_ref(), "{what}");
        assert!(ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()), "{what}: {ip}");
        assert_ne!(Some(&ip), old.public_ip.as_ref(), "{what}: each task has its own address");
        let check = VerifyRequest::for_target(
            &sandbox.base.target.verify,
            Some(&ip),
            Some(format!("hello {release}")),
        )
        .unwrap();
        let verified = sandbox.base.block(verify::verify(&check, &sandbox.report)).unwrap();
        assert_eq!(verified.status, 200, "{what}");

        eprintln!(
            "{what}: done in {} (first new task seen after {}, healthy after {}), {} polls, \
             {} API calls {:?}, verified in {:.2}s",
            secs(Some(outcome.duration)),
            secs(outcome.first_task_after),
            secs(outcome.healthy_after),
            outcome.polls,
            outcome.api_call_total(),
            outcome.api_calls,
            verified.duration.as_secs_f64()
        );

        let live = sandbox.wait("our service to run steady", |s| s.steady(&service, 1));
        assert_eq!(live[0].task_arn, new.arn, "{what}");
        old = live[0].clone();
    }
}
