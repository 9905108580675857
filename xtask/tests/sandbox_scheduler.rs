//! The sandbox scheduler for real: `cargo xtask sandbox up` in a scratch checkout whose task
//! definition runs two busybox containers (an app that turns HEALTHY, a web server on port 80
//! that waits for it), images pushed to the sandbox's registry, and the deploy's ECS calls sent
//! to moto as the SDK sends them. Each step waits for a condition with a deadline.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const REGION: &str = "ap-northeast-1";
const CLUSTER: &str = "zenn-clone-cluster";
const SERVICE: &str = "zenn-clone-backend-service";
const DEADLINE: Duration = Duration::from_secs(120);

/// The test's task definition: `rails` writes the page and turns HEALTHY, `nginx` serves it.
const TASK_DEFINITION: &str = r#"{
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
      "secrets": [{ "name": "DATABASE_URL", "valueFrom": "arn:aws:ssm:{region}:{account_id}:parameter/zenn-clone/DATABASE_URL" }],
      "healthCheck": { "command": ["CMD-SHELL", "test -s /srv/index.html"], "interval": 5, "timeout": 5, "retries": 3 },
      "logConfiguration": { "logDriver": "awslogs", "options": { "awslogs-group": "/ecs/test", "awslogs-create-group": "true", "awslogs-region": "{region}", "awslogs-stream-prefix": "ecs" } }
    },
    {
      "name": "nginx",
      "image": "{registry}/zenn-clone-nginx",
      "essential": true,
      "portMappings": [{ "containerPort": 80, "hostPort": 80, "protocol": "tcp" }],
      "volumesFrom": [{ "sourceContainer": "rails", "readOnly": true }],
      "dependsOn": [{ "containerName": "rails", "condition": "HEALTHY" }],
      "healthCheck": { "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1/ || exit 1"], "interval": 5, "timeout": 5, "retries": 3 }
    }
  ]
}"#;

/// The page the app serves: its release and where its database is (never the password).
const APP: &str = "trap 'exit 0' TERM; echo \"hello $RELEASE from ${DATABASE_URL#*@}\" > /srv/index.html; echo app ready; sleep 2147483647 & wait";
const BROKEN_APP: &str = "echo 'cannot boot'; exit 3";
const WEB: &str = "trap 'exit 0' TERM; httpd -f -p 80 -h /srv & wait";

struct Sandbox {
    root: PathBuf,
    moto: String,
    registry: String,
    agent: ureq::Agent,
    /// Docker image ids the test built.
    images: Vec<String>,
}

