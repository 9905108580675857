//! Failure classes and their exit codes.
//!
//! A command marks an error with its class by adding it as context
//! (`.context(Failure::Build)` or `Err(anyhow!(..).context(Failure::Build))`);
//! `main` finds the class in the error chain and exits with its code.

use std::fmt;

/// Why a command failed; each class has its own exit code (see README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Bad flags, a malformed `deploy.toml`, an unknown target, an entrypoint that cannot be edited safely.
    Input,
    /// Something the command needs is missing: Docker, AWS credentials, a tool, a repository.
    Preflight,
    /// The RSpec suite failed.
    Tests,
    /// A `docker build` failed.
    Build,
    /// Login, push or the digest check after the push failed.
    Push,
    /// The ECS roll failed: a new task stopped, a deployment rolled back.
    Roll,
    /// The roll ended without a verdict: its timeout passed, or ECS stopped answering; the
    /// deployment goes on.
    Timeout,
    /// The new task did not answer the health check as expected.
    Verify,
    /// The sandbox could not be brought up or is not running.
    Sandbox,
    /// `diff`: the repository's task definition differs from the service's revision.
    Drift,
}

impl Failure {
    pub const ALL: [Failure; 10] = [
        Failure::Input,
        Failure::Preflight,
        Failure::Tests,
        Failure::Build,
        Failure::Push,
        Failure::Roll,
        Failure::Timeout,
        Failure::Verify,
        Failure::Sandbox,
        Failure::Drift,
    ];

    pub fn exit_code(self) -> u8 {
        match self {
            Failure::Input => 2,
            Failure::Preflight => 3,
            Failure::Tests => 4,
            Failure::Build => 5,
            Failure::Push => 6,
            Failure::Roll => 7,
            Failure::Timeout => 8,
            Failure::Verify => 9,
            Failure::Sandbox => 10,
            Failure::Drift => 11,
        }
    }

    /// The class of an error: the outermost `Failure` among its contexts, if any.
    pub fn of(err: &anyhow::Error) -> Option<Failure> {
        err.downcast_ref::<Failure>().copied()
    }

    /// Exit code for an error: its class's code, or 1 for an unclassified error.
    pub fn exit_code_of(err: &anyhow::Error) -> u8 {
        Failure::of(err).map_or(1, Failure::exit_code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::Input => "invalid input",
            Failure::Preflight => "preflight failed",
            Failure::Tests => "tests failed",
            Failure::Build => "build failed",
            Failure::Push => "push failed",
            Failure::Roll => "roll failed",
            Failure::Timeout => "roll unfinished",
            Failure::Verify => "verification failed",
            Failure::Sandbox => "sandbox failed",
            Failure::Drift => "drift (diff: the definitions differ)",
        })
    }
}

impl std::error::Error for Failure {}

/// The exit-code table, as printed by `--help` and README.md.
pub fn exit_code_table() -> String {
    let mut out = String::from("Exit codes:\n  0   success\n  1   unexpected error\n");
    for f in Failure::ALL {
        out.push_str(&format!("  {:<3} {}\n", f.exit_code(), f));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::{anyhow, Context};

    #[test]
    fn class_is_found_under_later_context() {
        let err = Err::<(), _>(anyhow!("docker build exited with 1"))
            .context(Failure::Build)
            .context("building zenn-clone-rails")
            .unwrap_err();
        assert_eq!(Failure::of(&err), Some(Failure::Build));
        assert_eq!(Failure::exit_code_of(&err), 5);
    }

    #[test]
    fn unclassified_error_exits_with_one() {
        assert_eq!(Failure::exit_code_of(&anyhow!("boom")), 1);
    }

    #[test]
    fn codes_are_distinct_and_not_clap_or_generic() {
        let mut codes: Vec<u8> = Failure::ALL.iter().map(|f| f.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Failure::ALL.len());
        assert!(!codes.contains(&0) && !codes.contains(&1));
    }
}
