//! Stand-ins for the official base images, which cannot be pulled here: root filesystems made
//! from Debian bookworm packages by `mmdebstrap`, streamed into `docker import`.
//!
//! Each image carries a label with a hash of its recipe (packages, hooks, image config), so it
//! is built once, reused while the recipe is unchanged, and rebuilt when it changes.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use xshell::Shell;

use crate::docker::{containers, Docker, DockerCmd};
use crate::event::{Detail, Event};
use crate::failure::Failure;
use crate::fingerprint;
use crate::report::{human_duration, Reporter};
use crate::setup::{self, Need};

/// Stands in for `ruby:3.1.2`: Ruby, Bundler and every gem of rails/Gemfile.lock.
pub const RUBY_IMAGE: &str = "zenn-sandbox/ruby:3.1";
/// Stands in for `nginx:latest`: nginx with curl, logging to stdout/stderr.
pub const NGINX_IMAGE: &str = "zenn-sandbox/nginx:1.22";
/// Stands in for `mariadb` (and RDS): the official image's entrypoint contract.
pub const MARIADB_IMAGE: &str = "zenn-sandbox/mariadb:10.11";

/// The label holding the recipe's hash.
const RECIPE_LABEL: &str = "zenn-sandbox.recipe";

const SUITE: &str = "bookworm";
/// The archive the host installs from: bookworm with its point releases and security updates,
/// so the gems match rails/Gemfile.lock.
const SOURCES: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];

/// Options for every image: no recommends, no documentation (the licences stay).
const COMMON_OPTIONS: &[&str] = &[
    "--mode=root",
    "--variant=minbase",
    "--format=tar",
    "--aptopt=APT::Install-Recommends \"false\"",
    "--aptopt=Acquire::Retries \"3\"",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
];

const PATH_ENV: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MARIADB_ENTRYPOINT: &str = include_str!("mariadb-entrypoint.sh");
const MARIADB_ENTRYPOINT_PATH: &str = "/usr/local/bin/docker-entrypoint.sh";

/// A step mmdebstrap runs on the finished tree before packing it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hook {
    /// A shell command; `$1` is the root directory.
    Shell(&'static str),
    /// A file written into the tree, executable.
    Upload { contents: &'static str, path: &'static str },
}

/// How one image is made.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recipe {
    image: &'static str,
    packages: Vec<&'static str>,
    hooks: Vec<Hook>,
    /// Dockerfile instructions for `docker import --change`.
    changes: Vec<&'static str>,
}

fn recipes() -> Vec<Recipe> {
    let mut ruby_packages = vec!["ruby", "bundler"];
    ruby_packages.extend(setup::app_gem_packages());
    // libmariadb3 is what mysql2 loads at run time; curl runs the ECS health check.
    ruby_packages.extend(["libmariadb3", "curl", "ca-certificates", "tzdata"]);
    vec![
        Recipe {
            image: RUBY_IMAGE,
            packages: ruby_packages,
            hooks: vec![],
            changes: vec![
                PATH_ENV,
                "ENV LANG=C.UTF-8",
                "ENV BUNDLE_SILENCE_ROOT_WARNING=1",
                "CMD [\"irb\"]",
            ],
        },
        Recipe {
            image: NGINX_IMAGE,
            packages: vec!["nginx", "curl", "ca-certificates"],
            hooks: vec![
                // As in the official image: no default site, conf.d/*.conf is the config,
                // and the logs go to the container's output.
                Hook::Shell("rm -f \"$1/etc/nginx/sites-enabled/default\""),
                Hook::Shell(
                    "ln -sf /dev/stdout \"$1/var/log/nginx/access.log\" && ln -sf /dev/stderr \"$1/var/log/nginx/error.log\"",
                ),
            ],
            changes: vec![PATH_ENV, "EXPOSE 80", "CMD [\"nginx\", \"-g\", \"daemon off;\"]"],
        },
        Recipe {
            image: MARIADB_IMAGE,
            packages: vec!["mariadb-server-core", "mariadb-client", "tzdata"],
            hooks: vec![
                // The -core package creates no `mysql` user, and minbase has no useradd.
                Hook::Shell(
                    "echo 'mysql:x:999:999:MariaDB:/nonexistent:/bin/false' >> \"$1/etc/passwd\" && echo 'mysql:x:999:' >> \"$1/etc/group\"",
                ),
                Hook::Upload { contents: MARIADB_ENTRYPOINT, path: MARIADB_ENTRYPOINT_PATH },
            ],
            changes: vec![
                PATH_ENV,
                "ENV LANG=C.UTF-8",
                "VOLUME /var/lib/mysql",
                "EXPOSE 3306",
                "ENTRYPOINT [\"docker-entrypoint.sh\"]",
                "CMD [\"mariadbd\"]",
            ],
        },
    ]
}

