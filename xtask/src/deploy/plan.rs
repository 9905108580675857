//! The deploy as a plan: the target and the mode become an ordered list of steps as values,
//! each docker command line, each AWS call with its parameters, each check, and which steps
//! run side by side. `--dry-run` prints the plan; [`super::run`] executes exactly it.
//!
//! What only the run can know is named in the commands by a placeholder the run fills in:
//! [`REGISTRY`] (the registry of the ECR authorization token, when the target names none),
//! an image's ID once it is built ([`image_id`]), and [`GIT_TAG`] (read right after the
//! entrypoint edit, so an image holding an uncommitted change is `-dirty`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::deploy::inflight::Attach;
use crate::deploy::target::{Credentials, Image, RollStrategy, Target};
use crate::docker::{self, BuildSpec, Docker, DockerCmd};
use crate::entrypoint::Mode;
use crate::event::StepView;
use crate::report::human_duration;

/// The registry host of the ECR authorization token.
pub const REGISTRY: &str = "{registry}";
/// The user name of the ECR authorization token (`AWS`).
pub const USERNAME: &str = "{username}";
/// `git-<short sha>[-dirty]`, of the tree as it is built.
pub const GIT_TAG: &str = "{git_tag}";
/// The tag the task definition follows (it names the image without a tag).
pub const LATEST: &str = "latest";
/// The revision this deploy registered (its ARN).
pub const TASK_DEFINITION: &str = "{task_definition}";
/// The placeholder of the verify URL for the new task's public IP.
pub const PUBLIC_IP: &str = "{public_ip}";
/// How long the log check waits for the new tasks' lines (CloudWatch delivers seconds late).
pub const LOG_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The ID the latest build of `container` wrote.
pub fn image_id(container: &str) -> String {
    format!("{{image_id.{container}}}")
}

/// What shapes a plan besides the target.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub skip_tests: bool,
    /// `--skip-smoke`: no smoke boot between the build and the push.
    pub skip_smoke: bool,
    /// `--cache`: docker's layer cache allowed.
    pub cache: bool,
    /// `first-deploy --force`: go on although the service runs tasks.
    pub force: bool,
    /// The tree is a git checkout: images get a commit tag too.
    pub git: bool,
    /// Where the deploy keeps its files (`target/xtask`): image ID files, the Docker config.
    pub work: PathBuf,
    pub docker: Docker,
    /// How long `latest` in ECR may take to show a push.
    pub settle_timeout: Duration,
    /// `--wait`: wait for a deployment in progress that this deploy did not start.
    pub wait: bool,
}

impl PlanOptions {
    pub fn new(work: PathBuf) -> PlanOptions {
        PlanOptions {
            skip_tests: false,
            skip_smoke: false,
            cache: false,
            force: false,
            git: true,
            work,
            docker: Docker::default(),
            settle_timeout: Duration::from_secs(30),
            wait: false,
        }
    }
}

/// A deploy, step by step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The command it runs for (`deploy`, `first-deploy`, `rollback`).
    pub command: &'static str,
    pub mode: Mode,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub phase: Phase,
    /// Steps with the same group, next to each other, run at the same time.
    pub side_by_side: Option<&'static str>,
    /// Runs even when an earlier step failed: it puts the tree back.
    pub always: bool,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Preflight,
    Entrypoint,
    Login,
    TestsAndBuild,
    Register,
    Build,
    Push,
    CheckLatest,
    Roll,
    Verify,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Entrypoint => "entrypoint",
            Phase::Login => "log in to the registry",
            Phase::TestsAndBuild => "tests and build",
            Phase::Register => "register",
            Phase::Build => "build",
            Phase::Push => "push",
            Phase::CheckLatest => "check latest in ECR",
            Phase::Roll => "roll",
            Phase::Verify => "verify",
        }
    }
}

