//! Deployments already under way on the service. A deploy refuses to race one that this tool
//! did not start for this tree (or waits for it, `--wait`); one that it did — its revision's
//! tags name this tree's commit, clean, the same entrypoint mode, and ECR's `latest` still
//! holds its digests — is an interrupted deploy of this very tree, and the deploy attaches to
//! it instead of building again ([`attachable`], then `Plan::attach`).
//!
//! The service and its revisions are ECS's JSON as DescribeServices and DescribeTaskDefinition
//! (`include: ["TAGS"]`) answer them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use tokio::time::Instant;

use xshell::Shell;

use crate::aws::ecs_json::{self, Revision};
use crate::aws::{ecr, Aws};
use crate::deploy::inspect::Inspect;
use crate::deploy::push::{self, LATEST};
use crate::deploy::render::RevisionTags;
use crate::deploy::target::Target;
use crate::entrypoint::Mode;
use crate::event::InterruptedView;
use crate::failure::Failure;
use crate::poll::{Backoff, Schedule};
use crate::report::{human_duration, Reporter};

/// One deployment of the service, as DescribeServices shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: String,
    /// `PRIMARY`, `ACTIVE`, `INACTIVE`.
    pub status: String,
    /// `IN_PROGRESS`, `COMPLETED`, `FAILED`.
    pub rollout_state: Option<String>,
    pub task_definition: String,
    pub created_at: Option<SystemTime>,
    pub desired: i64,
    pub running: i64,
}

impl Deployment {
    /// Every deployment of a DescribeServices `service`, the PRIMARY first.
    pub fn all(service: &Value) -> Vec<Deployment> {
        let mut all: Vec<Deployment> = service["deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| Deployment {
                id: d["id"].as_str().unwrap_or_default().to_string(),
                status: d["status"].as_str().unwrap_or_default().to_string(),
                rollout_state: d["rolloutState"].as_str().map(String::from),
                task_definition: d["taskDefinition"].as_str().unwrap_or_default().to_string(),
                created_at: time(&d["createdAt"]),
                desired: d["desiredCount"].as_i64().unwrap_or(0),
                running: d["runningCount"].as_i64().unwrap_or(0),
            })
            .collect();
        all.sort_by_key(|d| d.status != "PRIMARY");
        all
    }

    pub fn in_progress(&self) -> bool {
        self.rollout_state.as_deref() == Some("IN_PROGRESS")
    }

    /// `family:N` of its task definition.
    pub fn revision_name(&self) -> String {
        match ecs_json::revision_of(&self.task_definition) {
            Some((family, n)) => format!("{family}:{n}"),
            None => self.task_definition.clone(),
        }
    }

    /// How long it has run at `now`.
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.created_at.and_then(|at| now.duration_since(at).ok())
    }

    /// `ecs-svc/… of family:7, rolling for 2m05s`.
    pub fn describe(&self, now: SystemTime) -> String {
        let age = self
            .age(now)
            .map_or("since an unknown time".to_string(), |a| format!("for {}", human_duration(a)));
        format!(
            "{} of {} ({}, {}, {} of {} task(s) running), rolling {age}",
            self.id,
            self.revision_name(),
            self.status,
            self.rollout_state.as_deref().unwrap_or("no rollout state"),
            self.running,
            self.desired
        )
    }
}

/// ECS's JSON gives times as epoch seconds; a stand-in may give RFC 3339.
fn time(v: &Value) -> Option<SystemTime> {
    if let Some(secs) = v.as_f64() {
        return SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?);
    }
    humantime::parse_rfc3339_weak(v.as_str()?).ok()
}

/// What this deploy would ship: the tree's commit tag and the entrypoint mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// `git-<sha>[-dirty]` of the build inputs; `None` outside git.
    pub git_tag: Option<String>,
    pub mode: Mode,
}

/// Who a deployment's revision says started it, seen from this tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    /// Not registered by this tool.
    Foreign,
    /// By this tool, from another commit.
    OtherCommit(String),
    /// By this tool, from this commit, but the tree or the revision is dirty: they cannot be
    /// proven the same.
    Dirty(String),
    /// This commit, another entrypoint mode (the other deploy command).
    OtherMode(Mode),
    /// This tree's, but ECR's `latest` has moved from its images since.
    ImagesMoved,
    /// This tree's, same mode, its images still `latest`: an interrupted deploy of this tree.
    ThisTree,
}

