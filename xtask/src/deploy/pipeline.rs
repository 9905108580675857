//! `cargo xtask first-deploy` and `cargo xtask deploy`: the chapter's redeploy, in order.
//!
//! preflight → tests → entrypoint mode → build → push → check `latest` in ECR → roll the ECS
//! service → verify the health check at the new task → summary. The pipeline only sees a
//! [`Target`]: whether it points at AWS or at the sandbox is decided before it runs.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use tokio::runtime::Runtime;
use xshell::Shell;

use crate::aws::ec2;
use crate::aws::ecs::{Ecs, EcsApi, TaskDefinitionSnapshot};
use crate::aws::Aws;
use crate::deploy::push::{self, PushedImage};
use crate::deploy::roll::{self, RollOutcome, RollRequest};
use crate::deploy::target::{RollStrategy, Target};
use crate::deploy::verify::{self, VerifyOutcome, VerifyRequest, PUBLIC_IP};
use crate::entrypoint::{self, Mode};
use crate::failure::Failure;
use crate::report::{human_duration, Reporter};
use crate::rspec;

/// Which of the two deploy commands runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `first-deploy`: db:create and db:seed run; missing ECR repositories are created.
    First,
    /// `deploy`: db:create and db:seed commented out; the repositories must exist.
    Later,
}

impl Kind {
    pub fn command(self) -> &'static str {
        match self {
            Kind::First => "first-deploy",
            Kind::Later => "deploy",
        }
    }

    /// The entrypoint mode the images are built with.
    fn mode(self) -> Mode {
        match self {
            Kind::First => Mode::First,
            Kind::Later => Mode::Later,
        }
    }
}

/// One deploy in progress.
pub struct Deploy<'a> {
    pub sh: &'a Shell,
    pub report: &'a Reporter,
    pub kind: Kind,
    pub target: &'a Target,
}

