//! A throwaway MariaDB server for the suite: a private data directory and a unix socket under
//! `target/mariadb/`, no TCP port, gone after the run.
//!
//! Starting one must be quick, so the first run builds a template data directory (system
//! tables from `mariadb-install-db`, the test database with `db/schema.rb` loaded) and every run
//! copies it. The template's name carries a hash of what invalidates it: the schema, the
//! server's version and the options below.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use xshell::{cmd, Shell};

use super::db_url;
use crate::failure::Failure;
use crate::fingerprint;
use crate::interrupt;
use crate::report::Reporter;

pub const TEST_DATABASE: &str = "zenn_clone_test";

/// Server options besides the paths: small buffers, no durability (the data is thrown away).
const SERVER_OPTIONS: &[&str] = &[
    "--skip-networking",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--skip-name-resolve",
];

const INSTALL_OPTIONS: &[&str] = &[
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    "--skip-name-resolve",
    "--innodb-log-file-size=8M",
];

/// Bumped when the way the template is made changes in a way the options above do not show.
const TEMPLATE_FORMAT: &str = "1";

/// `sun_path` holds 108 bytes; longer socket paths go to the temporary directory.
const MAX_SOCKET_PATH: usize = 100;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The files of one server: its data directory, socket, pid file and error log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub dir: PathBuf,
    pub datadir: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    pub error_log: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path, tmp: &Path) -> Paths {
        let socket = dir.join("mysqld.sock");
        let socket = if socket.as_os_str().len() > MAX_SOCKET_PATH {
            tmp.join(format!("zenn-xtask-mariadb-{}.sock", std::process::id()))
        } else {
            socket
        };
        Paths {
            dir: dir.to_path_buf(),
            datadir: dir.join("data"),
            socket,
            pid_file: dir.join("mariadbd.pid"),
            error_log: dir.join("error.log"),
        }
    }
}

/// `mariadbd`'s arguments; `--no-defaults` first, so no my.cnf of the host applies.
pub fn server_args(paths: &Paths, as_root: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--no-defaults".into()];
    for (flag, path) in [
        ("--datadir=", &paths.datadir),
        ("--socket=", &paths.socket),
        ("--pid-file=", &paths.pid_file),
        ("--log-error=", &paths.error_log),
    ] {
        let mut arg = OsString::from(flag);
        arg.push(path);
        args.push(arg);
    }
    args.extend(SERVER_OPTIONS.iter().map(OsString::from));
    if as_root {
        // mariadbd refuses to run as root unless told to.
        args.push("--user=root".into());
    }
    args
}

/// `mariadb-install-db`'s arguments for a data directory.
pub fn install_args(datadir: &Path, as_root: bool) -> Vec<OsString> {
    let mut datadir_arg = OsString::from("--datadir=");
    datadir_arg.push(datadir);
    let mut args: Vec<OsString> = vec!["--no-defaults".into(), datadir_arg];
    args.extend(INSTALL_OPTIONS.iter().map(OsString::from));
    if as_root {
        args.push("--user=root".into());
    }
    args
}

/// The template's cache key: what makes an old template wrong.
pub fn template_key(schema: &[u8], server_version: &str) -> String {
    let options = [SERVER_OPTIONS, INSTALL_OPTIONS].concat().join(" ");
    fingerprint::hex(&[
        TEMPLATE_FORMAT.as_bytes(),
        schema,
        server_version.trim().as_bytes(),
        options.as_bytes(),
        TEST_DATABASE.as_bytes(),
    ])
}

/// A running server; dropping it stops the server and, for a throwaway run, deletes its files.
pub struct Server {
    child: Option<Child>,
    paths: Paths,
    remove_on_drop: bool,
}

