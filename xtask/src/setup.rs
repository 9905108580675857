//! `setup`: the Debian packages the host needs, listed once, installed when missing.
//!
//! `cargo xtask test` and the sandbox call [`ensure`] for their part, so a fresh machine needs
//! no separate step when the command runs as root; otherwise the error gives the one command
//! to run.

use anyhow::{anyhow, Context, Result};
use xshell::{cmd, Shell};

use crate::failure::Failure;
use crate::report::Reporter;

/// What a command needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Need {
    /// `cargo xtask test`: Ruby, Bundler, the app's gems, a MariaDB server.
    Tests,
    /// The sandbox: a registry, mmdebstrap for the base images, a Python venv for moto.
    Sandbox,
}

/// A Debian package, who needs it and why (shown before it is installed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    pub name: &'static str,
    pub need: Need,
    /// One of the app's gems (Gemfile.lock pins the version bookworm ships).
    pub gem: bool,
    pub why: &'static str,
}

const fn package(name: &'static str, need: Need, why: &'static str) -> Package {
    Package { name, need, gem: false, why }
}

const fn gem(name: &'static str, why: &'static str) -> Package {
    Package { name, need: Need::Tests, gem: true, why }
}

/// Every package any command needs: the one place to add one.
pub const PACKAGES: &[Package] = &[
    package("ruby", Need::Tests, "Ruby 3.1 runs the Rails app and its specs"),
    package(
        "bundler",
        Need::Tests,
        "`bundle exec` resolves rails/Gemfile.lock to the installed gems",
    ),
    gem("ruby-rails", "Rails 6.1, the app's framework"),
    gem("ruby-mysql2", "the app's MySQL/MariaDB driver"),
    gem("puma", "the app server"),
    gem("ruby-rack-cors", "CORS for the frontend"),
    gem("ruby-rspec-rails", "the test framework"),
    gem("ruby-factory-bot-rails", "test data factories"),
    gem("ruby-faker", "fake names and text in the factories"),
    // The -core packages: the binaries without a system service that starts on install.
    package("mariadb-server-core", Need::Tests, "mariadbd, the throwaway test database server"),
    package("mariadb-client-core", Need::Tests, "my_print_defaults, which mariadb-install-db runs"),
    package("docker-registry", Need::Sandbox, "the registry standing in for ECR's image storage"),
    package("mmdebstrap", Need::Sandbox, "builds the sandbox's base images from Debian packages"),
    package("python3-venv", Need::Sandbox, "the virtualenv moto (the ECS/ECR stand-in) runs in"),
    package(
        "busybox-static",
        Need::Sandbox,
        "the pause container that holds each sandbox task's network",
    ),
];

/// The packages `need` requires.
pub fn packages(need: Need) -> impl Iterator<Item = &'static Package> {
    PACKAGES.iter().filter(move |p| p.need == need)
}

/// The app's gems as Debian package names.
pub fn app_gem_packages() -> impl Iterator<Item = &'static str> {
    PACKAGES.iter().filter(|p| p.gem).map(|p| p.name)
}

impl Need {
    pub fn label(self) -> &'static str {
        match self {
            Need::Tests => "tests",
            Need::Sandbox => "sandbox",
        }
    }
}

/// Installs the packages `need` requires that are missing, saying which and why; does nothing
/// when all are present. Without root it fails with the command to run.
pub fn ensure(sh: &Shell, report: &Reporter, need: Need) -> Result<()> {
    let wanted: Vec<&Package> = packages(need).collect();
    match missing(sh, &wanted)? {
        None => Ok(()),
        Some(missing) if missing.is_empty() => Ok(()),
        Some(missing) => {
            report.info(format!(
                "the {} need Debian packages that are missing: running that part of `cargo xtask setup`",
                need.label()
            ));
            install(sh, report, need, &missing)
        }
    }
}

/// The wanted packages dpkg does not list as installed; `None` without dpkg-query.
pub fn missing<'p>(sh: &Shell, wanted: &[&'p Package]) -> Result<Option<Vec<&'p Package>>> {
    if which("dpkg-query").is_none() {
        return Ok(None);
    }
    let names: Vec<&str> = wanted.iter().map(|p| p.name).collect();
    // dpkg-query exits 1 when it knows nothing of a package: that package is simply missing.
    let format = "${db:Status-Abbrev}\t${Package}\n";
    let out = cmd!(sh, "dpkg-query -W -f {format} {names...}")
        .quiet()
        .ignore_status()
        .ignore_stderr()
        .read()
        .context("running dpkg-query")?;
    let installed = installed_packages(&out);
    Ok(Some(wanted.iter().copied().filter(|p| !installed.contains(&p.name)).collect()))
}

