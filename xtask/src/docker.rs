//! Docker commands as values ([`DockerCmd`]), and the few ways they are run: read quietly,
//! logged in with the password on stdin, or streamed side by side with a prefix per image.
//!
//! Commands are data so that every command line is tested by its text without Docker, and
//! so that `--dry-run` prints exactly what would run.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{anyhow, Context, Result};
use xshell::Shell;

use crate::aws::ecr::Secret;
use crate::failure::Failure;
use crate::report::Reporter;

/// How many lines of a failed command's output an error shows.
pub const TAIL_LINES: usize = 25;

/// The docker CLI. The program is overridable so that tests can put a recording stand-in there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Docker {
    program: OsString,
}

impl Default for Docker {
    fn default() -> Docker {
        Docker { program: "docker".into() }
    }
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
    #[cfg(test)]
    pub fn with_program(program: impl Into<OsString>) -> Docker {
        Docker { program: program.into() }
    }

    fn cmd<I, S>(&self, args: I) -> DockerCmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        DockerCmd::program(self.program.clone(), args)
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

/// One command line (docker's, or another program the deploy runs beside it, such as rspec):
/// program, arguments, environment, directory, an optional `DOCKER_CONFIG` and an optional
/// secret for stdin. Its `Display` is the command as a shell would read it, secret masked.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerCmd {
    program: OsString,
    args: Vec<OsString>,
    /// Variables set for it (never a secret: they are shown).
    env: Vec<(OsString, OsString)>,
    /// Variables removed from its environment.
    env_remove: Vec<OsString>,
    /// Where it runs, instead of the Shell's directory.
    dir: Option<PathBuf>,
    config_dir: Option<PathBuf>,
    stdin: Option<Secret>,
}

