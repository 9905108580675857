//! `cargo xtask sandbox up|status|down` as a user runs them: the real binary, detached
//! processes, the state file, idempotence, and nothing left behind. Each run works in a
//! scratch checkout (its own `deploy.toml`, task definition and target directory), sharing
//! only the moto venv of this checkout.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let definition = include_str!("data/task-definition.json");
        Scratch { root: common::scratch_checkout(&format!("cli-{name}"), definition) }
    }

    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("CARGO_MANIFEST_DIR", self.root.join("xtask"))
            .env("CARGO_TARGET_DIR", self.root.join("target"))
            .output()
            .unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        let text = std::fs::read_to_string(self.root.join("target/sandbox/state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&text).unwrap();
        ["moto", "registry", "serve"]
            .iter()
            .filter_map(|c| state[c]["pid"].as_u64())
            .map(|p| p as u32)
            .collect()
    }
}

impl Scratch {
    /// An empty image to create containers from (nothing runs them).
    fn scratch_image(&self) -> String {
        let context = self.root.join("image");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /\n").unwrap();
        docker(&["build", "--quiet", context.to_str().unwrap()])
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.xtask(&["sandbox", "down"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
#[ignore = "needs Docker, docker-registry, moto (the sandbox's venv) and the base image zenn-sandbox/mariadb (MariaDB in Docker): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn up_is_idempotent_status_reports_health_and_down_leaves_nothing() {
    let scratch = Scratch::new("lifecycle");

    let up = scratch.xtask(&["sandbox", "up"]);
    let text = stderr(&up);
    assert!(up.status.success(), "{text}");
    for line in [
        "started registry",
        "started moto",
        "started sandbox process",
        "created service zenn-clone-backend-service",
    ] {
        assert!(text.contains(line), "`{line}` missing from:\n{text}");
    }
    let pids = scratch.pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| running(*p)));

    let status = scratch.xtask(&["sandbox", "status"]);
    let text = stderr(&status);
    assert!(status.status.success(), "{text}");
    assert_eq!(text.matches(" healthy").count(), 4, "processes and database: {text}");

    let started = Instant::now();
    let again = scratch.xtask(&["sandbox", "up"]);
    let took = started.elapsed();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("sandbox already up"), "{}", stderr(&again));
    assert_eq!(scratch.pids(), pids, "a second up restarts nothing");
    assert!(took < Duration::from_secs(10), "a second up took {took:?}");

    // A container of this sandbox (as the scheduler labels them) and one of someone else.
    let image = scratch.scratch_image();
    let label = format!("zenn-sandbox.dir={}", scratch.root.join("target/sandbox").display());
    let ours = docker(&["create", "--label", &label, &image, "/none"]);
    let theirs = docker(&["create", "--label", "zenn-sandbox.dir=/elsewhere", &image, "/none"]);

    let owned = format!("label={label}");
    let database = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &owned,
        "--filter",
        "ancestor=zenn-sandbox/mariadb:10.11",
    ]);
    assert!(!database.is_empty(), "up runs the database");

    let down = scratch.xtask(&["sandbox", "down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    // The database, this container, and the service's tasks if one was starting.
    assert!(stderr(&down).contains(" sandbox container(s)"), "{}", stderr(&down));
    assert!(pids.iter().all(|p| !running(*p)), "down left a process running");
    let left = docker(&["ps", "-aq", "--no-trunc"]);
    assert!(!left.contains(&ours), "down left its container");
    assert!(!left.contains(&database), "down left the database");
    assert!(left.contains(&theirs), "down removed another sandbox's container");
    docker(&["rm", &theirs]);
    docker(&["rmi", &image]);
    let status = scratch.xtask(&["sandbox", "status"]);
    assert_eq!(status.status.code(), Some(10), "{}", stderr(&status));

    // The registry's and the database's data outlive `down`, moto's AWS state does not: the
    // next `up` clears them, so that the sandbox is fresh as a whole.
    let registry = scratch.root.join("target/sandbox/registry");
    std::fs::write(registry.join("left-by-an-earlier-sandbox"), "x").unwrap();
    let database = scratch.root.join("target/sandbox/mariadb");
    assert!(std::fs::read_dir(&database).unwrap().next().is_some(), "the database kept no data");
    let up = scratch.xtask(&["sandbox", "up"]);
    let text = stderr(&up);
    assert!(up.status.success(), "{text}");
    assert!(text.contains("moto starts empty, so the registry's images"), "{text}");
    assert!(!registry.join("left-by-an-earlier-sandbox").exists(), "the registry kept its data");
    assert!(text.contains("created service zenn-clone-backend-service"), "{text}");
}

#[test]
fn a_malformed_deploy_toml_stops_up_before_anything_starts() {
    let scratch = Scratch::new("malformed");
    let path = scratch.root.join("deploy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = 1 + text.lines().position(|l| l == "cluster = \"zenn-clone-cluster\"").unwrap();
    std::fs::write(
        &path,
        text.replace("cluster = \"zenn-clone-cluster\"", "cluster = zenn-clone-cluster"),
    )
    .unwrap();
    let up = scratch.xtask(&["sandbox", "up"]);
    let text = stderr(&up);
    assert_eq!(up.status.code(), Some(2), "{text}");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.contains("deploy.toml is invalid"), "{text}");
    assert!(
        text.contains(&format!("line {line}, column 11: string values must be quoted")),
        "{text}"
    );
    assert!(!scratch.root.join("target/sandbox/state.json").exists(), "nothing was started");
}