impl Recipe {
    /// Hash of everything that shapes the image.
    fn fingerprint(&self) -> String {
        let mut parts: Vec<&[u8]> = vec![SUITE.as_bytes()];
        parts.extend(SOURCES.iter().map(|s| s.as_bytes()));
        parts.extend(COMMON_OPTIONS.iter().map(|s| s.as_bytes()));
        parts.push(self.image.as_bytes());
        parts.extend(self.packages.iter().map(|s| s.as_bytes()));
        for hook in &self.hooks {
            match hook {
                Hook::Shell(script) => parts.push(script.as_bytes()),
                Hook::Upload { contents, path } => {
                    parts.push(path.as_bytes());
                    parts.push(contents.as_bytes());
                }
            }
        }
        parts.extend(self.changes.iter().map(|s| s.as_bytes()));
        fingerprint::hex(&parts)
    }

    /// mmdebstrap's arguments; uploads come from `upload_dir`, named by their index.
    fn mmdebstrap_args(&self, upload_dir: &std::path::Path) -> Vec<String> {
        let mut args: Vec<String> = COMMON_OPTIONS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--include={}", self.packages.join(",")));
        for (i, hook) in self.hooks.iter().enumerate() {
            match hook {
                Hook::Shell(script) => args.push(format!("--customize-hook={script}")),
                Hook::Upload { path, .. } => {
                    let source = upload_dir.join(upload_name(self.image, i));
                    args.push(format!("--customize-hook=upload {} {path}", source.display()));
                    args.push(format!("--customize-hook=chmod 0755 \"$1{path}\""));
                }
            }
        }
        args.push(SUITE.to_string());
        args.push("-".to_string());
        args.extend(SOURCES.iter().map(|s| s.to_string()));
        args
    }

    /// `docker import` of the tarball on stdin: the image config, then the recipe label.
    fn import_command(&self) -> DockerCmd {
        let label = format!("LABEL {RECIPE_LABEL}={}", self.fingerprint());
        let mut changes: Vec<&str> = self.changes.clone();
        changes.push(&label);
        Docker::default().import_stdin(&changes, self.image)
    }
}

/// `zenn-sandbox/ruby:3.1` → `zenn-sandbox-ruby-3.1`, for file names.
fn slug(image: &str) -> String {
    image.replace(['/', ':'], "-")
}

fn upload_name(image: &str, index: usize) -> String {
    format!("{}-{index}", slug(image))
}

