//! `cargo xtask status`: what runs now — the service's revision (its commit and digests, from
//! the revision's tags), the counts, each task, the last deployments, and drift.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Result;
use xshell::Shell;

use crate::deploy::inflight::{self, Deployment};
use crate::deploy::inspect::Inspect;
use crate::deploy::lock;
use crate::deploy::render::RevisionTags;
use crate::deploy::target::{DeployFlags, TargetFlags};
use crate::event::{DeploymentView, Event, RunningImage, RunningTask, StatusView};
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetFlags,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        let target = super::inspect_target::resolve(&self.target, &DeployFlags::default())?;
        let inspect = Inspect::connect(&target)?;
        let running = inspect.running()?;
        let tags =
            running.revision.as_ref().map(|r| RevisionTags::from_json(&r.tags)).unwrap_or_default();
        let images = running
            .revision
            .iter()
            .flat_map(|r| {
                r.definition["containerDefinitions"].as_array().cloned().unwrap_or_default()
            })
            .map(|c| {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let image = c["image"].as_str().unwrap_or_default().to_string();
                let digest = tags
                    .digests
                    .get(&name)
                    .cloned()
                    .or_else(|| image.split_once('@').map(|(_, d)| d.to_string()));
                RunningImage { container: name, image, digest }
            })
            .collect();
        let tasks = inspect
            .tasks()?
            .into_iter()
            .map(|t| RunningTask {
                public_ip: inspect.public_ip(&t),
                task_arn: t.arn,
                last_status: t.last_status,
                health: t.health.as_str().to_string(),
                task_definition: t.task_definition_arn,
                digests: t
                    .containers
                    .iter()
                    .filter_map(|c| Some((c.name.clone(), c.image_digest.clone()?)))
                    .collect(),
            })
            .collect();
        let deployments = running.service["deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| DeploymentView {
                id: d["id"].as_str().unwrap_or_default().to_string(),
                status: d["status"].as_str().unwrap_or_default().to_string(),
                rollout_state: d["rolloutState"].as_str().map(String::from),
                task_definition: d["taskDefinition"].as_str().map(String::from),
                running: d["runningCount"].as_i64().unwrap_or(0),
            })
            .collect();
        let drift = inspect.drift(sh, report, &running)?;
        let mut revisions = BTreeMap::new();
        for d in Deployment::all(&running.service).into_iter().filter(Deployment::in_progress) {
            if !revisions.contains_key(&d.task_definition) {
                revisions.insert(d.task_definition.clone(), inspect.revision(&d.task_definition)?);
            }
        }
        let interrupted = inflight::interrupted(&running.service, &revisions)
            .map(|i| i.view(SystemTime::now(), lock::holder_of(&lock::path())));
        let view = StatusView {
            service: target.service.clone(),
            cluster: target.cluster.clone(),
            task_definition: running.revision.as_ref().map(|r| r.arn.clone()),
            revision: running.revision.as_ref().map(|r| r.revision),
            git_commit: tags.git_commit.clone(),
            entrypoint_mode: tags.mode.map(|m| m.to_string()),
            verified: tags.verified.clone(),
            desired: running.service["desiredCount"].as_i64().unwrap_or(0),
            running: running.service["runningCount"].as_i64().unwrap_or(0),
            images,
            tasks,
            deployments,
            drift: !drift.is_empty(),
            drift_fields: drift.iter().map(ToString::to_string).collect(),
            interrupted,
        };
        if report.json() {
            report.emit(Event::Status(view));
        } else {
            print!("{}", view.describe());
        }
        Ok(())
    }
}