/// What a step does, with every value it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The entrypoint can be edited safely.
    CheckEntrypoint {
        file: PathBuf,
        steps: Vec<String>,
    },
    CheckBuildFiles {
        paths: Vec<PathBuf>,
    },
    CheckDocker {
        version: DockerCmd,
    },
    CheckCredentials {
        source: String,
    },
    /// DescribeRepositories; a missing one stops the deploy unless it may be created.
    CheckRepositories {
        repositories: Vec<String>,
        create_missing: bool,
    },
    /// DescribeClusters: ACTIVE, or missing and created below (first deploy).
    CheckCluster {
        cluster: String,
        create_missing: bool,
    },
    /// DescribeServices: ACTIVE (or missing and created below, on a first deploy, into the
    /// subnets and security groups EC2 must know); `refuse_running` stops a first deploy of a
    /// service that runs tasks (`warn_running` with `--force`).
    CheckService {
        cluster: String,
        service: String,
        create_missing: bool,
        refuse_running: bool,
        warn_running: bool,
    },
    /// DescribeServices: no deployment IN_PROGRESS that this deploy did not start (an
    /// interrupted deploy of this tree gets the attach plan instead); `wait`: wait up to that
    /// long for it to end, instead of stopping.
    CheckDeployments {
        cluster: String,
        service: String,
        wait: Option<Duration>,
    },
    CreateCluster {
        cluster: String,
    },
    /// CreateLogGroup for each awslogs group of the task definition that is missing (awslogs
    /// creates it at a task's start only with `awslogs-create-group` and logs:CreateLogGroup
    /// in the execution role).
    CreateLogGroups {
        file: PathBuf,
    },
    SetEntrypoint {
        file: PathBuf,
        mode: Mode,
        steps: Vec<String>,
    },
    CreateRepositories {
        repositories: Vec<String>,
    },
    /// GetAuthorizationToken, then `docker login` with the password on stdin.
    Login {
        login: DockerCmd,
    },
    /// The RSpec suite against a test database; a failure stops the builds beside it.
    Tests,
    /// `docker build`, then the smoke boot: each of the image's smoke commands on the image
    /// just built (its ID from `iidfile`), before anything is pushed.
    Build {
        image: Box<Image>,
        build: DockerCmd,
        iidfile: PathBuf,
        smoke: Vec<DockerCmd>,
    },
    Push {
        container: String,
        repository: String,
        uri: String,
        steps: Vec<docker::Step>,
    },
    CheckLatest {
        repositories: Vec<String>,
        timeout: Duration,
    },
    /// The repository's task definition rendered (placeholders, images by digest, tags), its
    /// drift from the service's revision shown, registered as a new revision.
    Register {
        file: PathBuf,
        mode: Mode,
    },
    /// UpdateService onto the registered revision and the wait; with `attach`, only the wait,
    /// on that deployment (an interrupted deploy's).
    Roll {
        cluster: String,
        service: String,
        strategy: RollStrategy,
        timeout: Duration,
        attach: Option<String>,
    },
    PublicIp,
    Verify {
        url: String,
        expect_status: u16,
        expect_message: Option<String>,
        timeout: Duration,
    },
    /// The new tasks' log of `container` (CloudWatch Logs, through the revision's awslogs
    /// options) shows the entrypoint ran in `mode`; `file` gives the entrypoint's last line,
    /// which marks the log complete.
    CheckLogs {
        container: String,
        file: Option<PathBuf>,
        mode: Mode,
        steps: Vec<String>,
        timeout: Duration,
    },
    /// TagResource `xtask:verified` on the revision: a rollback goes back to one of those.
    MarkVerified,
    /// An interrupted deploy of this tree: its deployment, its revision (ARN), and the digests
    /// its tags give, which the roll expects.
    Attach {
        deployment: String,
        revision: String,
        git_commit: String,
        digests: std::collections::BTreeMap<String, String>,
    },
    /// A rollback's revision: the roll goes onto it and expects the digests its tags give.
    Select {
        revision: String,
        digests: std::collections::BTreeMap<String, String>,
    },
}