/// Who started a deployment whose revision carries `tags`, for `tree`; `latest` (container →
/// digest of `latest` in ECR), when known, must still be the revision's images.
pub fn owner(tags: &RevisionTags, tree: &Tree, latest: Option<&BTreeMap<String, String>>) -> Owner {
    let Some(commit) = tags.git_commit.as_ref().filter(|_| tags.is_ours()) else {
        return Owner::Foreign;
    };
    let Some(ours) = &tree.git_tag else { return Owner::OtherCommit(commit.clone()) };
    if commit.trim_end_matches("-dirty") != ours.trim_end_matches("-dirty") {
        return Owner::OtherCommit(commit.clone());
    }
    if commit.ends_with("-dirty") || ours.ends_with("-dirty") {
        return Owner::Dirty(commit.clone());
    }
    if tags.mode != Some(tree.mode) {
        return tags.mode.map_or(Owner::Foreign, Owner::OtherMode);
    }
    if let Some(latest) = latest {
        if tags.digests.is_empty() || latest != &tags.digests {
            return Owner::ImagesMoved;
        }
    }
    Owner::ThisTree
}

impl Owner {
    fn explain(&self, tree: &Tree) -> String {
        let ours = tree.git_tag.as_deref().unwrap_or("no commit: not a git checkout");
        match self {
            Owner::Foreign => "not started by cargo xtask (its revision carries no xtask tags)".into(),
            Owner::OtherCommit(commit) => {
                format!("started by cargo xtask for {commit}, while this tree is {ours}")
            }
            Owner::Dirty(commit) => format!(
                "started by cargo xtask for {commit}, this commit, but a dirty tree cannot be proven the same as what it shipped, so this deploy does not attach to it (this tree is {ours}); commit the change, or wait for it"
            ),
            Owner::OtherMode(mode) => format!(
                "started by cargo xtask for this tree in {mode} mode (the other deploy command)"
            ),
            Owner::ImagesMoved => "an interrupted deploy of this tree, but ECR's `latest` no longer holds its images".into(),
            Owner::ThisTree => "an interrupted deploy of this tree, which appeared after this deploy was planned: run it again to attach to it".into(),
        }
    }
}

/// The deployment an interrupted deploy of this tree left, to attach to.
#[derive(Debug, Clone, PartialEq)]
pub struct Attach {
    pub deployment: Deployment,
    /// The revision it rolls (ARN) and its name.
    pub revision: String,
    pub revision_name: String,
    pub git_commit: String,
    /// Container → digest, from the revision's tags.
    pub digests: BTreeMap<String, String>,
    pub mode: Mode,
}

/// The PRIMARY deployment, when an interrupted deploy of this tree left it: IN_PROGRESS, or
/// COMPLETED but its revision not yet `xtask:verified`. `revisions` holds each deployment's
/// revision by task definition ARN; `latest` the digests ECR's `latest` names.
pub fn attachable(
    service: &Value,
    revisions: &BTreeMap<String, Revision>,
    tree: &Tree,
    latest: &BTreeMap<String, String>,
) -> Option<Attach> {
    let deployment = Deployment::all(service).into_iter().find(|d| d.status == "PRIMARY")?;
    let revision = revisions.get(&deployment.task_definition)?;
    let tags = RevisionTags::from_json(&revision.tags);
    let unverified = deployment.rollout_state.as_deref() == Some("COMPLETED")
        && tags.verified.is_none()
        && service["taskDefinition"].as_str() == Some(deployment.task_definition.as_str());
    if !(deployment.in_progress() || unverified) {
        return None;
    }
    if owner(&tags, tree, Some(latest)) != Owner::ThisTree {
        return None;
    }
    Some(Attach {
        revision: revision.arn.clone(),
        revision_name: revision.name(),
        git_commit: tags.git_commit.clone().unwrap_or_default(),
        digests: tags.digests,
        mode: tree.mode,
        deployment,
    })
}

/// What the deploy reads of the service's deployments.
pub trait DeploymentsApi {
    /// DescribeServices' service; `None` when it is missing.
    async fn service(&self, cluster: &str, service: &str) -> Result<Option<Value>>;
    /// DescribeTaskDefinition with its tags.
    async fn revision(&self, task_definition: &str) -> Result<Revision>;
}

