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

use anyhow::{anyhow, ensure, Context, Result};
use xshell::{cmd, Shell};

use crate::failure::Failure;
use crate::report::Reporter;

const FIRST_MESSAGE: &str = "Success Health Check!";
const CHAPTER_MESSAGE: &str = "Success Health Check!!";
const CONTROLLER: &str = "rails/app/controllers/api/v1/health_check_controller.rb";
const SPEC: &str = "rails/spec/requests/api/v1/health_checks_spec.rb";
const TASK_DEFINITION: &str = "rails/task-definition.json";
const PUMA_CONFIG: &str = "rails/config/puma.rb";
const BROKEN_MODEL: &str = "rails/app/models/broken_on_purpose.rb";
/// The error the broken app raises at boot.
const BROKEN: &str = "broken on purpose by cargo xtask rehearse";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the sandbox running and the scratch copy of the repository (target/rehearsal/repo)
    /// afterwards [default: the sandbox goes down, the copy is removed after a green run]
    #[arg(long)]
    pub keep: bool,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        let rehearsal = Rehearsal::prepare(sh, report)?;
        let result = rehearsal.run_all();
        if self.keep {
            return result;
        }
        // On a failure too: only the scratch copy stays then, to look at.
        let down = rehearsal.xtask_ok(&["sandbox", "down"]);
        if result.is_ok() {
            let _ = fs::remove_dir_all(&rehearsal.scratch);
        }
        result.and(down.map(drop).context("the rehearsal's sandbox did not go down"))
    }
}

mod checks;

use checks::Run;

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
            for what in [
                "cluster zenn-clone-cluster",
                "log group /ecs/zenn-clone-task-definition-backend",
                "service zenn-clone-backend-service",
            ] {
                ensure!(
                    created.iter().any(|c| c.starts_with(what)),
                    "first-deploy did not create {what}: {created:?}"
                );
            }
            // Revision 1 ran the first-mode image and seeded; revision 2 is the later-mode one.
            self.expect_status(&run, 2, 1)?;
            self.expect_log_checks(&run, &["first", "later"])?;
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
            self.expect_log_checks(&run, &["later"])?;
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
            let shown: Vec<&str> = diff.stdout.lines().filter(|l| !l.starts_with('{')).collect();
            report.info(format!("diff showed: {}; deploy gave revision 5, its task has FEATURE_FLAG=rehearsal; diff is clean again", shown.join("; ")));
            phase.finish();
        }

        // 3. A syntax error in a model: the smoke boot (the app's eager load, before any push)
        // catches it; nothing is pushed, the old task keeps serving.
        {
            let phase = report.phase("rehearsal 3: a syntax error the smoke boot catches");
            let serving = self.current_address()?;
            let before = self.latest_digests()?;
            // A model no test loads (tests do not eager-load): only the production boot sees it.
            self.write(
                BROKEN_MODEL,
                "class BrokenOnPurpose < ApplicationRecord\n  def broken(\nend\n",
            )?;
            let run = self.xtask(&["deploy", "--sandbox", "--expect-message", CHAPTER_MESSAGE])?;
            let build = i32::from(Failure::Build.exit_code());
            ensure!(
                run.code == build,
                "a model that does not parse must fail the smoke boot (exit {build}), got exit {}: {}",
                run.code,
                run.error()
            );
            for shown in ["syntax error", "broken_on_purpose.rb", "smoke boot"] {
                ensure!(
                    run.error().contains(shown),
                    "the smoke boot's failure must show the app's error ({shown:?}): {}",
                    run.error()
                );
            }
            let started = run.started_phases();
            ensure!(
                !started.iter().any(|p| p == "push" || p == "roll"),
                "a failed smoke boot must push and roll nothing; phases started: {started:?}"
            );
            ensure!(
                self.latest_digests()? == before,
                "`latest` moved in ECR although the smoke boot failed"
            );
            self.xtask_ok(&["entrypoint", "later", "--check"])?;
            self.expect_message(&serving, CHAPTER_MESSAGE)?;
            fs::remove_file(self.scratch.join(BROKEN_MODEL))?;
            report.info(format!(
                "exit {build} before any push ({}); `latest` in ECR unchanged; {serving} still serves {CHAPTER_MESSAGE:?}",
                first_line(&run.error())
            ));
            phase.finish();
        }

        // 3b. A crash at boot the smoke boot cannot see (puma's own configuration, which
        // `rails runner` does not read): the roll fails with the task's evidence, its log
        // included; the old task keeps serving.
        {
            let phase = report.phase("rehearsal 3b: a deploy that breaks the app at boot");
            let serving = self.current_address()?;
            self.replace(
                PUMA_CONFIG,
                "require \"fileutils\"\n",
                &format!("require \"fileutils\"\nraise \"{BROKEN}\"\n"),
            )?;
            let run = self.xtask(&["deploy", "--sandbox", "--expect-message", CHAPTER_MESSAGE])?;
            let roll = i32::from(Failure::Roll.exit_code());
            ensure!(
                run.code == roll,
                "a broken app must fail the roll (exit {roll}), got exit {}: {}",
                run.code,
                run.error()
            );
            // The evidence: the stop reason, what the app said (from its CloudWatch stream),
            // and where to read more.
            for evidence in ["Essential container in task exited", BROKEN, "cargo xtask logs "] {
                ensure!(
                    run.error().contains(evidence),
                    "the roll failure must show the stopped task's reason, log and the logs command ({evidence:?}): {}",
                    run.error()
                );
            }
            self.expect_message(&serving, CHAPTER_MESSAGE).context(
                "the previous task must keep serving after a failed force-new-deployment",
            )?;
            self.git(&["checkout", "--", PUMA_CONFIG])?;
            self.wait_for_steady_service()?;
            report.info(format!(
                "roll failed with exit {roll} ({}); the error quotes the app's log; {serving} still serves {CHAPTER_MESSAGE:?}",
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
