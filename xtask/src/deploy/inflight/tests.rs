//! Deployments in progress against scripted ECS answers (DescribeServices' deployments,
//! DescribeTaskDefinition with `include: ["TAGS"]`), on tokio's paused clock.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;
use crate::deploy::plan::{Action, Plan, PlanOptions};
use crate::deploy::target::{DeployFile, DeployFlags, TargetFlags};
use crate::failure::Failure;

const CLUSTER: &str = "zenn-clone-cluster";
const SERVICE: &str = "zenn-clone-backend-service";
const FAMILY: &str = "zenn-clone-task-definition-backend";
const OLD_DEP: &str = "ecs-svc/1111111111111111111";
const NEW_DEP: &str = "ecs-svc/2222222222222222222";
const RAILS: &str = "sha256:1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b";
const NGINX: &str = "sha256:3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d";
const COMMIT: &str = "git-abc1234";

fn td(n: i64) -> String {
    format!("arn:aws:ecs:ap-northeast-1:123456789012:task-definition/{FAMILY}:{n}")
}

fn epoch_secs_ago(secs: u64) -> f64 {
    let at = SystemTime::now() - Duration::from_secs(secs);
    at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A deployment as DescribeServices answers it.
fn deployment(id: &str, status: &str, rollout: &str, revision: i64, age_secs: u64) -> Value {
    json!({
        "id": id,
        "status": status,
        "rolloutState": rollout,
        "rolloutStateReason": format!("ECS deployment {id} {}.", rollout.to_lowercase()),
        "taskDefinition": td(revision),
        "desiredCount": 1,
        "pendingCount": 1,
        "runningCount": 0,
        "failedTasks": 0,
        "createdAt": epoch_secs_ago(age_secs),
        "updatedAt": epoch_secs_ago(age_secs),
        "launchType": "FARGATE",
    })
}

/// The service rolling `revision` (PRIMARY, `rollout`) away from revision 7 (ACTIVE).
fn rolling(revision: i64, rollout: &str) -> Value {
    json!({
        "serviceName": SERVICE,
        "status": "ACTIVE",
        "desiredCount": 1,
        "runningCount": 1,
        "taskDefinition": td(revision),
        "deployments": [
            deployment(NEW_DEP, "PRIMARY", rollout, revision, 125),
            deployment(OLD_DEP, "ACTIVE", "COMPLETED", 7, 86_400),
        ],
    })
}

fn steady() -> Value {
    json!({
        "serviceName": SERVICE,
        "status": "ACTIVE",
        "taskDefinition": td(7),
        "deployments": [deployment(OLD_DEP, "PRIMARY", "COMPLETED", 7, 86_400)],
    })
}

/// A revision with `tags` as `[{key, value}]`.
fn revision(n: i64, tags: &[(&str, &str)]) -> Revision {
    let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
    Revision {
        arn: td(n),
        family: FAMILY.to_string(),
        revision: n,
        definition: json!({ "family": FAMILY, "revision": n }),
        tags: Value::Array(tags),
    }
}

/// Revision 8 as a deploy of `commit` in later mode registers it.
fn ours(commit: &str) -> Revision {
    revision(
        8,
        &[
            ("xtask:git-commit", commit),
            ("xtask:entrypoint-mode", "later"),
            ("xtask:version", "0.1.0"),
            ("xtask:digest:nginx", NGINX),
            ("xtask:digest:rails", RAILS),
        ],
    )
}

fn latest() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("rails".to_string(), RAILS.to_string()),
        ("nginx".to_string(), NGINX.to_string()),
    ])
}

fn tree(tag: &str) -> Tree {
    Tree { git_tag: Some(tag.to_string()), mode: Mode::Later }
}

fn revisions(revision: Revision) -> BTreeMap<String, Revision> {
    BTreeMap::from([(revision.arn.clone(), revision), (td(7), ours("git-0000000"))])
}

/// Scripted ECS: each service answer from its time on.
struct Fake {
    start: Instant,
    frames: Vec<(Duration, Value)>,
    revisions: BTreeMap<String, Revision>,
    calls: Cell<u32>,
}

