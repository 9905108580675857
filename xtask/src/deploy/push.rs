//! Step 2 of the chapter as two calls: [`preflight`] (changes nothing) and [`build_and_push`]:
//! log in to ECR with the password on stdin, build every image without cache at the same
//! time, push them at the same time, then prove through DescribeImages that `latest` in each
//! repository is exactly what was pushed, pushed after the build started.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::event::{Detail, Event, PushedView};
use anyhow::{anyhow, Context, Result};
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use tokio::runtime::Runtime;
use xshell::{cmd, Shell};

use crate::aws::ecr::{self, Repository, TaggedImage};
use crate::aws::Aws;
use crate::deploy::target::{Image, Target};
use crate::docker::{self, BuildSpec, Docker, DockerConfigDir, Job, JobOutput, JobStatus, Step};
use crate::failure::Failure;
use crate::report::Reporter;

/// The tag the task definition follows (it names the image without a tag).
pub const LATEST: &str = "latest";

/// How far the registry's clock may lag behind ours when its push time is compared with the
/// build's start (moto also rounds push times down to the second).
const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// ECR is asked again after 100 ms, then twice as long each time, up to 1 s.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(100);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Options {
    /// Allow Docker's layer cache (`--cache`); off by default so code changes reach the image.
    pub cache: bool,
    /// `first-deploy` creates missing repositories; `deploy` stops before building instead.
    pub create_repositories: bool,
    pub docker: Docker,
    /// How long `latest` in ECR may take to show the pushed digest (ECR and the sandbox's
    /// mirror are eventually consistent).
    pub settle_timeout: Duration,
}

impl Options {
    pub fn new(create_repositories: bool) -> Options {
        Options {
            cache: false,
            create_repositories,
            docker: Docker::default(),
            settle_timeout: Duration::from_secs(30),
        }
    }
}

/// One image, pushed and checked in ECR.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedImage {
    /// The task definition's container that runs it (`rails`).
    pub container: String,
    /// The ECR repository name (`zenn-clone-rails`).
    pub repository: String,
    /// The repository URI pushed to, without tag.
    pub uri: String,
    /// `sha256:…`, the same for every tag pushed.
    pub digest: String,
    /// The tags pushed (`latest`, `git-<sha>[-dirty]`).
    pub tags: Vec<String>,
    /// When ECR says `latest` was pushed.
    pub pushed_at: SystemTime,
    /// The local image ID (`sha256:…` of its config) the build wrote.
    pub image_id: String,
}

/// What preflight found: the checks passed and this is what will be built and where.
#[derive(Debug, Clone)]
pub struct Ready {
    images: Vec<Planned>,
    /// The target's registry (the sandbox's), instead of the repositories' own host.
    registry: Option<String>,
    opts: Options,
}

#[derive(Debug, Clone)]
struct Planned {
    image: Image,
    /// `None`: missing, to be created (first deploy only).
    repository: Option<Repository>,
    /// Build with the layers of this image only (`--cache-from`), not `--no-cache`.
    cache_from: Option<String>,
}

impl Ready {
    /// Repositories that `build_and_push` will create.
    pub fn missing_repositories(&self) -> Vec<&str> {
        self.images
            .iter()
            .filter(|p| p.repository.is_none())
            .map(|p| p.image.repository.as_str())
            .collect()
    }

    /// The images of `containers` again, into the repositories they were just pushed to,
    /// each built on the layers of its last build (`--cache-from`): its inputs changed only
    /// where the tree changed since, and that build was made moments ago without cache.
    pub fn rebuild(&self, pushed: &[PushedImage], containers: &[&str]) -> Ready {
        let images = self
            .images
            .iter()
            .filter(|p| containers.contains(&p.image.container.as_str()))
            .filter_map(|p| {
                let done = pushed.iter().find(|d| d.container == p.image.container)?;
                Some(Planned {
                    image: p.image.clone(),
                    repository: Some(Repository {
                        name: done.repository.clone(),
                        uri: done.uri.clone(),
                    }),
                    cache_from: Some(done.image_id.clone()),
                })
            })
            .collect();
        Ready { images, ..self.clone() }
    }
}

