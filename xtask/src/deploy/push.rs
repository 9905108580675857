//! Step 2 of the chapter's pieces, for the run of a plan: the image IDs builds write, the commit
//! tag, the digest each push gave, what a failed build or push says, and the proof through
//! DescribeImages that `latest` in each repository is exactly what was pushed, pushed after
//! the build started.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use tokio::runtime::Runtime;
use xshell::{cmd, Shell};

use crate::aws::ecr::{self, TaggedImage};
use crate::aws::Aws;
use crate::deploy::target::Image;
use crate::docker::{self, Docker, JobOutput, JobStatus};
use crate::event::Detail;
use crate::failure::Failure;
use crate::poll::{Backoff, Schedule};
use crate::report::Reporter;

pub use crate::deploy::plan::LATEST;

/// ECR is asked again after 100 ms, then twice as long each time, up to 1 s.
const POLL: Schedule = Schedule::new(Duration::from_millis(100), 2.0, Duration::from_secs(1));

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

/// `git-<short sha>`, with `-dirty` when the images' inputs have uncommitted changes (the
/// entrypoint edit included: it is read right before the build).
pub fn git_tag(sh: &Shell, images: &[Image], report: &Reporter) -> Result<Option<String>> {
    let tag = tree_tag(sh, images)?;
    if tag.is_none() {
        report.warn("not a git checkout: images are tagged `latest` only, with no commit tag");
    }
    Ok(tag)
}

/// [`git_tag`] without the warning outside git.
pub fn tree_tag(sh: &Shell, images: &[Image]) -> Result<Option<String>> {
    let Ok(sha) = cmd!(sh, "git rev-parse --short HEAD").quiet().ignore_stderr().read() else {
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

/// A stale ID file of an earlier build must not stand for this one.
pub fn prepare_iidfile(path: &Path) -> Result<()> {
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
pub fn read_iidfile(path: &Path) -> Result<String> {
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
pub fn job_failures(outputs: &[JobOutput], step: &str, next: &str) -> Result<()> {
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
pub fn pushed_digest(
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
pub fn wait_for_latest(
    report: &Reporter,
    rt: &Runtime,
    aws: &Aws,
    pushed: &[PushedImage],
    not_before: SystemTime,
    cache: bool,
    settle_timeout: Duration,
) -> Result<Vec<TaggedImage>> {
    let started = Instant::now();
    let mut backoff = Backoff::new(POLL.jittered(0.1));
    let mut found: Vec<Option<TaggedImage>> = vec![None; pushed.len()];
    loop {
        let mut pending = Vec::new();
        for (image, slot) in pushed.iter().zip(found.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let shown = rt.block_on(ecr::tagged_image(&aws.ecr, &image.repository, LATEST))?;
            match (check_latest(&image.digest, shown.as_ref(), not_before, cache), shown) {
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
        if started.elapsed() >= settle_timeout {
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
        std::thread::sleep(backoff.next_wait());
    }
}

pub fn timestamp(t: SystemTime) -> String {
    DateTime::from(t).fmt(Format::DateTime).unwrap_or_else(|_| format!("{t:?}"))
}

#[cfg(test)]
mod live;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::target::{DeployFile, DeployFlags, TargetFlags};

    #[test]
    fn git_tag_names() {
        assert_eq!(git_tag_name("0123abc\n", false), "git-0123abc");
        assert_eq!(git_tag_name("0123abc", true), "git-0123abc-dirty");
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
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let file = DeployFile::load(root).unwrap();
        let target = file
            .resolve(&TargetFlags::default(), &DeployFlags::default(), &|_| None, None)
            .unwrap();
        let paths = build_inputs(&target.images);
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(shown, ["nginx", "nginx/Dockerfile.prod", "rails", "rails/Dockerfile.prod"]);
    }
}