impl Plan {
    /// The plan of a deploy of `target` in `mode` (`First`: `first-deploy`).
    pub fn new(target: &Target, mode: Mode, opts: &PlanOptions) -> Plan {
        let command = crate::deploy::summary::command(mode);
        let mut plan = Plan { command, mode, steps: Vec::new() };
        let first = mode == Mode::First;
        let steps = target.entrypoint.first_deploy_only.clone();
        let file = target.entrypoint.file.clone();

        plan.push(
            Phase::Preflight,
            Action::CheckEntrypoint { file: file.clone(), steps: steps.clone() },
        );
        let mut paths: Vec<PathBuf> =
            target.images.iter().flat_map(|i| [i.dockerfile.clone(), i.context.clone()]).collect();
        paths.dedup();
        plan.push(Phase::Preflight, Action::CheckBuildFiles { paths });
        plan.push(Phase::Preflight, Action::CheckDocker { version: opts.docker.version() });
        let source = credentials_source(target);
        plan.push(Phase::Preflight, Action::CheckCredentials { source });
        let repositories: Vec<String> =
            target.images.iter().map(|i| i.repository.clone()).collect();
        plan.push(
            Phase::Preflight,
            Action::CheckRepositories { repositories: repositories.clone(), create_missing: first },
        );
        plan.push(
            Phase::Preflight,
            Action::CheckCluster { cluster: target.cluster.clone(), create_missing: first },
        );
        plan.push(
            Phase::Preflight,
            Action::CheckService {
                cluster: target.cluster.clone(),
                service: target.service.clone(),
                create_missing: first,
                refuse_running: first && !opts.force,
                warn_running: first && opts.force,
            },
        );
        plan.check_deployments(target, opts.wait);

        plan.push(
            Phase::Entrypoint,
            Action::SetEntrypoint { file: file.clone(), mode, steps: steps.clone() },
        );
        if first {
            plan.push(Phase::Entrypoint, Action::CreateRepositories { repositories });
            plan.push(Phase::Entrypoint, Action::CreateCluster { cluster: target.cluster.clone() });
            plan.push(
                Phase::Entrypoint,
                Action::CreateLogGroups { file: target.task_definition.clone() },
            );
        }
        let registry = target.registry.clone().unwrap_or_else(|| REGISTRY.to_string());
        let config = opts.work.join("docker-config.PID.N");
        let login =
            opts.docker.login(&registry, USERNAME, crate::aws::ecr::Secret::new(""), &config);
        plan.push(Phase::Login, Action::Login { login });

        let build_phase = if opts.skip_tests { Phase::Build } else { Phase::TestsAndBuild };
        if !opts.skip_tests {
            plan.side_by_side(build_phase, "build", Action::Tests);
        }
        let tags = tags(opts.git);
        for image in &target.images {
            plan.side_by_side(build_phase, "build", build(image, opts, None));
        }
        for image in &target.images {
            plan.side_by_side(Phase::Push, "push", push(image, &registry, &tags, &config, opts));
        }
        plan.push(Phase::CheckLatest, check_latest(&target.images, opts));

        if first {
            let put_back = Action::SetEntrypoint { file: file.clone(), mode: Mode::Later, steps };
            plan.steps.push(Step {
                phase: Phase::Entrypoint,
                side_by_side: None,
                always: true,
                action: put_back,
            });
        }
        plan.roll_and_verify(target, mode);

        if first {
            // The first task has seeded once it is healthy; a replacement must not seed again.
            let rebuilt: Vec<&Image> =
                target.images.iter().filter(|i| file.starts_with(&i.context)).collect();
            for image in &rebuilt {
                let cache_from = image_id(&image.container);
                plan.push(Phase::Build, build(image, opts, Some(&cache_from)));
            }
            for image in &rebuilt {
                plan.push(Phase::Push, push(image, &registry, &tags, &config, opts));
            }
            if !rebuilt.is_empty() {
                let images: Vec<Image> = rebuilt.into_iter().cloned().collect();
                plan.push(Phase::CheckLatest, check_latest(&images, opts));
                plan.roll_and_verify(target, Mode::Later);
            }
        }
        plan
    }

