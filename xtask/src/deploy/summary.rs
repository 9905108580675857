//! What a deploy leaves: the summary, and the checks of the service it rolls.

use crate::deploy::push::PushedImage;
use crate::deploy::roll::RollOutcome;
use crate::deploy::run::Finished;
use crate::deploy::target::Target;
use crate::deploy::verify::VerifyOutcome;
use crate::entrypoint::Mode;
use crate::event::{AttachedView, Event, ImageView, Outcome, PhaseView, Seeded};
use crate::report::{human_duration, Reporter};

/// The command that deploys in `mode`.
pub fn command(mode: Mode) -> &'static str {
    match mode {
        Mode::First => "first-deploy",
        Mode::Later => "deploy",
    }
}

/// One set of images pushed, rolled out and verified.
pub struct Shipped {
    pub pushed: Vec<PushedImage>,
    pub outcome: RollOutcome,
    /// The new tasks' public IPs (none with a fixed verify URL).
    pub public_ips: Vec<String>,
    pub verified: VerifyOutcome,
    /// The log check, once it passed.
    pub log_check: Option<crate::deploy::logcheck::LogCheckOutcome>,
}

pub fn print(report: &Reporter, target: &Target, mode: Mode, finished: &Finished) {
    let shipped = &finished.shipped;
    let (Some(first), Some(now)) = (shipped.first(), shipped.last()) else { return };
    let later = (shipped.len() > 1).then_some(now);
    {
        let task = now.outcome.tasks.first();
        report.line("");
        report.line(&format!(
            "{} succeeded in {}",
            command(mode),
            human_duration(report.elapsed())
        ));
        if let Some(attached) = &finished.attached {
            report.line(&format!("  {}", attached_line(attached)));
        }
        if later.is_some() {
            let seeded = first.outcome.tasks.first().map_or("-", |t| t.id.as_str());
            report.line(&format!(
                "  seeded  task {seeded} ran {} (first mode), answered {} {}",
                target.entrypoint.first_deploy_only.join(", "),
                first.verified.status,
                first.public_ips.join(", ")
            ));
            for image in &first.pushed {
                report.line(&format!("  first   {}  {}", image.uri, image.digest));
            }
            report.line("  now     the later-mode image: a replacement task never seeds again");
        }
        for image in &finished.pushed {
            report.line(&format!("  image   {}:latest  {}", image.uri, image.digest));
        }
        if let Some(task) = task {
            report.line(&format!("  task    {}  ({})", task.id, now.outcome.deployment_id));
        }
        if let Some(revision) = &finished.revision {
            report.line(&format!("  revision {}  {}", revision.name(), revision.arn));
        }
        for created in &finished.created {
            report.line(&format!("  created {created}"));
        }
        if !now.public_ips.is_empty() {
            report.line(&format!("  address {}", now.public_ips.join(", ")));
        }
        report.line(&format!(
            "  health  {} → {}{}",
            now.verified.url,
            now.verified.status,
            now.verified.message.as_deref().map(|m| format!(" {m:?}")).unwrap_or_default()
        ));
        if let Some(check) = &now.log_check {
            if later.is_some() {
                if let Some(first_check) = &first.log_check {
                    report.line(&format!("  logcheck {}", first_check.line()));
                }
            }
            report.line(&format!("  logcheck {}", check.line()));
        }
        if let Some(task) = task {
            report.line(&format!("  logs    {}", logs_command(target, &task.id)));
        }
        let phases: Vec<String> = report
            .phases()
            .iter()
            .map(|p| format!("{} {}", p.name, human_duration(p.duration)))
            .collect();
        report.line(&format!("  phases  {}", phases.join(", ")));
        emit_result(report, target, command(mode), finished);
    }
}

fn images(pushed: &[PushedImage]) -> Vec<ImageView> {
    pushed
        .iter()
        .map(|p| ImageView {
            container: p.container.clone(),
            uri: p.uri.clone(),
            digest: p.digest.clone(),
            tags: p.tags.clone(),
        })
        .collect()
}

