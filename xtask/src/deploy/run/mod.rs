//! Runs a [`Plan`]: each step in order, the side-by-side ones at the same time, every step
//! announced as the dry run shows it. After a failure only the steps marked `always` run (the
//! entrypoint goes back to later mode); Ctrl-C stops the run between steps the same way.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use tokio::runtime::Runtime;
use xshell::Shell;

use crate::aws::ecr::{self, Repository};
use crate::aws::ecs::{Ecs, TaskDefinitionSnapshot};
use crate::aws::ecs_json::Revision;
use crate::aws::Aws;
use crate::deploy::iam;
use crate::deploy::plan::{
    self, Action, Phase, Plan, PlanOptions, Step, GIT_TAG, REGISTRY, USERNAME,
};
use crate::deploy::push::{self, PushedImage, LATEST};
use crate::deploy::roll::RollOutcome;
use crate::deploy::summary::Shipped;
use crate::deploy::target::{Image, Target};
use crate::docker::{self, DockerConfigDir, Job, JobStatus};
use crate::entrypoint::{self, Mode};
use crate::event::{Event, PushedView};
use crate::failure::Failure;
use crate::report::{self, Reporter};
use crate::{interrupt, rspec};

/// How far the registry's clock may lag behind ours when its push time is compared with the
/// build's start (moto also rounds push times down to the second).
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(30);

/// The next step when the Docker daemon stopped answering under a build or a push.
const DAEMON_GONE: &str = "the Docker daemon stopped answering: start it (`sudo systemctl start \
    docker`, or Docker Desktop) and deploy again";

/// What a run leaves, for the summary.
pub struct Finished {
    /// Each roll verified, in order (a first deploy has two).
    pub shipped: Vec<Shipped>,
    /// The last push of each image.
    pub pushed: Vec<PushedImage>,
    /// The revision the service runs now.
    pub revision: Option<Revision>,
    /// What the run created (a first deploy from nothing).
    pub created: Vec<String>,
    /// The interrupted deploy's deployment this run attached to, instead of deploying.
    pub attached: Option<Attached>,
}

/// The deployment an attach plan watched.
#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    pub deployment_id: String,
    /// `family:N`.
    pub revision: String,
    /// How long it had run when the deploy attached to it.
    pub age: Option<std::time::Duration>,
}

/// Runs `plan` against `target`.
pub fn execute(
    sh: &Shell,
    report: &Reporter,
    target: &Target,
    plan: &Plan,
    opts: &PlanOptions,
) -> Result<Finished> {
    interrupt::install();
    let rt = crate::aws::runtime()?;
    let aws = rt.block_on(Aws::connect(target));
    let mut run = Run {
        command: plan.command,
        mode: plan.mode,
        sh,
        report,
        target,
        opts,
        ecs: Ecs::new(aws.ecs.clone()),
        aws,
        rt,
        vars: BTreeMap::new(),
        repositories: BTreeMap::new(),
        definition: None,
        config: None,
        build_started: None,
        pushed: BTreeMap::new(),
        last_push: Vec::new(),
        roll: None,
        public_ips: Vec::new(),
        shipped: Vec::new(),
        cluster_missing: false,
        service_missing: false,
        current_revision: None,
        account_id: None,
        created: Vec::new(),
        attached: None,
    };
    if let Some(registry) = &target.registry {
        run.vars.insert(REGISTRY.to_string(), registry.clone());
    }
    run.all(plan)?;
    Ok(Finished {
        shipped: run.shipped,
        pushed: run.pushed.into_values().collect(),
        revision: run.current_revision,
        created: run.created,
        attached: run.attached,
    })
}

/// One run in progress: what the steps so far have learnt.
struct Run<'a> {
    /// The plan's command and mode.
    command: &'static str,
    mode: Mode,
    sh: &'a Shell,
    report: &'a Reporter,
    target: &'a Target,
    opts: &'a PlanOptions,
    rt: Runtime,
    aws: Aws,
    ecs: Ecs,
    /// Placeholder → value: the registry, the commit tag, each image's ID.
    vars: BTreeMap<String, String>,
    /// Each repository, `None` while missing.
    repositories: BTreeMap<String, Option<Repository>>,
    /// The service's task definition when the run began.
    definition: Option<TaskDefinitionSnapshot>,
    /// The private Docker config of the login, removed when the run ends.
    config: Option<DockerConfigDir>,
    build_started: Option<SystemTime>,
    /// The latest push of each container.
    pushed: BTreeMap<String, PushedImage>,
    /// The containers of the last push, for its check in ECR.
    last_push: Vec<String>,
    roll: Option<RollOutcome>,
    /// The new tasks' public IPs, once looked up.
    public_ips: Vec<String>,
    shipped: Vec<Shipped>,
    cluster_missing: bool,
    service_missing: bool,
    /// The revision the service runs (after a register: the one registered).
    current_revision: Option<Revision>,
    account_id: Option<String>,
    /// What this run created (cluster, service), for the summary.
    created: Vec<String>,
    attached: Option<Attached>,
}