impl Server {
    fn start(mariadbd: &Path, paths: Paths, remove_on_drop: bool) -> Result<Server> {
        let _ = fs::remove_file(&paths.socket);
        let mut command = Command::new(mariadbd);
        command
            .args(server_args(&paths, crate::setup::is_root()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the terminal's Ctrl-C reaches us, and we stop it in order.
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls.
        unsafe {
            command.pre_exec(move || {
                // Dies with us even when we are killed outright.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", mariadbd.display()))
            .context(Failure::Preflight)?;
        interrupt::set_server_group(child.id() as i32);
        let mut server = Server { child: Some(child), paths, remove_on_drop };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            interrupt::check(Failure::Tests)?;
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "mariadbd exited during startup ({status}); its log:\n{}",
                        tail(&self.paths.error_log, 15)
                    );
                }
            }
            if UnixStream::connect(&self.paths.socket).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "mariadbd did not open {} within {}s; its log:\n{}",
                    self.paths.socket.display(),
                    START_TIMEOUT.as_secs(),
                    tail(&self.paths.error_log, 15)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `TEST_DATABASE_URL` for the test database on this server.
    pub fn url(&self) -> String {
        db_url::socket_url(&self.paths.socket, TEST_DATABASE)
    }

    /// Stops the server cleanly (SIGTERM, then SIGKILL after a deadline) and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let group = child.id() as i32;
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let result = loop {
            if child.try_wait()?.is_some() {
                break Ok(());
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(-group, libc::SIGKILL) };
                child.wait()?;
                break Err(anyhow!(
                    "mariadbd did not stop within {}s and was killed",
                    STOP_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        interrupt::set_server_group(0);
        let _ = fs::remove_file(&self.paths.socket);
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
        if self.remove_on_drop {
            let _ = fs::remove_dir_all(&self.paths.dir);
        }
    }
}

/// Starts a throwaway server whose test database already has the app's schema.
pub fn start_throwaway(sh: &Shell, report: &Reporter, rails_dir: &Path) -> Result<Server> {
    let root = crate::project::target_dir().join("mariadb");
    let mariadbd = find_mariadbd()?;
    let version = cmd!(sh, "{mariadbd} --version")
        .quiet()
        .read()
        .context("`mariadbd --version` failed")
        .context(Failure::Preflight)?;
    let schema_path = rails_dir.join("db/schema.rb");
    let schema = fs::read(&schema_path)
        .with_context(|| format!("cannot read {}", schema_path.display()))
        .context(Failure::Preflight)?;
    let template = root.join(format!("template-{}", template_key(&schema, &version)));
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    remove_stale(&root, &template);
    if !template.is_dir() {
        build_template(sh, report, &mariadbd, rails_dir, &template)?;
    }

    let paths =
        Paths::new(&root.join(format!("run-{}", std::process::id())), &std::env::temp_dir());
    let _ = fs::remove_dir_all(&paths.dir);
    copy_dir(&template.join("data"), &paths.datadir).with_context(|| {
        format!("cannot copy the template data directory to {}", paths.dir.display())
    })?;
    Server::start(&mariadbd, paths, true)
}

/// Makes the template: system tables, then the test database with the schema, shut down cleanly.
fn build_template(
    sh: &Shell,
    report: &Reporter,
    mariadbd: &Path,
    rails_dir: &Path,
    template: &Path,
) -> Result<()> {
    let phase = report.phase("test database template");
    report.info(format!(
        "first run with this schema and server: preparing {} (later runs copy it)",
        template.display()
    ));
    let partial = template.with_extension(format!("partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    let paths = Paths::new(&partial, &std::env::temp_dir());
    fs::create_dir_all(&paths.dir)?;
    let cleanup = RemoveOnDrop(partial.clone());

    let install_db = mariadbd
        .parent()
        .map(|dir| dir.join("mariadb-install-db"))
        .filter(|p| p.exists())
        .or_else(|| crate::setup::which("mariadb-install-db"))
        .ok_or_else(|| anyhow!("mariadb-install-db not found: run `cargo xtask setup`"))
        .context(Failure::Preflight)?;
    let install_args = install_args(&paths.datadir, crate::setup::is_root());
    let out = cmd!(sh, "{install_db} {install_args...}")
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run mariadb-install-db")?;
    interrupt::check(Failure::Tests)?;
    if !out.status.success() {
        bail!(
            "mariadb-install-db failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut server = Server::start(mariadbd, paths.clone(), false)?;
    let url = server.url();
    super::prepare_database(sh, rails_dir, &url)?;
    server.stop()?;
    drop(server);
    for file in [&paths.error_log, &paths.pid_file] {
        let _ = fs::remove_file(file);
    }
    fs::rename(&partial, template)
        .with_context(|| format!("cannot move the template into {}", template.display()))?;
    // The directory moved away, so the guard finds nothing to delete.
    drop(cleanup);
    phase.finish();
    Ok(())
}

/// Deletes a directory when a step fails halfway.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Debian puts mariadbd in /usr/sbin, which is not on every user's PATH.
fn find_mariadbd() -> Result<PathBuf> {
    crate::setup::which("mariadbd")
        .or_else(|| Some(PathBuf::from("/usr/sbin/mariadbd")).filter(|p| p.exists()))
        .ok_or_else(|| {
            anyhow!(
                "mariadbd not found: run `cargo xtask setup` (Debian package mariadb-server-core)"
            )
        })
        .context(Failure::Preflight)
}

/// Removes templates other than `keep` and the leftovers of runs whose process is gone.
fn remove_stale(root: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix("run-")
            .or_else(|| name.rsplit_once(".partial-").map(|(_, pid)| pid))
            .and_then(|pid| pid.parse::<i32>().ok());
        let stale = match owner {
            Some(pid) => !process_alive(pid),
            None => name.starts_with("template-") && path != keep,
        };
        if stale {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe {
        libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The last `lines` lines of a log file, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_text(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn server_reads_no_host_config_and_opens_no_port() {
        let paths = Paths::new(Path::new("/repo/target/mariadb/run-7"), Path::new("/tmp"));
        let args = args_text(&server_args(&paths, true));
        assert_eq!(args[0], "--no-defaults");
        assert!(args.contains(&"--datadir=/repo/target/mariadb/run-7/data".to_string()));
        assert!(args.contains(&"--socket=/repo/target/mariadb/run-7/mysqld.sock".to_string()));
        assert!(args.contains(&"--skip-networking".to_string()));
        assert!(!args.iter().any(|a| a.starts_with("--port") || a.starts_with("--bind")));
        assert_eq!(args.last().map(String::as_str), Some("--user=root"));
        assert!(!args_text(&server_args(&paths, false)).contains(&"--user=root".to_string()));
    }

    #[test]
    fn long_socket_paths_move_to_the_temp_dir() {
        let deep = PathBuf::from("/").join("d".repeat(120));
        let paths = Paths::new(&deep, Path::new("/tmp"));
        assert!(paths.socket.starts_with("/tmp"));
        assert!(paths.socket.as_os_str().len() <= MAX_SOCKET_PATH);
        assert!(paths.datadir.starts_with(&deep));
    }

    #[test]
    fn template_key_follows_schema_and_server() {
        let key = template_key(b"schema v1", "mariadbd Ver 10.11.19");
        assert_eq!(key, template_key(b"schema v1", "mariadbd Ver 10.11.19\n"));
        assert_ne!(key, template_key(b"schema v2", "mariadbd Ver 10.11.19"));
        assert_ne!(key, template_key(b"schema v1", "mariadbd Ver 10.11.20"));
    }

    #[test]
    fn install_uses_normal_root_auth_without_test_db() {
        let args = args_text(&install_args(Path::new("/x/data"), false));
        assert_eq!(args[..2], ["--no-defaults", "--datadir=/x/data"]);
        assert!(args.contains(&"--auth-root-authentication-method=normal".to_string()));
        assert!(args.contains(&"--skip-test-db".to_string()));
    }

    #[test]
    fn stale_runs_and_old_templates_are_removed() {
        let root =
            crate::project::target_dir().join(format!("test-remove-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let keep = root.join("template-new");
        // A pid far above pid_max belongs to no process.
        for dir in ["template-old", "template-new", "run-2147483646", "other"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let mine = root.join(format!("run-{}", std::process::id()));
        fs::create_dir_all(&mine).unwrap();
        remove_stale(&root, &keep);
        let mut left: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["other".to_string(), format!("run-{}", std::process::id()), "template-new".into()]
        );
        fs::remove_dir_all(&root).unwrap();
    }

    /// A scratch run directory and a stand-in `mariadbd` that never opens its socket.
    fn fake_server_dir(name: &str) -> (PathBuf, PathBuf, Paths) {
        use std::os::unix::fs::PermissionsExt;
        let root = crate::project::target_dir().join("xtask-unit").join(name);
        let _ = fs::remove_dir_all(&root);
        let run = root.join("run");
        fs::create_dir_all(run.join("data")).unwrap();
        let program = root.join("mariadbd");
        fs::write(&program, "#!/bin/sh\nexec sleep 60\n").unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let paths = Paths::new(&run, &std::env::temp_dir());
        (root, program, paths)
    }

    /// Ctrl-C during the tests phase: whatever unwinds drops the throwaway server, which
    /// stops its process group and deletes its files. (The real server needs MariaDB
    /// installed, which `#[ignore]`d tests cover; this is the guard alone.)
    #[test]
    fn a_dropped_throwaway_server_is_stopped_and_its_files_removed() {
        let (_root, program, paths) = fake_server_dir("mariadb-drop");
        let child = Command::new(&program).process_group(0).spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        let server = Server { child: Some(child), paths: paths.clone(), remove_on_drop: true };
        // SAFETY: signal 0 only checks that the process exists.
        assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "the stand-in runs");
        drop(server);
        // Reaped by the drop: the pid names no process any more.
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1, "the server still runs");
        assert!(!paths.dir.exists(), "its files are left: {}", paths.dir.display());
    }

    #[test]
    fn ctrl_c_while_the_throwaway_server_starts_stops_it_and_removes_its_files() {
        let (_root, program, paths) = fake_server_dir("mariadb-ctrl-c");
        interrupt::raise_on_this_thread(true);
        let result = Server::start(&program, paths.clone(), true);
        interrupt::raise_on_this_thread(false);
        let err = result.err().expect("an interrupted start fails");
        assert_eq!(Failure::of(&err), Some(Failure::Tests));
        assert_eq!(format!("{err:#}"), "tests failed: interrupted (Ctrl-C)");
        assert!(!paths.dir.exists(), "its files are left: {}", paths.dir.display());
    }
}