/// Checks everything the build and push need, changing nothing: the Dockerfiles exist, the
/// Docker daemon answers, AWS credentials resolve, the repositories exist (or, on a first
/// deploy, may be created). Every failure is `Failure::Preflight`.
pub fn preflight(
    sh: &Shell,
    report: &Reporter,
    rt: &Runtime,
    aws: &Aws,
    target: &Target,
    opts: Options,
) -> Result<Ready> {
    check_build_files(sh, target)?;
    let version = docker::server_version(sh, &opts.docker)?;
    report.info(format!("docker daemon {version} answers"));
    rt.block_on(aws.check_credentials(target))?;

    let mut images = Vec::new();
    for image in &target.images {
        let repository = rt
            .block_on(ecr::describe_repository(&aws.ecr, &image.repository))
            .context("cannot look up the ECR repositories: check that the credentials allow ecr:DescribeRepositories")
            .context(Failure::Preflight)?;
        images.push(Planned { image: image.clone(), repository, cache_from: None });
    }
    let ready = Ready { images, registry: target.registry.clone(), opts };
    let missing = ready.missing_repositories();
    if !missing.is_empty() {
        if !ready.opts.create_repositories {
            return Err(anyhow!(
                "ECR repositories missing in {}: {}: run `cargo xtask first-deploy` to create them",
                target.region,
                missing.join(", ")
            )
            .context(Failure::Preflight));
        }
        report.info(format!("ECR repositories to create: {}", missing.join(", ")));
    }
    Ok(ready)
}

