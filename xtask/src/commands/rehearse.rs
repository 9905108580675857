//! `cargo xtask rehearse`: the chapter, end to end, in the sandbox.
//!
//! In a scratch copy of the repository: a first deploy from nothing, the chapter's change and
//! a redeploy, a change that breaks the app at boot, a change whose tests fail, a redeploy
//! the chapter's way (`--strategy stop-tasks`) and one more redeploy for the figures. Each
//! step runs the real `cargo xtask` binary and checks what a user would look at: the exit
//! code, the health check at the new task's address, the database, the task's log.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::deploy::target::Target;
use crate::event::{self, Event, Outcome, StatusView, StepView};
use crate::failure::Failure;
use crate::report::Reporter;
use crate::sandbox::{self, admin::Admin, database, Layout};

const FIRST_MESSAGE: &str = "Success Health Check!";
const CHAPTER_MESSAGE: &str = "Success Health Check!!";
const CONTROLLER: &str = "rails/app/controllers/api/v1/health_check_controller.rb";
const SPEC: &str = "rails/spec/requests/api/v1/health_checks_spec.rb";
const PRODUCTION_CONFIG: &str = "rails/config/environments/production.rb";
const TASK_DEFINITION: &str = "rails/task-definition.json";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the scratch copy of the repository (target/rehearsal/repo) afterwards
    #[arg(long)]
    pub keep: bool,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        let rehearsal = Rehearsal::prepare(sh, report)?;
        let result = rehearsal.run_all();
        if !self.keep && result.is_ok() {
            let _ = fs::remove_dir_all(&rehearsal.scratch);
        }
        result
    }
}

/// One `cargo xtask` run in the scratch copy: its exit code and its JSON events.
struct Run {
    code: i32,
    events: Vec<Event>,
    wall: Duration,
    /// Everything on stdout (JSON lines and what a command prints there).
    stdout: String,
}

impl Run {
    fn result(&self) -> Option<&Outcome> {
        self.events.iter().rev().find_map(|e| match e {
            Event::Result(outcome) => Some(outcome),
            _ => None,
        })
    }

    fn started_phases(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::PhaseStart { phase } => Some(phase.clone()),
                _ => None,
            })
            .collect()
    }

    /// The steps a dry run printed.
    fn plan_steps(&self) -> Vec<StepView> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::PlanStep(step) => Some(step.clone()),
                _ => None,
            })
            .collect()
    }

    /// The steps a run started, in order.
    fn executed_steps(&self) -> Vec<StepView> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StepStart(step) => Some(step.clone()),
                _ => None,
            })
            .collect()
    }

    fn error(&self) -> String {
        self.result().and_then(|r| r.error.clone()).unwrap_or_default()
    }

    fn public_ip(&self) -> Result<String> {
        self.result()
            .and_then(|r| r.public_ip.clone())
            .ok_or_else(|| anyhow!("the deploy's result names no public IP"))
    }

    /// Container → the digest the deploy pushed.
    fn digests(&self) -> BTreeMap<String, String> {
        self.result().map_or_else(BTreeMap::new, |r| {
            r.images.iter().map(|i| (i.container.clone(), i.digest.clone())).collect()
        })
    }

    /// The task that ran the first-mode image (db:create, db:seed) of a first deploy.
    fn seeded_task_id(&self) -> Result<String> {
        self.result()
            .and_then(|r| r.seeded_by.as_ref()?.task_id.clone())
            .ok_or_else(|| anyhow!("the first deploy's result names no seeding task"))
    }

    fn task_id(&self) -> Result<String> {
        self.result()
            .and_then(|r| r.task_id.clone())
            .ok_or_else(|| anyhow!("the deploy's result names no task"))
    }

    /// Phase name → seconds, from the result event.
    fn phases(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for p in self.result().map(|r| r.phases.as_slice()).unwrap_or_default() {
            *out.entry(p.phase.clone()).or_insert(0.0) += p.duration_s;
        }
        out
    }
}