pub fn install(sh: &Shell, report: &Reporter, need: Need, missing: &[&Package]) -> Result<()> {
    let owned: Vec<&str> = missing.iter().map(|p| p.name).collect();
    let names = owned.as_slice();
    if !is_root() {
        return Err(anyhow!(
            "missing Debian packages for the {}: {}\n  install them with: {}",
            need.label(),
            names.join(" "),
            install_hint(names)
        )
        .context(Failure::Preflight));
    }
    let phase = report.phase("install Debian packages");
    for p in missing {
        report.info(format!("  {:<24} {}", p.name, p.why));
    }
    let policy = cmd!(sh, "apt-cache policy {names...}")
        .quiet()
        .ignore_status()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    let mut updated = false;
    if needs_update(&policy, names) {
        report.info("the package index does not know every package: running apt-get update");
        apt_update(sh)?;
        updated = true;
    }
    let install = || {
        cmd!(sh, "apt-get install -y --no-install-recommends {names...}")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
    };
    if let Err(err) = install() {
        if updated {
            return Err(err).context("apt-get install failed").context(Failure::Preflight);
        }
        report.info(
            "apt-get install failed, perhaps on a stale package index: updating and retrying",
        );
        apt_update(sh)?;
        install().context("apt-get install failed").context(Failure::Preflight)?;
    }
    phase.finish();
    Ok(())
}

fn apt_update(sh: &Shell) -> Result<()> {
    cmd!(sh, "apt-get update")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .context("apt-get update failed: check the network and /etc/apt/sources.list*")
        .context(Failure::Preflight)
}

/// Package names dpkg-query reports as installed (`ii`), from `${db:Status-Abbrev}\t${Package}` lines.
fn installed_packages(dpkg_query: &str) -> Vec<&str> {
    dpkg_query
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(status, _)| status.trim_end() == "ii")
        .map(|(_, name)| name.split(':').next().unwrap_or(name))
        .collect()
}

/// Whether apt's index lacks a candidate for one of `names`, judging by `apt-cache policy`.
fn needs_update(policy: &str, names: &[&str]) -> bool {
    let mut current: Option<&str> = None;
    let mut with_candidate = Vec::new();
    for line in policy.lines() {
        if !line.starts_with(' ') {
            current = line.strip_suffix(':');
        } else if let Some(candidate) = line.trim().strip_prefix("Candidate:") {
            if candidate.trim() != "(none)" {
                with_candidate.extend(current);
            }
        }
    }
    names.iter().any(|n| !with_candidate.contains(n))
}

/// The one command a non-root user runs to install `names`.
fn install_hint(names: &[&str]) -> String {
    format!(
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends {}",
        names.join(" ")
    )
}

pub fn names(packages: &[&Package]) -> String {
    packages.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The path of `program` on PATH, if any.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| is_executable(p))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_means_ii_only() {
        let out = "ii \truby\nun \tpuma\nrc \tmmdebstrap\nii \tlibmariadb3:amd64\n";
        assert_eq!(installed_packages(out), ["ruby", "libmariadb3"]);
    }

    #[test]
    fn update_is_needed_only_without_a_candidate() {
        let policy = "\
ruby:
  Installed: (none)
  Candidate: 1:3.1
  Version table:
puma:
  Installed: (none)
  Candidate: (none)
";
        assert!(!needs_update(policy, &["ruby"]));
        assert!(needs_update(policy, &["ruby", "puma"]));
        // apt-cache prints nothing at all for a package it has never heard of.
        assert!(needs_update(policy, &["ruby", "mmdebstrap"]));
    }

    #[test]
    fn hint_is_one_command() {
        assert_eq!(
            install_hint(&["ruby", "puma"]),
            "sudo apt-get update && sudo apt-get install -y --no-install-recommends ruby puma"
        );
    }

    #[test]
    fn every_need_has_packages_and_names_are_unique() {
        assert!(packages(Need::Tests).any(|p| p.name == "mariadb-server-core"));
        assert!(packages(Need::Sandbox).any(|p| p.name == "mmdebstrap"));
        let mut all: Vec<&str> = PACKAGES.iter().map(|p| p.name).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), PACKAGES.len());
        assert!(app_gem_packages().all(|g| PACKAGES.iter().any(|p| p.name == g && p.gem)));
    }
}
