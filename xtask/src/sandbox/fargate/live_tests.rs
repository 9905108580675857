//! The runner against real Docker: tiny busybox images pushed to a `docker-registry` of the
//! test's own on 127.0.0.1, so every task pulls through a registry as in the sandbox. Each test
//! has its own sandbox name, network, registry and loopback address, and removes only what it
//! made, even when it fails (`TestSandbox`'s `Drop`).
//!
//! They need Docker and `docker-registry`, so they are `#[ignore]`d for the quick `cargo test`;
//! `cargo xtask ci` runs them with `cargo test -p xtask -- --include-ignored`.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_types::date_time::{DateTime, Format};
use xshell::{cmd, Shell};

use crate::docker::{containers, Docker};

use super::awslogs::memory::Memory;
use super::awslogs::Awslogs;
use super::definition::TaskDefinition;
use super::image::{ensure_pause_image, import_busybox};
use super::observe::{Health, Status, StopCode, TaskObservation, TaskStop};
use super::plan::{Secrets, Settings, LABEL_SANDBOX, LABEL_TASK};
use super::Fargate;

const SECRET: &str = "s3cret-from-the-sandbox-settings";
const DEADLINE: Duration = Duration::from_secs(40);

struct TestSandbox {
    name: String,
    dir: PathBuf,
    registry: Child,
    /// `127.0.0.1:<port>` of the test's registry.
    registry_addr: String,
    /// The test image in the registry: busybox with `VOLUME /srv`.
    image: String,
    /// Its digest, as the push left it.
    digest: String,
    address: Ipv4Addr,
    /// What the tasks logged through awslogs.
    logs: Arc<Memory>,
    fargate: Fargate,
}

impl TestSandbox {
    fn new() -> TestSandbox {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("zenn-fgt-{pid}-{n}");
        let address =
            Ipv4Addr::new(127, 100 + (pid % 100) as u8, (pid / 100 % 256) as u8, n as u8 + 1);
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let (registry, registry_addr) = start_registry(&dir);
        let image = format!("{registry_addr}/busybox");
        let pause_image = format!("{name}/pause:busybox");
        let logs = Arc::new(Memory::default());
        let settings = Settings {
            sandbox: name.clone(),
            owner: name.clone(),
            network: name.clone(),
            pause_image: pause_image.clone(),
            secrets: Secrets::from_iter([("APP_SECRET", SECRET)]),
            health_time_scale: 30,
            start_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(1),
            awslogs: Awslogs::to(logs.clone(), "ap-northeast-1"),
        };
        let mut sandbox = TestSandbox {
            name,
            dir,
            registry,
            registry_addr,
            image,
            digest: String::new(),
            address,
            logs,
            fargate: Fargate::new(settings),
        };
        sandbox.digest = sandbox.push_test_image(&pause_image);
        sandbox
    }

    /// Imports busybox, pushes it, keeps it locally only as the pause image: a task must pull.
    fn push_test_image(&self, pause_image: &str) -> String {
        let sh = Shell::new().unwrap();
        let tag = format!("{}:latest", self.image);
        import_busybox(&sh, &tag, &["VOLUME /srv"]).unwrap();
        let digest = self.push(&tag);
        Docker::default().tag(&tag, pause_image).read(&sh).unwrap();
        containers::image_remove(&sh, &tag).quiet().ignore_stdout().run().unwrap();
        digest
    }

    /// Pushes `tag` to the test's registry and returns the digest the push gave it.
    fn push(&self, tag: &str) -> String {
        let sh = Shell::new().unwrap();
        cmd!(sh, "docker push --quiet {tag}").quiet().ignore_stdout().run().unwrap();
        let digests = containers::image_repo_digests(&sh, tag).quiet().read().unwrap();
        let digests: Vec<String> = serde_json::from_str(&digests).unwrap();
        let repo = tag.rsplit_once(':').unwrap().0;
        let ours = digests.iter().find(|d| d.starts_with(&format!("{repo}@"))).unwrap();
        ours.split_once('@').unwrap().1.to_string()
    }

