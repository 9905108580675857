//! Where the sandbox keeps its files, the state file later commands read, and the lock that
//! keeps two `up`s from starting the same thing twice.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::lockfile::{holder, try_flock};
use crate::report::Reporter;

/// The sandbox's directory (`target/sandbox`) and the files in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub dir: PathBuf,
    /// moto's virtualenv; shared by the test sandboxes, which have directories of their own.
    pub venv: PathBuf,
}

impl Layout {
    /// The sandbox of this checkout: `target/sandbox`.
    pub fn standard() -> Layout {
        let dir = crate::project::target_dir().join("sandbox");
        Layout { venv: dir.join("venv"), dir }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }
    /// The registry's blobs and manifests (ECR's bytes).
    pub fn registry_storage(&self) -> PathBuf {
        self.dir.join("registry")
    }
    pub fn registry_config(&self) -> PathBuf {
        self.dir.join("registry.yml")
    }
    /// The secrets tasks get (mode 0600).
    pub fn secrets(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }
    /// The sandbox database's data directory (RDS's storage).
    pub fn database(&self) -> PathBuf {
        self.dir.join("mariadb")
    }
    /// The next loopback address the scheduler gives a task.
    pub fn addresses(&self) -> PathBuf {
        self.dir.join("addresses.json")
    }
    pub fn launcher(&self) -> PathBuf {
        self.dir.join("moto_sandbox.py")
    }
    /// A string in the command line of every process this sandbox starts.
    pub fn marker(&self) -> String {
        self.dir.display().to_string()
    }
}

/// What `up` started, where it listens, and how it was started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub moto: Option<Component>,
    pub registry: Option<Component>,
    pub serve: Option<Component>,
    /// The subnet and security group `up` made in moto (the account's network, which the
    /// deploy does not create); they go into the overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkIds>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkIds {
    pub subnet: String,
    pub security_group: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub pid: u32,
    pub port: u16,
    /// Changes when the program or its arguments change; a mismatch means restart it.
    pub fingerprint: String,
}

impl State {
    pub fn load(layout: &Layout) -> Result<State> {
        let path = layout.state();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "the sandbox state file {} is unreadable: run `cargo xtask sandbox down`, then delete it",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn save(&self, layout: &Layout) -> Result<()> {
        let path = layout.state();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.moto.is_none() && self.registry.is_none() && self.serve.is_none()
    }
}

/// An exclusive `flock` on `target/sandbox/lock`, released when dropped (or the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock at `path`; while another command holds it, says so and waits up to
    /// `timeout`.
    pub fn acquire(path: &Path, report: &Reporter, timeout: Duration) -> Result<Lock> {
        if let Some(dir) = path.parent() {
            ensure_dir(dir)?;
        }
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let started = Instant::now();
        let mut told = false;
        while !try_flock(&file).context("cannot lock the sandbox")? {
            if !told {
                let holder = holder(&mut file).unwrap_or_else(|| "another process".into());
                report.info(format!(
                    "another sandbox command ({holder}) holds {}; waiting for it to finish",
                    path.display()
                ));
                told = true;
            }
            if started.elapsed() > timeout {
                return Err(anyhow!(
                    "{} stayed locked by another command for {}s: wait for it to finish, or stop it",
                    path.display(),
                    timeout.as_secs()
                )
                .context(Failure::Sandbox));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "pid {}", std::process::id())?;
        file.flush()?;
        Ok(Lock { _file: file })
    }
}

/// The directory exists and holds nothing the sandbox needs to keep.
pub fn ensure_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> Layout {
        let dir = crate::project::target_dir()
            .join("test-tmp")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Layout { venv: dir.join("venv"), dir }
    }

    #[test]
    fn state_round_trips_and_starts_empty() {
        let layout = scratch("state");
        ensure_dir(&layout.dir).unwrap();
        assert!(State::load(&layout).unwrap().is_empty());
        let state = State {
            moto: Some(Component { pid: 42, port: 5010, fingerprint: "abc".into() }),
            ..State::default()
        };
        state.save(&layout).unwrap();
        assert_eq!(State::load(&layout).unwrap(), state);
        std::fs::remove_dir_all(&layout.dir).unwrap();
    }

    #[test]
    fn a_second_lock_waits_and_times_out_while_the_first_is_held() {
        let layout = scratch("lock");
        let report = Reporter::plain();
        let first = Lock::acquire(&layout.lock(), &report, Duration::from_secs(1)).unwrap();
        let err = Lock::acquire(&layout.lock(), &report, Duration::from_millis(300)).unwrap_err();
        assert!(format!("{err:#}").contains("stayed locked"), "{err:#}");
        assert_eq!(Failure::of(&err), Some(Failure::Sandbox));
        drop(first);
        Lock::acquire(&layout.lock(), &report, Duration::from_secs(1)).unwrap();
        std::fs::remove_dir_all(&layout.dir).unwrap();
    }
}