impl Deploy<'_> {
    pub fn run(&self, opts: push::Options, skip_tests: bool, force: bool) -> Result<()> {
        let Deploy { sh, report, kind, target } = *self;
        report.info(format!(
            "{} to `{}`: service {} in cluster {} ({}{}), strategy {}",
            kind.command(),
            target.name,
            target.service,
            target.cluster,
            target.region,
            if target.sandbox { ", local sandbox" } else { "" },
            target.strategy,
        ));
        if target.strategy == RollStrategy::StopTasks {
            report.warn("strategy stop-tasks: the service has no running task between the stop and the replacement's start (downtime)");
        }
        // Ctrl-C stops the deploy between steps, after the entrypoint is back in later mode.
        crate::interrupt::install();
        let rt = crate::aws::runtime()?;
        let aws = rt.block_on(Aws::connect(target));
        let ecs = Ecs::new(aws.ecs.clone());

        let (ready, definition) = {
            let phase = report.phase("preflight");
            let entrypoint_path = crate::project::root().join(&target.entrypoint.file);
            entrypoint::status_file(&entrypoint_path, &target.entrypoint.first_deploy_only)?;
            let ready = push::preflight(sh, report, &rt, &aws, target, opts)?;
            let service = check_service(&rt, &ecs, target, report)?;
            let running = service.running;
            if kind == Kind::First && running > 0 {
                let why = format!(
                    "service `{}` already runs {running} task(s): the app was deployed before, so its database is most likely created and seeded, and a second db:seed makes the new task exit",
                    target.service
                );
                if !force {
                    return Err(anyhow!("{why}: run `cargo xtask deploy` instead (or `first-deploy --force` if the database is empty)")
                        .context(Failure::Preflight));
                }
                report.warn(format!("--force: {why}"));
            }
            phase.finish();
            (ready, service.definition)
        };

        if skip_tests {
            report.warn("--skip-tests: the RSpec suite does not run before this deploy");
        } else {
            let phase = report.phase("tests");
            rspec::run_suite(sh, report, &[])?;
            phase.finish();
        }

        let first = {
            self.set_entrypoint(kind.mode())?;
            let pushed = push::build_and_push(sh, report, &rt, &aws, ready.clone());
            if kind == Kind::First {
                // The image has the first-deploy steps; the tree goes back to what every
                // later deploy needs, whether or not the push succeeded.
                self.set_entrypoint(Mode::Later)?;
            }
            let pushed = pushed?;
            crate::interrupt::check(Failure::Push)?;
            self.roll_and_verify(&rt, &aws, &ecs, pushed)?
        };

        // After a first deploy the service must not stay on the first-mode image: any
        // replacement of its task (a failed health check, a retired host, a scale-out, the
        // chapter's own "stop the task") would run db:create and db:seed again, and a second
        // db:seed makes the task exit. The first task has seeded once it is healthy, so the
        // later-mode image goes out now.
        let later = if kind == Kind::First {
            let containers = self.entrypoint_images();
            if containers.is_empty() {
                report.warn(format!(
                    "no image's build context holds {}: the service stays on the first-mode image",
                    target.entrypoint.file.display()
                ));
                None
            } else {
                report.info(format!(
                    "the database is seeded: building the later-mode image of {} so that a replacement task never seeds again",
                    containers.join(", ")
                ));
                let again = ready.rebuild(&first.pushed, &containers);
                let pushed = push::build_and_push(sh, report, &rt, &aws, again)?;
                crate::interrupt::check(Failure::Push)?;
                let unchanged = first
                    .pushed
                    .iter()
                    .filter(|p| !pushed.iter().any(|n| n.container == p.container))
                    .cloned();
                let pushed: Vec<PushedImage> = pushed.iter().cloned().chain(unchanged).collect();
                Some(self.roll_and_verify(&rt, &aws, &ecs, pushed)?)
            }
        } else {
            None
        };

        self.summary(&first, later.as_ref(), definition.as_ref());
        Ok(())
    }

    /// The containers whose image holds the entrypoint file (`rails`).
    fn entrypoint_images(&self) -> Vec<&str> {
        let file = &self.target.entrypoint.file;
        self.target
            .images
            .iter()
            .filter(|i| file.starts_with(&i.context))
            .map(|i| i.container.as_str())
            .collect()
    }

    /// Rolls the service onto `pushed` and checks the health check of the new task.
    fn roll_and_verify(
        &self,
        rt: &Runtime,
        aws: &Aws,
        ecs: &Ecs,
        pushed: Vec<PushedImage>,
    ) -> Result<Shipped> {
        let (report, target) = (self.report, self.target);
        let outcome = {
            let phase = report.phase("roll");
            let digests: BTreeMap<String, String> =
                pushed.iter().map(|p| (p.container.clone(), p.digest.clone())).collect();
            let request = RollRequest::for_target(target, digests);
            let outcome = rt.block_on(roll::roll(ecs, &request, report))?;
            phase.finish();
            outcome
        };
        let (public_ip, verified) = {
            let phase = report.phase("verify");
            let public_ip = public_ip(rt, aws, target, &outcome)?;
            let request = VerifyRequest::for_target(&target.verify, public_ip.as_deref(), None)?;
            let verified = rt.block_on(verify::verify(&request, report))?;
            phase.finish();
            (public_ip, verified)
        };
        Ok(Shipped { pushed, outcome, public_ip, verified })
    }

    /// Puts the entrypoint in `mode` and shows the change.
    fn set_entrypoint(&self, mode: Mode) -> Result<()> {
        let path = crate::project::root().join(&self.target.entrypoint.file);
        let applied =
            entrypoint::apply_file(&path, mode, &self.target.entrypoint.first_deploy_only)?;
        let label = self.target.entrypoint.file.display();
        if applied.changed {
            self.report.info(format!("{label}: now in {mode} mode"));
            for line in applied.diff.lines() {
                self.report.line(line);
            }
        } else {
            self.report.info(format!("{label}: already in {mode} mode"));
        }
        self.report.event(
            "entrypoint",
            json!({ "file": label.to_string(), "mode": mode.to_string(), "changed": applied.changed, "diff": applied.diff }),
        );
        Ok(())
    }

    fn summary(
        &self,
        first: &Shipped,
        later: Option<&Shipped>,
        definition: Option<&TaskDefinitionSnapshot>,
    ) {
        let report = self.report;
        let now = later.unwrap_or(first);
        let task = now.outcome.tasks.first();
        report.line("");
        report.line(&format!(
            "{} succeeded in {}",
            self.kind.command(),
            human_duration(report.elapsed())
        ));
        if later.is_some() {
            let seeded = first.outcome.tasks.first().map_or("-", |t| t.id.as_str());
            report.line(&format!(
                "  seeded  task {seeded} ran {} (first mode), answered {} {}",
                self.target.entrypoint.first_deploy_only.join(", "),
                first.verified.status,
                first.public_ip.as_deref().unwrap_or("")
            ));
            for image in &first.pushed {
                report.line(&format!("  first   {}  {}", image.uri, image.digest));
            }
            report.line("  now     the later-mode image: a replacement task never seeds again");
        }
        for image in &now.pushed {
            report.line(&format!("  image   {}:latest  {}", image.uri, image.digest));
        }
        if let Some(task) = task {
            report.line(&format!("  task    {}  ({})", task.id, now.outcome.deployment_id));
        }
        if let Some(ip) = &now.public_ip {
            report.line(&format!("  address {ip}"));
        }
        report.line(&format!(
            "  health  {} → {}{}",
            now.verified.url,
            now.verified.status,
            now.verified.message.as_deref().map(|m| format!(" {m:?}")).unwrap_or_default()
        ));
        if let Some(task) = task {
            for command in log_commands(self.target.sandbox, &task.id, definition) {
                report.line(&format!("  logs    {command}"));
            }
        }
        let phases: Vec<String> = report
            .phases()
            .iter()
            .map(|p| format!("{} {}", p.name, human_duration(p.duration)))
            .collect();
        report.line(&format!("  phases  {}", phases.join(", ")));
        let images = |pushed: &[PushedImage]| {
            pushed
                .iter()
                .map(|p| {
                    json!({
                        "container": p.container, "uri": p.uri, "digest": p.digest, "tags": p.tags,
                    })
                })
                .collect::<Vec<_>>()
        };
        report.event(
            "result",
            json!({
                "ok": true,
                "command": self.kind.command(),
                "target": self.target.name,
                "images": images(&now.pushed),
                "task_id": task.map(|t| t.id.clone()),
                "public_ip": now.public_ip,
                "health": now.verified.to_json(),
                "seeded_by": later.map(|_| json!({
                    "task_id": first.outcome.tasks.first().map(|t| t.id.clone()),
                    "public_ip": first.public_ip,
                    "images": images(&first.pushed),
                })),
                "phases": report.phases().iter().map(|p| json!({
                    "phase": p.name, "duration_s": p.duration.as_secs_f64(), "ok": p.ok,
                })).collect::<Vec<_>>(),
                "duration_s": report.elapsed().as_secs_f64(),
            }),
        );
    }
}

