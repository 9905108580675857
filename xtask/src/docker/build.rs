//! The deploy's docker commands: the daemon's version, `build`, `login`, `tag`, `push` and the
//! `image inspect`s around them, and what their output says (the pushed digest).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use xshell::Shell;

use super::{Docker, DockerCmd};
use crate::aws::ecr::Secret;
use crate::failure::Failure;

/// The intermediate containers a stopped build left: in `after` and not in `before` (both
/// [`Docker::created_containers`] outputs), made for a Dockerfile instruction (`#(nop)`) and
/// never started. The legacy builder leaves one when its client is killed mid-step.
pub fn left_by_stopped_builds(before: &str, after: &str) -> Vec<String> {
    let known: std::collections::HashSet<&str> =
        before.lines().filter_map(|l| l.split('\t').next()).collect();
    after
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(id, command)| !known.contains(id) && command.contains("#(nop)"))
        .map(|(id, _)| id.to_string())
        .collect()
}

/// What `docker build` gets. It tags nothing: the deploy tags the image by the ID the build
/// wrote to `iidfile`, so that what it pushes is what it built even when something else on
/// the engine moves a tag of the same name in the meantime.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildSpec {
    /// Where the build writes the image ID (`sha256:…`).
    pub iidfile: PathBuf,
    /// Use the layers of this image only as cache (`--cache-from`); overrides `cache`.
    pub cache_from: Option<String>,
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub build_args: BTreeMap<String, String>,
    /// Allow the layer cache; off by default so code changes always reach the image.
    pub cache: bool,
}

impl Docker {
    /// The containers in state `created`, with their command: `<id>\t<command>` per line
    /// (how a stopped build's intermediate containers are found).
    pub fn created_containers(&self) -> DockerCmd {
        self.cmd([
            "ps",
            "--all",
            "--no-trunc",
            "--filter",
            "status=created",
            "--format",
            "{{.ID}}\t{{.Command}}",
        ])
    }

    /// `docker rm --force ID...`.
    pub fn remove_containers(&self, ids: &[String]) -> DockerCmd {
        let mut args = vec!["rm".to_string(), "--force".to_string()];
        args.extend(ids.iter().cloned());
        self.cmd(args)
    }

    /// `docker version`: fails when the daemon does not answer.
    pub fn version(&self) -> DockerCmd {
        self.cmd(["version", "--format", "{{.Server.Version}}"])
    }

    /// `docker build [--no-cache] --iidfile FILE -f DOCKERFILE --build-arg K=V... CONTEXT`.
    pub fn build(&self, spec: &BuildSpec) -> DockerCmd {
        let mut args: Vec<OsString> = vec!["build".into()];
        match &spec.cache_from {
            Some(image) => args.extend(["--cache-from".into(), image.into()]),
            None if !spec.cache => args.push("--no-cache".into()),
            None => {}
        }
        args.extend(["--iidfile".into(), spec.iidfile.clone().into_os_string()]);
        args.extend(["-f".into(), spec.dockerfile.clone().into_os_string()]);
        for (key, value) in &spec.build_args {
            args.extend(["--build-arg".into(), format!("{key}={value}").into()]);
        }
        args.push(spec.context.clone().into_os_string());
        self.cmd(args)
    }

    /// The smoke boot of one command: `docker run --rm --network none --entrypoint WORD
    /// --env K=V... IMAGE ARGS...` (no network: nothing it does reaches a database or AWS;
    /// the environment is throwaway values, shown as they are).
    pub fn smoke_run(
        &self,
        image: &str,
        command: &[String],
        env: &BTreeMap<String, String>,
    ) -> DockerCmd {
        let mut args: Vec<OsString> =
            ["run", "--rm", "--network", "none"].map(OsString::from).into();
        if let Some(word) = command.first() {
            args.extend(["--entrypoint".into(), word.into()]);
        }
        for (key, value) in env {
            args.extend(["--env".into(), format!("{key}={value}").into()]);
        }
        args.push(image.into());
        args.extend(command.iter().skip(1).map(OsString::from));
        self.cmd(args)
    }

