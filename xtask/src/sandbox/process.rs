//! Detached processes, their health, ports, and waiting with a deadline.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::event::Detail;
use crate::failure::Failure;
use crate::report::{human_duration, Reporter};

/// How often a wait re-checks its condition.
const POLL: Duration = Duration::from_millis(50);

/// Starts `cmd` in a session of its own (so a terminal's Ctrl-C or hang-up does not reach it),
/// stdin closed, stdout and stderr appended to `log`.
pub fn spawn_detached(mut cmd: Command, log: &Path) -> Result<Child> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
    }
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the log file {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.spawn().with_context(|| format!("cannot start `{program}`"))
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `pid (comm) S ...`.
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

/// Whether `pid` runs a command line containing `marker` (guards against a recycled pid).
pub fn runs(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").contains(marker))
        .unwrap_or(false)
}

/// Stops the process group led by `pid`: SIGTERM, then SIGKILL after `grace`; then waits a
/// moment for its parent (init, once `up` has exited) to reap it, so no zombie lingers.
pub fn stop_group(pid: u32, grace: Duration) -> Result<()> {
    terminate_group(pid, grace)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    Ok(())
}

fn terminate_group(pid: u32, grace: Duration) -> Result<()> {
    let pgid = -(i32::try_from(pid).context("pid out of range")?);
    // SAFETY: kill has no memory effects; a stale group only yields ESRCH.
    unsafe { libc::kill(pgid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    // SAFETY: as above.
    unsafe { libc::kill(pgid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() > deadline {
            bail!("process {pid} survived SIGKILL: stop it by hand (`kill -9 {pid}`)");
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// `preferred` when nothing listens on it on 127.0.0.1, otherwise a free port from the kernel.
pub fn pick_port(preferred: u16) -> Result<u16> {
    if port_free(preferred) {
        return Ok(preferred);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

pub fn port_free(port: u16) -> bool {
    port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// GET `url` with a short timeout; the status code, or `None` when nothing answers.
pub fn http_status(url: &str) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(1500)))
        .http_status_as_error(false)
        .build()
        .into();
    agent.get(url).call().ok().map(|r| r.status().as_u16())
}

/// Polls `ready` until it holds, the child exits, or `timeout` passes; shows what it waits for.
pub fn wait_ready(
    report: &Reporter,
    what: &str,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
    ready: impl Fn() -> bool,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if ready() {
            return Ok(started.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            return Err(anyhow!(
                "{what} exited while starting ({status}): {}; full log: {}",
                last_line(log).unwrap_or_else(|| "no output".into()),
                log.display()
            )
            .context(Failure::Sandbox));
        }
        if started.elapsed() > timeout {
            return Err(anyhow!(
                "{what} did not become healthy within {}; its log: {}",
                human_duration(timeout),
                log.display()
            )
            .context(Failure::Sandbox));
        }
        report.progress(
            what,
            format!(
                "    waiting for {what} to answer its health check ({}s)",
                started.elapsed().as_secs()
            ),
            Some(Detail::Component { component: what.to_string() }),
        );
        std::thread::sleep(POLL);
    }
}

/// The last non-empty line of a log file.
pub fn last_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_replaced_by_a_free_one() {
        let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        assert!(!port_free(port));
        let other = pick_port(port).unwrap();
        assert_ne!(other, port);
        assert!(port_free(other));
    }

    #[test]
    fn this_process_is_alive_and_runs_its_own_command_line() {
        let me = std::process::id();
        assert!(alive(me));
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        assert!(runs(me, &name));
        assert!(!runs(me, "no-such-marker-in-the-command-line"));
    }

    #[test]
    fn a_detached_child_leads_its_own_session_and_stops_with_its_group() {
        let dir = crate::project::target_dir()
            .join("test-tmp")
            .join(format!("detach-{}", std::process::id()));
        let log = dir.join("sleep.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let mut child = spawn_detached(cmd, &log).unwrap();
        let pid = child.id();
        let report = Reporter::plain();
        wait_ready(&report, "sleep", &mut child, &log, Duration::from_secs(5), || {
            last_line(&log).as_deref() == Some("started")
        })
        .unwrap();
        // SAFETY: getsid only reads the process table.
        assert_eq!(unsafe { libc::getsid(pid as i32) }, pid as i32);
        stop_group(pid, Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        assert!(!alive(pid));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