/// One set of images pushed, rolled out and verified.
struct Shipped {
    pushed: Vec<PushedImage>,
    outcome: RollOutcome,
    public_ip: Option<String>,
    verified: VerifyOutcome,
}

/// Where to read the new task's container logs (the chapter's look at the log for db:create
/// and db:seed): the sandbox's command, or CloudWatch through the task definition's awslogs.
fn log_commands(
    sandbox: bool,
    task_id: &str,
    definition: Option<&TaskDefinitionSnapshot>,
) -> Vec<String> {
    if sandbox {
        return vec![format!("cargo xtask sandbox logs {task_id}")];
    }
    definition
        .into_iter()
        .flat_map(|d| &d.containers)
        .filter_map(|c| {
            let (group, prefix) = (c.log_group.as_ref()?, c.log_stream_prefix.as_ref()?);
            Some(format!("aws logs tail {group} --log-stream-names {prefix}/{}/{task_id}", c.name))
        })
        .collect()
}

/// What preflight learnt of the service.
struct ServiceCheck {
    /// Tasks it runs now.
    running: i32,
    /// Its task definition, when it has one.
    definition: Option<TaskDefinitionSnapshot>,
}

/// The service exists and is active, and its task definition follows the repositories'
/// `latest` (a pinned tag or digest would make the push change nothing).
fn check_service(
    rt: &Runtime,
    ecs: &Ecs,
    target: &Target,
    report: &Reporter,
) -> Result<ServiceCheck> {
    let service = rt
        .block_on(ecs.describe_service(&target.cluster, &target.service))
        .context(Failure::Preflight)?;
    if service.status != "ACTIVE" {
        return Err(anyhow!(
            "service `{}` in cluster `{}` is {}, not ACTIVE: re-create it or fix `service` in deploy.toml",
            target.service,
            target.cluster,
            service.status
        )
        .context(Failure::Preflight));
    }
    let Some(arn) = &service.task_definition else {
        return Ok(ServiceCheck { running: service.running, definition: None });
    };
    let definition = rt.block_on(ecs.describe_task_definition(arn)).context(Failure::Preflight)?;
    for image in &target.images {
        let Some(container) = definition.containers.iter().find(|c| c.name == image.container)
        else {
            report.warn(format!(
                "the service's task definition has no container `{}`: its image is pushed but not deployed",
                image.container
            ));
            continue;
        };
        if let Some(uri) = &container.image {
            if !follows_latest(uri, &image.repository) {
                report.warn(format!(
                    "container `{}` runs `{uri}`, not `{}:latest`: the new image reaches it only with a task definition that names `latest`",
                    image.container, image.repository
                ));
            }
        }
    }
    Ok(ServiceCheck { running: service.running, definition: Some(definition) })
}