struct Rehearsal<'a> {
    sh: &'a Shell,
    report: &'a Reporter,
    /// The scratch copy of the repository the deploys run in.
    scratch: PathBuf,
    exe: PathBuf,
}

impl<'a> Rehearsal<'a> {
    /// Copies the repository's tracked files (as they are in the work tree) into a fresh
    /// git repository under `target/rehearsal/repo`.
    fn prepare(sh: &'a Shell, report: &'a Reporter) -> Result<Rehearsal<'a>> {
        let root = crate::project::root();
        let scratch = crate::project::target_dir().join("rehearsal").join("repo");
        if scratch.exists() {
            fs::remove_dir_all(&scratch).with_context(|| {
                format!("cannot remove the old scratch copy {}", scratch.display())
            })?;
        }
        fs::create_dir_all(&scratch)?;
        let files = cmd!(sh, "git ls-files -z --cached --others --exclude-standard")
            .quiet()
            .read()
            .context("cannot list the repository's files with `git ls-files`")?;
        let mut copied = 0;
        for file in files.split('\0').filter(|f| !f.is_empty()) {
            let from = root.join(file);
            if !from.is_file() {
                continue;
            }
            let to = scratch.join(file);
            if let Some(dir) = to.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::copy(&from, &to)
                .with_context(|| format!("cannot copy {file} to the scratch copy"))?;
            copied += 1;
        }
        let rehearsal = Rehearsal { sh, report, scratch, exe: crate::project::xtask_binary()? };
        rehearsal.git(&["init", "-q", "-b", "main"])?;
        rehearsal.commit("the repository as it is")?;
        report.info(format!("scratch copy: {} ({copied} files)", rehearsal.scratch.display()));
        Ok(rehearsal)
    }

    fn run_all(&self) -> Result<()> {
        let report = self.report;

        // 1. From nothing: a bare sandbox (an empty account with a network), then the quick start.
        let first_run = {
            let phase = report.phase("rehearsal 1: first-deploy from nothing");
            self.fresh_sandbox()?;
            let run =
                self.xtask(&["first-deploy", "--sandbox", "--expect-message", FIRST_MESSAGE])?;
            self.expect_success(&run, "first-deploy --sandbox")?;
            let created = run.result().map(|r| r.created.clone()).unwrap_or_default();
            for what in ["cluster zenn-clone-cluster", "service zenn-clone-backend-service"] {
                ensure!(
                    created.iter().any(|c| c.starts_with(what)),
                    "first-deploy did not create {what}: {created:?}"
                );
            }
            // Revision 1 ran the first-mode image and seeded; revision 2 is the later-mode one.
            self.expect_status(&run, 2, 1)?;
            report.info(format!("first-deploy created {}; revisions 1 (first mode) and 2 (later mode), the service on 2", created.join("; ")));
            let ip = run.public_ip()?;
            self.expect_message(&ip, FIRST_MESSAGE)?;
            self.expect_seeded()?;
            let seeder = run.seeded_task_id()?;
            let log = self.rails_log(&seeder)?;
            for step in ["db:create", "db:migrate", "db:seed"] {
                ensure!(
                    log.contains(step),
                    "the first task's rails log does not show {step}:\n{log}"
                );
            }
            let task = run.task_id()?;
            ensure!(task != seeder, "first-deploy left the service on its seeding task {task}");
            self.expect_later_mode_log(&task)?;
            self.xtask_ok(&["entrypoint", "later", "--check"])
                .context("first-deploy must leave the entrypoint in later mode")?;
            report.info(format!("task {seeder} seeded (log: db:create, db:migrate, db:seed); first-deploy then rolled onto the later-mode image: task at {ip} serves {FIRST_MESSAGE:?}, no db:create / db:seed in its log; 2 users, 30 articles"));

            // Anything may replace the task now (a failed health check, a retired host, the
            // chapter's "stop the task"): the replacement must not seed again.
            let replacement = self.stop_and_await_replacement(&task)?;
            self.expect_later_mode_log(&replacement.task_id)?;
            let replacement_ip = replacement
                .public_ip
                .clone()
                .ok_or_else(|| anyhow!("the replacement task has no public IP"))?;
            self.expect_message(&replacement_ip, FIRST_MESSAGE)?;
            self.expect_seeded()?;
            report.info(format!("task {task} stopped: its replacement {} at {replacement_ip} is healthy, did not seed, and the rows are there once", replacement.task_id));
            phase.finish();
            run
        };

        // 2. The chapter's change, then deploy.
        let (chapter_run, _) = {
            let phase = report.phase("rehearsal 2: the chapter's change, deploy");
            let first_ip = self.current_address()?;
            self.replace(CONTROLLER, FIRST_MESSAGE, CHAPTER_MESSAGE)?;
            self.replace(SPEC, FIRST_MESSAGE, CHAPTER_MESSAGE)?;
            self.commit("the chapter's change: Success Health Check!!")?;
            let args = ["deploy", "--sandbox", "--expect-message", CHAPTER_MESSAGE];
            let dry = self.xtask(&[&args[..], &["--dry-run"]].concat())?;
            self.expect_success(&dry, "deploy --sandbox --dry-run")?;
            let run = self.xtask(&args)?;
            self.expect_success(&run, "deploy --sandbox")?;
            let (planned, ran) = (dry.plan_steps(), run.executed_steps());
            ensure!(
                !planned.is_empty() && planned == ran,
                "the steps run differ from the dry run's:\ndry run: {planned:#?}\nrun: {ran:#?}"
            );
            report.info(format!("the {} steps run are the dry run's, in its order", ran.len()));
            let ip = run.public_ip()?;
            ensure!(
                ip != first_ip,
                "the new task answers at {ip}, the same address as the old one"
            );
            self.expect_message(&ip, CHAPTER_MESSAGE)?;
            let log = self.rails_log(&run.task_id()?)?;
            ensure!(
                log.contains("db:migrate"),
                "the new task's rails log does not show db:migrate:\n{log}"
            );
            for step in ["db:create", "db:seed"] {
                ensure!(!log.contains(step), "the new task's rails log shows {step}:\n{log}");
            }
            self.expect_seeded()?;
            self.xtask_ok(&["entrypoint", "later", "--check"])?;
            let again = self.xtask(&["first-deploy", "--sandbox"])?;
            let preflight = i32::from(Failure::Preflight.exit_code());
            ensure!(
                again.code == preflight && again.error().contains("already runs"),
                "a second first-deploy must stop in preflight (exit {preflight}), got exit {}: {}",
                again.code,
                again.error()
            );
            self.expect_status(&run, 3, 1)?;
            ensure!(
                run.digests() != first_run.digests(),
                "the chapter's deploy runs the first deploy's digests"
            );
            report.info(format!("new task at {ip} (was {first_ip}) serves {CHAPTER_MESSAGE:?}; log: db:migrate, no db:create / db:seed; still 2 users, 30 articles; a second first-deploy is refused; revision 3, pinned to the new digests"));
            phase.finish();
            (run, ip)
        };

        // 2b. Rollback: revision 2 again, its exact images, the first message served again.
        {
            let phase = report.phase("rehearsal 2b: rollback");
            let run = self.xtask(&["rollback", "--sandbox", "--expect-message", FIRST_MESSAGE])?;
            self.expect_success(&run, "rollback --sandbox")?;
            self.expect_message(&run.public_ip()?, FIRST_MESSAGE)?;
            let status = self.status()?;
            ensure!(
                status.revision == Some(2),
                "the rollback left the service on {:?}, not 2",
                status.revision
            );
            let running: BTreeMap<String, String> = status
                .images
                .iter()
                .filter_map(|i| Some((i.container.clone(), i.digest.clone()?)))
                .collect();
            ensure!(
                running == first_run.digests(),
                "the rollback runs {running:?}, not revision 2's {:?}",
                first_run.digests()
            );
            self.expect_tasks(&status, 1)?;
            report.info(format!("rollback: the service is back on revision 2 with its digests, {FIRST_MESSAGE:?} served again"));
            let back = self.xtask(&[
                "deploy",
                "--sandbox",
                "--skip-tests",
                "--expect-message",
                CHAPTER_MESSAGE,
            ])?;
            self.expect_success(&back, "deploy --sandbox (after the rollback)")?;
            self.expect_status(&back, 4, 1)?;
            phase.finish();
        }

        // 2c. A change to the task definition shows as drift and reaches the new task.
        {
            let phase = report.phase("rehearsal 2c: a task definition change");
            self.replace(
                TASK_DEFINITION,
                r#"{ "name": "RAILS_LOG_TO_STDOUT", "value": "1" }"#,
                r#"{ "name": "RAILS_LOG_TO_STDOUT", "value": "1" },
        { "name": "FEATURE_FLAG", "value": "rehearsal" }"#,
            )?;
            self.commit("an environment variable")?;
            let diff = self.xtask(&["diff", "--sandbox"])?;
            let drift = i32::from(Failure::Drift.exit_code());
            ensure!(
                diff.code == drift,
                "diff must exit {drift} on drift, got {}: {}",
                diff.code,
                diff.error()
            );
            ensure!(
                diff.stdout.contains("+ containerDefinitions[rails].environment[FEATURE_FLAG]"),
                "diff must name the field: {}",
                diff.stdout
            );
            let run = self.xtask(&[
                "deploy",
                "--sandbox",
                "--skip-tests",
                "--expect-message",
                CHAPTER_MESSAGE,
            ])?;
            self.expect_success(&run, "deploy --sandbox (environment variable)")?;
            self.expect_status(&run, 5, 1)?;
            let value = self.container_env(&run.task_id()?, "rails", "FEATURE_FLAG")?;
            ensure!(value == "rehearsal", "the new task's FEATURE_FLAG is {value:?}");
            let again = self.xtask(&["diff", "--sandbox"])?;
            ensure!(
                again.code == 0,
                "no drift after the deploy, got exit {}: {}",
                again.code,
                again.stdout
            );
            report.info(format!("diff showed: {}; deploy gave revision 5, its task has FEATURE_FLAG=rehearsal; diff is clean again", diff.stdout.trim()));
            phase.finish();
        }

        // 3. A change that breaks the app at boot: the roll fails, the old task keeps serving.
        {
            let phase = report.phase("rehearsal 3: a deploy that breaks the app");
            let serving = self.current_address()?;
            self.replace(
                PRODUCTION_CONFIG,
                "Rails.application.configure do\n",
                "Rails.application.configure do\n  raise \"broken on purpose by cargo xtask rehearse\"\n",
            )?;
            let run = self.xtask(&["deploy", "--sandbox", "--expect-message", CHAPTER_MESSAGE])?;
            let roll = i32::from(Failure::Roll.exit_code());
            ensure!(
                run.code == roll,
                "a broken app must fail the roll (exit {roll}), got exit {}: {}",
                run.code,
                run.error()
            );
            ensure!(
                run.error().contains("Essential container in task exited"),
                "the roll failure must give the task's stop reason: {}",
                run.error()
            );
            self.expect_message(&serving, CHAPTER_MESSAGE).context(
                "the previous task must keep serving after a failed force-new-deployment",
            )?;
            self.git(&["checkout", "--", PRODUCTION_CONFIG])?;
            self.wait_for_steady_service()?;
            report.info(format!(
                "roll failed with exit {roll} ({}); {serving} still serves {CHAPTER_MESSAGE:?}",
                first_line(&run.error())
            ));
            phase.finish();
        }

        // 4. Tests that fail stop the builds beside them; nothing is pushed.
        {
            let phase = report.phase("rehearsal 4: a deploy whose tests fail");
            let before = self.latest_digests()?;
            self.replace(CONTROLLER, CHAPTER_MESSAGE, "Success Health Check!!!")?;
            let run = self.xtask(&["deploy", "--sandbox"])?;
            let tests = i32::from(Failure::Tests.exit_code());
            ensure!(
                run.code == tests,
                "failing tests must stop the deploy (exit {tests}), got exit {}",
                run.code
            );
            let started = run.started_phases();
            ensure!(
                !started.iter().any(|p| p == "push" || p == "roll"),
                "the deploy pushed or rolled after the tests failed: {started:?}"
            );
            ensure!(
                run.error().contains("the builds beside it were stopped and nothing was pushed"),
                "the error must say the builds stopped: {}",
                run.error()
            );
            ensure!(
                self.latest_digests()? == before,
                "`latest` moved in ECR although the tests failed"
            );
            self.git(&["checkout", "--", CONTROLLER])?;
            report.info(format!(
                "exit {tests}, the builds beside the suite stopped, `latest` in ECR unchanged; phases started: {}",
                started.join(", ")
            ));
            phase.finish();
        }

        // 5. The chapter's own way: stop the task, the service replaces it.
        {
            let phase = report.phase("rehearsal 5: deploy --strategy stop-tasks");
            let before = self.current_address()?;
            let run = self.xtask(&[
                "deploy",
                "--sandbox",
                "--strategy",
                "stop-tasks",
                "--expect-message",
                CHAPTER_MESSAGE,
            ])?;
            self.expect_success(&run, "deploy --sandbox --strategy stop-tasks")?;
            let ip = run.public_ip()?;
            ensure!(ip != before, "the replacement answers at {ip}, the stopped task's address");
            self.expect_message(&ip, CHAPTER_MESSAGE)?;
            report.info(format!(
                "replacement task at {ip} (was {before}) serves {CHAPTER_MESSAGE:?}"
            ));
            phase.finish();
        }

        // 6. Figures: the chapter's deploy measured twice.
        {
            let phase = report.phase("rehearsal 6: figures");
            let run = self.xtask(&["deploy", "--sandbox", "--expect-message", CHAPTER_MESSAGE])?;
            self.expect_success(&run, "deploy --sandbox")?;
            for line in figures(&[&chapter_run, &run]) {
                report.line(&line);
            }
            phase.finish();
        }
        // 7. More than one task: the roll waits for each, verify checks each address.
        {
            let phase = report.phase("rehearsal 7: three tasks");
            let path = self.scratch.join("deploy.toml");
            let text = fs::read_to_string(&path)?;
            fs::write(&path, format!("{text}\n[targets.sandbox.service]\ndesired_count = 3\n"))?;
            let run = self.xtask(&[
                "deploy",
                "--sandbox",
                "--skip-tests",
                "--expect-message",
                CHAPTER_MESSAGE,
            ])?;
            self.expect_success(&run, "deploy --sandbox (3 tasks)")?;
            let ips = run.result().map(|r| r.public_ips.clone()).unwrap_or_default();
            ensure!(ips.len() == 3, "three tasks, three addresses verified: {ips:?}");
            for ip in &ips {
                self.expect_message(ip, CHAPTER_MESSAGE)?;
            }
            let status = self.status()?;
            self.expect_tasks(&status, 3)?;
            fs::write(&path, text)?;
            report.info(format!("3 tasks at {}, each verified", ips.join(", ")));
            phase.finish();
        }
        report.info("rehearsal passed: the chapter holds end to end in the sandbox");
        Ok(())
    }

    /// A sandbox with no ECR repositories and an empty database, as on a fresh account.
    fn fresh_sandbox(&self) -> Result<()> {
        if sandbox::running_overlay().is_some() {
            self.xtask_ok(&["sandbox", "reset", "--bare"])
                .context("cannot reset the sandbox for the rehearsal")?;
        }
        Ok(())
    }

    /// Runs the xtask binary in the scratch copy; stderr streams through, stdout (JSON) is
    /// kept.
    fn xtask(&self, args: &[&str]) -> Result<Run> {
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

    fn xtask_ok(&self, args: &[&str]) -> Result<Run> {
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

    fn expect_success(&self, run: &Run, what: &str) -> Result<()> {
        ensure!(run.code == 0, "`cargo xtask {what}` exited with {}: {}", run.code, run.error());
        Ok(())
    }

    /// GET the health check at `ip` once: it must answer 200 with `message`.
    fn expect_message(&self, ip: &str, message: &str) -> Result<()> {
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
    fn latest_digests(&self) -> Result<Vec<Option<String>>> {
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
    fn expect_seeded(&self) -> Result<()> {
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
    fn status(&self) -> Result<StatusView> {
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
    fn expect_status(&self, run: &Run, revision: i64, tasks: usize) -> Result<()> {
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
    fn expect_tasks(&self, status: &StatusView, tasks: usize) -> Result<()> {
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
    fn container_env(&self, task_id: &str, container: &str, name: &str) -> Result<String> {
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
    fn expect_later_mode_log(&self, task_id: &str) -> Result<()> {
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
    fn stop_and_await_replacement(&self, task_id: &str) -> Result<sandbox::admin::Task> {
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
    fn rails_log(&self, task_id: &str) -> Result<String> {
        let path = Layout::standard().task_logs().join(task_id).join("rails.log");
        fs::read_to_string(&path)
            .with_context(|| format!("cannot read the task's log {}", path.display()))
    }

    /// The public IP of the service's running task, as the sandbox recorded it on its ENI.
    fn current_address(&self) -> Result<String> {
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
    fn sandbox(&self) -> Result<(Admin, Target)> {
        let overlay =
            sandbox::running_overlay().ok_or_else(|| anyhow!("the sandbox is not running"))?;
        let target = sandbox::own_target(&overlay)?;
        Ok((Admin::new(&overlay.endpoint_url), target))
    }

    /// After a failed deploy the scheduler keeps trying until its circuit breaker rolls the
    /// service back; the next scenario starts from a steady service.
    fn wait_for_steady_service(&self) -> Result<()> {
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

    fn replace(&self, file: &str, from: &str, to: &str) -> Result<()> {
        let path = self.scratch.join(file);
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {file}"))?;
        ensure!(text.contains(from), "{file} does not contain {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).with_context(|| format!("cannot write {file}"))
    }

    fn git(&self, args: &[&str]) -> Result<()> {
        let sh = self.sh;
        let _dir = sh.push_dir(&self.scratch);
        cmd!(sh, "git {args...}")
            .quiet()
            .run()
            .with_context(|| format!("git {} failed in the scratch copy", args.join(" ")))
    }

    fn commit(&self, message: &str) -> Result<()> {
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

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// The deploy's top-level phases (the others nest inside them).
const PHASES: [&str; 8] = [
    "preflight",
    "entrypoint",
    "log in to the registry",
    "tests and build",
    "push",
    "check latest in ECR",
    "roll",
    "verify",
];

/// The per-phase table of deploy runs and the xtask's own overhead (wall time minus the
/// phases, which are the work of rspec, docker, ECS and the app).
fn figures(runs: &[&Run]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<24}{}",
        "phase",
        (1..=runs.len()).map(|i| format!("{:>10}", format!("run {i}"))).collect::<String>()
    )];
    for name in PHASES {
        let cells: String = runs
            .iter()
            .map(|r| {
                format!(
                    "{:>10}",
                    r.phases().get(name).map_or("-".to_string(), |s| format!("{s:.1}s"))
                )
            })
            .collect();
        lines.push(format!("{name:<24}{cells}"));
    }
    let total: String =
        runs.iter().map(|r| format!("{:>10}", format!("{:.1}s", r.wall.as_secs_f64()))).collect();
    lines.push(format!("{:<24}{total}", "total (wall)"));
    let overhead: String = runs
        .iter()
        .map(|r| {
            let top = r.phases();
            let phases: f64 = PHASES.iter().filter_map(|p| top.get(*p)).sum();
            format!("{:>10}", format!("{:.1}s", r.wall.as_secs_f64() - phases))
        })
        .collect();
    lines.push(format!("{:<24}{overhead}", "xtask overhead"));
    lines.push("xtask overhead = wall time minus the phases: starting, resolving the target, connecting to AWS, the entrypoint edit, the summary".to_string());
    lines
}