/// The `result` event of a run that succeeded.
pub fn emit_result(report: &Reporter, target: &Target, command: &str, finished: &Finished) {
    let (first, now) = (finished.shipped.first(), finished.shipped.last());
    let later = (finished.shipped.len() > 1).then_some(());
    let task = now.and_then(|n| n.outcome.tasks.first());
    report.emit(Event::Result(Outcome {
        ok: true,
        command: Some(command.to_string()),
        target: Some(target.name.clone()),
        images: images(&finished.pushed),
        task_id: task.map(|t| t.id.clone()),
        public_ip: now.and_then(|n| n.public_ips.first().cloned()),
        public_ips: now.map(|n| n.public_ips.clone()).unwrap_or_default(),
        health: now.map(|n| n.verified.view()),
        seeded_by: later.and(first).map(|first| Seeded {
            task_id: first.outcome.tasks.first().map(|t| t.id.clone()),
            public_ip: first.public_ips.first().cloned(),
            images: images(&first.pushed),
        }),
        phases: report
            .phases()
            .iter()
            .map(|p| PhaseView {
                phase: p.name.to_string(),
                duration_s: p.duration.as_secs_f64(),
                ok: p.ok,
            })
            .collect(),
        duration_s: Some(report.elapsed().as_secs_f64()),
        task_definition: finished.revision.as_ref().map(|r| r.arn.clone()),
        revision: finished.revision.as_ref().map(|r| r.revision),
        created: finished.created.clone(),
        log_checks: finished
            .shipped
            .iter()
            .filter_map(|s| s.log_check.as_ref().map(|c| c.view()))
            .collect(),
        attached: finished.attached.as_ref().map(|a| AttachedView {
            deployment_id: a.deployment_id.clone(),
            revision: a.revision.clone(),
            started_s_ago: a.age.map(|d| d.as_secs_f64()),
        }),
        ..Outcome::default()
    }));
}

/// `attached to deployment ecs-svc/… of revision family:N started 42s ago`.
pub fn attached_line(attached: &crate::deploy::run::Attached) -> String {
    format!(
        "attached to deployment {} of revision {} started {} (an interrupted deploy of this tree: nothing was built or pushed)",
        attached.deployment_id,
        attached.revision,
        attached.age.map_or("earlier".to_string(), |a| format!("{} ago", human_duration(a)))
    )
}

/// The command that shows the new task's log (the chapter's look for db:create and db:seed).
pub fn logs_command(target: &Target, task_id: &str) -> String {
    let mut words = vec!["cargo xtask logs".to_string(), task_id.to_string()];
    words.extend(target.cli_flags.iter().cloned());
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_the_deploy_attached_to_the_interrupted_deployment() {
        let attached = crate::deploy::run::Attached {
            deployment_id: "ecs-svc/2222222222222222222".into(),
            revision: "zenn-clone-task-definition-backend:8".into(),
            age: Some(std::time::Duration::from_secs(42)),
        };
        assert_eq!(
            attached_line(&attached),
            "attached to deployment ecs-svc/2222222222222222222 of revision zenn-clone-task-definition-backend:8 started 42s ago (an interrupted deploy of this tree: nothing was built or pushed)"
        );
    }

    #[test]
    fn the_logs_line_names_the_command_for_the_new_task_on_its_target() {
        use crate::deploy::target::{DeployFile, DeployFlags, TargetFlags};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let file = DeployFile::load(root).unwrap();
        let resolve = |overlay: Option<&crate::deploy::target::Overlay>| {
            file.resolve(&TargetFlags::default(), &DeployFlags::default(), &|_| None, overlay)
                .unwrap()
        };
        assert_eq!(logs_command(&resolve(None), "abc"), "cargo xtask logs abc");
        let sandbox = crate::sandbox::overlay(5010, 5011);
        assert_eq!(logs_command(&resolve(Some(&sandbox)), "abc"), "cargo xtask logs abc --sandbox");
    }
}
