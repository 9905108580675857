//! Every docker command line of the xtask, as values, and the ways they are run.
//!
//! - [`build`]: the deploy's, as [`DockerCmd`]s (`build`, `login`, `tag`, `push`, …), which
//!   `--dry-run` prints and the deploy reads quietly ([`DockerCmd::read`]), runs with its output
//!   captured ([`DockerCmd::run_captured`]) or streams side by side ([`run_parallel`]).
//! - [`containers`]: the sandbox's (its tasks' containers, network, images and database), as
//!   `xshell::Cmd`s for the sandbox's Shell (run quietly by [`output`], or as the caller needs),
//!   and two `DockerCmd`s that duct runs ([`DockerCmd::expression`]).
//!
//! Builders only build: every command line is tested by its text without Docker.

mod build;
pub mod containers;

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{anyhow, Context, Result};
use xshell::{Cmd, Shell};

use crate::aws::ecr::Secret;
use crate::report::Reporter;

pub use build::{
    is_digest, left_by_stopped_builds, pushed_digest, repo_digest, server_version, BuildSpec,
    DockerConfigDir,
};

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

    /// The command for duct: for a pipeline, or to copy its output into a file.
    pub fn expression(&self) -> duct::Expression {
        let mut expr = duct::cmd(&self.program, &self.args);
        if let Some(dir) = &self.dir {
            expr = expr.dir(dir);
        }
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

    /// The command for duct, run in `dir` (the Shell's directory, which the process does not share).
    fn expression_in(&self, dir: &Path) -> duct::Expression {
        match &self.dir {
            Some(_) => self.expression(),
            None => self.expression().dir(dir),
        }
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
            .expression_in(dir)
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
            .expression_in(&sh.current_dir())
            .unchecked()
            .run()
            .with_context(|| spawn_hint(self))?;
        Ok(out.status)
    }

    /// Runs the command with its output captured (stdout and stderr together); a failure
    /// shows the output's tail with the secret masked.
    pub fn run_captured(&self, sh: &Shell) -> Result<String> {
        let out = self
            .expression_in(&sh.current_dir())
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

/// Runs a command of [`containers`] without echo: its stdout, or docker's own message when it
/// fails (stderr, without the `Error response from daemon: ` prefix).
pub fn output(cmd: Cmd<'_>) -> Result<String, String> {
    match cmd.quiet().ignore_status().output() {
        Err(e) => Err(format!("could not run docker: {e}")),
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let message: Vec<&str> = stderr
                .lines()
                .map(|l| l.trim().trim_start_matches("Error response from daemon: "))
                .filter(|l| !l.is_empty())
                .collect();
            Err(if message.is_empty() {
                format!("docker exited with {}", out.status)
            } else {
                message.join("; ")
            })
        }
    }
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
    /// `cmd` on the image an earlier step of the job built: `placeholder` in its arguments
    /// becomes the ID that build wrote to `iidfile`.
    OnBuilt {
        iidfile: PathBuf,
        placeholder: String,
        cmd: DockerCmd,
    },
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
            Step::OnBuilt { iidfile, placeholder, cmd } => Step::OnBuilt {
                iidfile: iidfile.clone(),
                placeholder: placeholder.clone(),
                cmd: cmd.resolved(fill, config),
            },
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
            Step::Run(cmd) | Step::OnBuilt { cmd, .. } => write!(f, "{cmd}"),
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

/// What the docker CLI prints when its daemon does not answer.
const DAEMON_GONE: &[&str] =
    &["Cannot connect to the Docker daemon", "Is the docker daemon running?"];

/// A failed job's output says the Docker daemon stopped answering (it stopped or restarted
/// under the job), which no fix of the images mends.
pub fn daemon_gone(outputs: &[JobOutput]) -> bool {
    outputs
        .iter()
        .filter(|o| matches!(o.status, JobStatus::Failed { .. }))
        .any(|o| o.lines.iter().any(|line| DAEMON_GONE.iter().any(|words| line.contains(words))))
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
        let built;
        let cmd = match step {
            Step::Run(cmd) => cmd,
            Step::OnBuilt { iidfile, placeholder, cmd } => {
                match std::fs::read_to_string(dir.join(iidfile)) {
                    Ok(id) => {
                        let id = id.trim();
                        built = cmd.resolved(&|a| a.replace(placeholder.as_str(), id), None);
                        &built
                    }
                    Err(e) => {
                        let reason = format!(
                            "cannot read the built image's ID from {}: {e}",
                            iidfile.display()
                        );
                        return end(JobStatus::Failed { command: cmd.to_string(), reason }, lines);
                    }
                }
            }
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
        let from = lines.len();
        let failed = |reason: String| JobStatus::Failed { command: cmd.to_string(), reason };
        let reader = match cmd.expression_in(dir).stderr_to_stdout().unchecked().reader() {
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
            // The message of a failure leads its output (a Ruby error, then its backtrace):
            // the tail alone would show only the backtrace.
            let reason = match first_error_line(&lines[from..]) {
                Some(line) => format!("exited with {status}; its first error line: {line}"),
                None => format!("exited with {status}"),
            };
            return end(failed(reason), lines);
        }
    }
    end(JobStatus::Succeeded, lines)
}

/// The first line that names an error (`… syntax error …`, `Error: …`, `ERROR [3/5]`).
fn first_error_line(lines: &[String]) -> Option<&str> {
    lines.iter().map(String::as_str).find(|l| l.to_ascii_lowercase().contains("error"))
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

#[cfg(test)]
mod tests;
