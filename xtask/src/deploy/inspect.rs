//! What runs now, read from AWS: the service, its revision and tags, its tasks and their
//! addresses, and the repository's task definition rendered for what ECR holds, to compare.
//! `render`, `diff`, `status` and `rollback` read through it; it changes nothing.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use tokio::runtime::Runtime;
use xshell::Shell;

use crate::aws::ecs::{describe_all_tasks, list_all_tasks, DesiredStatus, Ecs, TaskSnapshot};
use crate::aws::ecs_json::{self, Revision};
use crate::aws::{ec2, ecr, sts, Aws};
use crate::deploy::drift::{self, Change};
use crate::deploy::push::{self, LATEST};
use crate::deploy::render::{self, Placeholders, RevisionTags};
use crate::deploy::target::Target;
use crate::entrypoint;
use crate::failure::Failure;
use crate::report::Reporter;

/// A connection to the target's AWS, for reading.
pub struct Inspect<'a> {
    pub target: &'a Target,
    pub rt: Runtime,
    pub aws: Aws,
    pub ecs: Ecs,
}

/// The service as it runs.
#[derive(Debug, Clone)]
pub struct Running {
    /// DescribeServices' service.
    pub service: Value,
    pub revision: Option<Revision>,
}

impl<'a> Inspect<'a> {
    pub fn connect(target: &'a Target) -> Result<Inspect<'a>> {
        let rt = crate::aws::runtime()?;
        let aws = rt.block_on(Aws::connect(target));
        let ecs = Ecs::new(aws.ecs.clone());
        Ok(Inspect { target, rt, aws, ecs })
    }

    /// The service and its revision; an error (exit 3) when the service does not exist.
    pub fn running(&self) -> Result<Running> {
        let (cluster, name) = (&self.target.cluster, &self.target.service);
        let service = self
            .rt
            .block_on(ecs_json::describe_service(&self.aws, cluster, name))
            .context(Failure::Preflight)?
            .ok_or_else(|| {
                anyhow!("service `{name}` does not exist in cluster `{cluster}`: `cargo xtask first-deploy` creates it")
                    .context(Failure::Preflight)
            })?;
        let revision = match service["taskDefinition"].as_str() {
            Some(arn) => Some(self.revision(arn)?),
            None => None,
        };
        Ok(Running { service, revision })
    }

    pub fn revision(&self, task_definition: &str) -> Result<Revision> {
        self.rt
            .block_on(ecs_json::describe_task_definition(&self.aws, task_definition))
            .context(Failure::Preflight)
    }

    /// Every ACTIVE revision of the family, newest first.
    pub fn revisions(&self, family: &str) -> Result<Vec<String>> {
        self.rt.block_on(ecs_json::list_revisions(&self.aws, family)).context(Failure::Preflight)
    }

    /// The service's tasks that have not stopped, as ECS describes them.
    pub fn tasks(&self) -> Result<Vec<TaskSnapshot>> {
        let (cluster, name) = (&self.target.cluster, &self.target.service);
        self.rt.block_on(async {
            let arns = list_all_tasks(&self.ecs, cluster, name, DesiredStatus::Running).await?;
            let group = format!("service:{name}");
            let tasks = describe_all_tasks(&self.ecs, cluster, &arns).await?;
            Ok(tasks.into_iter().filter(|t| t.group.as_deref() == Some(group.as_str())).collect())
        })
    }

    /// A task's public IP, through its network interface.
    pub fn public_ip(&self, task: &TaskSnapshot) -> Option<String> {
        let eni = task.eni_id.as_ref()?;
        self.rt.block_on(ec2::public_ip(&self.aws, eni)).ok().flatten()
    }

    /// The repository's task definition as a deploy of the tree now would register it, with
    /// the images `latest` names in ECR (an image ECR lacks stays as the file names it).
    pub fn render(&self, sh: &Shell, report: &Reporter) -> Result<Value> {
        let target = self.target;
        let path = crate::project::root().join(&target.task_definition);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the task definition {}", path.display()))
            .context(Failure::Input)?;
        let account = self.rt.block_on(sts::account_id(&self.aws)).context(Failure::Preflight)?;
        let mut registry = target.registry.clone();
        let mut images = BTreeMap::new();
        let mut digests = BTreeMap::new();
        for image in &target.images {
            let repository = self
                .rt
                .block_on(ecr::describe_repository(&self.aws.ecr, &image.repository))
                .context(Failure::Preflight)?;
            let Some(repository) = repository else {
                report.warn(format!(
                    "ECR has no repository {}: its image stays unpinned",
                    image.repository
                ));
                continue;
            };
            let host = repository.uri.split('/').next().unwrap_or_default().to_string();
            let registry = registry.get_or_insert(host);
            let latest = self
                .rt
                .block_on(ecr::tagged_image(&self.aws.ecr, &image.repository, LATEST))
                .context(Failure::Preflight)?;
            match latest {
                Some(found) => {
                    images.insert(
                        image.container.clone(),
                        format!("{registry}/{}@{}", image.repository, found.digest),
                    );
                    digests.insert(image.container.clone(), found.digest);
                }
                None => report.warn(format!(
                    "{}:{LATEST} is not in ECR: its image stays unpinned",
                    image.repository
                )),
            }
        }
        let values = Placeholders {
            registry: registry
                .unwrap_or_else(|| format!("{account}.dkr.ecr.{}.amazonaws.com", target.region)),
            account_id: account,
            region: target.region.clone(),
        };
        let entrypoint = crate::project::root().join(&target.entrypoint.file);
        let mode =
            entrypoint::status_file(&entrypoint, &target.entrypoint.first_deploy_only)?.mode();
        let tags = RevisionTags {
            git_commit: push::git_tag(sh, &target.images, report)?,
            mode,
            xtask_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            digests,
            verified: None,
        };
        render::render(&text, &values, &images, &tags)
            .with_context(|| format!("{} is invalid", target.task_definition.display()))
            .context(Failure::Input)
    }

    /// The drift of the rendered definition from the service's revision.
    pub fn drift(&self, sh: &Shell, report: &Reporter, running: &Running) -> Result<Vec<Change>> {
        let rendered = self.render(sh, report)?;
        Ok(match &running.revision {
            Some(revision) => drift::diff(&revision.definition, &rendered),
            None => Vec::new(),
        })
    }
}