    /// A rollback onto `revision` (an ARN), whose images are `digests` (container → digest).
    /// `mode` is the entrypoint mode its tags give, for the log check (none without one).
    pub fn rollback(
        target: &Target,
        revision: &str,
        digests: std::collections::BTreeMap<String, String>,
        mode: Option<Mode>,
        wait: bool,
    ) -> Plan {
        let mut plan = Plan { command: "rollback", mode: Mode::Later, steps: Vec::new() };
        plan.check_existing_service(target);
        plan.check_deployments(target, wait);
        plan.push(Phase::Register, Action::Select { revision: revision.to_string(), digests });
        // The revision's image holds its own entrypoint: the tree's last line may not be its.
        plan.roll_and_verify_only(target, mode.map(|m| (m, None)), None);
        plan
    }

    /// DescribeClusters and DescribeServices: both must exist (a rollback, an attach).
    fn check_existing_service(&mut self, target: &Target) {
        self.push(
            Phase::Preflight,
            Action::CheckCluster { cluster: target.cluster.clone(), create_missing: false },
        );
        self.push(
            Phase::Preflight,
            Action::CheckService {
                cluster: target.cluster.clone(),
                service: target.service.clone(),
                create_missing: false,
                refuse_running: false,
                warn_running: false,
            },
        );
    }

    /// Resumes an interrupted deploy of this tree: no build, no push, no new revision; the roll
    /// watches the deployment it left, then the new tasks are verified as after a deploy.
    pub fn attach(target: &Target, attach: &Attach) -> Plan {
        let command = crate::deploy::summary::command(attach.mode);
        let mut plan = Plan { command, mode: attach.mode, steps: Vec::new() };
        let source = credentials_source(target);
        plan.push(Phase::Preflight, Action::CheckCredentials { source });
        plan.check_existing_service(target);
        plan.push(
            Phase::Register,
            Action::Attach {
                deployment: attach.deployment.id.clone(),
                revision: attach.revision.clone(),
                git_commit: attach.git_commit.clone(),
                digests: attach.digests.clone(),
            },
        );
        // Same commit, clean: the tree's entrypoint is the one in the image.
        let logs = Some((attach.mode, Some(target.entrypoint.file.clone())));
        plan.roll_and_verify_only(target, logs, Some(&attach.deployment.id));
        plan
    }

    fn check_deployments(&mut self, target: &Target, wait: bool) {
        self.push(
            Phase::Preflight,
            Action::CheckDeployments {
                cluster: target.cluster.clone(),
                service: target.service.clone(),
                wait: wait.then_some(target.roll_timeout),
            },
        );
    }

    fn push(&mut self, phase: Phase, action: Action) {
        self.steps.push(Step { phase, side_by_side: None, always: false, action });
    }

    fn side_by_side(&mut self, phase: Phase, group: &'static str, action: Action) {
        self.steps.push(Step { phase, side_by_side: Some(group), always: false, action });
    }

    fn roll_and_verify(&mut self, target: &Target, mode: Mode) {
        self.push(Phase::Register, Action::Register { file: target.task_definition.clone(), mode });
        self.roll_and_verify_only(target, Some((mode, Some(target.entrypoint.file.clone()))), None);
    }

