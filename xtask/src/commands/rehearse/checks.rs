//! What the rehearsal runs and looks at: the xtask in the scratch copy and its events, the
//! health check at an address, the database, a task's log and environment, `status`.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use xshell::cmd;

use super::Rehearsal;
use crate::deploy::target::Target;
use crate::event::{self, Event, Outcome, StatusView, StepView};
use crate::sandbox::{self, admin::Admin, database, Layout};

/// The entrypoint's last line: a task log that holds it is complete.
const LOG_END: &str = "exec pumactl start";

/// One `cargo xtask` run in the scratch copy: its exit code and its JSON events.
pub(super) struct Run {
    pub code: i32,
    pub events: Vec<Event>,
    pub wall: Duration,
    /// Everything on stdout (JSON lines and what a command prints there).
    pub stdout: String,
}

impl Run {
    pub(super) fn result(&self) -> Option<&Outcome> {
        self.events.iter().rev().find_map(|e| match e {
            Event::Result(outcome) => Some(outcome),
            _ => None,
        })
    }

    pub(super) fn started_phases(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::PhaseStart { phase } => Some(phase.clone()),
                _ => None,
            })
            .collect()
    }

    /// The steps a dry run printed.
    pub(super) fn plan_steps(&self) -> Vec<StepView> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::PlanStep(step) => Some(step.clone()),
                _ => None,
            })
            .collect()
    }

    /// The steps a run started, in order.
    pub(super) fn executed_steps(&self) -> Vec<StepView> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StepStart(step) => Some(step.clone()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn error(&self) -> String {
        self.result().and_then(|r| r.error.clone()).unwrap_or_default()
    }

    pub(super) fn public_ip(&self) -> Result<String> {
        self.result()
            .and_then(|r| r.public_ip.clone())
            .ok_or_else(|| anyhow!("the deploy's result names no public IP"))
    }

    /// Container → the digest the deploy pushed.
    pub(super) fn digests(&self) -> BTreeMap<String, String> {
        self.result().map_or_else(BTreeMap::new, |r| {
            r.images.iter().map(|i| (i.container.clone(), i.digest.clone())).collect()
        })
    }

    /// The task that ran the first-mode image (db:create, db:seed) of a first deploy.
    pub(super) fn seeded_task_id(&self) -> Result<String> {
        self.result()
            .and_then(|r| r.seeded_by.as_ref()?.task_id.clone())
            .ok_or_else(|| anyhow!("the first deploy's result names no seeding task"))
    }

    pub(super) fn task_id(&self) -> Result<String> {
        self.result()
            .and_then(|r| r.task_id.clone())
            .ok_or_else(|| anyhow!("the deploy's result names no task"))
    }

    /// Phase name → seconds, from the result event.
    pub(super) fn phases(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for p in self.result().map(|r| r.phases.as_slice()).unwrap_or_default() {
            *out.entry(p.phase.clone()).or_insert(0.0) += p.duration_s;
        }
        out
    }
}