impl Run<'_> {
    fn all(&mut self, plan: &Plan) -> Result<()> {
        let views = plan.views();
        let mut failed: Option<anyhow::Error> = None;
        let mut phase: Option<(Phase, report::Phase<'_>)> = None;
        let mut i = 0;
        while i < plan.steps.len() {
            let step = &plan.steps[i];
            let end = match step.side_by_side {
                Some(group) => {
                    i + plan.steps[i..].iter().take_while(|s| s.side_by_side == Some(group)).count()
                }
                None => i + 1,
            };
            let group = &plan.steps[i..end];
            if failed.is_some() && !step.always {
                i = end;
                continue;
            }
            if failed.is_none() {
                if let Err(e) = interrupt::check(failure_of(step.phase)) {
                    failed = Some(e);
                    phase = None;
                    continue;
                }
            }
            if phase.as_ref().map(|(p, _)| *p) != Some(step.phase) {
                if let Some((_, running)) = phase.take() {
                    running.finish();
                }
                phase = Some((step.phase, self.report.phase(step.phase.name())));
            }
            for view in &views[i..end] {
                self.report.emit(Event::StepStart(view.clone()));
            }
            let started = Instant::now();
            let result = if group.len() > 1 { self.side_by_side(group) } else { self.step(step) };
            for view in &views[i..end] {
                self.report.emit(Event::StepEnd {
                    index: view.index,
                    ok: result.is_ok(),
                    duration_s: started.elapsed().as_secs_f64(),
                });
            }
            if let Err(e) = result {
                phase = None;
                failed.get_or_insert(denied_hint(e, group));
            }
            i = end;
        }
        if let Some((_, running)) = phase {
            running.finish();
        }
        failed.map_or(Ok(()), Err)
    }

    /// Removes what the builds this run stopped left behind (best effort: it is said, never
    /// fatal).
    fn remove_stopped_build_containers(&self, before: &str) {
        let docker = &self.opts.docker;
        let Ok(after) = docker.created_containers().read(self.sh) else { return };
        let left = docker::left_by_stopped_builds(before, &after);
        if left.is_empty() {
            return;
        }
        match docker.remove_containers(&left).read(self.sh) {
            Ok(_) => self.report.info(format!(
                "removed {} intermediate container(s) a stopped build left",
                left.len()
            )),
            Err(e) => self.report.warn(format!(
                "a stopped build left {} intermediate container(s) that could not be removed ({e:#}): `docker rm {}`",
                left.len(),
                left.join(" ")
            )),
        }
    }

    /// Fills the run's placeholders in a plan value.
    fn fill(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (key, value) in &self.vars {
            out = out.replace(key.as_str(), value);
        }
        out
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match &step.action {
            Action::CheckEntrypoint { file, steps } => {
                entrypoint::status_file(&crate::project::root().join(file), steps).map(drop)
            }
            Action::CheckBuildFiles { paths } => check_build_files(&self.sh.current_dir(), paths),
            Action::CheckDocker { version } => {
                let version = docker::server_version(self.sh, version)?;
                self.report.info(format!("docker daemon {version} answers"));
                Ok(())
            }
            Action::CheckCredentials { .. } => {
                self.rt.block_on(self.aws.check_credentials(self.target))
            }
            Action::CheckRepositories { repositories, create_missing } => {
                self.check_repositories(repositories, *create_missing)
            }
            Action::CheckCluster { cluster, create_missing } => {
                self.check_cluster(cluster, *create_missing)
            }
            Action::CheckService { create_missing, refuse_running, warn_running, .. } => {
                self.check_service(*create_missing, *refuse_running, *warn_running)
            }
            Action::CreateCluster { cluster } => self.create_cluster(cluster),
            Action::CreateLogGroups { file } => self.create_log_groups(file),
            Action::Register { file, mode } => self.register(file, *mode),
            Action::MarkVerified => self.mark_verified(),
            Action::CheckLogs { container, file, mode, steps, timeout } => {
                self.check_logs(container, file.as_deref(), *mode, steps, *timeout)
            }
            Action::Select { revision, digests } => self.select(revision, digests),
            Action::CheckDeployments { wait, .. } => self.check_deployments(*wait),
            Action::Attach { deployment, revision, digests, .. } => {
                self.attach(deployment, revision, digests)
            }
            Action::SetEntrypoint { file, mode, steps } => self.set_entrypoint(file, *mode, steps),
            Action::CreateRepositories { repositories } => self.create_repositories(repositories),
            Action::Login { login } => self.login(login),
            Action::Tests => self.side_by_side(std::slice::from_ref(step)),
            Action::Build { .. } => self.side_by_side(std::slice::from_ref(step)),
            Action::Push { .. } => self.side_by_side(std::slice::from_ref(step)),
            Action::CheckLatest { repositories, timeout } => {
                self.check_latest(repositories, *timeout)
            }
            Action::Roll { attach, .. } => self.roll_service(attach.as_deref()),
            Action::PublicIp => self.find_public_ip(),
            Action::Verify { url, expect_status, expect_message, timeout } => {
                let verify = crate::deploy::target::VerifyConfig {
                    url: url.clone(),
                    expect_status: *expect_status,
                    expect_message: expect_message.clone(),
                    timeout: *timeout,
                };
                self.verify(&verify)
            }
        }
    }

    fn check_repositories(&mut self, repositories: &[String], create_missing: bool) -> Result<()> {
        for name in repositories {
            let found = self
                .rt
                .block_on(ecr::describe_repository(&self.aws.ecr, name))
                .context("cannot look up the ECR repositories: check that the credentials allow ecr:DescribeRepositories")
                .context(Failure::Preflight)?;
            if let Some(repository) = &found {
                self.learn_registry(repository);
            }
            self.repositories.insert(name.clone(), found);
        }
        let missing: Vec<&str> = self
            .repositories
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !create_missing {
            return Err(anyhow!(
                "ECR repositories missing in {}: {}: run `cargo xtask first-deploy` to create them",
                self.target.region,
                missing.join(", ")
            )
            .context(Failure::Preflight));
        }
        self.report.info(format!("ECR repositories to create: {}", missing.join(", ")));
        Ok(())
    }

    /// The registry of the account's repositories, when the target names none.
    fn learn_registry(&mut self, repository: &Repository) {
        if let Some((host, _)) = repository.uri.split_once('/') {
            self.vars.entry(REGISTRY.to_string()).or_insert_with(|| host.to_string());
        }
    }

    fn set_entrypoint(&self, file: &Path, mode: Mode, steps: &[String]) -> Result<()> {
        let applied = entrypoint::apply_file(&crate::project::root().join(file), mode, steps)?;
        let label = file.display();
        if applied.changed {
            self.report.info(format!("{label}: now in {mode} mode"));
            for line in applied.diff.lines() {
                self.report.line(line);
            }
        } else {
            self.report.info(format!("{label}: already in {mode} mode"));
        }
        self.report.emit(Event::Entrypoint {
            file: label.to_string(),
            mode: mode.to_string(),
            changed: applied.changed,
            diff: applied.diff,
        });
        Ok(())
    }

    fn create_repositories(&mut self, repositories: &[String]) -> Result<()> {
        for name in repositories {
            if self.repositories.get(name).is_some_and(Option::is_some) {
                continue;
            }
            let created = self
                .rt
                .block_on(ecr::create_repository(&self.aws.ecr, name))
                .context("check that the credentials allow ecr:CreateRepository")
                .context(Failure::Push)?;
            self.report.info(format!(
                "created ECR repository {name} (scan on push, mutable tags): {}",
                created.uri
            ));
            self.learn_registry(&created);
            self.repositories.insert(name.clone(), Some(created));
        }
        Ok(())
    }

    fn login(&mut self, login: &docker::DockerCmd) -> Result<()> {
        let auth = self
            .rt
            .block_on(ecr::authorization(&self.aws.ecr))
            .context("cannot get a registry password from ECR")
            .context(Failure::Push)?;
        self.vars.entry(REGISTRY.to_string()).or_insert_with(|| auth.registry.clone());
        self.vars.insert(USERNAME.to_string(), auth.username.clone());
        let config = DockerConfigDir::create(&self.opts.work)
            .context("cannot make a private docker config directory for the ECR login")
            .context(Failure::Push)?;
        let login =
            login.resolved(&|a| self.fill(a), Some(config.path())).with_stdin(auth.password);
        self.report.info(format!("$ {login}"));
        login.run_captured(self.sh).context("docker login failed").context(Failure::Push)?;
        self.config = Some(config);
        Ok(())
    }

    /// Tests, builds or pushes, at the same time: when one fails, the others stop.
    fn side_by_side(&mut self, steps: &[Step]) -> Result<()> {
        let mut jobs = Vec::new();
        let mut suite = None;
        let mut builds: Vec<(&Image, &Path)> = Vec::new();
        let mut pushes: Vec<(&str, &str, &str)> = Vec::new();
        if steps.iter().any(|s| matches!(s.action, Action::Build { .. })) {
            // Read after the entrypoint edit, so that an image holding it is `-dirty`.
            let images: Vec<Image> = steps
                .iter()
                .filter_map(|s| match &s.action {
                    Action::Build { image, .. } => Some((**image).clone()),
                    _ => None,
                })
                .collect();
            if let Some(tag) = push::git_tag(self.sh, &images, self.report)? {
                self.vars.insert(GIT_TAG.to_string(), tag);
            }
            self.build_started = Some(SystemTime::now());
        }
        for step in steps {
            match &step.action {
                Action::Tests => {
                    let prepared = rspec::prepare(self.sh, self.report, &[])?;
                    jobs.push(Job {
                        label: "tests".into(),
                        steps: vec![docker::Step::Run(prepared.command.clone())],
                    });
                    suite = Some(prepared);
                }
                Action::Build { image, build, iidfile, smoke } => {
                    push::prepare_iidfile(iidfile).context(Failure::Build)?;
                    let build = build.resolved(&|a| self.fill(a), None);
                    let mut steps = vec![docker::Step::Run(build)];
                    steps.extend(smoke.iter().map(|cmd| docker::Step::OnBuilt {
                        iidfile: iidfile.clone(),
                        placeholder: plan::image_id(&image.container),
                        // Not filled: an earlier build of the run (first-deploy's first image)
                        // must not stand in for this one.
                        cmd: cmd.clone(),
                    }));
                    jobs.push(Job { label: image.container.clone(), steps });
                    builds.push((image, iidfile));
                }
                Action::Push { container, repository, uri, steps } => {
                    let config = self.config.as_ref().map(DockerConfigDir::path);
                    let steps =
                        steps.iter().map(|s| s.resolved(&|a| self.fill(a), config)).collect();
                    jobs.push(Job { label: container.clone(), steps });
                    pushes.push((container, repository, uri));
                }
                other => return Err(anyhow!("`{other}` cannot run side by side")),
            }
        }
        let created_before = match builds.is_empty() {
            true => None,
            false => self.opts.docker.created_containers().read(self.sh).ok(),
        };
        let outputs = docker::run_parallel(self.sh, self.report, &jobs);
        drop(suite);
        if let Some(before) = created_before {
            if outputs.iter().any(|o| o.status == JobStatus::Stopped) {
                self.remove_stopped_build_containers(&before);
            }
        }
        if let Some(tests) = outputs
            .iter()
            .find(|o| o.label == "tests" && matches!(o.status, JobStatus::Failed { .. }))
        {
            let stopped = if builds.is_empty() {
                ""
            } else {
                "; the builds beside it were stopped and nothing was pushed"
            };
            return Err(anyhow!(
                "rspec failed ({}): the failing examples are listed above{stopped}",
                match &tests.status {
                    JobStatus::Failed { reason, .. } => reason.clone(),
                    _ => String::new(),
                }
            )
            .context(Failure::Tests));
        }
        let images: Vec<_> = outputs.iter().filter(|o| o.label != "tests").cloned().collect();
        if !builds.is_empty() {
            let next = if docker::daemon_gone(&images) {
                format!("nothing was pushed; {DAEMON_GONE}")
            } else {
                "nothing was pushed: fix the cause above and deploy again (a failed `docker run \
                 --rm --network none` is the smoke boot: the image just built, started once here \
                 without a database or the real secrets; `--skip-smoke` skips it)"
                    .to_string()
            };
            push::job_failures(&images, "build", &next).context(Failure::Build)?;
            for (image, iidfile) in builds {
                let id = push::read_iidfile(iidfile).context(Failure::Build)?;
                self.report.emit(Event::ImageBuilt {
                    container: image.container.clone(),
                    uri: self.fill(&format!("{REGISTRY}/{}", image.repository)),
                    image_id: id.clone(),
                    tags: self.tags(),
                });
                self.vars.insert(plan::image_id(&image.container), id);
            }
        }
        if !pushes.is_empty() {
            let next = if docker::daemon_gone(&images) {
                DAEMON_GONE
            } else {
                "check that the registry answers and deploy again (every image is rebuilt and pushed)"
            };
            push::job_failures(&images, "push", next).context(Failure::Push)?;
            self.last_push.clear();
            for ((container, repository, uri), output) in pushes.into_iter().zip(&images) {
                let uri = self.fill(uri);
                let tags = self.tags();
                let digest = push::pushed_digest(self.sh, &self.opts.docker, &uri, output, &tags)
                    .context(Failure::Push)?;
                self.report.info(format!("pushed {uri}:{LATEST} {digest}"));
                let image_id =
                    self.vars.get(&plan::image_id(container)).cloned().unwrap_or_default();
                self.pushed.insert(
                    container.to_string(),
                    PushedImage {
                        container: container.to_string(),
                        repository: repository.to_string(),
                        uri,
                        digest,
                        tags,
                        pushed_at: self.build_started.unwrap_or_else(SystemTime::now),
                        image_id,
                    },
                );
                self.last_push.push(container.to_string());
            }
        }
        Ok(())
    }

    /// The tags pushed: `latest`, and the commit's.
    fn tags(&self) -> Vec<String> {
        let mut tags = vec![LATEST.to_string()];
        tags.extend(self.vars.get(GIT_TAG).cloned());
        tags
    }

    fn check_latest(
        &mut self,
        repositories: &[String],
        timeout: std::time::Duration,
    ) -> Result<()> {
        let pushed: Vec<PushedImage> = self
            .last_push
            .iter()
            .filter_map(|c| self.pushed.get(c))
            .filter(|p| repositories.contains(&p.repository))
            .cloned()
            .collect();
        let started = self.build_started.unwrap_or_else(SystemTime::now);
        let found = push::wait_for_latest(
            self.report,
            &self.rt,
            &self.aws,
            &pushed,
            started - CLOCK_SKEW,
            self.opts.cache,
            timeout,
        )
        .context(Failure::Push)?;
        for (image, found) in pushed.iter().zip(found) {
            let at = found.pushed_at.unwrap_or(started);
            self.report.info(format!(
                "ECR {}:{LATEST} = {}, pushed at {}",
                image.repository,
                image.digest,
                push::timestamp(at)
            ));
            self.report.emit(Event::ImagePushed(PushedView {
                container: image.container.clone(),
                repository: image.repository.clone(),
                uri: image.uri.clone(),
                digest: image.digest.clone(),
                tags: image.tags.clone(),
                pushed_at: push::timestamp(at),
            }));
            if let Some(p) = self.pushed.get_mut(&image.container) {
                p.pushed_at = at;
            }
        }
        Ok(())
    }
}

