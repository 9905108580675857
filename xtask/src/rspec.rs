//! `test`: the app's RSpec suite, run for real against MariaDB.
//!
//! The database is `TEST_DATABASE_URL` when it is set (probed first, so a server that does not
//! answer fails within seconds, not a hang); otherwise a throwaway MariaDB of our own
//! ([`mariadb`]), stopped after success, failure and Ctrl-C.

mod db_url;
mod mariadb;

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use xshell::{cmd, Shell};

use crate::docker::DockerCmd;
use crate::failure::Failure;
use crate::interrupt;
use crate::report::Reporter;
use crate::setup::{self, Need};

/// The variable naming the test database; `config/database.yml` reads it too.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// How long a configured database may take to answer before the run fails.
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// Runs `bundle exec rspec` in `rails/` against a test database (see the module docs);
/// a failing suite is a `Failure::Tests` error.
pub fn run_suite(sh: &Shell, report: &Reporter, rspec_args: &[String]) -> Result<()> {
    let suite = prepare(sh, report, rspec_args)?;
    let phase = report.phase("rspec");
    report.line(&format!("$ {}", suite.command));
    let status = suite.command.status(sh);
    drop(suite);
    let status = status
        .context("cannot run `bundle exec rspec`: run `cargo xtask setup`")
        .context(Failure::Preflight)?;
    interrupt::check(Failure::Tests)?;
    if !status.success() {
        return Err(anyhow!("rspec failed ({status}): the failing examples are listed above")
            .context(Failure::Tests));
    }
    phase.finish();
    Ok(())
}

/// The suite, ready to run: its test database is up (and stopped when this is dropped).
pub struct Suite {
    _database: Database,
    /// `bundle exec rspec` in `rails/`, `RAILS_ENV=test`, the test database's URL, and no
    /// `DATABASE_URL` (a production URL must never reach the suite).
    pub command: DockerCmd,
}

/// Installs what the suite needs and starts (or probes) its test database.
pub fn prepare(sh: &Shell, report: &Reporter, rspec_args: &[String]) -> Result<Suite> {
    setup::ensure(sh, report, Need::Tests)?;
    interrupt::install();
    let rails_dir = crate::project::root().join("rails");
    let phase = report.phase("test database");
    let database = Database::open(sh, report, &rails_dir)?;
    phase.finish();
    let command = DockerCmd::program(
        "bundle",
        ["exec", "rspec"].into_iter().map(String::from).chain(rspec_args.iter().cloned()),
    )
    .dir(rails_dir)
    .env("RAILS_ENV", "test")
    .env(TEST_DATABASE_URL, database.url())
    .env_remove("DATABASE_URL");
    Ok(Suite { _database: database, command })
}

enum Database {
    /// Our own server, stopped (and its files deleted) when dropped.
    Throwaway(mariadb::Server),
    /// The server `TEST_DATABASE_URL` names.
    Configured(String),
}

impl Database {
    fn open(sh: &Shell, report: &Reporter, rails_dir: &Path) -> Result<Database> {
        let configured = std::env::var(TEST_DATABASE_URL).ok().filter(|u| !u.trim().is_empty());
        let Some(url) = configured else {
            report.info(format!(
                "database: a throwaway MariaDB under target/mariadb/ (set {TEST_DATABASE_URL} to use your own)"
            ));
            return Ok(Database::Throwaway(mariadb::start_throwaway(sh, report, rails_dir)?));
        };
        let parsed = db_url::parse(&url)
            .with_context(|| format!("{TEST_DATABASE_URL} is not a MySQL database URL"))
            .context(Failure::Input)?;
        report.info(format!("database: {} (from {TEST_DATABASE_URL})", parsed.redacted));
        db_url::probe(&parsed.endpoint, PROBE_TIMEOUT)
            .with_context(|| {
                format!(
                    "the test database {} does not answer: start it, or unset {TEST_DATABASE_URL} to use a throwaway MariaDB",
                    parsed.redacted
                )
            })
            .context(Failure::Preflight)?;
        prepare_database(sh, rails_dir, &url)?;
        Ok(Database::Configured(url))
    }

    fn url(&self) -> String {
        match self {
            Database::Throwaway(server) => server.url(),
            Database::Configured(url) => url.clone(),
        }
    }
}

/// Creates the test database and loads `db/schema.rb` into it (`RAILS_ENV=test`).
fn prepare_database(sh: &Shell, rails_dir: &Path, url: &str) -> Result<()> {
    let _dir = sh.push_dir(rails_dir);
    let out = cmd!(sh, "bundle exec rails db:create db:schema:load")
        .env("RAILS_ENV", "test")
        .env(TEST_DATABASE_URL, url)
        .env_remove("DATABASE_URL")
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run `bundle exec rails`: run `cargo xtask setup`")
        .context(Failure::Preflight)?;
    interrupt::check(Failure::Tests)?;
    if !out.status.success() {
        return Err(anyhow!(
            "`rails db:create db:schema:load` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .context(Failure::Tests));
    }
    Ok(())
}