    /// `docker login --username USER --password-stdin REGISTRY`: the password goes to stdin only.
    pub fn login(
        &self,
        registry: &str,
        username: &str,
        password: Secret,
        config_dir: &Path,
    ) -> DockerCmd {
        let mut cmd = self.cmd(["login", "--username", username, "--password-stdin", registry]);
        cmd.config_dir = Some(config_dir.to_path_buf());
        cmd.stdin = Some(password);
        cmd
    }

    /// `docker tag IMAGE REF`: `IMAGE` is the ID a build wrote.
    pub fn tag(&self, image: &str, reference: &str) -> DockerCmd {
        self.cmd(["tag", image, reference])
    }

    /// `docker image inspect --format {{.Id}} REF`: the image a reference names now.
    pub fn image_id(&self, reference: &str) -> DockerCmd {
        self.cmd(["image", "inspect", "--format", "{{.Id}}", reference])
    }

    /// `docker push REF`, with the credentials of the private config directory.
    pub fn push(&self, reference: &str, config_dir: &Path) -> DockerCmd {
        let mut cmd = self.cmd(["push", reference]);
        cmd.config_dir = Some(config_dir.to_path_buf());
        cmd
    }

    /// `docker image inspect --format {{json .RepoDigests}} REF`: the digests a push recorded.
    pub fn repo_digests(&self, reference: &str) -> DockerCmd {
        self.cmd(["image", "inspect", "--format", "{{json .RepoDigests}}", reference])
    }
}

/// The daemon's version; fails (`Failure::Preflight`) when Docker is missing or not running.
pub fn server_version(sh: &Shell, version: &DockerCmd) -> Result<String> {
    version
        .read(sh)
        .context(
            "the Docker daemon does not answer: start Docker (`sudo systemctl start docker`, or \
             Docker Desktop) and try again",
        )
        .context(Failure::Preflight)
}

/// A private `DOCKER_CONFIG` directory for login and push, removed on drop, so ECR
/// credentials never land in `~/.docker/config.json`.
#[derive(Debug)]
pub struct DockerConfigDir {
    path: PathBuf,
}

pub(super) const CONFIG_DIR_PREFIX: &str = "docker-config.";

impl DockerConfigDir {
    /// Creates `<parent>/docker-config.<pid>.<n>` (mode 0700), first removing the directories
    /// that interrupted runs left behind.
    pub fn create(parent: &Path) -> Result<DockerConfigDir> {
        use std::os::unix::fs::DirBuilderExt;
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        remove_stale_config_dirs(parent);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let path = parent.join(format!("{CONFIG_DIR_PREFIX}{}.{n}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(DockerConfigDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DockerConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes `docker-config.<pid>.<n>` directories whose process is gone (a run killed mid-push).
fn remove_stale_config_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(CONFIG_DIR_PREFIX))
            .and_then(|rest| rest.split('.').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // Signal 0 checks that the process exists without touching it.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The digest `docker push` reported for `tag` (`latest: digest: sha256:… size: 528`).
pub fn pushed_digest(lines: &[String], tag: &str) -> Option<String> {
    lines.iter().rev().find_map(|line| {
        let rest = line.trim().strip_prefix(tag)?.strip_prefix(": digest: ")?;
        let digest = rest.split_whitespace().next()?;
        is_digest(digest).then(|| digest.to_string())
    })
}

/// The digest for `repository` (a URI without tag) in `docker image inspect`'s
/// `{{json .RepoDigests}}` output (`["host/repo@sha256:…"]`).
pub fn repo_digest(json: &str, repository: &str) -> Option<String> {
    let digests: Vec<String> = serde_json::from_str(json.trim()).ok()?;
    digests.iter().find_map(|d| {
        let (repo, digest) = d.split_once('@')?;
        (repo == repository && is_digest(digest)).then(|| digest.to_string())
    })
}

pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}