impl Fake {
    fn new(frames: Vec<(u64, Value)>, revision: Revision) -> Fake {
        Fake {
            start: Instant::now(),
            frames: frames.into_iter().map(|(at, s)| (Duration::from_secs(at), s)).collect(),
            revisions: revisions(revision),
            calls: Cell::new(0),
        }
    }
}

impl DeploymentsApi for Fake {
    async fn service(&self, cluster: &str, service: &str) -> Result<Option<Value>> {
        assert_eq!((cluster, service), (CLUSTER, SERVICE));
        self.calls.set(self.calls.get() + 1);
        let now = self.start.elapsed();
        Ok(self.frames.iter().rev().find(|(at, _)| *at <= now).map(|(_, s)| s.clone()))
    }

    async fn revision(&self, task_definition: &str) -> Result<Revision> {
        self.revisions
            .get(task_definition)
            .cloned()
            .ok_or_else(|| anyhow!("ClientException: Unable to describe task definition."))
    }
}

fn request(tree: Tree, wait: Option<Duration>) -> CheckRequest {
    CheckRequest {
        cluster: CLUSTER.to_string(),
        service: SERVICE.to_string(),
        tree,
        wait,
        poll: Schedule { seed: 3, ..poll_schedule() },
        follow: "`cargo xtask status --sandbox`".to_string(),
        command: "deploy".to_string(),
    }
}

fn error_of(result: Result<()>) -> (Option<Failure>, String) {
    let err = result.expect_err("the check must refuse");
    (Failure::of(&err), format!("{err:#}"))
}

#[tokio::test(start_paused = true)]
async fn a_deployment_in_progress_that_this_tool_did_not_start_is_refused_naming_it() {
    let fake = Fake::new(vec![(0, rolling(8, "IN_PROGRESS"))], revision(8, &[]));
    let result = check(&fake, &request(tree(COMMIT), None), &Reporter::plain()).await;
    let (class, text) = error_of(result);
    assert_eq!(class, Some(Failure::Preflight), "exit 3: {text}");
    for part in [
        NEW_DEP,
        &format!("{FAMILY}:8"),
        "rolling for 2m05s",
        "not started by cargo xtask",
        "`cargo xtask status --sandbox`",
        "--wait",
    ] {
        assert!(text.contains(part), "the refusal names {part:?}: {text}");
    }
    assert_eq!(fake.calls.get(), 1, "refused at once");
}