/// Builds each base image that is missing or whose recipe changed; says what and how long.
pub fn ensure(sh: &Shell, report: &Reporter) -> Result<()> {
    let mut stale = Vec::new();
    for recipe in recipes() {
        if current_fingerprint(sh, recipe.image)?.as_deref() != Some(&recipe.fingerprint()) {
            stale.push(recipe);
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    setup::ensure(sh, report, Need::Sandbox)?;
    if !setup::is_root() {
        return Err(anyhow!(
            "the sandbox base images ({}) must be built once as root (mmdebstrap --mode=root): run this command as root",
            stale.iter().map(|r| r.image).collect::<Vec<_>>().join(", ")
        )
        .context(Failure::Preflight));
    }
    let phase = report.phase("sandbox base images");
    // At the same time: each build is mostly downloading and unpacking, one core each.
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let builds: Vec<_> = stale
            .iter()
            .map(|recipe| scope.spawn(move || build(&Shell::new()?, report, recipe)))
            .collect();
        builds
            .into_iter()
            .map(|b| b.join().unwrap_or_else(|_| Err(anyhow!("a base image build panicked"))))
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    phase.finish();
    Ok(())
}

/// The recipe label of `image`, `None` when there is no such image.
fn current_fingerprint(sh: &Shell, image: &str) -> Result<Option<String>> {
    let out = containers::image_label(sh, image, RECIPE_LABEL)
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run docker: is Docker installed?")
        .context(Failure::Preflight)?;
    if out.status.success() {
        let label = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Ok(Some(label).filter(|l| !l.is_empty() && l != "<no value>"));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No such image") || stderr.contains("No such object") {
        Ok(None)
    } else {
        Err(anyhow!("cannot inspect image {image}: {}", stderr.trim()))
            .context("is the Docker daemon running?")
            .context(Failure::Preflight)
    }
}

fn build(sh: &Shell, report: &Reporter, recipe: &Recipe) -> Result<()> {
    let dir = crate::project::target_dir().join("sandbox-images");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (i, hook) in recipe.hooks.iter().enumerate() {
        if let Hook::Upload { contents, .. } = hook {
            std::fs::write(dir.join(upload_name(recipe.image, i)), contents)?;
        }
    }
    let log = dir.join(format!("{}.log", slug(recipe.image)));
    let previous = image_id(sh, recipe.image);
    report.info(format!(
        "building {} from Debian {SUITE} packages: {} (log: {})",
        recipe.image,
        recipe.packages.join(" "),
        log.display()
    ));

    let started = Instant::now();
    let handle = duct::cmd("mmdebstrap", recipe.mmdebstrap_args(&dir))
        .pipe(recipe.import_command().expression().stdout_null())
        .stderr_path(&log)
        .unchecked()
        .start()
        .context("cannot start mmdebstrap | docker import: run `cargo xtask setup`")
        .context(Failure::Preflight)?;
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _ = tx.send(handle.wait().map(|out| out.status));
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(status) => return finish(status, recipe, &log),
                Err(mpsc::RecvTimeoutError::Timeout) => report.progress(
                    &format!("base-image {}", recipe.image),
                    // Whole tens of seconds, so piped output gets a line every 10 s, not every second.
                    format!(
                        "    building {}: mmdebstrap | docker import, {}s",
                        recipe.image,
                        started.elapsed().as_secs() / 10 * 10
                    ),
                    Some(Detail::BaseImage {
                        image: recipe.image.to_string(),
                        elapsed_s: started.elapsed().as_secs(),
                    }),
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("lost track of the build of {}", recipe.image)
                }
            }
        }
    })?;

    let size = containers::image_size(sh, recipe.image)
        .quiet()
        .read()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|bytes| format!(", {} MB", bytes / 1_000_000))
        .unwrap_or_default();
    report.info(format!("built {} in {}{size}", recipe.image, human_duration(started.elapsed())));
    report.emit(Event::BaseImage {
        image: recipe.image.to_string(),
        duration_s: started.elapsed().as_secs_f64(),
    });
    // The tag moved to the new image; the old one would linger as <none>.
    if let Some(old) = previous.filter(|old| image_id(sh, recipe.image).as_ref() != Some(old)) {
        let _ = containers::image_remove(sh, &old)
            .quiet()
            .ignore_status()
            .ignore_stdout()
            .ignore_stderr()
            .run();
    }
    Ok(())
}