impl DockerCmd {
    /// Any program with its arguments.
    pub fn program<I, S>(program: impl Into<OsString>, args: I) -> DockerCmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        DockerCmd {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            env_remove: Vec::new(),
            dir: None,
            config_dir: None,
            stdin: None,
        }
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> DockerCmd {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> DockerCmd {
        self.env_remove.push(key.into());
        self
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> DockerCmd {
        self.dir = Some(dir.into());
        self
    }

    /// The password for stdin (`docker login --password-stdin`).
    pub fn with_stdin(mut self, secret: Secret) -> DockerCmd {
        self.stdin = Some(secret);
        self
    }

    /// The same command with every placeholder of `fill` replaced in its arguments, and its
    /// Docker config directory (when it has one) moved to `config`.
    pub fn resolved(&self, fill: &dyn Fn(&str) -> String, config: Option<&Path>) -> DockerCmd {
        let args = self.args.iter().map(|a| match a.to_str() {
            Some(text) => OsString::from(fill(text)),
            None => a.clone(),
        });
        DockerCmd {
            args: args.collect(),
            config_dir: match (&self.config_dir, config) {
                (Some(_), Some(config)) => Some(config.to_path_buf()),
                (dir, _) => dir.clone(),
            },
            ..self.clone()
        }
    }

    #[cfg(test)]
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    #[cfg(test)]
    pub fn config_dir(&self) -> Option<&Path> {
        self.config_dir.as_deref()
    }

    /// The bytes the command reads on stdin, if any.
    #[cfg(test)]
    pub fn stdin(&self) -> Option<&Secret> {
        self.stdin.as_ref()
    }

    /// The command for duct, run in `dir` (the Shell's directory, which the process does not share).
    fn expression(&self, dir: &Path) -> duct::Expression {
        let mut expr = duct::cmd(&self.program, &self.args).dir(self.dir.as_deref().unwrap_or(dir));
        for (key, value) in &self.env {
            expr = expr.env(key, value);
        }
        for key in &self.env_remove {
            expr = expr.env_remove(key);
        }
        if let Some(config) = &self.config_dir {
            expr = expr.env("DOCKER_CONFIG", config);
        }
        if let Some(secret) = &self.stdin {
            expr = expr.stdin_bytes(secret.expose().as_bytes().to_vec());
        }
        expr
    }

    /// `text` with the secret (if any) masked, for output that is about to be shown.
    fn redact(&self, text: &str) -> String {
        match &self.stdin {
            Some(secret) if !secret.expose().is_empty() => text.replace(secret.expose(), "****"),
            _ => text.to_string(),
        }
    }

    /// Runs the command quietly and returns its stdout; a failure shows its stderr.
    pub fn read(&self, sh: &Shell) -> Result<String> {
        let _dir = self.dir.as_ref().map(|dir| sh.push_dir(dir));
        let mut cmd = sh.cmd(&self.program).args(&self.args).quiet().ignore_status();
        for (key, value) in &self.env {
            cmd = cmd.env(key, value);
        }
        for key in &self.env_remove {
            cmd = cmd.env_remove(key);
        }
        if let Some(config) = &self.config_dir {
            cmd = cmd.env("DOCKER_CONFIG", config);
        }
        if let Some(secret) = &self.stdin {
            cmd = cmd.stdin(secret.expose());
        }
        let out = cmd.output().map_err(|e| anyhow!("{e}")).with_context(|| spawn_hint(self))?;
        if !out.status.success() {
            let stderr = self.redact(String::from_utf8_lossy(&out.stderr).trim());
            return Err(anyhow!("`{self}` failed ({}): {stderr}", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs the command quietly in `dir` and returns its stdout (a thread of
    /// [`run_parallel`] has no Shell of its own).
    fn read_in(&self, dir: &Path) -> Result<String> {
        let out = self
            .expression(dir)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .with_context(|| spawn_hint(self))?;
        if !out.status.success() {
            let stderr = self.redact(String::from_utf8_lossy(&out.stderr).trim());
            return Err(anyhow!("`{self}` failed ({}): {stderr}", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs the command with the terminal's stdin, stdout and stderr; its exit status.
    pub fn status(&self, sh: &Shell) -> Result<std::process::ExitStatus> {
        let out = self
            .expression(&sh.current_dir())
            .unchecked()
            .run()
            .with_context(|| spawn_hint(self))?;
        Ok(out.status)
    }

    /// Runs the command with its output captured (stdout and stderr together); a failure
    /// shows the output's tail with the secret masked.
    pub fn run_captured(&self, sh: &Shell) -> Result<String> {
        let out = self
            .expression(&sh.current_dir())
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .with_context(|| spawn_hint(self))?;
        let text = self.redact(String::from_utf8_lossy(&out.stdout).trim());
        if !out.status.success() {
            return Err(anyhow!("`{self}` failed ({}):\n{}", out.status, tail(&text, TAIL_LINES)));
        }
        Ok(text)
    }
}

fn spawn_hint(cmd: &DockerCmd) -> String {
    let program = cmd.program.to_string_lossy();
    if Path::new(program.as_ref()).file_name().is_some_and(|n| n == "docker") {
        format!(
            "cannot run `{program}`: install Docker (https://docs.docker.com/engine/install/) and put `docker` on PATH"
        )
    } else {
        format!("cannot run `{program}`: install it (`cargo xtask setup` installs what the deploy needs)")
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl fmt::Display for DockerCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dir) = &self.dir {
            write!(f, "cd {} && ", quote(dir.as_os_str()))?;
        }
        for key in &self.env_remove {
            write!(f, "env -u {} ", quote(key))?;
        }
        for (key, value) in &self.env {
            write!(f, "{}={} ", key.to_string_lossy(), quote(value))?;
        }
        if let Some(config) = &self.config_dir {
            write!(f, "DOCKER_CONFIG={} ", quote(config.as_os_str()))?;
        }
        f.write_str(&quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        if self.stdin.is_some() {
            f.write_str(" < (password on stdin: ****)")?;
        }
        Ok(())
    }
}

/// An argument as a POSIX shell would need it written.
fn quote(arg: &std::ffi::OsStr) -> String {
    let text = arg.to_string_lossy();
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
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

const CONFIG_DIR_PREFIX: &str = "docker-config.";

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

/// One image's steps, run one after another; their output is prefixed with `[label]`.
#[derive(Debug, Clone)]
pub struct Job {
    pub label: String,
    pub steps: Vec<Step>,
}

/// One step of a [`Job`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Run(DockerCmd),
    /// `reference` must still name the image `id` (checked right before its push).
    SameImage {
        reference: String,
        id: String,
        inspect: DockerCmd,
    },
}

impl Step {
    /// The check that `reference` names the image `id`, through `docker`.
    pub fn same_image(docker: &Docker, reference: &str, id: &str) -> Step {
        Step::SameImage {
            reference: reference.to_string(),
            id: id.to_string(),
            inspect: docker.image_id(reference),
        }
    }
}

impl Step {
    /// The step with the run's placeholders filled in (see [`DockerCmd::resolved`]).
    pub fn resolved(&self, fill: &dyn Fn(&str) -> String, config: Option<&Path>) -> Step {
        match self {
            Step::Run(cmd) => Step::Run(cmd.resolved(fill, config)),
            Step::SameImage { reference, id, inspect } => Step::SameImage {
                reference: fill(reference),
                id: fill(id),
                inspect: inspect.resolved(fill, config),
            },
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run(cmd) => write!(f, "{cmd}"),
            Step::SameImage { reference, id, inspect } => {
                write!(f, "{inspect}  # must print {id}, or {reference} moved: stop")
            }
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Succeeded,
    /// A command failed: the command line (secret masked) and why.
    Failed {
        command: String,
        reason: String,
    },
    /// Stopped because another job failed first.
    Stopped,
}

/// A finished job: how it ended and every line it printed.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub label: String,
    pub status: JobStatus,
    pub lines: Vec<String>,
}

impl JobOutput {
    /// The last `n` lines, for an error message.
    pub fn tail(&self, n: usize) -> String {
        self.lines[self.lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Runs the jobs at the same time, streaming every output line with its job's prefix. When
/// one fails, the others are stopped: their work would be thrown away anyway.
pub fn run_parallel(sh: &Shell, report: &Reporter, jobs: &[Job]) -> Vec<JobOutput> {
    let width = jobs.iter().map(|j| j.label.len()).max().unwrap_or(0) + 2;
    let dir = sh.current_dir();
    let stop = AtomicBool::new(false);
    let running: Vec<Mutex<Option<Arc<duct::ReaderHandle>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        let threads: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let (dir, stop, running) = (&dir, &stop, &running);
                scope.spawn(move || {
                    let prefix = format!("{:<width$}", format!("[{}]", job.label));
                    let output = run_job(report, job, &prefix, dir, stop, &running[i]);
                    if matches!(output.status, JobStatus::Failed { .. })
                        && !stop.swap(true, Ordering::SeqCst)
                    {
                        for slot in running {
                            if let Some(handle) = lock(slot).as_ref() {
                                let _ = handle.kill();
                            }
                        }
                    }
                    output
                })
            })
            .collect();
        threads
            .into_iter()
            .zip(jobs)
            .map(|(thread, job)| {
                thread.join().unwrap_or_else(|_| JobOutput {
                    label: job.label.clone(),
                    status: JobStatus::Failed {
                        command: String::new(),
                        reason: "its output reader panicked".into(),
                    },
                    lines: Vec::new(),
                })
            })
            .collect()
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_job(
    report: &Reporter,
    job: &Job,
    prefix: &str,
    dir: &Path,
    stop: &AtomicBool,
    slot: &Mutex<Option<Arc<duct::ReaderHandle>>>,
) -> JobOutput {
    let mut lines = Vec::new();
    let end = |status, lines| JobOutput { label: job.label.clone(), status, lines };
    for step in &job.steps {
        if stop.load(Ordering::SeqCst) {
            return end(JobStatus::Stopped, lines);
        }
        let cmd = match step {
            Step::Run(cmd) => cmd,
            Step::SameImage { reference, id, inspect } => {
                let seen = inspect.read_in(dir);
                match seen {
                    Ok(seen) if seen == *id => continue,
                    Ok(seen) => {
                        let reason = format!(
                            "{reference} names {seen} now, not the image this deploy built ({id}): \
                             something else on this Docker engine tagged it between the build and \
                             the push (a `docker pull` or another build); nothing of it was pushed, \
                             deploy again"
                        );
                        return end(
                            JobStatus::Failed { command: inspect.to_string(), reason },
                            lines,
                        );
                    }
                    Err(e) => {
                        let reason = format!("cannot check what {reference} names: {e:#}");
                        return end(
                            JobStatus::Failed { command: inspect.to_string(), reason },
                            lines,
                        );
                    }
                }
            }
        };
        report.line(&format!("{prefix} $ {cmd}"));
        let failed = |reason: String| JobStatus::Failed { command: cmd.to_string(), reason };
        let reader = match cmd.expression(dir).stderr_to_stdout().unchecked().reader() {
            Ok(reader) => Arc::new(reader),
            Err(e) => return end(failed(format!("{}: {e}", spawn_hint(cmd))), lines),
        };
        *lock(slot) = Some(Arc::clone(&reader));
        // A failure elsewhere may have come between the check above and the registration.
        if stop.load(Ordering::SeqCst) {
            let _ = reader.kill();
        }
        let read = stream_lines(&reader, |line| {
            let line = cmd.redact(line);
            report.line(&format!("{prefix} {line}"));
            lines.push(line);
        });
        *lock(slot) = None;
        let status = match (read, reader.try_wait()) {
            (Err(e), _) | (_, Err(e)) => {
                return end(failed(format!("cannot read its output: {e}")), lines)
            }
            (Ok(()), Ok(None)) => {
                return end(failed("its output ended before it exited".into()), lines)
            }
            (Ok(()), Ok(Some(output))) => output.status,
        };
        if !status.success() {
            if stop.load(Ordering::SeqCst) {
                return end(JobStatus::Stopped, lines);
            }
            return end(failed(format!("exited with {status}")), lines);
        }
    }
    end(JobStatus::Succeeded, lines)
}

/// Calls `each` with every line of the reader. A line rewritten with `\r` (a progress
/// counter) counts as its last version, as a terminal would show it.
fn stream_lines(reader: &duct::ReaderHandle, mut each: impl FnMut(&str)) -> std::io::Result<()> {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        each(text.rsplit('\r').next().unwrap_or(text));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PASSWORD: &str = "eyJwYXlsb2FkIjoi-secret-password";

    fn spec(cache: bool) -> BuildSpec {
        BuildSpec {
            iidfile: "target/xtask/rails.iid".into(),
            cache_from: None,
            dockerfile: "rails/Dockerfile.prod".into(),
            context: "rails".into(),
            build_args: BTreeMap::from([
                ("RUBY_IMAGE".into(), "zenn-sandbox/ruby:3.1".into()),
                ("GREETING".into(), "hello world".into()),
            ]),
            cache,
        }
    }

    #[test]
    fn build_has_no_cache_by_default() {
        let cmd = Docker::default().build(&spec(false));
        assert_eq!(
            cmd.to_string(),
            "docker build --no-cache --iidfile target/xtask/rails.iid -f rails/Dockerfile.prod \
             --build-arg 'GREETING=hello world' --build-arg RUBY_IMAGE=zenn-sandbox/ruby:3.1 rails"
        );
        assert_eq!(cmd.config_dir(), None, "a build keeps the user's docker config");
        assert!(cmd.args().contains(&OsString::from("GREETING=hello world")), "one argument");
    }

    #[test]
    fn build_with_cache_drops_the_flag() {
        let cmd = Docker::default().build(&spec(true));
        assert!(!cmd.to_string().contains("--no-cache"), "{cmd}");
        assert!(cmd.to_string().starts_with("docker build --iidfile "), "{cmd}");
    }

    #[test]
    fn build_from_an_earlier_image_uses_its_layers_only() {
        let spec = BuildSpec { cache_from: Some("sha256:ab".into()), ..spec(false) };
        let cmd = Docker::default().build(&spec);
        assert!(
            cmd.to_string().starts_with("docker build --cache-from sha256:ab --iidfile "),
            "{cmd}"
        );
        assert!(!cmd.to_string().contains("--no-cache"), "{cmd}");
    }

    #[test]
    fn login_takes_the_password_on_stdin_only() {
        let config = Path::new("/repo/target/xtask/docker-config.42");
        let cmd = Docker::default().login(
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com",
            "AWS",
            Secret::new(PASSWORD),
            config,
        );
        assert_eq!(
            cmd.to_string(),
            "DOCKER_CONFIG=/repo/target/xtask/docker-config.42 docker login --username AWS \
             --password-stdin 123456789012.dkr.ecr.ap-northeast-1.amazonaws.com \
             < (password on stdin: ****)"
        );
        assert!(cmd.args().iter().all(|a| !a.to_string_lossy().contains(PASSWORD)));
        assert!(!format!("{cmd:?}").contains(PASSWORD), "Debug shows the password");
        assert_eq!(cmd.stdin().map(Secret::expose), Some(PASSWORD));
        assert_eq!(cmd.config_dir(), Some(config));
    }

    #[test]
    fn no_command_but_login_reads_stdin() {
        let d = Docker::default();
        let config = Path::new("/c");
        for cmd in [d.version(), d.build(&spec(false)), d.push("r/x:latest", config)] {
            assert!(cmd.stdin().is_none(), "{cmd}");
        }
    }

    #[test]
    fn push_and_inspect_and_version_read_as_expected() {
        let d = Docker::with_program("/usr/local/bin/docker");
        let config = Path::new("/t/docker-config.7");
        assert_eq!(
            d.push("127.0.0.1:5011/zenn-clone-nginx:latest", config).to_string(),
            "DOCKER_CONFIG=/t/docker-config.7 /usr/local/bin/docker push 127.0.0.1:5011/zenn-clone-nginx:latest"
        );
        assert_eq!(
            d.repo_digests("r/x:latest").to_string(),
            "/usr/local/bin/docker image inspect --format '{{json .RepoDigests}}' r/x:latest"
        );
        assert_eq!(
            d.version().to_string(),
            "/usr/local/bin/docker version --format '{{.Server.Version}}'"
        );
        assert_eq!(
            d.tag("sha256:ab", "r/x:latest").to_string(),
            "/usr/local/bin/docker tag sha256:ab r/x:latest"
        );
        assert_eq!(
            Step::same_image(&d, "r/x:latest", "sha256:ab").to_string(),
            "/usr/local/bin/docker image inspect --format '{{.Id}}' r/x:latest  # must print sha256:ab, or r/x:latest moved: stop"
        );
    }

    #[test]
    fn redact_masks_the_secret_in_output() {
        let cmd = Docker::default().login("r", "AWS", Secret::new(PASSWORD), Path::new("/c"));
        assert_eq!(cmd.redact(&format!("bad password {PASSWORD}!")), "bad password ****!");
    }

    const PUSH_OUTPUT: &str = "\
The push refers to repository [127.0.0.1:5099/tt]
01daa313bb7b: Preparing
01daa313bb7b: Pushed
latest: digest: sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483 size: 524";

    #[test]
    fn pushed_digest_is_read_from_the_output() {
        let lines: Vec<String> = PUSH_OUTPUT.lines().map(String::from).collect();
        assert_eq!(
            pushed_digest(&lines, "latest").as_deref(),
            Some("sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483")
        );
        assert_eq!(pushed_digest(&lines, "git-0123abc"), None);
        assert_eq!(pushed_digest(&["latest: digest: sha256:abc size: 1".into()], "latest"), None);
    }

    #[test]
    fn repo_digest_is_read_from_inspect() {
        let json = r#"["other/x@sha256:1111111111111111111111111111111111111111111111111111111111111111","127.0.0.1:5099/tt@sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483"]"#;
        assert_eq!(
            repo_digest(json, "127.0.0.1:5099/tt").as_deref(),
            Some("sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483")
        );
        assert_eq!(repo_digest(json, "127.0.0.1:5099/t"), None);
        assert_eq!(repo_digest("[]", "127.0.0.1:5099/tt"), None);
        assert_eq!(repo_digest("null", "127.0.0.1:5099/tt"), None);
    }

    #[test]
    fn quoting_follows_the_shell() {
        assert_eq!(quote("plain-arg_1.2:3/x=y@z".as_ref()), "plain-arg_1.2:3/x=y@z");
        assert_eq!(quote("".as_ref()), "''");
        assert_eq!(quote("it's".as_ref()), r"'it'\''s'");
    }

    #[test]
    fn config_dir_is_private_and_removed() {
        let parent = crate::project::target_dir().join("xtask-unit").join("docker-config-test");
        let path = {
            let dir = DockerConfigDir::create(&parent).unwrap();
            let other = DockerConfigDir::create(&parent).unwrap();
            assert_ne!(
                dir.path(),
                other.path(),
                "two logins in one process do not share a directory"
            );
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
            dir.path().to_path_buf()
        };
        assert!(!path.exists());
    }

    #[test]
    fn stale_config_dirs_of_dead_processes_are_removed() {
        let parent = crate::project::target_dir().join("xtask-unit").join("docker-config-stale");
        // No process has pid i32::MAX (above pid_max).
        let stale = parent.join(format!("{CONFIG_DIR_PREFIX}{}.0", libc::pid_t::MAX));
        std::fs::create_dir_all(&stale).unwrap();
        let live = DockerConfigDir::create(&parent).unwrap();
        assert!(!stale.exists());
        assert!(live.path().exists());
    }

    /// A stand-in for `docker` in its own directory, so tests can run in parallel.
    fn fake_docker(name: &str, body: &str) -> (PathBuf, Docker) {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::project::target_dir().join("xtask-unit").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("docker");
        std::fs::write(&program, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, Docker::with_program(program))
    }

    #[test]
    fn the_login_process_has_no_password_in_argv_or_environment() {
        // The script's own /proc entry is the process the xtask started (a shebang script runs
        // as `/bin/sh <script> <args>`).
        let (dir, docker) = fake_docker(
            "fake-login",
            r#"out="$(dirname "$0")"
tr '\0' '\n' < /proc/$$/cmdline > "$out/cmdline"
tr '\0' '\n' < /proc/$$/environ > "$out/environ"
cat > "$out/stdin"
echo "Login Succeeded"
"#,
        );
        let sh = Shell::new().unwrap();
        let config = dir.join("config");
        let cmd = docker.login("127.0.0.1:5011", "AWS", Secret::new(PASSWORD), &config);
        assert_eq!(cmd.run_captured(&sh).unwrap(), "Login Succeeded");

        let cmdline = std::fs::read_to_string(dir.join("cmdline")).unwrap();
        let argv: Vec<&str> = cmdline.lines().skip(2).collect();
        assert_eq!(argv, ["login", "--username", "AWS", "--password-stdin", "127.0.0.1:5011"]);
        assert!(!cmdline.contains(PASSWORD), "password in argv: {cmdline}");
        let environ = std::fs::read_to_string(dir.join("environ")).unwrap();
        // The copy holds the test's whole environment: it does not stay on disk.
        std::fs::remove_file(dir.join("environ")).unwrap();
        assert!(environ.lines().any(|l| l == format!("DOCKER_CONFIG={}", config.display())));
        assert!(!environ.contains(PASSWORD), "password in the environment");
        assert_eq!(std::fs::read_to_string(dir.join("stdin")).unwrap(), PASSWORD);
    }

    #[test]
    fn a_failed_login_masks_a_password_echoed_back() {
        let (dir, docker) = fake_docker(
            "fake-login-fails",
            "read pw\necho \"Error response from daemon: login attempt with $pw failed\" >&2\nexit 1\n",
        );
        let sh = Shell::new().unwrap();
        let cmd = docker.login("127.0.0.1:5011", "AWS", Secret::new(PASSWORD), &dir);
        let msg = format!("{:#}", cmd.run_captured(&sh).unwrap_err());
        assert!(!msg.contains(PASSWORD), "{msg}");
        assert!(msg.contains("login attempt with **** failed"), "{msg}");
        assert!(msg.contains("--password-stdin 127.0.0.1:5011"), "names the command: {msg}");
    }

    fn shell_job(label: &str, scripts: &[&str]) -> Job {
        let sh = Docker::with_program("sh");
        Job {
            label: label.into(),
            steps: scripts.iter().map(|s| Step::Run(sh.cmd(["-c", s]))).collect(),
        }
    }

    #[test]
    fn jobs_stream_their_lines_in_order() {
        let sh = Shell::new().unwrap();
        let jobs = [
            shell_job(
                "rails",
                &["echo one; echo two >&2", "printf 'Sending 1kB\\rSending 3kB\\nlast\\n'"],
            ),
            shell_job("nginx", &["echo three"]),
        ];
        let out = run_parallel(&sh, &Reporter::plain(), &jobs);
        assert_eq!(out[0].status, JobStatus::Succeeded);
        assert_eq!(out[0].lines, ["one", "two", "Sending 3kB", "last"]);
        assert_eq!(out[1].lines, ["three"]);
        assert_eq!(out[1].label, "nginx");
    }

    #[test]
    fn a_failed_job_stops_the_others() {
        let sh = Shell::new().unwrap();
        let started = std::time::Instant::now();
        let jobs = [
            // `exec` so that killing the job's process closes its output at once.
            shell_job("nginx", &["echo waiting; exec sleep 120", "echo never"]),
            shell_job("rails", &["echo 'COPY failed: no such file'; exit 3"]),
        ];
        let out = run_parallel(&sh, &Reporter::plain(), &jobs);
        assert!(started.elapsed() < Duration::from_secs(60), "the sleeping job was not stopped");
        assert_eq!(out[0].status, JobStatus::Stopped);
        assert!(!out[0].lines.contains(&"never".to_string()));
        let JobStatus::Failed { command, reason } = &out[1].status else {
            panic!("{:?}", out[1].status)
        };
        assert_eq!(command, "sh -c 'echo '\\''COPY failed: no such file'\\''; exit 3'");
        assert!(reason.contains("exit status: 3"), "{reason}");
        assert_eq!(out[1].tail(1), "COPY failed: no such file");
    }

    #[test]
    fn a_push_stops_when_its_tag_no_longer_names_the_built_image() {
        // The stand-in answers `image inspect` with the ID a concurrent pull left on the tag.
        let (_dir, docker) = fake_docker(
            "fake-moved-tag",
            "case \"$1\" in image) echo sha256:e430;; push) echo pushed \"$2\";; esac\n",
        );
        let sh = Shell::new().unwrap();
        let reference = "127.0.0.1:5011/zenn-clone-nginx:latest";
        let job = |id: &str| Job {
            label: "nginx".into(),
            steps: vec![
                Step::same_image(&docker, reference, id),
                Step::Run(docker.push(reference, Path::new("/c"))),
            ],
        };
        let out = run_parallel(&sh, &Reporter::plain(), &[job("sha256:e430")]);
        assert_eq!(out[0].status, JobStatus::Succeeded);
        assert_eq!(out[0].lines, [format!("pushed {reference}")]);

        let out = run_parallel(&sh, &Reporter::plain(), &[job("sha256:c117")]);
        let JobStatus::Failed { reason, .. } = &out[0].status else {
            panic!("{:?}", out[0].status)
        };
        assert!(
            reason.contains("names sha256:e430 now, not the image this deploy built (sha256:c117)"),
            "{reason}"
        );
        assert!(out[0].lines.is_empty(), "nothing was pushed: {:?}", out[0].lines);
    }

    #[test]
    fn a_missing_program_is_a_failure_with_a_hint() {
        let sh = Shell::new().unwrap();
        let docker = Docker::with_program("/nonexistent/docker");
        let job = Job { label: "rails".into(), steps: vec![Step::Run(docker.version())] };
        let out = run_parallel(&sh, &Reporter::plain(), &[job]);
        let JobStatus::Failed { reason, .. } = &out[0].status else {
            panic!("{:?}", out[0].status)
        };
        assert!(reason.contains("install Docker"), "{reason}");
        let err = server_version(&sh, &docker.version()).unwrap_err();
        assert_eq!(Failure::of(&err), Some(Failure::Preflight));
        assert!(format!("{err:#}").contains("start Docker"), "{err:#}");
    }
}
