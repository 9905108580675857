//! `cargo xtask`: test and deploy the zenn-clone backend.
//!
//! `main` parses the command line and dispatches; each command lives in its own module.

mod aws;
mod ci;
mod config;
mod docker;
mod ec2;
mod ecr;
mod ecs;
mod entrypoint;
mod failure;
mod fingerprint;
mod interrupt;
mod pipeline;
mod push;
mod rehearsal;
mod report;
mod roll;
mod rspec;
mod sandbox;
mod setup;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xshell::Shell;

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
    Test(rspec::Args),
    /// Install what the host needs from Debian packages (Ruby, the Rails gems, MariaDB, ...)
    Setup(setup::Args),
    /// The project's whole test command: fmt, clippy, xtask tests, RSpec, sandbox end to end
    Ci(ci::Args),
    /// Show or set the deploy mode of rails/entrypoint.prod.sh (first / later)
    Entrypoint(entrypoint::Args),
    /// Print the resolved deploy target (never credentials)
    Config(config::Args),
    /// Run the local stand-ins for ECR, ECS and EC2: up, down, status, reset, logs
    Sandbox(sandbox::Args),
    /// First deploy: entrypoint in first mode (db:create, db:seed), build, push, roll, verify
    #[command(after_help = failure::exit_code_table())]
    FirstDeploy(pipeline::Args),
    /// Every later deploy: entrypoint in later mode, build, push, roll, verify
    #[command(after_help = failure::exit_code_table())]
    Deploy(pipeline::Args),
    /// Rehearse the chapter end to end in the sandbox (first deploy, the change, redeploys)
    Rehearse(rehearsal::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let report = Reporter::new(cli.json);
    match run(cli.command, &report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = Failure::exit_code_of(&err);
            report.line(&format!("error: {err:#}"));
            report.event(
                "result",
                serde_json::json!({ "ok": false, "exit_code": code, "error": format!("{err:#}") }),
            );
            ExitCode::from(code)
        }
    }
}

fn run(command: Command, report: &Reporter) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match command {
        Command::Test(args) => args.run(&sh, report),
        Command::Setup(args) => args.run(&sh, report),
        Command::Ci(args) => args.run(&sh, report),
        Command::Entrypoint(args) => args.run(&sh, report),
        Command::Config(args) => {
            let endpoints = if args.target.sandbox { sandbox::running_endpoints() } else { None };
            args.run(report, endpoints)
        }
        Command::Sandbox(args) => args.run(&sh, report),
        Command::FirstDeploy(args) => deploy(&sh, report, args, pipeline::Kind::First),
        Command::Deploy(args) => deploy(&sh, report, args, pipeline::Kind::Later),
        Command::Rehearse(args) => args.run(&sh, report),
    }
}

/// `--sandbox` brings the sandbox up and hands the pipeline its endpoints: the pipeline itself
/// never knows whether it deploys to AWS or to the stand-ins.
fn deploy(
    sh: &Shell,
    report: &Reporter,
    args: pipeline::Args,
    kind: pipeline::Kind,
) -> anyhow::Result<()> {
    let endpoints = if args.target.sandbox && !args.dry_run {
        Some(sandbox::ensure_up(
            sh,
            report,
            sandbox::UpOptions::for_deploy(kind == pipeline::Kind::First),
        )?)
    } else if args.target.sandbox {
        sandbox::running_endpoints()
    } else {
        None
    };
    args.run(sh, report, kind, endpoints)
}

/// The repository root. `cargo run` sets `CARGO_MANIFEST_DIR` at run time too, so a copy of
/// the repository (as the end-to-end tests make) is served by the same binary.
pub fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or(manifest_dir)
}

/// This binary, to run it again (the sandbox process, the rehearsal's deploys). When a build
/// replaced the file while this process runs (`cargo test` during `cargo xtask ci`), Linux
/// names it `<path> (deleted)`: the new file at that path is the same program, rebuilt.
pub fn xtask_binary() -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    if exe.is_file() {
        return Ok(exe);
    }
    let text = exe.to_string_lossy();
    let path = PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text));
    if path.is_file() {
        Ok(path)
    } else {
        Err(anyhow::anyhow!(
            "the xtask binary {} is gone: run `cargo build -p xtask`",
            path.display()
        ))
    }
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or `<root>/target`): build output, the
/// sandbox's state and everything else the xtask keeps between runs.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                project_root().join(dir)
            }
        }
        None => project_root().join("target"),
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
        for name in
            ["test", "setup", "ci", "entrypoint", "config", "sandbox", "first-deploy", "deploy"]
        {
            assert!(help.contains(&format!("  {name} ")), "{name} missing from:\n{help}");
        }
        for f in Failure::ALL {
            assert!(help.contains(&f.to_string()), "{f} missing from:\n{help}");
        }
    }
}