/// The class of an interrupted run, by the phase it stopped before.
fn failure_of(phase: Phase) -> Failure {
    match phase {
        Phase::Preflight | Phase::Entrypoint => Failure::Preflight,
        Phase::TestsAndBuild => Failure::Tests,
        Phase::Build => Failure::Build,
        Phase::Login | Phase::Push | Phase::CheckLatest => Failure::Push,
        Phase::Register | Phase::Roll => Failure::Roll,
        Phase::Verify => Failure::Verify,
    }
}

/// An error AWS refused for its permissions names the IAM actions the steps need.
fn denied_hint(err: anyhow::Error, steps: &[Step]) -> anyhow::Error {
    if !iam::is_access_denied(&err) {
        return err;
    }
    let actions: Vec<&Action> = steps.iter().map(|s| &s.action).collect();
    match iam::denied_hint(&actions) {
        Some(hint) => err.context(hint),
        None => err,
    }
}

/// Every Dockerfile and build context of the target exists.
fn check_build_files(root: &Path, paths: &[std::path::PathBuf]) -> Result<()> {
    let missing: Vec<String> =
        paths.iter().filter(|p| !root.join(p).exists()).map(|p| p.display().to_string()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(anyhow!(
        "missing in {}: {}: restore them from git or fix [defaults.images] in deploy.toml",
        root.display(),
        missing.join(", ")
    )
    .context(Failure::Preflight))
}

mod service;

#[cfg(test)]
mod faults;