#[tokio::test(start_paused = true)]
async fn a_deploy_of_another_commit_in_progress_is_refused_too() {
    let fake = Fake::new(vec![(0, rolling(8, "IN_PROGRESS"))], ours("git-fedcba9"));
    let (class, text) =
        error_of(check(&fake, &request(tree(COMMIT), None), &Reporter::plain()).await);
    assert_eq!(class, Some(Failure::Preflight));
    assert!(
        text.contains("started by cargo xtask for git-fedcba9, while this tree is git-abc1234"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_in_progress_lets_the_deploy_go_on() {
    let fake = Fake::new(vec![(0, steady())], revision(8, &[]));
    check(&fake, &request(tree(COMMIT), None), &Reporter::plain()).await.unwrap();
    let fake = Fake::new(vec![(0, rolling(8, "FAILED"))], revision(8, &[]));
    check(&fake, &request(tree(COMMIT), None), &Reporter::plain()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_wait_the_deploy_goes_on_once_the_deployment_completed() {
    let fake = Fake::new(
        vec![(0, rolling(8, "IN_PROGRESS")), (40, rolling(8, "COMPLETED"))],
        revision(8, &[]),
    );
    let started = Instant::now();
    let wait = Some(Duration::from_secs(600));
    check(&fake, &request(tree(COMMIT), wait), &Reporter::plain()).await.unwrap();
    let waited = started.elapsed().as_secs_f64();
    assert!((40.0..52.0).contains(&waited), "noticed within a poll of 40 s: {waited}");
    assert!(fake.calls.get() > 3, "it polled: {}", fake.calls.get());
}

#[tokio::test(start_paused = true)]
async fn with_wait_a_deployment_that_does_not_end_fails_after_the_roll_timeout() {
    let fake = Fake::new(vec![(0, rolling(8, "IN_PROGRESS"))], revision(8, &[]));
    let started = Instant::now();
    let wait = Some(Duration::from_secs(90));
    let (class, text) =
        error_of(check(&fake, &request(tree(COMMIT), wait), &Reporter::plain()).await);
    assert_eq!(class, Some(Failure::Preflight));
    assert!(text.contains("did not end within 1m30s"), "{text}");
    let waited = started.elapsed().as_secs_f64();
    assert!((90.0..91.0).contains(&waited), "bounded by the timeout: {waited}");
}

#[test]
fn an_interrupted_deploy_of_this_tree_is_attached_to() {
    let service = rolling(8, "IN_PROGRESS");
    let attach = attachable(&service, &revisions(ours(COMMIT)), &tree(COMMIT), &latest())
        .expect("our interrupted revision is attached to");
    assert_eq!(attach.deployment.id, NEW_DEP);
    assert_eq!(attach.revision, td(8));
    assert_eq!(attach.revision_name, format!("{FAMILY}:8"));
    assert_eq!(attach.digests, latest());
    let age = attach.deployment.age(SystemTime::now()).unwrap().as_secs();
    assert!((124..=126).contains(&age), "{age}");
}

#[test]
fn a_completed_deployment_not_yet_verified_is_attached_to_but_a_verified_one_is_not() {
    let service = rolling(8, "COMPLETED");
    let attach = attachable(&service, &revisions(ours(COMMIT)), &tree(COMMIT), &latest());
    assert_eq!(attach.map(|a| a.deployment.id), Some(NEW_DEP.to_string()));
    let mut verified = ours(COMMIT);
    verified.tags.as_array_mut().unwrap().push(json!({ "key": "xtask:verified", "value": "x" }));
    assert_eq!(attachable(&service, &revisions(verified), &tree(COMMIT), &latest()), None);
}

#[test]
fn no_attach_unless_commit_mode_and_images_are_this_trees() {
    let service = rolling(8, "IN_PROGRESS");
    let none = |revision: Revision, tree: Tree, latest: BTreeMap<String, String>| {
        assert_eq!(attachable(&service, &revisions(revision), &tree, &latest), None);
    };
    none(ours("git-fedcba9"), tree(COMMIT), latest());
    none(revision(8, &[]), tree(COMMIT), latest());
    none(ours(COMMIT), Tree { git_tag: Some(COMMIT.into()), mode: Mode::First }, latest());
    let mut moved = latest();
    moved.insert("rails".into(), "sha256:9999".into());
    none(ours(COMMIT), tree(COMMIT), moved);
    none(ours(COMMIT), Tree { git_tag: None, mode: Mode::Later }, latest());
    assert_eq!(
        owner(&RevisionTags::from_json(&ours(COMMIT).tags), &tree(COMMIT), Some(&latest())),
        Owner::ThisTree
    );
}

#[tokio::test(start_paused = true)]
async fn a_dirty_tree_is_refused_not_attached() {
    let dirty = tree(&format!("{COMMIT}-dirty"));
    let service = rolling(8, "IN_PROGRESS");
    assert_eq!(attachable(&service, &revisions(ours(COMMIT)), &dirty, &latest()), None);
    let fake = Fake::new(vec![(0, service)], ours(COMMIT));
    let (class, text) = error_of(check(&fake, &request(dirty, None), &Reporter::plain()).await);
    assert_eq!(class, Some(Failure::Preflight));
    assert!(text.contains("a dirty tree cannot be proven the same"), "{text}");
    assert!(text.contains(NEW_DEP), "{text}");
    // A revision registered from a dirty tree is never attached to either.
    let from_dirty = ours(&format!("{COMMIT}-dirty"));
    assert_eq!(
        attachable(&rolling(8, "IN_PROGRESS"), &revisions(from_dirty), &tree(COMMIT), &latest()),
        None
    );
}

fn target(sandbox: bool) -> Target {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let file = DeployFile::load(root).unwrap();
    let overlay = sandbox.then(|| crate::sandbox::overlay(5010, 5011));
    file.resolve(&TargetFlags::default(), &DeployFlags::default(), &|_| None, overlay.as_ref())
        .unwrap()
}

use crate::deploy::plan::tests::golden;

#[test]
fn the_attach_plan_rolls_verifies_and_checks_the_log_but_builds_and_pushes_nothing() {
    let service = rolling(8, "IN_PROGRESS");
    let attach = attachable(&service, &revisions(ours(COMMIT)), &tree(COMMIT), &latest()).unwrap();
    let plan = Plan::attach(&target(true), &attach);
    golden("attach-sandbox", &plan);
    assert_eq!(plan.command, "deploy");
    assert!(!plan.steps.iter().any(|s| matches!(
        s.action,
        Action::Build { .. }
            | Action::Push { .. }
            | Action::Login { .. }
            | Action::Tests
            | Action::Register { .. }
            | Action::SetEntrypoint { .. }
            | Action::CheckLatest { .. }
    )));
    let roll = plan.steps.iter().find_map(|s| match &s.action {
        Action::Roll { attach, .. } => Some(attach.clone()),
        _ => None,
    });
    assert_eq!(roll, Some(Some(NEW_DEP.to_string())), "the roll watches the deployment");
    for expected in [
        "attach: deployment",
        "roll: watch deployment",
        "verify: GET",
        "verify: logs",
        "xtask:verified",
    ] {
        assert!(
            plan.lines().iter().any(|l| l.contains(expected)),
            "{expected}: {:#?}",
            plan.lines()
        );
    }
}

#[test]
fn every_deploy_plan_checks_for_deployments_in_progress_and_waits_only_with_wait() {
    let opts = PlanOptions::new(PathBuf::from("target/xtask"));
    let check = |plan: &Plan| {
        plan.steps.iter().find_map(|s| match &s.action {
            Action::CheckDeployments { wait, .. } => Some(*wait),
            _ => None,
        })
    };
    let t = target(false);
    assert_eq!(check(&Plan::new(&t, Mode::Later, &opts)), Some(None));
    assert_eq!(check(&Plan::new(&t, Mode::First, &opts)), Some(None));
    let waiting = PlanOptions { wait: true, ..opts };
    assert_eq!(check(&Plan::new(&t, Mode::Later, &waiting)), Some(Some(t.roll_timeout)));
    let rollback = Plan::rollback(&t, &td(7), latest(), Some(Mode::Later), false);
    assert_eq!(check(&rollback), Some(None));
}

#[test]
fn status_shows_an_interrupted_deploy_of_ours_and_not_a_verified_or_foreign_one() {
    let service = rolling(8, "IN_PROGRESS");
    let found = interrupted(&service, &revisions(ours(COMMIT))).expect("interrupted");
    assert_eq!(found.revision, 8);
    assert_eq!(found.git_commit.as_deref(), Some(COMMIT));
    let view = found.view(SystemTime::now(), None);
    let status = crate::event::StatusView {
        service: SERVICE.into(),
        cluster: CLUSTER.into(),
        task_definition: Some(td(7)),
        revision: Some(7),
        git_commit: None,
        entrypoint_mode: None,
        verified: None,
        desired: 1,
        running: 1,
        images: Vec::new(),
        tasks: Vec::new(),
        deployments: Vec::new(),
        drift: false,
        drift_fields: Vec::new(),
        interrupted: Some(view.clone()),
    };
    let text = status.describe();
    let line = text.lines().find(|l| l.starts_with("interrupted deploy:")).expect(&text);
    assert!(
        line.starts_with(&format!("interrupted deploy: revision 8 ({COMMIT}) rolling since ")),
        "{line}"
    );
    assert!(line.contains("(2m05s ago)"), "{line}");
    assert!(line.ends_with("run `cargo xtask deploy` again on that commit to attach"), "{line}");
    let held = crate::event::StatusView {
        interrupted: Some(crate::event::InterruptedView { held_by: Some("pid 42".into()), ..view }),
        ..status
    };
    assert!(held.describe().contains("deploy under way: revision 8"), "{}", held.describe());

    assert_eq!(interrupted(&service, &revisions(revision(8, &[]))), None, "not ours");
    let mut verified = ours(COMMIT);
    verified.tags.as_array_mut().unwrap().push(json!({ "key": "xtask:verified", "value": "x" }));
    assert_eq!(interrupted(&service, &revisions(verified)), None, "verified");
    assert_eq!(interrupted(&rolling(8, "COMPLETED"), &revisions(ours(COMMIT))), None);
}