fn finish(
    status: std::io::Result<std::process::ExitStatus>,
    recipe: &Recipe,
    log: &std::path::Path,
) -> Result<()> {
    let status = status.with_context(|| format!("waiting for the build of {}", recipe.image))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    Err(anyhow!(
        "building {} failed ({status}); the end of {}:\n{}",
        recipe.image,
        log.display(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    ))
    .context("check that deb.debian.org is reachable")
    .context(Failure::Sandbox)
}

fn image_id(sh: &Shell, image: &str) -> Option<String> {
    containers::image_id(sh, image).quiet().ignore_stderr().read().ok().filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn recipe(image: &str) -> Recipe {
        recipes().into_iter().find(|r| r.image == image).unwrap()
    }

    #[test]
    fn ruby_image_has_every_gem_the_tests_install() {
        let ruby = recipe(RUBY_IMAGE);
        for gem in setup::app_gem_packages() {
            assert!(ruby.packages.contains(&gem), "{gem} missing from {RUBY_IMAGE}");
        }
        assert!(ruby.packages.contains(&"curl") && ruby.packages.contains(&"libmariadb3"));
    }

    #[test]
    fn mmdebstrap_streams_a_minbase_tar_from_bookworm() {
        let args = recipe(NGINX_IMAGE).mmdebstrap_args(Path::new("/t/sandbox-images"));
        assert!(args.contains(&"--mode=root".to_string()));
        assert!(args.contains(&"--variant=minbase".to_string()));
        assert!(args.contains(&"--include=nginx,curl,ca-certificates".to_string()));
        assert!(args.contains(
            &"--customize-hook=rm -f \"$1/etc/nginx/sites-enabled/default\"".to_string()
        ));
        let suite = args.iter().position(|a| a == "bookworm").unwrap();
        assert_eq!(args[suite + 1], "-");
        assert_eq!(
            args[suite + 2..],
            SOURCES.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn uploads_come_from_the_build_dir_and_are_executable() {
        let args = recipe(MARIADB_IMAGE).mmdebstrap_args(Path::new("/t/img"));
        assert!(args.contains(&format!(
            "--customize-hook=upload /t/img/zenn-sandbox-mariadb-10.11-1 {MARIADB_ENTRYPOINT_PATH}"
        )));
        assert!(
            args.contains(&format!("--customize-hook=chmod 0755 \"$1{MARIADB_ENTRYPOINT_PATH}\""))
        );
    }

    #[test]
    fn import_sets_config_and_label_then_reads_stdin() {
        let nginx = recipe(NGINX_IMAGE);
        let command = nginx.import_command();
        let args: Vec<String> =
            command.args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[0], "import");
        assert!(args
            .windows(2)
            .any(|w| w == ["--change", "CMD [\"nginx\", \"-g\", \"daemon off;\"]"]));
        assert!(args.contains(&format!("LABEL {RECIPE_LABEL}={}", nginx.fingerprint())));
        assert_eq!(args[args.len() - 2..], ["-".to_string(), NGINX_IMAGE.to_string()]);
    }

    #[test]
    fn fingerprint_changes_with_the_recipe() {
        let ruby = recipe(RUBY_IMAGE);
        assert_eq!(ruby.fingerprint(), recipe(RUBY_IMAGE).fingerprint());
        let mut more = ruby.clone();
        more.packages.push("vim");
        assert_ne!(ruby.fingerprint(), more.fingerprint());
        let mut other_cmd = ruby.clone();
        other_cmd.changes.pop();
        assert_ne!(ruby.fingerprint(), other_cmd.fingerprint());
        assert_ne!(ruby.fingerprint(), recipe(NGINX_IMAGE).fingerprint());
    }

    /// Builds the real images (root, Docker and deb.debian.org needed): `cargo test -p xtask
    /// -- --ignored base_images`.
    #[test]
    #[ignore = "needs Docker, mmdebstrap, root and deb.debian.org (only Docker once the base images are built): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
    fn base_images_are_built_then_reused() {
        let sh = Shell::new().unwrap();
        let report = Reporter::plain();
        ensure(&sh, &report).unwrap();
        for recipe in recipes() {
            assert_eq!(current_fingerprint(&sh, recipe.image).unwrap(), Some(recipe.fingerprint()));
        }
        let started = Instant::now();
        ensure(&sh, &report).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "rebuilt: {:?}", started.elapsed());
    }

    #[test]
    fn deploy_toml_names_these_images() {
        let text = std::fs::read_to_string(crate::project::root().join("deploy.toml")).unwrap();
        let file: toml::Value = toml::from_str(&text).unwrap();
        let arg = |image: &str, key: &str| {
            file["targets"]["sandbox"]["images"][image]["build_args"][key]
                .as_str()
                .map(str::to_owned)
        };
        assert_eq!(arg("rails", "RUBY_IMAGE").as_deref(), Some(RUBY_IMAGE));
        assert_eq!(arg("nginx", "NGINX_IMAGE").as_deref(), Some(NGINX_IMAGE));
    }
}
