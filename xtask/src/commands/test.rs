//! `cargo xtask test`: the app's RSpec suite, run for real against MariaDB.

use anyhow::Result;
use xshell::Shell;

use crate::report::Reporter;
use crate::rspec;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Database:
  TEST_DATABASE_URL set    the suite uses that server, e.g.
                           mysql2://root:password@127.0.0.1:3306/zenn_clone_test
                           (the database is created and its schema loaded first)
  TEST_DATABASE_URL unset  a throwaway MariaDB: data and unix socket under target/mariadb/,
                           no TCP port, stopped when the suite ends
  DATABASE_URL is never passed to the suite, so a production URL cannot be touched.")]
pub struct Args {
    /// Arguments for rspec, after `--` (e.g. `-- spec/requests/api/v1/health_checks_spec.rb`)
    #[arg(last = true, value_name = "RSPEC_ARGS")]
    rspec_args: Vec<String>,
}

impl Args {
    pub fn run(self, sh: &Shell, report: &Reporter) -> Result<()> {
        rspec::run_suite(sh, report, &self.rspec_args)
    }
}