    /// `logs`: the entrypoint mode the new tasks' log must show, and the file its last line
    /// comes from.
    /// `attach`: the deployment the roll watches, instead of starting one.
    fn roll_and_verify_only(
        &mut self,
        target: &Target,
        logs: Option<(Mode, Option<PathBuf>)>,
        attach: Option<&str>,
    ) {
        self.push(
            Phase::Roll,
            Action::Roll {
                cluster: target.cluster.clone(),
                service: target.service.clone(),
                strategy: target.strategy,
                timeout: target.roll_timeout,
                attach: attach.map(String::from),
            },
        );
        if target.verify.url.contains(PUBLIC_IP) {
            self.push(Phase::Verify, Action::PublicIp);
        }
        self.push(
            Phase::Verify,
            Action::Verify {
                url: target.verify.url.clone(),
                expect_status: target.verify.expect_status,
                expect_message: target.verify.expect_message.clone(),
                timeout: target.verify.timeout,
            },
        );
        // The container that runs the entrypoint: the image whose build context holds it.
        let runs_entrypoint =
            target.images.iter().find(|i| target.entrypoint.file.starts_with(&i.context));
        if let (Some((mode, file)), Some(image)) = (logs, runs_entrypoint) {
            self.push(
                Phase::Verify,
                Action::CheckLogs {
                    container: image.container.clone(),
                    file,
                    mode,
                    steps: target.entrypoint.first_deploy_only.clone(),
                    timeout: LOG_CHECK_TIMEOUT,
                },
            );
        }
        self.push(Phase::Verify, Action::MarkVerified);
    }

    /// Each step as `--dry-run --json` and the run's `step_start` events show it.
    pub fn views(&self) -> Vec<StepView> {
        self.steps
            .iter()
            .enumerate()
            .map(|(index, step)| StepView {
                index,
                phase: step.phase.name().to_string(),
                side_by_side: step.side_by_side.map(String::from),
                always: step.always,
                text: step.action.to_string(),
            })
            .collect()
    }

    /// The dry run's text: one line per step, in order.
    pub fn lines(&self) -> Vec<String> {
        self.views()
            .into_iter()
            .map(|v| {
                let beside =
                    v.side_by_side.map(|g| format!(" (side by side: {g})")).unwrap_or_default();
                let always = if v.always { " (also after a failure)" } else { "" };
                format!("{:>2}. [{}]{beside}{always} {}", v.index + 1, v.phase, v.text)
            })
            .collect()
    }
}

fn credentials_source(target: &Target) -> String {
    match (&target.credentials, &target.profile) {
        (Credentials::Static { .. }, _) => "the target's fixed keys".to_string(),
        (Credentials::Chain, Some(profile)) => format!("profile {profile}"),
        (Credentials::Chain, None) => "the default chain".to_string(),
    }
}

fn tags(git: bool) -> Vec<String> {
    let mut tags = vec![LATEST.to_string()];
    if git {
        tags.push(GIT_TAG.to_string());
    }
    tags
}

fn build(image: &Image, opts: &PlanOptions, cache_from: Option<&str>) -> Action {
    let iidfile = iidfile(&opts.work, image);
    let spec = BuildSpec {
        iidfile: iidfile.clone(),
        cache_from: cache_from.map(String::from),
        dockerfile: image.dockerfile.clone(),
        context: image.context.clone(),
        build_args: image.build_args.clone(),
        cache: opts.cache,
    };
    let built = image_id(&image.container);
    let smoke = match opts.skip_smoke {
        true => Vec::new(),
        false => image
            .smoke
            .iter()
            .map(|command| opts.docker.smoke_run(&built, command, &image.smoke_env))
            .collect(),
    };
    let image = Box::new(image.clone());
    Action::Build { image, build: opts.docker.build(&spec), iidfile, smoke }
}

/// Where the build of `image` writes its image ID.
pub fn iidfile(work: &Path, image: &Image) -> PathBuf {
    work.join("build").join(format!("{}.iid", image.container))
}

/// For each tag: tag the built image by its ID, check right before the push that the tag
/// still names it, push. What is pushed is what was built, whatever else runs on the engine.
fn push(
    image: &Image,
    registry: &str,
    tags: &[String],
    config: &Path,
    opts: &PlanOptions,
) -> Action {
    let uri = format!("{registry}/{}", image.repository);
    let id = image_id(&image.container);
    let steps = tags
        .iter()
        .flat_map(|t| {
            let reference = format!("{uri}:{t}");
            [
                docker::Step::Run(opts.docker.tag(&id, &reference)),
                docker::Step::same_image(&opts.docker, &reference, &id),
                docker::Step::Run(opts.docker.push(&reference, config)),
            ]
        })
        .collect();
    Action::Push {
        container: image.container.clone(),
        repository: image.repository.clone(),
        uri,
        steps,
    }
}

