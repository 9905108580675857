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
use xshell::{Cmd, Shell};

use super::fargate::plan::{Secrets, Settings};
use super::images::MARIADB_IMAGE;
use super::state::{ensure_dir, Layout};
use super::OWNER_LABEL;
use crate::aws::ecr::Secret;
use crate::docker::containers::{self, ServerSpec};
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

/// The database's container (`docker run --detach`): the root password reaches docker through
/// its environment.
fn server_spec(layout: &Layout, settings: &Settings, secrets: &SandboxSecrets) -> ServerSpec {
    ServerSpec {
        name: container_name(layout),
        label: (OWNER_LABEL.to_string(), layout.marker()),
        network: settings.network.clone(),
        volume: (layout.database(), "/var/lib/mysql".to_string()),
        secret_env: ("MARIADB_ROOT_PASSWORD".to_string(), Secret::new(&secrets.database_password)),
        image: MARIADB_IMAGE.to_string(),
    }
}

/// `mariadb-admin ping` over TCP inside the container: succeeds once the server takes
/// connections (whatever the credentials).
pub fn ping_command<'a>(sh: &'a Shell, layout: &Layout) -> Cmd<'a> {
    let ping =
        ["mariadb-admin", "--protocol=tcp", "--host=127.0.0.1", "--connect-timeout=2", "ping"];
    containers::exec(sh, &container_name(layout), &[], &ping)
}

/// `mariadb` as root with the sandbox's password (through the environment), run with `args`.
fn client_command<'a>(
    sh: &'a Shell,
    layout: &Layout,
    secrets: &SandboxSecrets,
    args: &[&str],
) -> Cmd<'a> {
    let mut command = vec!["mariadb", "--protocol=tcp", "--host=127.0.0.1", "--user=root"];
    command.extend(args);
    let password = [("MYSQL_PWD", secrets.database_password.as_str())];
    containers::exec(sh, &container_name(layout), &password, &command)
}

/// A query as root with the sandbox's password: proves the data directory was initialised
/// with it.
pub fn login_command<'a>(sh: &'a Shell, layout: &Layout, secrets: &SandboxSecrets) -> Cmd<'a> {
    client_command(sh, layout, secrets, &["--execute", "SELECT 1"])
}

/// Runs `sql` in the app's database as root and returns the rows (tab-separated, no header):
/// what the rehearsal checks the seed rows with.
pub fn query(sh: &Shell, layout: &Layout, sql: &str) -> Result<String> {
    let secrets = SandboxSecrets::load(layout)?;
    let name = container_name(layout);
    let args = ["--batch", "--skip-column-names", "--database", DATABASE_NAME, "--execute", sql];
    client_command(sh, layout, &secrets, &args)
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
    let out = containers::status_and_label(sh, &name, OWNER_LABEL)
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run docker: is Docker installed?")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such container") || stderr.contains("No such object") {
            return Ok(State::Absent);
        }
        return Err(anyhow!("cannot inspect container {name}: {}", stderr.trim()));
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
            containers::start(sh, &name)
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| format!("cannot start the sandbox database {name}"))
                .context(Failure::Sandbox)?;
        }
        State::Absent => {
            ensure_dir(&layout.database())?;
            containers::run_server(sh, &server_spec(layout, settings, secrets))
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
            let logs = containers::logs_tail(sh, &name, 5).quiet().ignore_status().output();
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
        let spec = server_spec(&layout(), &settings, &secrets());
        assert_eq!(
            spec,
            ServerSpec {
                name: container_name(&layout()),
                label: ("zenn-sandbox.dir".into(), "/work/checkout/target/sandbox".into()),
                network: settings.network.clone(),
                volume: ("/work/checkout/target/sandbox/mariadb".into(), "/var/lib/mysql".into()),
                secret_env: ("MARIADB_ROOT_PASSWORD".into(), Secret::new("pw-do-not-print")),
                image: "zenn-sandbox/mariadb:10.11".into(),
            }
        );
        assert!(!format!("{spec:?}").contains("pw-do-not-print"));
        let run = containers::run_server(&sh, &spec).to_string();
        let login = login_command(&sh, &layout(), &secrets());
        let shown = login.to_string();
        assert!(!run.contains("pw-do-not-print") && !shown.contains("pw-do-not-print"), "{shown}");
        assert!(shown.contains("--env MYSQL_PWD "), "{shown}");
        assert!(shown.ends_with(" --execute \"SELECT 1\""), "the query is one argument: {shown}");
        let login: std::process::Command = login.into();
        let password =
            (std::ffi::OsStr::new("MYSQL_PWD"), Some(std::ffi::OsStr::new("pw-do-not-print")));
        assert!(login.get_envs().any(|env| env == password));
    }

    #[test]
    fn the_database_is_pinged_and_queried_over_tcp_inside_its_container() {
        let sh = Shell::new().unwrap();
        let name = container_name(&layout());
        assert!(ping_command(&sh, &layout()).to_string().ends_with(&format!(
            " exec {name} mariadb-admin --protocol=tcp --host=127.0.0.1 --connect-timeout=2 ping"
        )));
        let query = client_command(&sh, &layout(), &secrets(), &["--execute", "SELECT 2"]);
        assert!(query.to_string().ends_with(&format!(
            " exec --env MYSQL_PWD {name} mariadb --protocol=tcp --host=127.0.0.1 --user=root \
             --execute \"SELECT 2\""
        )));
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