/// `…/zenn-clone-rails` or `…/zenn-clone-rails:latest`.
fn follows_latest(uri: &str, repository: &str) -> bool {
    let name_and_tag = uri.rsplit('/').next().unwrap_or(uri);
    if name_and_tag.contains('@') {
        return false;
    }
    match name_and_tag.split_once(':') {
        Some((name, tag)) => name == repository && tag == push::LATEST,
        None => name_and_tag == repository,
    }
}

/// The new task's public IP, through its network interface (EC2), when the health-check
/// URL needs it.
fn public_ip(
    rt: &Runtime,
    aws: &Aws,
    target: &Target,
    outcome: &RollOutcome,
) -> Result<Option<String>> {
    if !target.verify.url.contains(PUBLIC_IP) {
        return Ok(None);
    }
    let Some(eni) = outcome.tasks.iter().find_map(|t| t.eni_id.clone()) else {
        return Err(anyhow!(
            "the new task has no network interface, so its public IP is unknown: use a fixed `verify.url` (a load balancer) in deploy.toml"
        )
        .context(Failure::Verify));
    };
    let ip = rt
        .block_on(ec2::public_ip(aws, &eni))
        .with_context(|| {
            format!("cannot look up the public IP of {eni} (EC2 DescribeNetworkInterfaces)")
        })
        .context(Failure::Verify)?;
    match ip {
        Some(ip) => Ok(Some(ip)),
        None => Err(anyhow!(
            "the new task's network interface {eni} has no public IP: enable `assignPublicIp` in the service's network configuration, or set a fixed `verify.url`"
        )
        .context(Failure::Verify)),
    }
}

/// What `--dry-run` prints: every step and command, in order.
pub fn plan(
    sh: &Shell,
    kind: Kind,
    target: &Target,
    opts: &push::Options,
    skip_tests: bool,
) -> Vec<String> {
    let mut lines = vec![format!(
        "{} to `{}` ({}, cluster {}, service {}); nothing below runs",
        kind.command(),
        target.name,
        target.region,
        target.cluster,
        target.service
    )];
    let (checks, actions): (Vec<String>, Vec<String>) = push::plan(sh, target, opts)
        .into_iter()
        .partition(|l| l.starts_with("check:") || l.starts_with("ecr: DescribeRepositories"));
    lines.extend(checks);
    lines.push(format!(
        "check: ECS service {} in cluster {} is ACTIVE and its task definition follows `latest`",
        target.service, target.cluster
    ));
    if kind == Kind::First {
        lines.push(
            "check: the service runs no task yet (else its database is likely seeded: use `deploy`, or --force)"
                .to_string(),
        );
    }
    lines.push(if skip_tests {
        "tests: skipped (--skip-tests)".to_string()
    } else {
        "tests: cargo xtask test (bundle exec rspec against a throwaway MariaDB)".to_string()
    });
    let entrypoint = target.entrypoint.file.display();
    let steps = target.entrypoint.first_deploy_only.join(", ");
    lines.push(format!("entrypoint: set {entrypoint} to {} mode ({steps})", kind.mode()));
    lines.extend(actions);
    if kind == Kind::First {
        lines.push(format!("entrypoint: return {entrypoint} to later mode"));
    }
    lines.extend(roll_and_verify_plan(target));
    if kind == Kind::First {
        let rebuilt: Vec<&str> = target
            .images
            .iter()
            .filter(|i| target.entrypoint.file.starts_with(&i.context))
            .map(|i| i.container.as_str())
            .collect();
        for container in &rebuilt {
            lines.push(format!(
                "later mode [{container}]: once the first task is healthy (seeded), build it again with {entrypoint} in later mode (`docker build --cache-from <its first-mode image ID>`: only the changed files are rebuilt), tag, check and push as above"
            ));
        }
        if !rebuilt.is_empty() {
            lines.extend(
                roll_and_verify_plan(target).into_iter().map(|l| format!("later mode: {l}")),
            );
        }
    }
    lines
}

