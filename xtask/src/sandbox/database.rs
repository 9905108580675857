//! The sandbox's RDS: MariaDB in a container on the sandbox's Docker network, which the tasks
//! reach as `<container>:3306`, its data under `target/sandbox/mariadb`; and the secrets the
//! tasks get from the sandbox's own settings (`DATABASE_URL`, `SECRET_KEY_BASE`,
//! `RAILS_MASTER_KEY`), made once and kept in `target/sandbox/secrets.json` (mode 0600). No
//! secret is ever printed or put on a command line.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Cmd, Shell};

use super::fargate::plan::{Secrets, Settings};
use super::images::MARIADB_IMAGE;
use super::state::{ensure_dir, Layout};
use crate::event::Detail;
use crate::failure::Failure;
use crate::report::{human_duration, Reporter};

/// The database the app's `DATABASE_URL` names (`db:create` creates it).
pub const DATABASE_NAME: &str = "zenn_clone_production";
const PORT: u16 = 3306;
/// How long `up` waits for MariaDB (its first start initialises the data directory).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);

/// The sandbox's secrets. `Debug` shows no value.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSecrets {
    database_password: String,
    secret_key_base: String,
    rails_master_key: String,
}

impl fmt::Debug for SandboxSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SandboxSecrets { .. }")
    }
}

impl SandboxSecrets {
    /// The sandbox's secrets, made on the first call (random, from /dev/urandom).
    pub fn load_or_create(layout: &Layout) -> Result<SandboxSecrets> {
        let path = layout.secrets();
        if path.exists() {
            return SandboxSecrets::load(layout);
        }
        ensure_dir(&layout.dir)?;
        let secrets = SandboxSecrets {
            database_password: random_hex(24)?,
            secret_key_base: random_hex(64)?,
            rails_master_key: random_hex(16)?,
        };
        // create_new: of two racing `up`s (the lock prevents it) the second reads the first's.
        let file = std::fs::File::options().write(true).create_new(true).mode(0o600).open(&path);
        match file {
            Ok(mut file) => {
                file.write_all(serde_json::to_string_pretty(&secrets)?.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(secrets)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => SandboxSecrets::load(layout),
            Err(e) => Err(anyhow!("cannot create {}: {e}", path.display())),
        }
    }

    pub fn load(layout: &Layout) -> Result<SandboxSecrets> {
        let path = layout.secrets();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the sandbox's secrets {}: run `cargo xtask sandbox up`",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not the sandbox's secrets file: delete it and run `cargo xtask sandbox reset`",
                path.display()
            )
        })
    }

    /// The values of the task definitions' `secrets`, with the database at `host`.
    pub fn for_tasks(&self, host: &str) -> Secrets {
        Secrets::from_iter([
            (
                "DATABASE_URL",
                format!("mysql2://root:{}@{host}:{PORT}/{DATABASE_NAME}", self.database_password),
            ),
            ("SECRET_KEY_BASE", self.secret_key_base.clone()),
            ("RAILS_MASTER_KEY", self.rails_master_key.clone()),
        ])
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom for the sandbox's secrets")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// `docker run` of the database: the root password reaches docker through its environment.
pub fn run_command<'a>(
    sh: &'a Shell,
    layout: &Layout,
    settings: &Settings,
    secrets: &SandboxSecrets,
) -> Cmd<'a> {
    let name = container_name(layout);
    let owner = super::owner_label(layout);
    let network = &settings.network;
    let volume = format!("{}:/var/lib/mysql", layout.database().display());
    cmd!(
        sh,
        "docker run --detach --name {name} --label {owner} --network {network} --volume {volume} --env MARIADB_ROOT_PASSWORD {MARIADB_IMAGE}"
    )
    .env("MARIADB_ROOT_PASSWORD", &secrets.database_password)
}

/// `mariadb-admin ping` over TCP inside the container: succeeds once the server takes
/// connections (whatever the credentials).
pub fn ping_command<'a>(sh: &'a Shell, layout: &Layout) -> Cmd<'a> {
    let name = container_name(layout);
    cmd!(
        sh,
        "docker exec {name} mariadb-admin --protocol=tcp --host=127.0.0.1 --connect-timeout=2 ping"
    )
}

