//! One deploy at a time from one checkout: the deploy holds `flock` on a file under
//! `target/xtask/` from before it looks at the service until it ends, so two deploys never
//! build and push the same tags at once. The OS drops the lock when the process ends, crash or
//! kill included; the file names the holder (pid, command line, start) for the one that waits.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};

use crate::failure::Failure;
use crate::lockfile::{holder, try_flock};
use crate::report::{human_duration, Reporter};

/// How often a waiting deploy tries the lock again.
const RETRY: Duration = Duration::from_millis(200);
/// How often a waiting deploy says it still waits.
const TELL_EVERY: Duration = Duration::from_secs(30);

/// How a deploy waits for what else is deploying (flattened into the deploy commands).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WaitFlags {
    /// When the service has a deployment in progress that this deploy did not start, wait for
    /// it to end (up to the roll timeout) instead of refusing (exit 3)
    #[arg(long, conflicts_with = "no_wait")]
    pub wait: bool,
    /// When another deploy from this checkout runs, refuse (exit 3) instead of waiting for it
    /// (up to the roll timeout)
    #[arg(long)]
    pub no_wait: bool,
}

/// The lock file of this checkout's deploys.
pub fn path() -> PathBuf {
    crate::project::target_dir().join("xtask").join("deploy.lock")
}

/// Held while this deploy runs; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DeployLock {
    _file: File,
}

impl DeployLock {
    /// Takes the lock at `path`; while another process holds it, waits up to `wait` (refuses
    /// at once with `None`), naming the holder.
    pub fn acquire(path: &Path, wait: Option<Duration>, report: &Reporter) -> Result<DeployLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))
                .context(Failure::Preflight)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open the deploy lock {}", path.display()))
            .context(Failure::Preflight)?;
        let started = Instant::now();
        let mut told: Option<Instant> = None;
        while !try_flock(&file)
            .context("cannot lock the deploy lock")
            .context(Failure::Preflight)?
        {
            let holder = holder(&mut file).unwrap_or_else(|| "a process that wrote no name".into());
            let Some(limit) = wait else {
                return Err(anyhow!(
                    "another deploy from this checkout is running ({holder}; it holds {}): wait for it to end, or run without --no-wait to wait for it",
                    path.display()
                )
                .context(Failure::Preflight));
            };
            if started.elapsed() >= limit {
                return Err(anyhow!(
                    "another deploy from this checkout ({holder}) still holds {} after {}: let it end, or stop it, then deploy again",
                    path.display(),
                    human_duration(limit)
                )
                .context(Failure::Preflight));
            }
            if told.is_none_or(|at| at.elapsed() >= TELL_EVERY) {
                report.info(format!(
                    "another deploy from this checkout is running ({holder}): waiting for it to end ({} of up to {})",
                    human_duration(started.elapsed()),
                    human_duration(limit)
                ));
                told = Some(Instant::now());
            }
            if crate::interrupt::interrupted() {
                return Err(anyhow!("interrupted (Ctrl-C) while waiting for the deploy lock")
                    .context(Failure::Preflight));
            }
            std::thread::sleep(RETRY);
        }
        let command: Vec<String> = std::env::args().collect();
        let text = format!(
            "pid {}, `{}`, since {}",
            std::process::id(),
            command.join(" "),
            crate::deploy::push::timestamp(SystemTime::now())
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write the deploy lock {}", path.display()))
            .context(Failure::Preflight)?;
        Ok(DeployLock { _file: file })
    }
}

/// Who holds the lock at `path`, when someone does (`cargo xtask status` says so).
pub fn holder_of(path: &Path) -> Option<String> {
    let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    if try_flock(&file).ok()? {
        return None;
    }
    holder(&mut file)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = crate::project::target_dir()
            .join("test-tmp")
            .join(format!("deploy-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("deploy.lock")
    }

    /// Holds the lock on another thread until told to let go.
    fn hold(path: &Path) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (taken_tx, taken_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let path = path.to_path_buf();
        let holder = std::thread::spawn(move || {
            let lock = DeployLock::acquire(&path, None, &Reporter::plain()).unwrap();
            taken_tx.send(()).unwrap();
            let _ = release_rx.recv();
            drop(lock);
        });
        taken_rx.recv().unwrap();
        (release_tx, holder)
    }

    #[test]
    fn a_second_deploy_is_refused_naming_the_holder_while_the_first_holds_the_lock() {
        let path = scratch("refuse");
        let (release, holder) = hold(&path);
        let err = DeployLock::acquire(&path, None, &Reporter::plain()).unwrap_err();
        let text = format!("{err:#}");
        assert_eq!(Failure::of(&err), Some(Failure::Preflight));
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        let command = std::env::args().next().unwrap();
        assert!(text.contains(&command), "the holder's command: {text}");
        assert!(text.contains("another deploy from this checkout is running"), "{text}");
        let held = holder_of(&path).expect("status sees the holder");
        assert!(held.starts_with(&format!("pid {}", std::process::id())), "{held}");
        let err = DeployLock::acquire(&path, Some(Duration::from_millis(300)), &Reporter::plain())
            .unwrap_err();
        assert!(format!("{err:#}").contains("still holds"), "{err:#}");
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(holder_of(&path), None, "released when the holder drops it");
        DeployLock::acquire(&path, None, &Reporter::plain()).unwrap();
    }

    #[test]
    fn a_waiting_deploy_goes_on_once_the_first_lets_go() {
        let path = scratch("wait");
        let (release, holder) = hold(&path);
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            release.send(()).unwrap();
        });
        let started = Instant::now();
        let lock = DeployLock::acquire(&path, Some(Duration::from_secs(20)), &Reporter::plain());
        assert!(lock.is_ok(), "{lock:?}");
        assert!(started.elapsed() >= Duration::from_millis(250), "it waited for the holder");
        letting_go.join().unwrap();
        holder.join().unwrap();
    }
}