/// The roll and the health check, as the dry run shows them.
fn roll_and_verify_plan(target: &Target) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(match target.strategy {
        RollStrategy::ForceNewDeployment => format!(
            "roll: aws ecs update-service --cluster {} --service {} --force-new-deployment; wait (up to {}) for the new task RUNNING, HEALTHY, running the pushed digests, the old task gone",
            target.cluster, target.service, human_duration(target.roll_timeout)
        ),
        RollStrategy::StopTasks => format!(
            "roll: aws ecs stop-task for each running task of {} (downtime); wait (up to {}) for the replacement RUNNING, HEALTHY, running the pushed digests",
            target.service, human_duration(target.roll_timeout)
        ),
    });
    if target.verify.url.contains(PUBLIC_IP) {
        lines.push(
            "verify: the new task's public IP from its ENI (ec2 describe-network-interfaces)"
                .to_string(),
        );
    }
    lines.push(format!(
        "verify: GET {} until {}{} (up to {})",
        target.verify.url,
        target.verify.expect_status,
        target
            .verify
            .expect_message
            .as_deref()
            .map(|m| format!(" with message {m:?}"))
            .unwrap_or_default(),
        human_duration(target.verify.timeout)
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::target::{DeployFile, TargetFlags};

    fn target(strategy: RollStrategy) -> Target {
        let root = crate::project::root();
        let file = DeployFile::load(&root).unwrap();
        let mut target = file.resolve(&TargetFlags::default(), &|_| None, None).unwrap();
        target.strategy = strategy;
        target
    }

    #[test]
    fn log_commands_name_the_new_task_stream_per_container() {
        use crate::aws::ecs::ContainerDefinitionSnapshot;
        let container = |name: &str, logs: bool| ContainerDefinitionSnapshot {
            name: name.to_string(),
            image: None,
            essential: true,
            has_health_check: true,
            log_group: logs.then(|| "/ecs/zenn-clone-task-definition-backend".to_string()),
            log_stream_prefix: logs.then(|| "ecs".to_string()),
        };
        let definition = TaskDefinitionSnapshot {
            arn: "td".to_string(),
            containers: vec![container("rails", true), container("nginx", false)],
        };
        assert_eq!(
            log_commands(false, "abc", Some(&definition)),
            ["aws logs tail /ecs/zenn-clone-task-definition-backend --log-stream-names ecs/rails/abc"]
        );
        assert_eq!(log_commands(true, "abc", Some(&definition)), ["cargo xtask sandbox logs abc"]);
        assert!(log_commands(false, "abc", None).is_empty());
    }

    #[test]
    fn follows_latest_accepts_untagged_and_latest_only() {
        let repo = "zenn-clone-rails";
        assert!(follows_latest("1.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails", repo));
        assert!(follows_latest("127.0.0.1:5011/zenn-clone-rails:latest", repo));
        assert!(!follows_latest("127.0.0.1:5011/zenn-clone-rails:v3", repo));
        assert!(!follows_latest("1.dkr.ecr.x.amazonaws.com/zenn-clone-rails@sha256:ab", repo));
        assert!(!follows_latest("1.dkr.ecr.x.amazonaws.com/zenn-clone-nginx", repo));
    }

    #[test]
    fn dry_run_plan_lists_every_step_in_order() {
        let sh = Shell::new().unwrap();
        sh.change_dir(crate::project::root());
        let t = target(RollStrategy::ForceNewDeployment);
        let lines = plan(&sh, Kind::First, &t, &push::Options::new(true), false);
        let text = lines.join("\n");
        let order = [
            "tests:",
            "entrypoint: set",
            "docker build",
            "push",
            "entrypoint: return",
            "roll:",
            "verify: GET",
        ];
        let mut at = 0;
        for step in order {
            let found = text[at..]
                .find(step)
                .unwrap_or_else(|| panic!("`{step}` missing after byte {at}:\n{text}"));
            at += found;
        }
        assert!(text.contains("--no-cache"), "{text}");
        assert!(text.contains("--force-new-deployment"), "{text}");
    }

    #[test]
    fn later_deploy_plan_keeps_later_mode_and_warns_of_no_repository_creation() {
        let sh = Shell::new().unwrap();
        sh.change_dir(crate::project::root());
        let t = target(RollStrategy::StopTasks);
        let text = plan(&sh, Kind::Later, &t, &push::Options::new(false), true).join("\n");
        assert!(text.contains("set rails/entrypoint.prod.sh to later mode"), "{text}");
        assert!(!text.contains("return rails/entrypoint.prod.sh"), "{text}");
        assert!(text.contains("tests: skipped"), "{text}");
        assert!(text.contains("stop-task"), "{text}");
    }
}
