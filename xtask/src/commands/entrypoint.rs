//! `cargo xtask entrypoint first|later|status`: the deploy mode of `rails/entrypoint.prod.sh`.

use std::path::PathBuf;

use crate::event::Event;
use anyhow::Result;
use clap::Subcommand;
use xshell::Shell;

use crate::deploy::target::{DeployFile, DeployFlags, TargetFlags};
use crate::entrypoint::{self, Mode};
use crate::report::Reporter;

/// `cargo xtask entrypoint`: first-deploy or later-deploy mode for the entrypoint.
#[derive(Debug, clap::Args)]
#[command(arg_required_else_help = true)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// First-deploy mode: the first-deploy-only steps (db:create, db:seed) run; prints the diff
    First(ModeArgs),
    /// Later-deploy mode: those steps and their echo lines are commented out; prints the diff
    Later(ModeArgs),
    /// Say which mode the file is in (first, later or mixed), step by step
    Status(FileArgs),
}

#[derive(Debug, clap::Args)]
struct ModeArgs {
    /// Change nothing; exit non-zero when the file is not in this mode (for CI)
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    file: FileArgs,
}

#[derive(Debug, clap::Args)]
struct FileArgs {
    /// The entrypoint to act on [default: `entrypoint.file` from deploy.toml]
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// The deploy.toml target whose `entrypoint` settings apply [default: `default_target`]
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

impl FileArgs {
    /// The file to edit and the first-deploy-only steps, from deploy.toml and the flags.
    fn resolve(self) -> Result<(PathBuf, Vec<String>)> {
        let root = crate::project::root();
        let flags = TargetFlags { target: self.target, ..TargetFlags::default() };
        // The entrypoint settings depend on no AWS variable, so none may break this command.
        let target =
            DeployFile::load(&root)?.resolve(&flags, &DeployFlags::default(), &|_| None, None)?;
        let path = self.file.unwrap_or_else(|| root.join(&target.entrypoint.file));
        Ok((path, target.entrypoint.first_deploy_only))
    }
}

impl Args {
    pub fn run(self, _sh: &Shell, report: &Reporter) -> Result<()> {
        match self.action {
            Action::First(args) => args.run(Mode::First, report),
            Action::Later(args) => args.run(Mode::Later, report),
            Action::Status(args) => {
                let (path, steps) = args.resolve()?;
                let status = entrypoint::status_file(&path, &steps)?;
                let label = entrypoint::label(&path);
                if report.json() {
                    report.emit(Event::EntrypointStatus {
                        file: label,
                        mode: status.mode().map_or("mixed".to_string(), |m| m.to_string()),
                        steps: serde_json::to_value(&status.steps)?,
                    });
                } else {
                    print!("{}", status.describe(&label));
                }
                Ok(())
            }
        }
    }
}

impl ModeArgs {
    fn run(self, mode: Mode, report: &Reporter) -> Result<()> {
        let (path, steps) = self.file.resolve()?;
        let label = entrypoint::label(&path);
        if self.check {
            entrypoint::check_file(&path, mode, &steps)?;
            if report.json() {
                report.emit(Event::EntrypointCheck { file: label, mode: mode.to_string() });
            } else {
                println!("{label}: in {mode} mode");
            }
            return Ok(());
        }
        let applied = entrypoint::apply_file(&path, mode, &steps)?;
        if report.json() {
            report.emit(Event::Entrypoint {
                file: label,
                mode: mode.to_string(),
                changed: applied.changed,
                diff: applied.diff,
            });
        } else if applied.changed {
            print!("{}", applied.diff);
            report.info(format!("{label}: now in {mode} mode"));
        } else {
            println!("{label}: already in {mode} mode");
        }
        Ok(())
    }
}