impl Sandbox {
    /// A scratch checkout (deploy.toml, the test's task definition) and `sandbox up` in it.
    fn up() -> Sandbox {
        let root = common::scratch_checkout("scheduler", TASK_DEFINITION);
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut sandbox = Sandbox {
            root,
            moto: String::new(),
            registry: String::new(),
            agent,
            images: Vec::new(),
        };
        let up = sandbox.xtask(&["sandbox", "up"]);
        assert!(up.status.success(), "sandbox up failed:\n{}", stderr(&up));
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(sandbox.root.join("target/sandbox/state.json")).unwrap(),
        )
        .unwrap();
        sandbox.moto = format!("http://127.0.0.1:{}", state["moto"]["port"]);
        sandbox.registry = format!("127.0.0.1:{}", state["registry"]["port"]);
        sandbox
    }

    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("CARGO_MANIFEST_DIR", self.root.join("xtask"))
            .env("CARGO_TARGET_DIR", self.root.join("target"))
            .output()
            .unwrap()
    }

    fn owner_label(&self) -> String {
        format!("label=zenn-sandbox.dir={}", self.root.join("target/sandbox").display())
    }

    /// Builds `repository:latest` from the pause image's busybox with `script` as its command,
    /// and pushes it to the sandbox's registry.
    fn push(&mut self, repository: &str, release: &str, script: &str) {
        let context = self.root.join(format!("image-{repository}-{release}"));
        std::fs::create_dir_all(&context).unwrap();
        let command = serde_json::to_string(&["sh", "-c", script]).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            format!(
                "FROM zenn-sandbox/pause:busybox\nVOLUME /srv\nENV RELEASE={release}\nCMD {command}\n"
            ),
        )
        .unwrap();
        let tag = format!("{}/{repository}:latest", self.registry);
        let id = docker(&["build", "--quiet", "--tag", &tag, context.to_str().unwrap()]);
        self.images.push(id);
        docker(&["push", "--quiet", &tag]);
    }

    /// An ECS API call to moto, as the SDK sends it (moto checks no signature).
    fn ecs(&self, action: &str, body: Value) -> Value {
        let scope = format!(
            "AWS4-HMAC-SHA256 Credential=test/20250101/{REGION}/ecs/aws4_request, SignedHeaders=host, Signature=0"
        );
        let mut answer = self
            .agent
            .post(&format!("{}/", self.moto))
            .header("X-Amz-Target", &format!("AmazonEC2ContainerServiceV20141113.{action}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("Authorization", &scope)
            .send(body.to_string())
            .unwrap();
        let text = answer.body_mut().read_to_string().unwrap();
        assert!(answer.status().is_success(), "{action}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    fn service(&self) -> Value {
        let out =
            self.ecs("DescribeServices", json!({ "cluster": CLUSTER, "services": [SERVICE] }));
        out["services"][0].clone()
    }

    fn force_new_deployment(&self) -> String {
        let out = self.ecs(
            "UpdateService",
            json!({ "cluster": CLUSTER, "service": SERVICE, "forceNewDeployment": true }),
        );
        let primary = out["service"]["deployments"][0].clone();
        assert_eq!(primary["status"], "PRIMARY");
        primary["id"].as_str().unwrap().to_string()
    }

    /// Every task of the service, stopped ones included, as DescribeTasks shows them.
    fn tasks(&self) -> Vec<Value> {
        let mut arns = Vec::new();
        for status in ["RUNNING", "STOPPED"] {
            let listed = self.ecs(
                "ListTasks",
                json!({ "cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": status }),
            );
            arns.extend(listed["taskArns"].as_array().unwrap().iter().cloned());
        }
        if arns.is_empty() {
            return Vec::new();
        }
        let out = self.ecs("DescribeTasks", json!({ "cluster": CLUSTER, "tasks": arns }));
        out["tasks"].as_array().unwrap().clone()
    }

    /// The task's public IP as the deploy finds it: its ENI, then EC2 DescribeNetworkInterfaces.
    fn public_ip(&self, task: &Value) -> Option<String> {
        let details = task["attachments"][0]["details"].as_array()?;
        let eni = details.iter().find(|d| d["name"] == "networkInterfaceId")?["value"].as_str()?;
        let scope = format!(
            "AWS4-HMAC-SHA256 Credential=test/20250101/{REGION}/ec2/aws4_request, SignedHeaders=host, Signature=0"
        );
        let form = format!(
            "Action=DescribeNetworkInterfaces&Version=2016-11-15&NetworkInterfaceId.1={eni}"
        );
        let mut answer = self
            .agent
            .post(&format!("{}/", self.moto))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", &scope)
            .send(form)
            .unwrap();
        let xml = answer.body_mut().read_to_string().unwrap();
        let start = xml.find("<publicIp>")? + "<publicIp>".len();
        let end = start + xml[start..].find("</publicIp>")?;
        Some(xml[start..end].to_string())
    }

    /// Waits until `check` returns a value; the panic shows what was last seen.
    fn wait<T>(&self, what: &str, mut check: impl FnMut(&Sandbox) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{what}: not within {DEADLINE:?}\nservice: {:#}\ntasks: {:#}\nserve.log:\n{}",
                self.service(),
                Value::Array(self.tasks()),
                std::fs::read_to_string(self.root.join("target/sandbox/logs/serve.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, address: &str) -> Option<String> {
        let mut answer = self.agent.get(&format!("http://{address}/")).call().ok()?;
        answer.status().is_success().then(|| answer.body_mut().read_to_string().ok()).flatten()
    }

    fn events(&self) -> Vec<String> {
        let service = self.service();
        let mut events: Vec<String> = service["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect();
        events.reverse();
        events
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.xtask(&["sandbox", "down"]);
        if !self.images.is_empty() {
            let mut args = vec!["rmi", "--force"];
            args.extend(self.images.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn id(task: &Value) -> String {
    task["taskArn"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

fn healthy(task: &Value) -> bool {
    task["lastStatus"] == "RUNNING"
        && task["desiredStatus"] == "RUNNING"
        && task["healthStatus"] == "HEALTHY"
}

/// The service's one live task of `deployment`, once RUNNING and HEALTHY with an address that
/// serves; with its address.
fn serving(sandbox: &Sandbox, deployment: &str) -> Option<(Value, String)> {
    let task = sandbox.tasks().into_iter().find(|t| t["startedBy"] == deployment && healthy(t))?;
    let address = sandbox.public_ip(&task)?;
    sandbox.get(&address)?;
    Some((task, address))
}

fn primary(service: &Value) -> Value {
    service["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["status"] == "PRIMARY")
        .unwrap()
        .clone()
}

#[test]
#[ignore = "needs Docker, docker-registry, busybox-static, moto (the sandbox's venv) and the base image zenn-sandbox/mariadb (MariaDB in Docker): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn the_scheduler_runs_rolls_replaces_and_rolls_back_tasks_as_ecs_does() {
    let mut sandbox = Sandbox::up();
    let label = sandbox.owner_label();
    let database = docker(&[
        "ps",
        "--filter",
        &label,
        "--filter",
        "ancestor=zenn-sandbox/mariadb:10.11",
        "--format",
        "{{.Names}}",
    ]);
    assert!(database.starts_with("zenn-sandbox-") && database.ends_with("-db"), "{database}");

    // Nothing is pushed yet: the service's first deployment fails to pull, three times, and
    // the circuit breaker stops it (there is no deployment to roll back to).
    let first = sandbox.wait("the first deployment to fail and its tasks to stop", |s| {
        let d = primary(&s.service());
        let stopped = s.tasks().iter().all(|t| t["lastStatus"] == "STOPPED");
        (d["rolloutState"] == "FAILED" && stopped).then_some(d)
    });
    assert_eq!(first["failedTasks"], 3);
    let pull_failed = sandbox.tasks();
    assert_eq!(pull_failed.len(), 3, "a FAILED deployment launches nothing more");
    assert!(
        pull_failed[0]["stoppedReason"].as_str().unwrap().starts_with("CannotPullContainerError:"),
        "{:#}",
        pull_failed[0]
    );

    // The first deploy: images pushed, then a forced deployment.
    sandbox.push("zenn-clone-rails", "v1", APP);
    sandbox.push("zenn-clone-nginx", "v1", WEB);
    let d1 = sandbox.force_new_deployment();
    let (t1, a1) = sandbox.wait("the first task to serve", |s| serving(s, &d1));
    assert_eq!(
        sandbox.get(&a1).unwrap(),
        format!("hello v1 from {database}:3306/zenn_clone_production\n")
    );
    let completed = sandbox.wait("the first deployment to complete", |s| {
        let service = s.service();
        (service["deployments"].as_array().unwrap().len() == 1
            && primary(&service)["rolloutState"] == "COMPLETED")
            .then_some(service)
    });
    assert_eq!(primary(&completed)["id"], d1.as_str());
    assert_eq!(completed["runningCount"], 1);
    let containers: Vec<(&str, &str, bool)> = t1["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["healthStatus"].as_str().unwrap(),
                c["imageDigest"].as_str().is_some_and(|d| d.starts_with("sha256:")),
            )
        })
        .collect();
    assert_eq!(containers, [("rails", "HEALTHY", true), ("nginx", "HEALTHY", true)]);

    // A forced deployment: a new task at a new address; the old one stops only once the new
    // one is healthy, and keeps serving until then.
    let mut old = (t1, a1);
    for round in 1..=2 {
        let started = Instant::now();
        let deployment = sandbox.force_new_deployment();
        let (new, address) = sandbox.wait("the new task to serve", |s| {
            for task in s.tasks() {
                if id(&task) == id(&old.0) && task["desiredStatus"] == "STOPPED" {
                    let new = s.tasks().into_iter().find(|t| t["startedBy"] == deployment.as_str());
                    assert!(
                        new.as_ref().is_some_and(healthy),
                        "the old task stopped before the new was healthy: {new:#?}"
                    );
                } else if id(&task) == id(&old.0) {
                    assert!(s.get(&old.1).is_some(), "the old task stopped serving while it runs");
                }
            }
            serving(s, &deployment)
        });
        let healthy_after = started.elapsed();
        assert_ne!(address, old.1, "each task has its own address");
        sandbox.wait("the deployment to complete", |s| {
            let service = s.service();
            (service["deployments"].as_array().unwrap().len() == 1
                && primary(&service)["rolloutState"] == "COMPLETED")
                .then_some(())
        });
        let completed_after = started.elapsed();
        let stopped = sandbox.wait("the old task to be STOPPED", |s| {
            s.tasks().into_iter().find(|t| id(t) == id(&old.0) && t["lastStatus"] == "STOPPED")
        });
        assert_eq!(stopped["stopCode"], "ServiceSchedulerInitiated");
        assert_eq!(
            stopped["stoppedReason"],
            format!("Scaling activity initiated by (deployment {deployment})").as_str()
        );
        eprintln!(
            "forced deployment {round}: new task healthy and serving after {:.1}s, deployment COMPLETED after {:.1}s",
            healthy_after.as_secs_f64(),
            completed_after.as_secs_f64()
        );
        let events = sandbox.events();
        let tail: Vec<&str> = events[events.len() - 4..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                format!("(service {SERVICE}) has started 1 tasks: (task {}).", id(&new)),
                format!("(service {SERVICE}) has stopped 1 running tasks: (task {}).", id(&old.0)),
                format!("(service {SERVICE}) (deployment {deployment}) deployment completed."),
                format!("(service {SERVICE}) has reached a steady state."),
            ]
        );
        old = (new, address);
    }

    // StopTask, as the chapter does: the service starts a replacement of the same deployment.
    for round in 1..=2 {
        let deployment = old.0["startedBy"].as_str().unwrap().to_string();
        let started = Instant::now();
        sandbox.ecs(
            "StopTask",
            json!({ "cluster": CLUSTER, "task": old.0["taskArn"], "reason": "stopped by the test" }),
        );
        let (new, address) = sandbox.wait("a replacement to serve", |s| {
            serving(s, &deployment).filter(|(t, _)| id(t) != id(&old.0))
        });
        eprintln!(
            "stop-tasks {round}: replacement healthy and serving after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        assert_ne!(address, old.1);
        let stopped = sandbox.wait("the stopped task to be STOPPED", |s| {
            s.tasks().into_iter().find(|t| id(t) == id(&old.0) && t["lastStatus"] == "STOPPED")
        });
        assert_eq!(
            (stopped["stopCode"].as_str(), stopped["stoppedReason"].as_str()),
            (Some("UserInitiated"), Some("stopped by the test"))
        );
        assert_eq!(primary(&sandbox.service())["rolloutState"], "COMPLETED");
        old = (new, address);
    }

    // The app's log, from moto's CloudWatch Logs (the awslogs stream), as `sandbox logs` (an
    // alias of `logs --sandbox`) shows it.
    let logs = sandbox.xtask(&["sandbox", "logs", &id(&old.0)[..8], "--container", "rails"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.status.success(), "{}", stderr(&logs));
    assert!(text.lines().any(|l| l == "app ready"), "{text}");

    // A release whose essential container exits at boot: its tasks fail until the circuit
    // breaker rolls back to the deployment whose task still runs, which serves throughout.
    sandbox.push("zenn-clone-rails", "v2", BROKEN_APP);
    let serving_deployment = old.0["startedBy"].as_str().unwrap().to_string();
    let broken = sandbox.force_new_deployment();
    let rolled_back = sandbox.wait("the rollback", |s| {
        assert_eq!(
            s.get(&old.1).as_deref(),
            Some(format!("hello v1 from {database}:3306/zenn_clone_production\n").as_str()),
            "the previous task stopped serving during the broken deployment"
        );
        let service = s.service();
        let deployments = service["deployments"].as_array().unwrap();
        (deployments.len() == 1
            && deployments[0]["id"] == serving_deployment.as_str()
            && deployments[0]["rolloutState"] == "COMPLETED")
            .then_some(service)
    });
    let events = sandbox.events();
    for expected in [
        format!(
            "(service {SERVICE}) (deployment {broken}) deployment failed: tasks failed to start."
        ),
        format!("(service {SERVICE}) rolling back to deployment {serving_deployment}."),
    ] {
        assert!(events.contains(&expected), "`{expected}` missing from {events:#?}");
    }
    assert_eq!(rolled_back["runningCount"], 1);
    let failed: Vec<Value> =
        sandbox.tasks().into_iter().filter(|t| t["startedBy"] == broken.as_str()).collect();
    assert_eq!(failed.len(), 3, "{failed:#?}");
    for task in &failed {
        assert_eq!(task["lastStatus"], "STOPPED");
        assert_eq!(task["stopCode"], "EssentialContainerExited");
        let rails = &task["containers"][0];
        assert_eq!((rails["name"].as_str(), rails["exitCode"].as_i64()), (Some("rails"), Some(3)));
    }
    let live: Vec<String> = sandbox
        .tasks()
        .into_iter()
        .filter(|t| t["lastStatus"] != "STOPPED")
        .map(|t| id(&t))
        .collect();
    assert_eq!(live, [id(&old.0)]);

    // `down` removes the task containers and the database with the rest.
    let down = sandbox.xtask(&["sandbox", "down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(docker(&["ps", "--all", "--quiet", "--filter", &sandbox.owner_label()]), "");
}