impl Rehearsal<'_> {
    /// A sandbox with no ECR repositories and an empty database, as on a fresh account.
    pub(super) fn fresh_sandbox(&self) -> Result<()> {
        if sandbox::running_overlay().is_some() {
            self.xtask_ok(&["sandbox", "reset", "--bare"])
                .context("cannot reset the sandbox for the rehearsal")?;
        }
        Ok(())
    }

    /// Runs the xtask binary in the scratch copy; stderr streams through, stdout (JSON) is
    /// kept.
    pub(super) fn xtask(&self, args: &[&str]) -> Result<Run> {
        let mut argv: Vec<&str> = vec!["--json"];
        argv.extend_from_slice(args);
        self.report.line(&format!("$ cargo xtask {}", args.join(" ")));
        let started = Instant::now();
        let output = duct::cmd(&self.exe, &argv)
            .dir(&self.scratch)
            .env("CARGO_MANIFEST_DIR", self.scratch.join("xtask"))
            .env("CARGO_TARGET_DIR", crate::project::target_dir())
            .stdout_capture()
            .unchecked()
            .run()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        let events = event::parse_lines(&String::from_utf8_lossy(&output.stdout))
            .into_iter()
            .map(|e| e.event)
            .collect();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        Ok(Run {
            code: output.status.code().unwrap_or(-1),
            events,
            wall: started.elapsed(),
            stdout,
        })
    }

    pub(super) fn xtask_ok(&self, args: &[&str]) -> Result<Run> {
        let run = self.xtask(args)?;
        ensure!(
            run.code == 0,
            "`cargo xtask {}` exited with {}: {}",
            args.join(" "),
            run.code,
            run.error()
        );
        Ok(run)
    }

    pub(super) fn expect_success(&self, run: &Run, what: &str) -> Result<()> {
        ensure!(run.code == 0, "`cargo xtask {what}` exited with {}: {}", run.code, run.error());
        Ok(())
    }

    /// GET the health check at `ip` once: it must answer 200 with `message`.
    pub(super) fn expect_message(&self, ip: &str, message: &str) -> Result<()> {
        let url = format!("http://{ip}/api/v1/health_check");
        let body = ureq::get(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .call()
            .with_context(|| format!("GET {url} failed"))?
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {url}"))?;
        let json: Value = serde_json::from_str(&body)
            .with_context(|| format!("{url} answered no JSON: {body}"))?;
        ensure!(
            json["message"] == message,
            "{url} answered {body}, expected the message {message:?}"
        );
        Ok(())
    }

    /// `latest` of each repository in the sandbox's ECR.
    pub(super) fn latest_digests(&self) -> Result<Vec<Option<String>>> {
        let (_, target) = self.sandbox()?;
        let rt = crate::aws::runtime()?;
        let aws = rt.block_on(crate::aws::Aws::connect(&target));
        target
            .images
            .iter()
            .map(|i| {
                let found =
                    rt.block_on(crate::aws::ecr::tagged_image(&aws.ecr, &i.repository, "latest"))?;
                Ok(found.map(|f| f.digest))
            })
            .collect()
    }

    /// The database holds the seed rows exactly once.
    pub(super) fn expect_seeded(&self) -> Result<()> {
        let layout = Layout::standard();
        let users = database::query(self.sh, &layout, "SELECT COUNT(*) FROM users")?;
        let articles = database::query(self.sh, &layout, "SELECT COUNT(*) FROM articles")?;
        ensure!(
            users.trim() == "2" && articles.trim() == "30",
            "the database holds {} users and {} articles, expected 2 and 30",
            users.trim(),
            articles.trim()
        );
        Ok(())
    }

    /// `status --json` of the sandbox service.
    pub(super) fn status(&self) -> Result<StatusView> {
        let run = self.xtask(&["status", "--sandbox"])?;
        ensure!(
            run.code == 0,
            "`cargo xtask status --sandbox` exited with {}: {}",
            run.code,
            run.error()
        );
        run.events
            .iter()
            .find_map(|e| match e {
                Event::Status(view) => Some(view.clone()),
                _ => None,
            })
            .ok_or_else(|| anyhow!("`status --json` printed no status"))
    }

    /// `status` agrees with the deploy's result: the service on `revision`, running the
    /// pushed digests in `tasks` healthy task(s) of that revision, no drift.
    pub(super) fn expect_status(&self, run: &Run, revision: i64, tasks: usize) -> Result<()> {
        let status = self.status()?;
        let result = run.result().ok_or_else(|| anyhow!("the deploy printed no result"))?;
        ensure!(
            status.revision == Some(revision) && result.revision == Some(revision),
            "expected revision {revision}: status says {:?}, the deploy {:?}",
            status.revision,
            result.revision
        );
        ensure!(
            status.task_definition == result.task_definition,
            "status and the deploy name other revisions"
        );
        let running: BTreeMap<String, String> = status
            .images
            .iter()
            .filter_map(|i| Some((i.container.clone(), i.digest.clone()?)))
            .collect();
        ensure!(
            running == run.digests(),
            "the revision runs {running:?}, the deploy pushed {:?}",
            run.digests()
        );
        for image in &status.images {
            ensure!(
                image.image.contains("@sha256:"),
                "{} is not pinned by digest: {}",
                image.container,
                image.image
            );
        }
        ensure!(
            !status.drift,
            "status shows drift right after a deploy: {:?}",
            status.drift_fields
        );
        self.expect_tasks(&status, tasks)
    }

    /// `tasks` tasks RUNNING, HEALTHY, on the service's revision, each with a public IP.
    pub(super) fn expect_tasks(&self, status: &StatusView, tasks: usize) -> Result<()> {
        let good = status
            .tasks
            .iter()
            .filter(|t| {
                t.last_status == "RUNNING"
                    && t.health == "HEALTHY"
                    && t.task_definition == status.task_definition
                    && t.public_ip.is_some()
            })
            .count();
        ensure!(
            good == tasks,
            "expected {tasks} healthy task(s) on {:?}: {:#?}",
            status.task_definition,
            status.tasks
        );
        Ok(())
    }

    /// An environment variable of a sandbox task's container, as the container sees it.
    pub(super) fn container_env(
        &self,
        task_id: &str,
        container: &str,
        name: &str,
    ) -> Result<String> {
        let sh = self.sh;
        let (task, role) = (
            format!("label=zenn-sandbox.task={task_id}"),
            format!("label=zenn-sandbox.container={container}"),
        );
        let id = cmd!(sh, "docker ps -q --filter {task} --filter {role}").quiet().read()?;
        let id = id
            .lines()
            .next()
            .ok_or_else(|| anyhow!("no {container} container of task {task_id}"))?;
        Ok(cmd!(sh, "docker exec {id} printenv {name}").quiet().read()?.trim().to_string())
    }

    /// The task's rails log shows db:migrate and none of the first-deploy steps.
    /// The deploy's own log checks ran, one per roll, in these entrypoint modes.
    pub(super) fn expect_log_checks(&self, run: &Run, modes: &[&str]) -> Result<()> {
        let checks = run.result().map(|r| r.log_checks.clone()).unwrap_or_default();
        let seen: Vec<&str> = checks.iter().map(|c| c.mode.as_str()).collect();
        ensure!(seen == modes, "the deploy's log checks ran in modes {seen:?}, not {modes:?}");
        for check in &checks {
            let (ran, not_ran) = (check.ran.join(", "), check.not_ran.join(", "));
            self.report.info(format!(
                "log check ({} mode): {ran} ran{} ({} lines of {})",
                check.mode,
                if not_ran.is_empty() { String::new() } else { format!(", not {not_ran}") },
                check.lines_read,
                check.streams.join(", ")
            ));
        }
        Ok(())
    }

    pub(super) fn expect_later_mode_log(&self, task_id: &str) -> Result<()> {
        let log = self.rails_log(task_id)?;
        ensure!(
            log.contains("db:migrate"),
            "task {task_id}'s rails log does not show db:migrate:\n{log}"
        );
        for step in ["db:create", "db:seed"] {
            ensure!(!log.contains(step), "task {task_id}'s rails log shows {step}:\n{log}");
        }
        Ok(())
    }

    /// Stops the task as the chapter does (StopTask) and waits until the service's
    /// replacement runs healthy.
    pub(super) fn stop_and_await_replacement(&self, task_id: &str) -> Result<sandbox::admin::Task> {
        let (admin, target) = self.sandbox()?;
        let group = format!("service:{}", target.service);
        let old = admin
            .tasks(&target.cluster)?
            .into_iter()
            .find(|t| t.task_id == task_id)
            .ok_or_else(|| anyhow!("the sandbox has no task {task_id}"))?;
        let rt = crate::aws::runtime()?;
        let ecs = crate::aws::ecs::Ecs::new(rt.block_on(crate::aws::Aws::connect(&target)).ecs);
        rt.block_on(crate::aws::ecs::EcsApi::stop_task(
            &ecs,
            &target.cluster,
            &old.task_arn,
            "stopped by cargo xtask rehearse",
        ))?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let replacement = admin.tasks(&target.cluster)?.into_iter().find(|t| {
                t.group == group
                    && t.task_id != task_id
                    && t.created_at > old.created_at
                    && t.last_status == "RUNNING"
                    && t.desired_status == "RUNNING"
                    && t.health_status == "HEALTHY"
            });
            if let Some(task) = replacement {
                return Ok(task);
            }
            if Instant::now() > deadline {
                bail!("no healthy replacement for the stopped task {task_id} within 5 minutes");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The rails container's log of a sandbox task.
    /// The task's rails log, through `cargo xtask logs` (CloudWatch Logs: moto's, where the
    /// sandbox's tasks log), once it holds the entrypoint's last line (CloudWatch delivers
    /// late; bounded).
    pub(super) fn rails_log(&self, task_id: &str) -> Result<String> {
        let args = ["logs", task_id, "--sandbox", "--container", "rails"];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = duct::cmd(&self.exe, args)
                .dir(&self.scratch)
                .env("CARGO_MANIFEST_DIR", self.scratch.join("xtask"))
                .env("CARGO_TARGET_DIR", crate::project::target_dir())
                .stdout_capture()
                .stderr_capture()
                .unchecked()
                .run()
                .with_context(|| format!("cannot run {}", self.exe.display()))?;
            let log = String::from_utf8_lossy(&output.stdout).into_owned();
            ensure!(
                output.status.success(),
                "`cargo xtask {}` exited with {:?}: {}",
                args.join(" "),
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            );
            if log.contains(LOG_END) || Instant::now() >= deadline {
                return Ok(log);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The public IP of the service's running task, as the sandbox recorded it on its ENI.
    pub(super) fn current_address(&self) -> Result<String> {
        let (admin, target) = self.sandbox()?;
        let group = format!("service:{}", target.service);
        admin
            .tasks(&target.cluster)?
            .into_iter()
            .filter(|t| {
                t.group == group && t.last_status == "RUNNING" && t.desired_status == "RUNNING"
            })
            .find_map(|t| t.public_ip)
            .ok_or_else(|| anyhow!("the sandbox service has no running task with a public IP"))
    }

    /// The sandbox's admin client and target.
    pub(super) fn sandbox(&self) -> Result<(Admin, Target)> {
        let overlay =
            sandbox::running_overlay().ok_or_else(|| anyhow!("the sandbox is not running"))?;
        let target = sandbox::own_target(&overlay)?;
        Ok((Admin::new(&overlay.endpoint_url), target))
    }

    /// After a failed deploy the scheduler keeps trying until its circuit breaker rolls the
    /// service back; the next scenario starts from a steady service.
    pub(super) fn wait_for_steady_service(&self) -> Result<()> {
        let (admin, target) = self.sandbox()?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let services = admin.services(&target.cluster)?;
            let steady = services.iter().any(|s| {
                s.service_name == target.service
                    && s.deployments.len() == 1
                    && s.deployments[0].rollout_state == "COMPLETED"
                    && s.running_count == s.desired_count
            });
            if steady {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the sandbox service did not return to a steady state within 5 minutes after the failed deploy");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Writes `text` to `file` of the scratch copy (a new file, left untracked).
    pub(super) fn write(&self, file: &str, text: &str) -> Result<()> {
        fs::write(self.scratch.join(file), text).with_context(|| format!("cannot write {file}"))
    }

    pub(super) fn replace(&self, file: &str, from: &str, to: &str) -> Result<()> {
        let path = self.scratch.join(file);
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {file}"))?;
        ensure!(text.contains(from), "{file} does not contain {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).with_context(|| format!("cannot write {file}"))
    }

    pub(super) fn git(&self, args: &[&str]) -> Result<()> {
        let sh = self.sh;
        let _dir = sh.push_dir(&self.scratch);
        cmd!(sh, "git {args...}")
            .quiet()
            .run()
            .with_context(|| format!("git {} failed in the scratch copy", args.join(" ")))
    }

    pub(super) fn commit(&self, message: &str) -> Result<()> {
        self.git(&["add", "-A"])?;
        self.git(&[
            "-c",
            "user.name=cargo xtask rehearse",
            "-c",
            "user.email=rehearse@localhost",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
        ])
    }
}