/// A query as root with the sandbox's password (through the environment): proves the data
/// directory was initialised with it.
pub fn login_command<'a>(sh: &'a Shell, layout: &Layout, secrets: &SandboxSecrets) -> Cmd<'a> {
    let name = container_name(layout);
    let query = "SELECT 1";
    cmd!(
        sh,
        "docker exec --env MYSQL_PWD {name} mariadb --protocol=tcp --host=127.0.0.1 --user=root --execute {query}"
    )
    .env("MYSQL_PWD", &secrets.database_password)
}

/// Runs `sql` in the app's database as root and returns the rows (tab-separated, no header):
/// what the rehearsal checks the seed rows with.
pub fn query(sh: &Shell, layout: &Layout, sql: &str) -> Result<String> {
    let secrets = SandboxSecrets::load(layout)?;
    let name = container_name(layout);
    cmd!(
        sh,
        "docker exec --env MYSQL_PWD {name} mariadb --protocol=tcp --host=127.0.0.1 --user=root --batch --skip-column-names --database {DATABASE_NAME} --execute {sql}"
    )
    .env("MYSQL_PWD", &secrets.database_password)
    .quiet()
    .read()
    .with_context(|| format!("cannot query the sandbox database ({name}): is the sandbox up?"))
}

/// The database container's name: of this sandbox only, so sandboxes of several checkouts run
/// side by side.
pub fn container_name(layout: &Layout) -> String {
    format!("{}-db", super::sandbox_name(layout))
}

/// Where the container is.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Absent,
    Running,
    /// Created or exited.
    Stopped,
    /// A container of that name another sandbox (or someone else) made.
    Foreign(String),
}

pub fn state(sh: &Shell, layout: &Layout) -> Result<State> {
    let name = container_name(layout);
    let format =
        format!("{{{{.State.Status}}}} {{{{index .Config.Labels \"{}\"}}}}", super::OWNER_LABEL);
    let out = cmd!(sh, "docker container inspect --format {format} {name}")
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run docker: is Docker installed?")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such container") || stderr.contains("No such object") {
            return Ok(State::Absent);
        }
        return Err(anyhow!("docker container inspect {name} failed: {}", stderr.trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (status, owner) = text.split_once(' ').unwrap_or((text.as_str(), ""));
    Ok(if owner != layout.marker() {
        State::Foreign(owner.to_string())
    } else if status == "running" {
        State::Running
    } else {
        State::Stopped
    })
}

/// Runs the database (started, or created on first use) and waits until it takes connections
/// with the sandbox's password.
pub fn ensure(
    sh: &Shell,
    report: &Reporter,
    layout: &Layout,
    settings: &Settings,
    secrets: &SandboxSecrets,
) -> Result<()> {
    let name = container_name(layout);
    let started = Instant::now();
    let already = state(sh, layout).context(Failure::Sandbox)?;
    match already.clone() {
        State::Running => {}
        State::Stopped => {
            cmd!(sh, "docker start {name}")
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| format!("cannot start the sandbox database {name}"))
                .context(Failure::Sandbox)?;
        }
        State::Absent => {
            ensure_dir(&layout.database())?;
            run_command(sh, layout, settings, secrets)
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| {
                    format!("cannot start the sandbox database {name} ({MARIADB_IMAGE})")
                })
                .context(Failure::Sandbox)?;
        }
        State::Foreign(owner) => {
            return Err(anyhow!(
                "a container named {name} exists that this sandbox did not make (owner: {}): remove it (`docker rm -f {name}`)",
                if owner.is_empty() { "none" } else { owner.as_str() }
            )
            .context(Failure::Sandbox));
        }
    }
    loop {
        if ping_command(sh, layout).quiet().ignore_stdout().ignore_stderr().run().is_ok() {
            break;
        }
        if state(sh, layout).ok() != Some(State::Running) {
            let logs = cmd!(sh, "docker logs --tail 5 {name}").quiet().ignore_status().output();
            let tail = logs
                .map(|o| {
                    let text = [o.stdout, o.stderr].concat();
                    String::from_utf8_lossy(&text).trim().replace('\n', "; ")
                })
                .unwrap_or_default();
            return Err(anyhow!(
                "the sandbox database {name} exited while it started: {tail}; see `docker logs {name}`"
            )
            .context(Failure::Sandbox));
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(anyhow!(
                "the sandbox database {name} did not take connections within {}: see `docker logs {name}`",
                human_duration(READY_TIMEOUT)
            )
            .context(Failure::Sandbox));
        }
        report.progress(
            "database",
            format!("    waiting for the database {name} ({}s)", started.elapsed().as_secs()),
            Some(Detail::Component { component: "database".into() }),
        );
        std::thread::sleep(POLL);
    }
    if login_command(sh, layout, secrets).quiet().ignore_stdout().ignore_stderr().run().is_err() {
        return Err(anyhow!(
            "the sandbox database {name} refuses the sandbox's password: its data in {} was made with another one; run `cargo xtask sandbox reset` for a fresh database",
            layout.database().display()
        )
        .context(Failure::Sandbox));
    }
    if already != State::Running {
        report.info(format!(
            "    started database {name} on the sandbox's network in {}; data in {}",
            human_duration(started.elapsed()),
            layout.database().display()
        ));
    }
    Ok(())
}