impl DeploymentsApi for Aws {
    async fn service(&self, cluster: &str, service: &str) -> Result<Option<Value>> {
        ecs_json::describe_service(self, cluster, service).await
    }

    async fn revision(&self, task_definition: &str) -> Result<Revision> {
        ecs_json::describe_task_definition(self, task_definition).await
    }
}

/// The preflight check: no deployment in progress that this deploy did not start.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub cluster: String,
    pub service: String,
    pub tree: Tree,
    /// `--wait`: wait this long for it to end; `None` refuses at once.
    pub wait: Option<Duration>,
    pub poll: Schedule,
    /// How the user follows a deployment (`cargo xtask status …`, the console).
    pub follow: String,
    /// The command to run again (`deploy`).
    pub command: String,
}

impl CheckRequest {
    pub fn for_target(
        target: &Target,
        tree: Tree,
        wait: Option<Duration>,
        command: &str,
    ) -> CheckRequest {
        CheckRequest {
            cluster: target.cluster.clone(),
            service: target.service.clone(),
            tree,
            wait,
            poll: poll_schedule(),
            follow: follow(target),
            command: command.to_string(),
        }
    }
}

/// Every 2 s at first, backing off to 10 s.
pub fn poll_schedule() -> Schedule {
    Schedule::new(Duration::from_secs(2), 1.5, Duration::from_secs(10)).jittered(0.15)
}

/// How to follow the service's deployments: `cargo xtask status`, and the ECS console on AWS.
pub fn follow(target: &Target) -> String {
    let mut status = vec!["cargo xtask status".to_string()];
    status.extend(target.cli_flags.iter().cloned());
    let status = format!("`{}`", status.join(" "));
    match &target.endpoint_url {
        Some(_) => status,
        None => format!(
            "{status} or the ECS console (https://{region}.console.aws.amazon.com/ecs/v2/clusters/{}/services/{}/deployments?region={region})",
            target.cluster,
            target.service,
            region = target.region
        ),
    }
}

/// Refuses (exit 3) while the service has a deployment IN_PROGRESS, naming it and who started
/// it; with `wait`, waits for every one to end first, with progress lines.
pub async fn check(api: &impl DeploymentsApi, req: &CheckRequest, report: &Reporter) -> Result<()> {
    let started = Instant::now();
    let mut backoff = Backoff::new(req.poll);
    let mut tags: BTreeMap<String, RevisionTags> = BTreeMap::new();
    let mut waited_for: Option<String> = None;
    loop {
        let service = api
            .service(&req.cluster, &req.service)
            .await
            .context("cannot read the service's deployments (ecs DescribeServices)")
            .context(Failure::Preflight)?;
        let busy = service
            .as_ref()
            .and_then(|s| Deployment::all(s).into_iter().find(Deployment::in_progress));
        let Some(deployment) = busy else {
            if let Some(id) = waited_for {
                report.info(format!(
                    "deployment {id} ended after {} of waiting: going on",
                    human_duration(started.elapsed())
                ));
            }
            return Ok(());
        };
        if !tags.contains_key(&deployment.task_definition) {
            let revision = api
                .revision(&deployment.task_definition)
                .await
                .with_context(|| {
                    format!(
                        "cannot read the revision {} of deployment {}",
                        deployment.task_definition, deployment.id
                    )
                })
                .context(Failure::Preflight)?;
            tags.insert(
                deployment.task_definition.clone(),
                RevisionTags::from_json(&revision.tags),
            );
        }
        let owner = owner(&tags[&deployment.task_definition], &req.tree, None);
        let now = SystemTime::now();
        let what = format!(
            "service `{}` has a deployment in progress: {}; {}",
            req.service,
            deployment.describe(now),
            owner.explain(&req.tree)
        );
        let Some(limit) = req.wait else {
            return Err(anyhow!(
                "{what}\nfollow it with {}, and run `cargo xtask {}` again once it ended, or pass --wait to wait for it (up to the roll timeout) and deploy then",
                req.follow,
                req.command
            )
            .context(Failure::Preflight));
        };
        let elapsed = started.elapsed();
        if elapsed >= limit {
            return Err(anyhow!(
                "{what}\nit did not end within {} (--wait waits up to the roll timeout): follow it with {}, and deploy again once it ended",
                human_duration(limit),
                req.follow
            )
            .context(Failure::Preflight));
        }
        if waited_for.as_deref() != Some(deployment.id.as_str()) {
            report.info(format!(
                "{what}\n--wait: waiting for it to end (up to {})",
                human_duration(limit)
            ));
            waited_for = Some(deployment.id.clone());
        }
        let tick = elapsed.as_secs() / 5 * 5;
        report.progress(
            "wait",
            format!(
                "wait {}: deployment {} {}, {} of {} task(s) running",
                human_duration(Duration::from_secs(tick)),
                deployment.id,
                deployment.rollout_state.as_deref().unwrap_or("-"),
                deployment.running,
                deployment.desired
            ),
            None,
        );
        if crate::interrupt::interrupted() {
            return Err(anyhow!(
                "interrupted (Ctrl-C) while waiting for deployment {}",
                deployment.id
            )
            .context(Failure::Preflight));
        }
        tokio::time::sleep(backoff.next_wait().min(limit - elapsed)).await;
    }
}