    fn definition(&self, containers: &str) -> TaskDefinition {
        let containers = containers.replace("{image}", &self.image);
        TaskDefinition::from_json(&format!(r#"{{"containerDefinitions": {containers}}}"#)).unwrap()
    }

    fn task_id(&self, n: u32) -> String {
        format!("{:08x}{:08x}{:016x}", std::process::id(), n, self.address.to_bits())
    }

    /// Polls the task until `done` holds; the panic shows the last observation.
    fn wait(
        &self,
        task: &str,
        what: &str,
        done: impl Fn(&TaskObservation) -> bool,
    ) -> TaskObservation {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let observation = self.fargate.observe_task(task).unwrap();
            match observation {
                Some(o) if done(&o) => return o,
                last => assert!(
                    Instant::now() < deadline,
                    "{what}: not within {DEADLINE:?}; last observation: {last:#?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Docker's ids of the task's containers (all of them, whatever their state).
    fn containers_of(&self, task: &str) -> Vec<String> {
        let sh = Shell::new().unwrap();
        let labels = [(LABEL_SANDBOX, self.name.as_str()), (LABEL_TASK, task)];
        let ids = containers::list(&sh, &labels).quiet().read().unwrap();
        ids.lines().map(str::to_string).collect()
    }

    fn stop(&self, task: &str, cause: TaskStop) -> TaskObservation {
        let stopped = self.fargate.stop_task(task, cause).unwrap().unwrap();
        assert_eq!(
            self.containers_of(task),
            Vec::<String>::new(),
            "containers left after stop_task"
        );
        assert_eq!(self.fargate.observe_task(task).unwrap(), None);
        stopped
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        for task in self.fargate.task_ids().unwrap_or_default() {
            let _ = self
                .fargate
                .stop_task(&task, TaskStop::new(StopCode::UserInitiated, "test cleanup"));
        }
        let sh = Shell::new().unwrap();
        let sandbox = [(LABEL_SANDBOX, self.name.as_str())];
        let left = containers::list(&sh, &sandbox).quiet().read().unwrap_or_default();
        let left: Vec<&str> = left.lines().collect();
        if !left.is_empty() {
            let _ = containers::remove(&sh, &left).quiet().ignore_stdout().run();
        }
        let name = &self.name;
        let _ =
            containers::network_remove(&sh, &[name]).quiet().ignore_stdout().ignore_stderr().run();
        // Every image of the test's registry (by tag or by digest) and its pause image.
        let (ours, pause) =
            (format!("reference={}", self.image), format!("reference={name}/pause"));
        let images = cmd!(sh, "docker image ls --quiet --no-trunc --filter {ours}")
            .quiet()
            .read()
            .unwrap_or_default();
        let pause = cmd!(sh, "docker image ls --quiet --no-trunc --filter {pause}")
            .quiet()
            .read()
            .unwrap_or_default();
        let mut images: Vec<&str> = images.lines().chain(pause.lines()).collect();
        images.sort_unstable();
        images.dedup();
        if !images.is_empty() {
            let _ = cmd!(sh, "docker rmi --force {images...}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
        let _ = self.registry.kill();
        let _ = self.registry.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `docker-registry` (CNCF distribution, the sandbox's ECR) on a free port of 127.0.0.1.
fn start_registry(dir: &std::path::Path) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("registry").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("docker-registry (Debian package docker-registry) must be installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ureq::get(&format!("http://{addr}/v2/")).call().is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "docker-registry exited ({status}): {:?}",
                std::fs::read_to_string(dir.join("registry.log"))
            );
        }
        assert!(Instant::now() < deadline, "docker-registry did not answer on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

fn http_get(url: &str) -> String {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
    agent.get(url).call().unwrap().body_mut().read_to_string().unwrap()
}

/// A `StartedAt`-style time (RFC 3339, up to nanoseconds): Go trims trailing zeros, so the
/// text alone does not sort.
fn instant(rfc3339: &str) -> DateTime {
    DateTime::from_str(rfc3339, Format::DateTime).unwrap()
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static: run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn a_web_container_waits_for_its_app_to_be_healthy_then_serves_on_the_task_address() {
    let sandbox = TestSandbox::new();
    let def = sandbox.definition(
        r#"[
        {"name": "app", "image": "{image}", "essential": true,
         "entryPoint": ["sh", "-c"],
         "command": ["trap 'exit 0' TERM; echo \"$GREETING $APP_SECRET\" > /srv/index.html; echo app ready; sleep 2147483647 & wait"],
         "environment": [{"name": "GREETING", "value": "hello from app"}],
         "secrets": [{"name": "APP_SECRET", "valueFrom": "arn:aws:ssm:ap-northeast-1:123456789012:parameter/app"}],
         "healthCheck": {"command": ["CMD-SHELL", "test -s /srv/index.html"], "interval": 30, "timeout": 5, "retries": 3},
         "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/live-test", "awslogs-create-group": "true", "awslogs-stream-prefix": "ecs"}}},
        {"name": "web", "image": "{image}", "essential": true,
         "command": ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /srv & wait"],
         "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
         "volumesFrom": [{"sourceContainer": "app", "readOnly": true}],
         "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}],
         "healthCheck": {"command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1/ || exit 1"], "interval": 30, "retries": 3}}
    ]"#,
    );
    let task = sandbox.task_id(1);
    let started = Instant::now();
    sandbox.fargate.start_task(&task, sandbox.address, &def).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "start_task blocked for {:?}",
        started.elapsed()
    );

    let up = sandbox.wait(&task, "task RUNNING and HEALTHY", |o| {
        o.last_status == Status::Running && o.health_status == Health::Healthy
    });
    assert_eq!(up.stop, None);
    for c in &up.containers {
        assert_eq!((c.last_status, c.health_status), (Status::Running, Health::Healthy), "{c:?}");
        assert_eq!(c.image, sandbox.image);
        assert_eq!(c.image_digest.as_deref(), Some(sandbox.digest.as_str()), "{c:?}");
        assert!(c.docker_id.is_some());
    }

    let body = http_get(&format!("http://{}/", sandbox.address));
    assert_eq!(body, format!("hello from app {SECRET}\n"));

    let sh = Shell::new().unwrap();
    let (app, web) = (&up.containers[0], &up.containers[1]);
    let (app_id, web_id) = (app.docker_id.clone().unwrap(), web.docker_id.clone().unwrap());
    let format = "{{range .State.Health.Log}}{{if eq .ExitCode 0}}{{.End.UTC.Format \"2006-01-02T15:04:05.999999999Z\"}} {{end}}{{end}}";
    let healthy_at = cmd!(sh, "docker inspect --format {format} {app_id}").quiet().read().unwrap();
    let format = "{{.State.StartedAt}}";
    let web_started = cmd!(sh, "docker inspect --format {format} {web_id}").quiet().read().unwrap();
    let first_healthy =
        healthy_at.split_whitespace().next().expect("app has a passing health check");
    assert!(
        instant(&web_started) >= instant(first_healthy),
        "web started at {web_started}, before app's first passing check at {first_healthy}"
    );

    // The app's output reaches its awslogs stream, a line per event (within a batch's delay).
    let stream = format!("ecs/app/{task}");
    let deadline = Instant::now() + DEADLINE;
    while sandbox.logs.messages(&stream).is_empty() {
        assert!(Instant::now() < deadline, "nothing logged to {stream}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sandbox.logs.messages(&stream), ["app ready"]);

    let stopped =
        sandbox.stop(&task, TaskStop::new(StopCode::UserInitiated, "Task stopped by the test"));
    assert_eq!(stopped.last_status, Status::Stopped);
    assert_eq!(stopped.stop.unwrap().reason, "Task stopped by the test");
    let codes: Vec<Option<i32>> = stopped.containers.iter().map(|c| c.exit_code).collect();
    assert_eq!(codes, [Some(0), Some(0)], "both trap the SIGTERM of `docker stop` and exit 0");
    assert!(stopped.containers.iter().all(|c| c.last_status == Status::Stopped));
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static: run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn an_essential_container_that_exits_stops_the_task_with_its_exit_code() {
    let sandbox = TestSandbox::new();
    let def = sandbox.definition(
        r#"[
        {"name": "init", "image": "{image}", "essential": false, "command": ["true"]},
        {"name": "main", "image": "{image}", "command": ["sh", "-c", "exit 3"],
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
        {"name": "side", "image": "{image}", "entryPoint": ["sh", "-c"],
         "command": ["trap 'exit 0' TERM; sleep 2147483647 & wait"]}
    ]"#,
    );
    let task = sandbox.task_id(2);
    sandbox.fargate.start_task(&task, sandbox.address, &def).unwrap();
    let verdict = sandbox.wait(&task, "a stop verdict", |o| o.stop.is_some());
    assert_eq!(
        verdict.stop,
        Some(TaskStop::new(
            StopCode::EssentialContainerExited,
            "Essential container in task exited"
        ))
    );
    let codes: Vec<(&str, Status, Option<i32>)> =
        verdict.containers.iter().map(|c| (c.name.as_str(), c.last_status, c.exit_code)).collect();
    assert_eq!(
        codes,
        [
            ("init", Status::Stopped, Some(0)),
            ("main", Status::Stopped, Some(3)),
            ("side", Status::Running, None)
        ]
    );

    let stopped = sandbox.stop(&task, verdict.stop.clone().unwrap());
    assert_eq!(stopped.stop.unwrap().code, StopCode::EssentialContainerExited);
    assert_eq!(stopped.containers[1].exit_code, Some(3));
    assert_eq!(stopped.containers[2].exit_code, Some(0));
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static: run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn an_image_the_registry_lacks_or_a_secret_the_sandbox_lacks_fails_the_start() {
    let sandbox = TestSandbox::new();
    let missing = format!("{}/does-not-exist", sandbox.registry_addr);
    let def = sandbox
        .definition(&format!(r#"[{{"name": "app", "image": "{missing}", "command": ["true"]}}]"#));
    let task = sandbox.task_id(3);
    sandbox.fargate.start_task(&task, sandbox.address, &def).unwrap();
    let failed = sandbox.wait(&task, "a stop verdict", |o| o.stop.is_some());
    let stop = failed.stop.clone().unwrap();
    assert_eq!(stop.code, StopCode::TaskFailedToStart);
    assert!(
        stop.reason.starts_with(&format!(
            "CannotPullContainerError: manifest for {missing}:latest not found"
        )),
        "{}",
        stop.reason
    );
    assert_eq!(failed.last_status, Status::Stopped);
    assert_eq!(failed.containers[0].reason.as_deref(), Some(stop.reason.as_str()));
    sandbox.stop(&task, stop);

    let def = sandbox.definition(
        r#"[{"name": "app", "image": "{image}", "command": ["true"],
             "secrets": [{"name": "NOT_IN_SETTINGS", "valueFrom": "arn:aws:ssm:x"}]}]"#,
    );
    let task = sandbox.task_id(4);
    sandbox.fargate.start_task(&task, sandbox.address, &def).unwrap();
    let failed = sandbox.wait(&task, "a stop verdict", |o| o.stop.is_some());
    let stop = failed.stop.unwrap();
    assert_eq!(stop.code, StopCode::TaskFailedToStart);
    assert!(stop.reason.contains("no value for secret NOT_IN_SETTINGS"), "{}", stop.reason);
    assert_eq!(
        sandbox.containers_of(&task),
        Vec::<String>::new(),
        "nothing runs without its secrets"
    );
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static: run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn a_health_check_that_never_passes_is_unhealthy_and_its_dependent_gives_up() {
    let sandbox = TestSandbox::new();
    let def = sandbox.definition(
        r#"[
        {"name": "app", "image": "{image}", "entryPoint": ["sh", "-c"],
         "command": ["trap 'exit 0' TERM; sleep 2147483647 & wait"],
         "healthCheck": {"command": ["CMD-SHELL", "exit 1"], "interval": 30, "timeout": 5, "retries": 2}},
        {"name": "web", "image": "{image}", "command": ["true"], "startTimeout": 3,
         "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}]}
    ]"#,
    );
    let task = sandbox.task_id(5);
    sandbox.fargate.start_task(&task, sandbox.address, &def).unwrap();
    let unhealthy = sandbox.wait(&task, "app UNHEALTHY", |o| o.health_status == Health::Unhealthy);
    assert_eq!(unhealthy.containers[0].health_status, Health::Unhealthy);
    assert_eq!(unhealthy.containers[1].last_status, Status::Pending);

    let verdict = sandbox.wait(&task, "web giving up", |o| o.stop.is_some());
    let stop = verdict.stop.clone().unwrap();
    assert_eq!(stop.code, StopCode::TaskFailedToStart);
    assert_eq!(
        stop.reason,
        "Container web gave up waiting for its dependencies (app HEALTHY) after 3s"
    );
    assert_eq!(verdict.containers[1].reason.as_deref(), Some(stop.reason.as_str()));
    assert!(verdict.containers[1].docker_id.is_some(), "web was created, never started");
    sandbox.stop(&task, stop);
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static: run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn a_task_started_after_a_push_runs_the_new_latest() {
    let sandbox = TestSandbox::new();
    let def = sandbox.definition(
        r#"[{"name": "app", "image": "{image}", "entryPoint": ["sh", "-c"],
             "command": ["trap 'exit 0' TERM; sleep 2147483647 & wait"]}]"#,
    );
    let digest_of = |task: &str| {
        sandbox.fargate.start_task(task, sandbox.address, &def).unwrap();
        let up = sandbox.wait(task, "task RUNNING", |o| o.last_status == Status::Running);
        up.containers[0].image_digest.clone().unwrap()
    };
    let (first, second) = (sandbox.task_id(6), sandbox.task_id(7));
    assert_eq!(digest_of(&first), sandbox.digest);

    let sh = Shell::new().unwrap();
    let tag = format!("{}:latest", sandbox.image);
    import_busybox(&sh, &tag, &["VOLUME /srv", "ENV RELEASE=2"]).unwrap();
    let pushed = sandbox.push(&tag);
    assert_ne!(pushed, sandbox.digest);
    sandbox.fargate.stop_task(&first, TaskStop::new(StopCode::UserInitiated, "replaced")).unwrap();
    assert_eq!(digest_of(&second), pushed, "the second task pulled the new latest");
    sandbox.stop(&second, TaskStop::new(StopCode::UserInitiated, "done"));

    let pause = sandbox.fargate.settings().pause_image.clone();
    let before = containers::image_id(&sh, &pause).quiet().read().unwrap();
    ensure_pause_image(&sh, &pause).unwrap();
    let after = containers::image_id(&sh, &pause).quiet().read().unwrap();
    assert_eq!(before, after, "a present pause image is kept as it is");
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static: run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn a_task_pulls_by_digest_and_never_moves_the_tag_a_deploy_builds_under() {
    let sandbox = TestSandbox::new();
    let sh = Shell::new().unwrap();
    // A deploy's fresh build, tagged `latest` on the same engine but not pushed yet.
    let tag = format!("{}:latest", sandbox.image);
    import_busybox(&sh, &tag, &["LABEL built=by-the-deploy"]).unwrap();
    let built = containers::image_id(&sh, &tag).quiet().read().unwrap();

    let def =
        sandbox.definition(r#"[{"name": "app", "image": "{image}", "command": ["sleep", "60"]}]"#);
    let task = sandbox.task_id(9);
    sandbox.fargate.start_task(&task, sandbox.address, &def).unwrap();
    let running = sandbox.wait(&task, "the task running", |o| o.last_status == Status::Running);
    assert_eq!(
        running.containers[0].image_digest.as_deref(),
        Some(sandbox.digest.as_str()),
        "the task runs what the registry's `latest` names"
    );
    let now = containers::image_id(&sh, &tag).quiet().read().unwrap();
    assert_eq!(now, built, "the task's pull moved {tag} away from the deploy's build");
    sandbox.stop(&task, TaskStop::new(StopCode::UserInitiated, "done"));
}