/// Removes the database's data (the container must be gone).
pub fn wipe(layout: &Layout) -> Result<()> {
    let dir = layout.database();
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("cannot remove the sandbox database's data {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let dir = std::path::PathBuf::from("/work/checkout/target/sandbox");
        Layout { venv: dir.join("venv"), dir }
    }

    fn secrets() -> SandboxSecrets {
        SandboxSecrets {
            database_password: "pw-do-not-print".into(),
            secret_key_base: "skb".into(),
            rails_master_key: "rmk".into(),
        }
    }

    #[test]
    fn the_password_reaches_docker_through_its_environment_never_argv() {
        let sh = Shell::new().unwrap();
        let settings = super::super::task_settings(&layout(), Secrets::default());
        let run = run_command(&sh, &layout(), &settings, &secrets()).to_string();
        let name = container_name(&layout());
        assert_eq!(
            run,
            format!(
                "docker run --detach --name {name} --label zenn-sandbox.dir=/work/checkout/target/sandbox \
                 --network {} --volume /work/checkout/target/sandbox/mariadb:/var/lib/mysql \
                 --env MARIADB_ROOT_PASSWORD zenn-sandbox/mariadb:10.11",
                settings.network
            )
        );
        let login = login_command(&sh, &layout(), &secrets()).to_string();
        assert!(!run.contains("pw-do-not-print") && !login.contains("pw-do-not-print"), "{login}");
        assert!(login.contains("--env MYSQL_PWD "), "{login}");
        assert!(login.ends_with(" --execute \"SELECT 1\""), "the query is one argument: {login}");
    }

    #[test]
    fn tasks_get_the_database_url_and_keys_and_debug_shows_no_value() {
        let values = secrets().for_tasks("zenn-sandbox-abc123-db");
        assert_eq!(
            values.get("DATABASE_URL"),
            Some("mysql2://root:pw-do-not-print@zenn-sandbox-abc123-db:3306/zenn_clone_production")
        );
        assert_eq!(values.get("SECRET_KEY_BASE"), Some("skb"));
        assert_eq!(values.get("RAILS_MASTER_KEY"), Some("rmk"));
        assert!(!format!("{:?} {values:?}", secrets()).contains("pw-do-not-print"));
    }

    #[test]
    fn secrets_are_made_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::project::target_dir()
            .join("test-tmp")
            .join(format!("secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout { venv: dir.join("venv"), dir: dir.clone() };
        let first = SandboxSecrets::load_or_create(&layout).unwrap();
        assert_eq!(first.database_password.len(), 48);
        assert_eq!(first.secret_key_base.len(), 128);
        assert_eq!(first.rails_master_key.len(), 32);
        let mode = std::fs::metadata(layout.secrets()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(SandboxSecrets::load_or_create(&layout).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
