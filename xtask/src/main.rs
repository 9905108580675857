//! `cargo xtask`: test and deploy the zenn-clone backend.
//!
//! `main` parses the command line and dispatches; each command lives in its own module.

mod aws;
mod commands;
mod deploy;
mod docker;
mod entrypoint;
mod event;
mod failure;
mod fingerprint;
mod interrupt;
mod lockfile;
mod poll;
mod project;
mod report;
mod rspec;
mod sandbox;
mod setup;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xshell::Shell;

use crate::deploy::iam;
use crate::entrypoint::Mode;
use crate::failure::Failure;
use crate::report::Reporter;

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Test and deploy the zenn-clone backend (Rails + nginx on ECS Fargate, images in ECR)",
    after_help = failure::exit_code_table(),
    arg_required_else_help = true,
    disable_help_subcommand = true
)]
struct Cli {
    /// Print one JSON object per event on stdout (human text stays on stderr)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the RSpec suite against a throwaway MariaDB (arguments after `--` go to rspec)
    Test(commands::test::Args),
    /// Install what the host needs from Debian packages (Ruby, the Rails gems, MariaDB, ...)
    Setup(commands::setup::Args),
    /// The project's whole test command: fmt, clippy, xtask tests, RSpec, sandbox end to end
    Ci(commands::ci::Args),
    /// Show or set the deploy mode of rails/entrypoint.prod.sh (first / later)
    Entrypoint(commands::entrypoint::Args),
    /// Print the resolved deploy target (never credentials)
    Config(commands::config::Args),
    /// Run the local stand-ins for ECR, ECS and EC2: up, down, status, reset, logs
    Sandbox(commands::sandbox::Args),
    /// First deploy: entrypoint in first mode (db:create, db:seed), build, push, roll, verify
    #[command(after_help = failure::exit_code_table())]
    FirstDeploy(commands::deploy::Args),
    /// Every later deploy: entrypoint in later mode, build, push, roll, verify
    #[command(after_help = failure::exit_code_table())]
    Deploy(commands::deploy::Args),
    /// Print the task definition a deploy would register (RegisterTaskDefinition's JSON)
    Render(commands::render::Args),
    /// Show what differs between the repository's task definition and the service's revision
    #[command(after_help = failure::exit_code_table())]
    Diff(commands::diff::Args),
    /// Show what runs: the service's revision, commit, digests, tasks, deployments, drift
    Status(commands::status::Args),
    /// Show a task's container logs from CloudWatch Logs (default: the service's newest task)
    Logs(commands::logs::Args),
    /// Put the service back on an earlier revision (exact images, by digest) and verify
    #[command(after_help = failure::exit_code_table())]
    Rollback(commands::rollback::Args),
    /// Rehearse the chapter end to end in the sandbox (first deploy, the change, redeploys)
    Rehearse(commands::rehearse::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let report = Reporter::new(cli.json);
    match run(cli.command, &report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = Failure::exit_code_of(&err);
            report.line(&format!("error: {err:#}"));
            report.emit(event::Event::Result(event::Outcome::failed(code, format!("{err:#}"))));
            ExitCode::from(code)
        }
    }
}

fn run(command: Command, report: &Reporter) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project::root());
    match command {
        Command::Test(args) => args.run(&sh, report),
        Command::Setup(args) => args.run(&sh, report),
        Command::Ci(args) => args.run(&sh, report),
        Command::Entrypoint(args) => args.run(&sh, report),
        Command::Config(args) => args.run(report),
        Command::Sandbox(args) => args.run(&sh, report),
        Command::FirstDeploy(args) => commands::deploy::run(&sh, report, args, Mode::First),
        Command::Deploy(args) => commands::deploy::run(&sh, report, args, Mode::Later),
        Command::Render(args) => iam::explain(args.run(&sh, report), iam::Command::Render),
        Command::Diff(args) => iam::explain(args.run(&sh, report), iam::Command::Diff),
        Command::Status(args) => iam::explain(args.run(&sh, report), iam::Command::Status),
        Command::Logs(args) => iam::explain(args.run(report), iam::Command::Logs),
        Command::Rollback(args) => iam::explain(args.run(&sh, report), iam::Command::Rollback),
        Command::Rehearse(args) => args.run(&sh, report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_command_and_exit_code() {
        let help = Cli::command().render_help().to_string();
        for name in [
            "test",
            "setup",
            "ci",
            "entrypoint",
            "config",
            "sandbox",
            "first-deploy",
            "deploy",
            "render",
            "diff",
            "status",
            "logs",
            "rollback",
        ] {
            assert!(help.contains(&format!("  {name} ")), "{name} missing from:\n{help}");
        }
        for f in Failure::ALL {
            assert!(help.contains(&f.to_string()), "{f} missing from:\n{help}");
        }
    }
}
