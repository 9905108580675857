//! The steps of a run that act on the ECS service and its task definition: the cluster and
//! service checks, what a first deploy creates, the revision registered, the roll, the
//! public IP and the health check.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};

use super::Run;
use crate::aws::ecs::EcsApi;
use crate::aws::logs::{LogStream, Logs, LogsApi};
use crate::aws::{ec2, ecs_json, sts};
use crate::deploy::drift;
use crate::deploy::inflight::{self, CheckRequest, Deployment, Tree};
use crate::deploy::logcheck::{self, Expectation};
use crate::deploy::plan::{GIT_TAG, REGISTRY, TASK_DEFINITION};
use crate::deploy::push;
use crate::deploy::render::{self, Placeholders, RevisionTags, TAG_VERIFIED};
use crate::deploy::roll::{self, RollRequest};
use crate::deploy::summary::Shipped;
use crate::deploy::target::VerifyConfig;
use crate::deploy::verify::{self, VerifyOutcome, VerifyRequest};
use crate::entrypoint::{self, Mode};
use crate::event::Event;
use crate::failure::Failure;

impl Run<'_> {
    pub(super) fn check_cluster(&mut self, cluster: &str, create_missing: bool) -> Result<()> {
        let active = self
            .rt
            .block_on(ecs_json::cluster_active(&self.aws, cluster))
            .context(Failure::Preflight)?;
        self.cluster_missing = !active;
        match (active, create_missing) {
            (true, _) => Ok(()),
            (false, true) => {
                self.report.info(format!("ECS cluster {cluster} is missing: this first deploy creates it"));
                Ok(())
            }
            (false, false) => Err(anyhow!(
                "ECS cluster `{cluster}` does not exist in {}: run `cargo xtask first-deploy` to create it, or fix `cluster` in deploy.toml",
                self.target.region
            )
            .context(Failure::Preflight)),
        }
    }

    pub(super) fn check_service(
        &mut self,
        create_missing: bool,
        refuse_running: bool,
        warn_running: bool,
    ) -> Result<()> {
        let (cluster, name) = (&self.target.cluster, &self.target.service);
        let found = if self.cluster_missing {
            None
        } else {
            self.rt
                .block_on(ecs_json::describe_service(&self.aws, cluster, name))
                .context(Failure::Preflight)?
        };
        let Some(service) = found else {
            if !create_missing {
                return Err(anyhow!(
                    "service `{name}` does not exist in cluster `{cluster}`: run `cargo xtask first-deploy` to create it, or fix `service` in deploy.toml"
                )
                .context(Failure::Preflight));
            }
            self.check_network()?;
            self.service_missing = true;
            let s = &self.target.service_settings;
            self.report.info(format!(
                "service {name} is missing: this first deploy creates it ({} task(s), subnets {}, security groups {})",
                s.desired_count,
                s.subnets.join(", "),
                s.security_groups.join(", ")
            ));
            return Ok(());
        };
        if service["status"] != "ACTIVE" {
            return Err(anyhow!(
                "service `{name}` in cluster `{cluster}` is {}, not ACTIVE: re-create it or fix `service` in deploy.toml",
                service["status"]
            )
            .context(Failure::Preflight));
        }
        if let Some(arn) = service["taskDefinition"].as_str() {
            let current = self
                .rt
                .block_on(ecs_json::describe_task_definition(&self.aws, arn))
                .context(Failure::Preflight)?;
            self.definition = Some(
                self.rt
                    .block_on(self.ecs.describe_task_definition(arn))
                    .context(Failure::Preflight)?,
            );
            self.current_revision = Some(current);
        }
        let running = service["runningCount"].as_i64().unwrap_or(0);
        if running > 0 && (refuse_running || warn_running) {
            let why = format!(
                "service `{name}` already runs {running} task(s): the app was deployed before, so its database is most likely created and seeded, and a second db:seed makes the new task exit"
            );
            if refuse_running {
                return Err(anyhow!("{why}: run `cargo xtask deploy` instead (or `first-deploy --force` if the database is empty)")
                    .context(Failure::Preflight));
            }
            self.report.warn(format!("--force: {why}"));
        }
        Ok(())
    }

    /// The subnets and security groups a new service goes into exist.
    fn check_network(&self) -> Result<()> {
        let s = &self.target.service_settings;
        if s.subnets.is_empty() || s.security_groups.is_empty() {
            return Err(anyhow!(
                "first-deploy would create the service `{}`, but the target names no subnets or security groups: set `subnets` and `security_groups` in [defaults.service] of deploy.toml (subnets with a route to ECR, or a public IP)",
                self.target.service
            )
            .context(Failure::Preflight));
        }
        // Each action a literal: the IAM test's source scan reads it (deploy/iam.rs).
        for (action, key, ids) in [
            (("Action", "DescribeSubnets"), "SubnetId", &s.subnets),
            (("Action", "DescribeSecurityGroups"), "GroupId", &s.security_groups),
        ] {
            let keys: Vec<String> = (1..=ids.len()).map(|n| format!("{key}.{n}")).collect();
            let mut params = vec![action, ("Version", "2016-11-15")];
            params.extend(keys.iter().map(String::as_str).zip(ids.iter().map(String::as_str)));
            if let Err(e) = self.rt.block_on(ec2::query(&self.aws, &params)) {
                return Err(e
                    .context(format!(
                        "{} {} of [defaults.service] in deploy.toml: not found in {} (fix them, or create them: the tool does not make a network)",
                        if key == "SubnetId" { "subnets" } else { "security groups" },
                        ids.join(", "),
                        self.target.region
                    ))
                    .context(Failure::Preflight));
            }
        }
        Ok(())
    }

    pub(super) fn create_cluster(&mut self, cluster: &str) -> Result<()> {
        if !self.cluster_missing {
            return Ok(());
        }
        self.rt
            .block_on(ecs_json::create_cluster(&self.aws, cluster))
            .context("check that the credentials allow ecs:CreateCluster")
            .context(Failure::Preflight)?;
        self.cluster_missing = false;
        self.report.info(format!("created ECS cluster {cluster}"));
        self.created.push(format!("cluster {cluster}"));
        Ok(())
    }

    /// Creates the awslogs groups of the task definition that are missing.
    pub(super) fn create_log_groups(&mut self, file: &Path) -> Result<()> {
        let path = crate::project::root().join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", file.display()))
            .context(Failure::Input)?;
        let definition: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))
            .context(Failure::Input)?;
        let api = Logs::new(self.aws.logs.clone());
        for group in render::log_groups(&definition) {
            let hint = || {
                format!("check that the credentials allow logs:DescribeLogGroups and logs:CreateLogGroup for {group}")
            };
            let exists = self.rt.block_on(api.log_group_exists(&group)).with_context(hint);
            if exists.context(Failure::Preflight)? {
                continue;
            }
            if self
                .rt
                .block_on(api.create_log_group(&group))
                .with_context(hint)
                .context(Failure::Preflight)?
            {
                self.report.info(format!("created CloudWatch Logs group {group}"));
                self.created.push(format!("log group {group}"));
            }
        }
        Ok(())
    }

    /// Renders the repository's task definition for what was pushed, shows its drift from
    /// the service's revision, and registers it.
    pub(super) fn register(&mut self, file: &Path, mode: Mode) -> Result<()> {
        let path = crate::project::root().join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the task definition {}", path.display()))
            .context(Failure::Input)?;
        if self.account_id.is_none() {
            let account = self.rt.block_on(sts::account_id(&self.aws)).context(Failure::Roll)?;
            self.account_id = Some(account);
        }
        let values = Placeholders {
            registry: self.fill(REGISTRY),
            account_id: self.account_id.clone().unwrap_or_default(),
            region: self.target.region.clone(),
        };
        let images: BTreeMap<String, String> = self
            .pushed
            .values()
            .map(|p| (p.container.clone(), format!("{}@{}", p.uri, p.digest)))
            .collect();
        let tags = RevisionTags {
            git_commit: self.vars.get(GIT_TAG).cloned(),
            mode: Some(mode),
            xtask_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            digests: self
                .pushed
                .values()
                .map(|p| (p.container.clone(), p.digest.clone()))
                .collect(),
            verified: None,
        };
        let rendered = render::render(&text, &values, &images, &tags)
            .with_context(|| format!("{} is invalid", file.display()))
            .context(Failure::Input)?;
        if let Some(current) = &self.current_revision {
            let changes = drift::diff(&current.definition, &rendered);
            if changes.is_empty() {
                self.report.info(format!(
                    "{} differs from {} in its images only",
                    file.display(),
                    current.name()
                ));
            } else {
                self.report.info(format!(
                    "{} differs from {} (besides the images):",
                    file.display(),
                    current.name()
                ));
                for change in &changes {
                    self.report.line(&format!("    {change}"));
                }
            }
        }
        let revision = self
            .rt
            .block_on(ecs_json::register_task_definition(&self.aws, &rendered))
            .context("check that the credentials allow ecs:RegisterTaskDefinition and iam:PassRole on the execution role")
            .context(Failure::Roll)?;
        self.report.info(format!("registered {} ({})", revision.name(), revision.arn));
        self.vars.insert(TASK_DEFINITION.to_string(), revision.arn.clone());
        self.current_revision = Some(revision);
        Ok(())
    }

    /// CreateService onto the registered revision, from the target's service settings.
    fn create_service(&mut self, arn: &str) -> Result<()> {
        let s = &self.target.service_settings;
        let input = serde_json::json!({
            "cluster": self.target.cluster,
            "serviceName": self.target.service,
            "taskDefinition": arn,
            "desiredCount": s.desired_count,
            "launchType": "FARGATE",
            "schedulingStrategy": "REPLICA",
            "networkConfiguration": { "awsvpcConfiguration": {
                "subnets": s.subnets,
                "securityGroups": s.security_groups,
                "assignPublicIp": if s.assign_public_ip { "ENABLED" } else { "DISABLED" },
            }},
            "deploymentConfiguration": {
                "minimumHealthyPercent": s.minimum_healthy_percent,
                "maximumPercent": s.maximum_percent,
                "deploymentCircuitBreaker": { "enable": true, "rollback": true },
            },
        });
        self.rt
            .block_on(ecs_json::create_service(&self.aws, &input))
            .context("check that the credentials allow ecs:CreateService")
            .context(Failure::Roll)?;
        self.service_missing = false;
        let line = format!(
            "service {} ({} task(s), FARGATE, awsvpc, public IP {}, min {}% / max {}%, circuit breaker with rollback)",
            self.target.service,
            s.desired_count,
            if s.assign_public_ip { "on" } else { "off" },
            s.minimum_healthy_percent,
            s.maximum_percent
        );
        self.report.info(format!("created {line}"));
        self.created.push(line);
        Ok(())
    }

    /// A rollback's revision: what the roll goes onto and the digests it must run.
    pub(super) fn select(
        &mut self,
        revision: &str,
        digests: &BTreeMap<String, String>,
    ) -> Result<()> {
        let chosen = self.pin(revision, digests)?;
        self.report.info(format!("rolling back onto {}", chosen.name()));
        self.current_revision = Some(chosen);
        Ok(())
    }

    /// An interrupted deploy of this tree: the roll watches its deployment, on its revision.
    pub(super) fn attach(
        &mut self,
        deployment: &str,
        revision: &str,
        digests: &BTreeMap<String, String>,
    ) -> Result<()> {
        let (cluster, name) = (&self.target.cluster, &self.target.service);
        let service = self
            .rt
            .block_on(ecs_json::describe_service(&self.aws, cluster, name))
            .context(Failure::Preflight)?;
        let found = service
            .as_ref()
            .and_then(|s| Deployment::all(s).into_iter().find(|d| d.id == deployment));
        let Some(found) = found else {
            return Err(anyhow!(
                "deployment {deployment} of the interrupted deploy is gone from service `{name}` (it ended or was replaced after this deploy was planned): run `cargo xtask {}` again",
                self.command
            )
            .context(Failure::Preflight));
        };
        let chosen = self.pin(revision, digests)?;
        let now = SystemTime::now();
        self.report.info(format!(
            "attaching to deployment {} (an interrupted deploy of this tree): nothing is built or pushed",
            found.describe(now)
        ));
        self.attached = Some(super::Attached {
            deployment_id: found.id.clone(),
            revision: chosen.name(),
            age: found.age(now),
        });
        self.current_revision = Some(chosen);
        Ok(())
    }

    /// The revision the roll goes onto, whose containers must run `digests`.
    fn pin(
        &mut self,
        revision: &str,
        digests: &BTreeMap<String, String>,
    ) -> Result<ecs_json::Revision> {
        let chosen = self
            .rt
            .block_on(ecs_json::describe_task_definition(&self.aws, revision))
            .context(Failure::Preflight)?;
        self.vars.insert(TASK_DEFINITION.to_string(), chosen.arn.clone());
        for (container, digest) in digests {
            let image = chosen.definition["containerDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == container.as_str())
                .and_then(|c| c["image"].as_str())
                .unwrap_or_default();
            self.pushed.insert(
                container.clone(),
                push::PushedImage {
                    container: container.clone(),
                    repository: String::new(),
                    uri: image.split('@').next().unwrap_or(image).to_string(),
                    digest: digest.clone(),
                    tags: Vec::new(),
                    pushed_at: SystemTime::now(),
                    image_id: String::new(),
                },
            );
        }
        Ok(chosen)
    }

    /// No deployment in progress that this deploy did not start (or `wait` for it to end).
    pub(super) fn check_deployments(&mut self, wait: Option<std::time::Duration>) -> Result<()> {
        if self.cluster_missing || self.service_missing {
            return Ok(());
        }
        let git_tag = push::tree_tag(self.sh, &self.target.images)?;
        let tree = Tree { git_tag, mode: self.mode };
        let request = CheckRequest::for_target(self.target, tree, wait, self.command);
        self.rt.block_on(inflight::check(&self.aws, &request, self.report))
    }

    pub(super) fn mark_verified(&mut self) -> Result<()> {
        let Some(revision) = &self.current_revision else { return Ok(()) };
        let now = push::timestamp(SystemTime::now());
        let tags = serde_json::json!([{ "key": TAG_VERIFIED, "value": now }]);
        self.rt
            .block_on(ecs_json::tag_resource(&self.aws, &revision.arn, &tags))
            .context("check that the credentials allow ecs:TagResource")
            .context(Failure::Verify)?;
        self.report
            .info(format!("{} answered the health check: tagged {TAG_VERIFIED}", revision.name()));
        Ok(())
    }

    pub(super) fn roll_service(&mut self, attach: Option<&str>) -> Result<()> {
        let digests: BTreeMap<String, String> =
            self.pushed.values().map(|p| (p.container.clone(), p.digest.clone())).collect();
        let mut request = RollRequest::for_target(self.target, digests);
        request.attach = attach.map(String::from);
        let arn = self.vars.get(TASK_DEFINITION).cloned();
        if self.service_missing {
            let arn =
                arn.clone().ok_or_else(|| anyhow!("no revision registered for the new service"))?;
            self.create_service(&arn)?;
            request.service_created = true;
        } else {
            request.task_definition = arn;
        }
        let logs = Logs::new(self.aws.logs.clone());
        let outcome = self.rt.block_on(roll::roll(&self.ecs, &logs, &request, self.report))?;
        self.roll = Some(outcome);
        self.public_ips.clear();
        Ok(())
    }

    /// The public IP of every new task, through its network interface.
    pub(super) fn find_public_ip(&mut self) -> Result<()> {
        let outcome = self.roll.as_ref().ok_or_else(|| anyhow!("no roll before the public IP"))?;
        let mut ips = Vec::new();
        for task in &outcome.tasks {
            let Some(eni) = &task.eni_id else {
                return Err(anyhow!(
                    "the new task {} has no network interface, so its public IP is unknown: use a fixed `verify.url` (a load balancer) in deploy.toml",
                    task.id
                )
                .context(Failure::Verify));
            };
            let ip = self
                .rt
                .block_on(ec2::public_ip(&self.aws, eni))
                .with_context(|| {
                    format!("cannot look up the public IP of {eni} (EC2 DescribeNetworkInterfaces)")
                })
                .context(Failure::Verify)?;
            match ip {
                Some(ip) => ips.push(ip),
                None => {
                    return Err(anyhow!(
                        "the new task's network interface {eni} has no public IP: enable `assignPublicIp` in the service's network configuration, or set a fixed `verify.url`"
                    )
                    .context(Failure::Verify))
                }
            }
        }
        self.public_ips = ips;
        Ok(())
    }

    /// The new tasks' log of `container` shows the entrypoint ran in `mode`.
    pub(super) fn check_logs(
        &mut self,
        container: &str,
        file: Option<&Path>,
        mode: Mode,
        steps: &[String],
        timeout: std::time::Duration,
    ) -> Result<()> {
        let shipped =
            self.shipped.last_mut().ok_or_else(|| anyhow!("no roll before the log check"))?;
        let def = match &self.current_revision {
            Some(revision) => render::container_snapshot(&revision.definition, container),
            None => self
                .definition
                .as_ref()
                .and_then(|d| d.containers.iter().find(|c| c.name == container).cloned()),
        };
        let streams: Vec<LogStream> = shipped
            .outcome
            .tasks
            .iter()
            .filter_map(|t| def.as_ref().and_then(|d| LogStream::of(d, &t.id)))
            .collect();
        if streams.is_empty() {
            self.report.warn(format!(
                "log check skipped: container `{container}` does not log through awslogs with a group and a stream prefix, so its log cannot be read"
            ));
            return Ok(());
        }
        let end = match file {
            Some(file) => {
                entrypoint::last_echo_file(&crate::project::root().join(file), mode, steps)?
            }
            None => None,
        };
        let expect = Expectation::new(mode, steps, end);
        let api = Logs::new(self.aws.logs.clone());
        let outcome = self.rt.block_on(logcheck::check(&api, streams, &expect, timeout))?;
        self.report.info(format!("log check: {}", outcome.line()));
        self.report.emit(Event::LogCheck(outcome.view()));
        shipped.log_check = Some(outcome);
        Ok(())
    }

    /// The health check of each new task (at its public IP), or once at a fixed URL.
    pub(super) fn verify(&mut self, config: &VerifyConfig) -> Result<()> {
        let ips: Vec<Option<String>> = match self.public_ips.is_empty() {
            true => vec![None],
            false => self.public_ips.iter().cloned().map(Some).collect(),
        };
        let mut first = None;
        for ip in ips {
            let request = VerifyRequest::for_target(config, ip.as_deref(), None)?;
            let verified: VerifyOutcome =
                self.rt.block_on(verify::verify(&request, self.report))?;
            self.report.emit(Event::VerifyDone(verified.view()));
            first.get_or_insert(verified);
        }
        let verified = first.ok_or_else(|| anyhow!("no health check ran"))?;
        let outcome = self.roll.take().ok_or_else(|| anyhow!("no roll before the health check"))?;
        self.shipped.push(Shipped {
            pushed: self.pushed.values().cloned().collect(),
            outcome,
            public_ips: std::mem::take(&mut self.public_ips),
            verified,
            log_check: None,
        });
        Ok(())
    }
}