/// An interrupted deploy, for `cargo xtask status`: a deployment IN_PROGRESS whose revision this
/// tool registered and that is not `xtask:verified`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupted {
    pub deployment: Deployment,
    pub revision: i64,
    pub git_commit: Option<String>,
}

impl Interrupted {
    /// For `status`; `held_by`: who holds this checkout's deploy lock, if anyone.
    pub fn view(&self, now: SystemTime, held_by: Option<String>) -> InterruptedView {
        InterruptedView {
            deployment_id: self.deployment.id.clone(),
            revision: self.revision,
            git_commit: self.git_commit.clone(),
            rolling_since: self.deployment.created_at.map(whole_seconds).map(push::timestamp),
            rolling_s: self.deployment.age(now).map(|d| d.as_secs()).map(|s| s as f64),
            held_by,
        }
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

pub fn interrupted(service: &Value, revisions: &BTreeMap<String, Revision>) -> Option<Interrupted> {
    Deployment::all(service).into_iter().filter(Deployment::in_progress).find_map(|d| {
        let revision = revisions.get(&d.task_definition)?;
        let tags = RevisionTags::from_json(&revision.tags);
        (tags.is_ours() && tags.verified.is_none()).then_some(Interrupted {
            revision: revision.revision,
            git_commit: tags.git_commit,
            deployment: d,
        })
    })
}

/// Looks for an interrupted deploy of this tree in `mode` on the target's service: the
/// deployment to attach to, if there is one.
pub fn detect(sh: &Shell, target: &Target, mode: Mode) -> Result<Option<Attach>> {
    let tree = Tree { git_tag: push::tree_tag(sh, &target.images)?, mode };
    if tree.git_tag.as_deref().is_none_or(|t| t.ends_with("-dirty")) {
        return Ok(None);
    }
    let inspect = Inspect::connect(target)?;
    let (rt, aws) = (&inspect.rt, &inspect.aws);
    let found = rt.block_on(ecs_json::describe_service(aws, &target.cluster, &target.service))?;
    let Some(service) = found else { return Ok(None) };
    let Some(primary) = Deployment::all(&service).into_iter().find(|d| d.status == "PRIMARY")
    else {
        return Ok(None);
    };
    if primary.rollout_state.as_deref() == Some("FAILED") {
        return Ok(None);
    }
    let revision =
        rt.block_on(ecs_json::describe_task_definition(aws, &primary.task_definition))?;
    let tags = RevisionTags::from_json(&revision.tags);
    // ECR is asked only when the revision may be this tree's.
    if tags.git_commit != tree.git_tag || tags.verified.is_some() {
        return Ok(None);
    }
    let mut latest = BTreeMap::new();
    for image in &target.images {
        if let Some(found) = rt.block_on(ecr::tagged_image(&aws.ecr, &image.repository, LATEST))? {
            latest.insert(image.container.clone(), found.digest);
        }
    }
    let revisions = BTreeMap::from([(primary.task_definition.clone(), revision)]);
    Ok(attachable(&service, &revisions, &tree, &latest))
}

#[cfg(test)]
mod tests;