/// Every Dockerfile and build context of the target exists.
fn check_build_files(sh: &Shell, target: &Target) -> Result<()> {
    let root = sh.current_dir();
    let missing: Vec<String> = target
        .images
        .iter()
        .flat_map(|i| [(i, &i.dockerfile, "dockerfile"), (i, &i.context, "context")])
        .filter(|(_, path, _)| !root.join(path).exists())
        .map(|(i, path, key)| format!("{} (image `{}`, key `{key}`)", path.display(), i.container))
        .collect();
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

/// `git-<short sha>`, with `-dirty` when the images' inputs have uncommitted changes (the
/// entrypoint edit included: it is read right before the build).
fn git_tag(sh: &Shell, images: &[Image], report: &Reporter) -> Result<Option<String>> {
    let Ok(sha) = cmd!(sh, "git rev-parse --short HEAD").quiet().ignore_stderr().read() else {
        report.warn("not a git checkout: images are tagged `latest` only, with no commit tag");
        return Ok(None);
    };
    let paths = build_inputs(images);
    let status = cmd!(sh, "git status --porcelain -- {paths...}")
        .quiet()
        .read()
        .context("`git status` failed: check the repository with `git status`")
        .context(Failure::Preflight)?;
    Ok(Some(git_tag_name(&sha, !status.trim().is_empty())))
}

/// The files that go into the images: a change elsewhere does not make them dirty.
fn build_inputs(images: &[Image]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> =
        images.iter().flat_map(|i| [i.context.clone(), i.dockerfile.clone()]).collect();
    paths.sort();
    paths.dedup();
    paths
}

fn git_tag_name(short_sha: &str, dirty: bool) -> String {
    format!("git-{}{}", short_sha.trim(), if dirty { "-dirty" } else { "" })
}

/// The image's repository URI without tag: the target's registry when it has one (the
/// sandbox's), otherwise the repository's own (`ACCOUNT.dkr.ecr.<region>.amazonaws.com/…`).
fn image_uri(registry: Option<&str>, repository: &Repository) -> String {
    match registry {
        Some(registry) => format!("{registry}/{}", repository.name),
        None => repository.uri.clone(),
    }
}

fn tags(git_tag: Option<&str>) -> Vec<String> {
    std::iter::once(LATEST).chain(git_tag).map(String::from).collect()
}

/// Where the build of `image` writes its image ID, under the xtask's `work` directory.
fn iidfile(work: &Path, image: &Image) -> PathBuf {
    work.join("build").join(format!("{}.iid", image.container))
}

fn build_spec(work: &Path, image: &Image, cache: bool, cache_from: Option<&str>) -> BuildSpec {
    BuildSpec {
        iidfile: iidfile(work, image),
        cache_from: cache_from.map(String::from),
        dockerfile: image.dockerfile.clone(),
        context: image.context.clone(),
        build_args: image.build_args.clone(),
        cache,
    }
}

/// Creates missing repositories, logs in (before building, so a login problem shows before
/// a long build), builds every image (at the same time), pushes them (at the same time) and
/// checks `latest` in ECR. Nothing is pushed unless every build succeeded: `latest` is what
/// a restarted task pulls, so one image must not move without the other. Stops at the first
/// failing step: a build failure is `Failure::Build`, anything else `Failure::Push`.
pub fn build_and_push(
    sh: &Shell,
    report: &Reporter,
    rt: &Runtime,
    aws: &Aws,
    ready: Ready,
) -> Result<Vec<PushedImage>> {
    let Ready { images, registry, opts } = ready;
    let sources: Vec<Image> = images.iter().map(|p| p.image.clone()).collect();
    let git_tag = git_tag(sh, &sources, report)?;
    let tags = tags(git_tag.as_deref());

    let mut targets = Vec::new();
    for planned in images {
        let repository = match planned.repository {
            Some(repository) => repository,
            None => {
                let name = &planned.image.repository;
                let created = rt
                    .block_on(ecr::create_repository(&aws.ecr, name))
                    .context("check that the credentials allow ecr:CreateRepository")
                    .context(Failure::Push)?;
                report.info(format!(
                    "created ECR repository {name} (scan on push, mutable tags): {}",
                    created.uri
                ));
                created
            }
        };
        let uri = image_uri(registry.as_deref(), &repository);
        targets.push((planned.image, repository, uri, planned.cache_from));
    }

    let phase = report.phase("log in to the registry");
    let auth = rt
        .block_on(ecr::authorization(&aws.ecr))
        .context("cannot get a registry password from ECR")
        .context(Failure::Push)?;
    let login_registry = registry.clone().unwrap_or(auth.registry);
    let config = DockerConfigDir::create(&crate::project::target_dir().join("xtask"))
        .context("cannot make a private docker config directory for the ECR login")
        .context(Failure::Push)?;
    let login = opts.docker.login(&login_registry, &auth.username, auth.password, config.path());
    report.info(format!("$ {login}"));
    login
        .run_captured(sh)
        .with_context(|| format!("docker login to {login_registry} failed"))
        .context(Failure::Push)?;
    phase.finish();

    let build_started = SystemTime::now();
    let phase = report.phase("build");
    let work = crate::project::target_dir().join("xtask");
    let mut jobs = Vec::new();
    for (image, _, _, cache_from) in &targets {
        let spec = build_spec(&work, image, opts.cache, cache_from.as_deref());
        prepare_iidfile(&spec.iidfile).context(Failure::Build)?;
        jobs.push(Job {
            label: image.container.clone(),
            steps: vec![Step::Run(opts.docker.build(&spec))],
        });
    }
    let outputs = docker::run_parallel(sh, report, &jobs);
    job_failures(&outputs, "build", "nothing was pushed: fix the cause above and deploy again")
        .context(Failure::Build)?;
    let mut built = Vec::new();
    for (image, _, uri, _) in &targets {
        let id = read_iidfile(&iidfile(&work, image)).context(Failure::Build)?;
        report.emit(Event::ImageBuilt {
            container: image.container.clone(),
            uri: uri.clone(),
            image_id: id.clone(),
            tags: tags.clone(),
        });
        built.push(id);
    }
    phase.finish();

    let phase = report.phase("push");
    let jobs: Vec<Job> = targets
        .iter()
        .zip(&built)
        .map(|((image, _, uri, _), id)| Job {
            label: image.container.clone(),
            steps: push_steps(&opts.docker, uri, id, &tags, config.path()),
        })
        .collect();
    let outputs = docker::run_parallel(sh, report, &jobs);
    drop(config);
    job_failures(
        &outputs,
        "push",
        "check that the registry answers and deploy again (every image is rebuilt and pushed)",
    )
    .context(Failure::Push)?;
    let mut pushed = Vec::new();
    for (((image, repository, uri, _), output), id) in targets.iter().zip(&outputs).zip(built) {
        let digest = pushed_digest(sh, &opts.docker, uri, output, &tags).context(Failure::Push)?;
        report.info(format!("pushed {uri}:{LATEST} {digest}"));
        pushed.push(PushedImage {
            container: image.container.clone(),
            repository: repository.name.clone(),
            uri: uri.clone(),
            digest,
            tags: tags.clone(),
            pushed_at: build_started,
            image_id: id,
        });
    }
    phase.finish();

    let phase = report.phase("check latest in ECR");
    let found = wait_for_latest(report, rt, aws, &pushed, build_started - CLOCK_SKEW, &opts)
        .context(Failure::Push)?;
    for (image, found) in pushed.iter_mut().zip(found) {
        image.pushed_at = found.pushed_at.unwrap_or(build_started);
        report.info(format!(
            "ECR {}:{LATEST} = {}, pushed at {}",
            image.repository,
            image.digest,
            timestamp(image.pushed_at)
        ));
        report.emit(Event::ImagePushed(PushedView {
            container: image.container.clone(),
            repository: image.repository.clone(),
            uri: image.uri.clone(),
            digest: image.digest.clone(),
            tags: image.tags.clone(),
            pushed_at: timestamp(image.pushed_at),
        }));
    }
    phase.finish();
    Ok(pushed)
}

/// For each tag: tag the built image by its ID, check right before the push that the tag still
/// names it, push. What is pushed is what was built, whatever else runs on the engine.
fn push_steps(docker: &Docker, uri: &str, id: &str, tags: &[String], config: &Path) -> Vec<Step> {
    tags.iter()
        .flat_map(|t| {
            let reference = format!("{uri}:{t}");
            [
                Step::Run(docker.tag(id, &reference)),
                Step::same_image(docker, &reference, id),
                Step::Run(docker.push(&reference, config)),
            ]
        })
        .collect()
}

/// A stale ID file of an earlier build must not stand for this one.
fn prepare_iidfile(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow!("cannot remove the old image ID file {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The image ID (`sha256:…`) a build wrote.
fn read_iidfile(path: &Path) -> Result<String> {
    let id = std::fs::read_to_string(path)
        .with_context(|| format!("the build wrote no image ID to {}", path.display()))?;
    let id = id.trim();
    if !docker::is_digest(id) {
        return Err(anyhow!("{} holds no image ID: {id:?}", path.display()));
    }
    Ok(id.to_string())
}

/// An error naming every failed job with the tail of its output, the jobs stopped and the
/// jobs that finished (a finished push has moved `latest`), then `next`; `Ok` when all succeeded.
fn job_failures(outputs: &[JobOutput], step: &str, next: &str) -> Result<()> {
    let mut failed = Vec::new();
    let mut stopped = Vec::new();
    let mut finished = Vec::new();
    for output in outputs {
        let name = format!("`{}`", output.label);
        match &output.status {
            JobStatus::Succeeded => finished.push(name),
            JobStatus::Stopped => stopped.push(name),
            JobStatus::Failed { command, reason } => failed.push(format!(
                "image {name}: `{command}` {reason}\nlast lines of its output:\n{}",
                output.tail(docker::TAIL_LINES)
            )),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    let mut msg = failed.join("\n\n");
    if !stopped.is_empty() {
        msg.push_str(&format!("\n{} stopped: {step} cancelled", stopped.join(", ")));
    }
    if !finished.is_empty() {
        msg.push_str(&format!("\n{} finished its {step}", finished.join(", ")));
    }
    msg.push_str(&format!("\n{next}"));
    Err(anyhow!(msg))
}

/// The digest of the push of `latest`, from its output or else from `docker image inspect`;
/// every other tag must have been pushed with the same digest.
fn pushed_digest(
    sh: &Shell,
    docker: &Docker,
    uri: &str,
    output: &JobOutput,
    tags: &[String],
) -> Result<String> {
    let digest = match docker::pushed_digest(&output.lines, LATEST) {
        Some(digest) => digest,
        None => {
            let json = docker.repo_digests(&format!("{uri}:{LATEST}")).read(sh)?;
            docker::repo_digest(&json, uri).with_context(|| {
                format!("`docker push {uri}:{LATEST}` reported no digest and `docker image inspect` shows none for {uri}")
            })?
        }
    };
    for tag in tags.iter().filter(|t| *t != LATEST) {
        if let Some(other) = docker::pushed_digest(&output.lines, tag) {
            if other != digest {
                return Err(anyhow!(
                    "{uri}:{tag} was pushed as {other} but {uri}:{LATEST} as {digest}: they come from one build, so push again"
                ));
            }
        }
    }
    Ok(digest)
}

/// What DescribeImages shows for `latest`, compared with what was pushed.
#[derive(Debug, Clone, PartialEq)]
enum LatestCheck {
    /// `latest` is the pushed digest, pushed after the build started.
    Matches,
    /// `latest` is the pushed digest but was pushed earlier: an unchanged image (cache on).
    Unchanged,
    /// Not what was pushed (yet).
    Pending(String),
}

fn check_latest(
    pushed: &str,
    found: Option<&TaggedImage>,
    not_before: SystemTime,
    cache: bool,
) -> LatestCheck {
    let Some(found) = found else {
        return LatestCheck::Pending("ECR has no image tagged `latest`".into());
    };
    if found.digest != pushed {
        return LatestCheck::Pending(format!(
            "`latest` in ECR is {}, but the push gave {pushed}",
            found.digest
        ));
    }
    match found.pushed_at {
        Some(at) if at >= not_before => LatestCheck::Matches,
        // An identical image keeps the push time of its first push.
        Some(_) if cache => LatestCheck::Unchanged,
        Some(at) => LatestCheck::Pending(format!(
            "`latest` in ECR is {pushed} but was pushed at {}, before this build started",
            timestamp(at)
        )),
        None => {
            LatestCheck::Pending(format!("`latest` in ECR is {pushed} but ECR gives no push time"))
        }
    }
}

/// Polls DescribeImages until `latest` in every repository is the pushed digest, or
/// `settle_timeout` passes; returns what ECR shows, in the order of `pushed`.
fn wait_for_latest(
    report: &Reporter,
    rt: &Runtime,
    aws: &Aws,
    pushed: &[PushedImage],
    not_before: SystemTime,
    opts: &Options,
) -> Result<Vec<TaggedImage>> {
    let started = Instant::now();
    let mut interval = FIRST_POLL_INTERVAL;
    let mut found: Vec<Option<TaggedImage>> = vec![None; pushed.len()];
    loop {
        let mut pending = Vec::new();
        for (image, slot) in pushed.iter().zip(found.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let shown = rt.block_on(ecr::tagged_image(&aws.ecr, &image.repository, LATEST))?;
            match (check_latest(&image.digest, shown.as_ref(), not_before, opts.cache), shown) {
                (LatestCheck::Matches, Some(shown)) => *slot = Some(shown),
                (LatestCheck::Unchanged, Some(shown)) => {
                    report.info(format!(
                        "{}:{LATEST} is unchanged since its first push (--cache)",
                        image.repository
                    ));
                    *slot = Some(shown);
                }
                (LatestCheck::Pending(why), _) => {
                    pending.push(format!("{}: {why}", image.repository))
                }
                (_, None) => {
                    pending.push(format!("{}: ECR has no image tagged `latest`", image.repository))
                }
            }
        }
        if pending.is_empty() {
            return Ok(found.into_iter().flatten().collect());
        }
        let waited = crate::report::human_duration(started.elapsed());
        if started.elapsed() >= opts.settle_timeout {
            return Err(anyhow!(
                "ECR does not show the push after {waited}: {}: push again, or look for another \
                 push to the same repository",
                pending.join("; ")
            ));
        }
        report.progress(
            "ecr-latest",
            format!(
                "    waiting for ECR to show the pushed `latest` ({waited}): {}",
                pending.join("; ")
            ),
            Some(Detail::EcrLatest { pending: pending.clone() }),
        );
        std::thread::sleep(interval);
        interval = (interval * 2).min(MAX_POLL_INTERVAL);
    }
}

fn timestamp(t: SystemTime) -> String {
    DateTime::from(t).fmt(Format::DateTime).unwrap_or_else(|_| format!("{t:?}"))
}

/// Every step and command `build_and_push` would run, the password masked. Reads the commit
/// for the tag; changes nothing, calls no AWS API.
pub fn plan(sh: &Shell, target: &Target, opts: &Options) -> Vec<String> {
    let sha = cmd!(sh, "git rev-parse --short HEAD").quiet().ignore_stderr().read().ok();
    let dirty = sha.is_some() && {
        let paths = build_inputs(&target.images);
        cmd!(sh, "git status --porcelain -- {paths...}")
            .quiet()
            .read()
            .is_ok_and(|s| !s.trim().is_empty())
    };
    let git_tag = sha.map(|sha| git_tag_name(&sha, dirty));
    plan_lines(target, opts, git_tag.as_deref(), &crate::project::target_dir().join("xtask"))
}

fn plan_lines(
    target: &Target,
    opts: &Options,
    git_tag: Option<&str>,
    config_parent: &Path,
) -> Vec<String> {
    let docker = &opts.docker;
    let registry = target
        .registry
        .clone()
        .unwrap_or_else(|| format!("ACCOUNT.dkr.ecr.{}.amazonaws.com", target.region));
    let config = config_parent.join("docker-config.PID.N");
    let tags = tags(git_tag);
    let files: Vec<String> = target
        .images
        .iter()
        .flat_map(|i| [i.dockerfile.display().to_string(), i.context.display().to_string()])
        .collect();
    let mut lines = vec![
        format!("check: the Docker daemon answers: {}", docker.version()),
        format!("check: these exist: {}", files.join(", ")),
        format!(
            "check: AWS credentials resolve ({})",
            target.profile.as_ref().map_or("default chain".into(), |p| format!("profile {p}"))
        ),
    ];
    let if_missing = if opts.create_repositories {
        "CreateRepository (scanOnPush, tag mutability MUTABLE) if missing"
    } else {
        "stop if missing: `cargo xtask first-deploy` creates it"
    };
    for image in &target.images {
        lines.push(format!("ecr: DescribeRepositories {}; {if_missing}", image.repository));
    }
    let uris: Vec<String> = target
        .images
        .iter()
        .map(|i| {
            let repo = Repository { name: i.repository.clone(), uri: String::new() };
            image_uri(Some(&registry), &repo)
        })
        .collect();
    lines.push("ecr: GetAuthorizationToken (password decoded, never shown)".into());
    let login = docker.login(&registry, "AWS", ecr::Secret::new(""), &config);
    lines.push(format!("login: {login}"));
    for image in &target.images {
        let build = docker.build(&build_spec(config_parent, image, opts.cache, None));
        lines.push(format!("build [{}] (all images at once): {build}", image.container));
    }
    for (image, uri) in target.images.iter().zip(&uris) {
        let id = format!("<image ID from {}>", iidfile(config_parent, image).display());
        for step in push_steps(docker, uri, &id, &tags, &config) {
            lines.push(format!("push [{}] (all images at once): {step}", image.container));
        }
    }
    for image in &target.images {
        lines.push(format!(
            "ecr: DescribeImages {}:{LATEST} until its digest is the pushed one and its push \
             time after the build started (up to {})",
            image.repository,
            crate::report::human_duration(opts.settle_timeout)
        ));
    }
    lines
}

#[cfg(test)]
mod live;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::target::{DeployFile, DeployFlags, TargetFlags};

    fn sandbox_target() -> Target {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let overlay = crate::sandbox::overlay(5010, 5011);
        let file = DeployFile::load(root).unwrap();
        file.resolve(&TargetFlags::default(), &DeployFlags::default(), &|_| None, Some(&overlay))
            .unwrap()
    }

    fn production_target() -> Target {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let flags = TargetFlags { target: Some("production".into()), ..TargetFlags::default() };
        DeployFile::load(root)
            .unwrap()
            .resolve(&flags, &DeployFlags::default(), &|_| None, None)
            .unwrap()
    }

    #[test]
    fn plan_lists_every_command_for_the_sandbox() {
        let lines = plan_lines(
            &sandbox_target(),
            &Options::new(false),
            Some("git-0123abc"),
            Path::new("/t"),
        );
        let expected = [
            "check: the Docker daemon answers: docker version --format '{{.Server.Version}}'",
            "check: these exist: nginx/Dockerfile.prod, nginx, rails/Dockerfile.prod, rails",
            "check: AWS credentials resolve (default chain)",
            "ecr: DescribeRepositories zenn-clone-nginx; stop if missing: `cargo xtask first-deploy` creates it",
            "ecr: DescribeRepositories zenn-clone-rails; stop if missing: `cargo xtask first-deploy` creates it",
            "ecr: GetAuthorizationToken (password decoded, never shown)",
            "login: DOCKER_CONFIG=/t/docker-config.PID.N docker login --username AWS --password-stdin 127.0.0.1:5011 < (password on stdin: ****)",
            "build [nginx] (all images at once): docker build --no-cache --iidfile /t/build/nginx.iid -f nginx/Dockerfile.prod --build-arg NGINX_IMAGE=zenn-sandbox/nginx:1.22 nginx",
            "build [rails] (all images at once): docker build --no-cache --iidfile /t/build/rails.iid -f rails/Dockerfile.prod --build-arg RUBY_IMAGE=zenn-sandbox/ruby:3.1 rails",
            "push [nginx] (all images at once): docker tag '<image ID from /t/build/nginx.iid>' 127.0.0.1:5011/zenn-clone-nginx:latest",
            "push [nginx] (all images at once): docker image inspect --format '{{.Id}}' 127.0.0.1:5011/zenn-clone-nginx:latest  # must print <image ID from /t/build/nginx.iid>, or 127.0.0.1:5011/zenn-clone-nginx:latest moved: stop",
            "push [nginx] (all images at once): DOCKER_CONFIG=/t/docker-config.PID.N docker push 127.0.0.1:5011/zenn-clone-nginx:latest",
            "push [nginx] (all images at once): docker tag '<image ID from /t/build/nginx.iid>' 127.0.0.1:5011/zenn-clone-nginx:git-0123abc",
            "push [nginx] (all images at once): docker image inspect --format '{{.Id}}' 127.0.0.1:5011/zenn-clone-nginx:git-0123abc  # must print <image ID from /t/build/nginx.iid>, or 127.0.0.1:5011/zenn-clone-nginx:git-0123abc moved: stop",
            "push [nginx] (all images at once): DOCKER_CONFIG=/t/docker-config.PID.N docker push 127.0.0.1:5011/zenn-clone-nginx:git-0123abc",
            "push [rails] (all images at once): docker tag '<image ID from /t/build/rails.iid>' 127.0.0.1:5011/zenn-clone-rails:latest",
            "push [rails] (all images at once): docker image inspect --format '{{.Id}}' 127.0.0.1:5011/zenn-clone-rails:latest  # must print <image ID from /t/build/rails.iid>, or 127.0.0.1:5011/zenn-clone-rails:latest moved: stop",
            "push [rails] (all images at once): DOCKER_CONFIG=/t/docker-config.PID.N docker push 127.0.0.1:5011/zenn-clone-rails:latest",
            "push [rails] (all images at once): docker tag '<image ID from /t/build/rails.iid>' 127.0.0.1:5011/zenn-clone-rails:git-0123abc",
            "push [rails] (all images at once): docker image inspect --format '{{.Id}}' 127.0.0.1:5011/zenn-clone-rails:git-0123abc  # must print <image ID from /t/build/rails.iid>, or 127.0.0.1:5011/zenn-clone-rails:git-0123abc moved: stop",
            "push [rails] (all images at once): DOCKER_CONFIG=/t/docker-config.PID.N docker push 127.0.0.1:5011/zenn-clone-rails:git-0123abc",
            "ecr: DescribeImages zenn-clone-nginx:latest until its digest is the pushed one and its push time after the build started (up to 30s)",
            "ecr: DescribeImages zenn-clone-rails:latest until its digest is the pushed one and its push time after the build started (up to 30s)",
        ];
        assert_eq!(lines, expected);
    }

    #[test]
    fn plan_for_production_uses_the_account_registry_and_cache_flag() {
        let opts = Options { cache: true, ..Options::new(true) };
        let lines = plan_lines(&production_target(), &opts, None, Path::new("/t")).join("\n");
        assert!(
            lines.contains(
                "docker build --iidfile /t/build/rails.iid -f rails/Dockerfile.prod rails"
            ),
            "{lines}"
        );
        assert!(
            lines.contains(
                "docker push ACCOUNT.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails:latest"
            ),
            "{lines}"
        );
        assert!(
            lines.contains("CreateRepository (scanOnPush, tag mutability MUTABLE) if missing"),
            "{lines}"
        );
        assert!(!lines.contains("git-"), "no commit tag outside git: {lines}");
    }

    #[test]
    fn git_tag_names() {
        assert_eq!(git_tag_name("0123abc\n", false), "git-0123abc");
        assert_eq!(git_tag_name("0123abc", true), "git-0123abc-dirty");
        assert_eq!(tags(Some("git-0123abc")), ["latest", "git-0123abc"]);
        assert_eq!(tags(None), ["latest"]);
    }

    #[test]
    fn uri_follows_the_target_registry() {
        let repo = Repository {
            name: "zenn-clone-rails".into(),
            uri: "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails".into(),
        };
        assert_eq!(image_uri(None, &repo), repo.uri);
        assert_eq!(image_uri(Some("127.0.0.1:5011"), &repo), "127.0.0.1:5011/zenn-clone-rails");
    }

    const DIGEST: &str = "sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483";
    const OTHER: &str = "sha256:ea3783c4a7ed21f4d1f9173916aaec45406d0aea015b7735cc419234b467b219";

    fn image(digest: &str, pushed_at: Option<SystemTime>) -> TaggedImage {
        TaggedImage { digest: digest.into(), tags: vec!["latest".into()], pushed_at }
    }

    #[test]
    fn latest_must_be_the_pushed_digest_pushed_after_the_build() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let after = start + Duration::from_secs(5);
        let before = start - Duration::from_secs(3600);
        assert_eq!(
            check_latest(DIGEST, Some(&image(DIGEST, Some(after))), start, false),
            LatestCheck::Matches
        );
        assert_eq!(
            check_latest(DIGEST, Some(&image(DIGEST, Some(start))), start, false),
            LatestCheck::Matches
        );

        let LatestCheck::Pending(why) =
            check_latest(DIGEST, Some(&image(OTHER, Some(after))), start, false)
        else {
            panic!("another digest must not match")
        };
        assert!(why.contains(DIGEST) && why.contains(OTHER), "both digests shown: {why}");

        let LatestCheck::Pending(why) =
            check_latest(DIGEST, Some(&image(DIGEST, Some(before))), start, false)
        else {
            panic!("an old push must not match without cache")
        };
        assert!(why.contains("before this build started"), "{why}");
        assert_eq!(
            check_latest(DIGEST, Some(&image(DIGEST, Some(before))), start, true),
            LatestCheck::Unchanged
        );

        assert!(matches!(check_latest(DIGEST, None, start, false), LatestCheck::Pending(_)));
        assert!(matches!(
            check_latest(DIGEST, Some(&image(DIGEST, None)), start, false),
            LatestCheck::Pending(_)
        ));
    }

    fn output(label: &str, status: JobStatus, lines: &[&str]) -> JobOutput {
        JobOutput {
            label: label.into(),
            status,
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn failures_name_the_image_and_show_the_tail() {
        let outputs = [
            output(
                "rails",
                JobStatus::Failed {
                    command: "docker build --no-cache -t r:latest -f rails/Dockerfile.prod rails"
                        .into(),
                    reason: "exited with exit status: 1".into(),
                },
                &[
                    "Step 2/9 : COPY Gemfile /myapp/",
                    "COPY failed: file not found in build context",
                ],
            ),
            output("nginx", JobStatus::Stopped, &["Step 1/3 : FROM nginx"]),
        ];
        let msg = job_failures(&outputs, "build", "fix it").unwrap_err().to_string();
        assert!(msg.starts_with("image `rails`: `docker build --no-cache"), "{msg}");
        assert!(msg.contains("COPY failed: file not found in build context"), "{msg}");
        assert!(msg.ends_with("\n`nginx` stopped: build cancelled\nfix it"), "{msg}");
        assert!(!msg.contains("FROM nginx"), "a stopped job's log is not shown: {msg}");

        let outputs = [
            output("rails", JobStatus::Succeeded, &["latest: digest: sha256:1 size: 1"]),
            output(
                "nginx",
                JobStatus::Failed {
                    command: "docker push n:latest".into(),
                    reason: "exited".into(),
                },
                &["connection refused"],
            ),
        ];
        let msg = job_failures(&outputs, "push", "retry").unwrap_err().to_string();
        assert!(msg.ends_with("connection refused\n`rails` finished its push\nretry"), "{msg}");

        let ok = [output("rails", JobStatus::Succeeded, &[])];
        assert!(job_failures(&ok, "push", "retry").is_ok());
    }

    #[test]
    fn build_inputs_are_the_contexts_and_dockerfiles() {
        let paths = build_inputs(&sandbox_target().images);
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(shown, ["nginx", "nginx/Dockerfile.prod", "rails", "rails/Dockerfile.prod"]);
    }
}