fn check_latest(images: &[Image], opts: &PlanOptions) -> Action {
    Action::CheckLatest {
        repositories: images.iter().map(|i| i.repository.clone()).collect(),
        timeout: opts.settle_timeout,
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CheckEntrypoint { file, steps } => write!(
                f,
                "check: {} can be edited safely ({} each on a line of its own)",
                file.display(),
                steps.join(", ")
            ),
            Action::CheckBuildFiles { paths } => {
                let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(f, "check: these exist: {}", paths.join(", "))
            }
            Action::CheckDocker { version } => write!(f, "check: the Docker daemon answers: {version}"),
            Action::CheckCredentials { source } => write!(f, "check: AWS credentials resolve ({source})"),
            Action::CheckRepositories { repositories, create_missing } => write!(
                f,
                "check: ecr DescribeRepositories {}; {}",
                repositories.join(", "),
                if *create_missing {
                    "a missing one is created below"
                } else {
                    "stop if one is missing: `cargo xtask first-deploy` creates them"
                }
            ),
            Action::CheckCluster { cluster, create_missing } => write!(
                f,
                "check: ecs DescribeClusters {cluster}: ACTIVE{}",
                if *create_missing { ", or created below" } else { "" }
            ),
            Action::CreateCluster { cluster } => {
                write!(f, "ecs: CreateCluster {cluster} if missing")
            }
            Action::CreateLogGroups { file } => write!(
                f,
                "logs: CreateLogGroup for each awslogs-group of {} that DescribeLogGroups does not show",
                file.display()
            ),
            Action::CheckService { cluster, service, create_missing, refuse_running, warn_running } => {
                write!(f, "check: ecs DescribeServices {service} in cluster {cluster}: ACTIVE")?;
                if *create_missing {
                    f.write_str(", or missing and created below (its subnets and security groups: ec2 DescribeSubnets, DescribeSecurityGroups)")?;
                }
                if *refuse_running {
                    f.write_str("; it runs no task yet (else its database is likely seeded: use `deploy`, or --force)")?;
                }
                if *warn_running {
                    f.write_str("; tasks it runs are only warned of (--force)")?;
                }
                Ok(())
            }
            Action::SetEntrypoint { file, mode, steps } => write!(
                f,
                "entrypoint: set {} to {mode} mode ({} {})",
                file.display(),
                steps.join(", "),
                match mode {
                    Mode::First => "run",
                    Mode::Later => "commented out",
                }
            ),
            Action::CreateRepositories { repositories } => write!(
                f,
                "ecr: CreateRepository {} where missing (scanOnPush, tag mutability MUTABLE)",
                repositories.join(", ")
            ),
            Action::Login { login } => write!(
                f,
                "login: ecr GetAuthorizationToken (password decoded, never shown); {login}"
            ),
            Action::Tests => f.write_str(
                "tests: bundle exec rspec in rails/ (RAILS_ENV=test) against a throwaway MariaDB, or TEST_DATABASE_URL; a failure stops the builds and pushes nothing",
            ),
            Action::Build { image, build, smoke, .. } => {
                write!(f, "build [{}]: {build}", image.container)?;
                if !smoke.is_empty() {
                    let runs: Vec<String> = smoke.iter().map(ToString::to_string).collect();
                    write!(f, "; smoke boot (before any push; a failure exits 5): {}", runs.join("; "))?;
                }
                Ok(())
            }
            Action::Push { container, steps, .. } => {
                let steps: Vec<String> = steps.iter().map(ToString::to_string).collect();
                write!(f, "push [{container}]: {}", steps.join("; "))
            }
            Action::CheckLatest { repositories, timeout } => {
                let latest: Vec<String> = repositories.iter().map(|r| format!("{r}:{LATEST}")).collect();
                write!(
                    f,
                    "check: ecr DescribeImages {} until each is the pushed digest, pushed after the build started (up to {})",
                    latest.join(", "),
                    human_duration(*timeout)
                )
            }
            Action::Register { file, mode } => write!(
                f,
                "register: {} with {{registry}}, {{account_id}} (sts GetCallerIdentity), {{region}} filled, each built image as <repository>@<pushed digest>, tagged with the commit, the digests, {mode} mode and the xtask version; its drift from the service's revision shown; ecs RegisterTaskDefinition → {TASK_DEFINITION}",
                file.display()
            ),
            Action::Roll { service, timeout, attach: Some(deployment), .. } => write!(
                f,
                "roll: watch deployment {deployment} of {service} (no UpdateService: it is under way); wait (up to {}) for its task(s) RUNNING on {TASK_DEFINITION}, every essential container HEALTHY, running the revision's digests, the deployment COMPLETED, the old task(s) gone",
                human_duration(*timeout)
            ),
            Action::Roll { cluster, service, strategy, timeout, attach: None } => {
                write!(
                    f,
                    "roll: ecs UpdateService --cluster {cluster} --service {service} --task-definition {TASK_DEFINITION} (CreateService when it is missing)"
                )?;
                if *strategy == RollStrategy::StopTasks {
                    f.write_str(", then ecs StopTask for each task it ran (downtime until the new one is healthy)")?;
                }
                write!(
                    f,
                    "; wait (up to {}) for the new task(s) RUNNING on {TASK_DEFINITION}, every essential container HEALTHY, running the pushed digests, the deployment COMPLETED, the old task(s) gone",
                    human_duration(*timeout)
                )
            }
            Action::Attach { deployment, revision, git_commit, digests } => {
                let images: Vec<String> = digests.iter().map(|(c, d)| format!("{c} {d}")).collect();
                write!(
                    f,
                    "attach: deployment {deployment} of {revision} ({TASK_DEFINITION}), left by an interrupted deploy of this tree ({git_commit}); nothing is built, pushed or registered; images by digest: {}",
                    images.join(", ")
                )
            }
            Action::CheckDeployments { cluster, service, wait } => {
                write!(
                    f,
                    "check: ecs DescribeServices {service} in cluster {cluster}: no deployment IN_PROGRESS (rolloutState) that this deploy did not start (DescribeTaskDefinition --include TAGS: its revision names another commit, a dirty tree or no xtask tags); "
                )?;
                match wait {
                    Some(wait) => write!(f, "else wait for it to end (--wait, up to {})", human_duration(*wait)),
                    None => f.write_str("else stop (exit 3) naming it and how to follow it (--wait waits for it)"),
                }
            }
            Action::Select { revision, digests } => {
                let images: Vec<String> = digests.iter().map(|(c, d)| format!("{c} {d}")).collect();
                write!(f, "rollback: onto {revision} ({TASK_DEFINITION}), images by digest: {}", images.join(", "))
            }
            Action::CheckLogs { container, file, mode, steps, timeout } => {
                let expect = crate::deploy::logcheck::Expectation::new(*mode, steps, None);
                write!(
                    f,
                    "verify: logs GetLogEvents of each new task's {container} stream (the revision's awslogs group, <prefix>/{container}/<task id>) until it shows the entrypoint's {mode} mode: {}; complete at {} (up to {})",
                    expect.describe(),
                    match file {
                        Some(file) => format!("the last `echo` of {}", file.display()),
                        None => "a line after the last step".to_string(),
                    },
                    human_duration(*timeout)
                )
            }
            Action::MarkVerified => write!(
                f,
                "verify: ecs TagResource {TASK_DEFINITION} xtask:verified=<now> (a rollback goes back to a verified revision)"
            ),
            Action::PublicIp => f.write_str(
                "verify: the new task's public IP from its network interface (ec2 DescribeNetworkInterfaces)",
            ),
            Action::Verify { url, expect_status, expect_message, timeout } => write!(
                f,
                "verify: GET {url} until {expect_status}{} (up to {})",
                expect_message.as_deref().map(|m| format!(" with message {m:?}")).unwrap_or_default(),
                human_duration(*timeout)
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
