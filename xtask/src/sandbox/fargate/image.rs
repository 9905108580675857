//! Images: the pull a task starts with, and the small busybox image every task's pause
//! container runs (made from Debian's busybox-static, since nothing can be pulled from the internet).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use xshell::{cmd, Shell};

use super::docker_output;
use super::plan::{pull_command, repo_digests_command, repository};
use crate::failure::Failure;

/// What a pull leaves: the reference to create the container from and the digest it had.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// `repo@sha256:...`, so the container runs exactly the digest recorded, even if `latest`
    /// moves while the task starts.
    pub run_ref: String,
    pub digest: Option<String>,
}

/// Pulls `reference` (a push since the last task is picked up, as on Fargate). The error is
/// docker's own message.
pub fn pull(sh: &Shell, reference: &str) -> Result<Pulled, String> {
    docker_output(pull_command(sh, reference))?;
    let digests = docker_output(repo_digests_command(sh, reference))?;
    Ok(pick_digest(reference, &digests))
}

/// The digest of `reference` among the engine's `RepoDigests` (a JSON list of `repo@sha256:..`).
pub fn pick_digest(reference: &str, repo_digests: &str) -> Pulled {
    let list: Vec<String> = serde_json::from_str(repo_digests.trim()).unwrap_or_default();
    let repo = repository(reference);
    let found = list
        .iter()
        .find(|d| d.split('@').next() == Some(repo))
        .or(list.first())
        .and_then(|d| d.split_once('@'));
    match found {
        Some((_, digest)) => {
            Pulled { run_ref: format!("{repo}@{digest}"), digest: Some(digest.to_string()) }
        }
        None => Pulled { run_ref: reference.to_string(), digest: None },
    }
}

/// Makes `tag` (the pause image) unless the engine has it.
pub fn ensure_pause_image(sh: &Shell, tag: &str) -> Result<()> {
    let format = "{{.Id}}";
    let present = cmd!(sh, "docker image inspect --format {format} {tag}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    if present {
        return Ok(());
    }
    import_busybox(sh, tag, &[])
}

/// Imports an image holding the host's static busybox and its applets as `tag`; `changes` are
/// `docker import --change` lines (`VOLUME /srv`, `CMD ["sh"]`).
pub fn import_busybox(sh: &Shell, tag: &str, changes: &[&str]) -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    let format = "${Status}";
    let is_static = cmd!(sh, "dpkg-query --show --showformat {format} busybox-static")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|status| status.ends_with("installed"));
    if !is_static || !busybox.exists() {
        return Err(anyhow!(
            "the sandbox's pause image needs a static busybox: install Debian's busybox-static \
             (`apt-get install busybox-static`, or `cargo xtask setup`)"
        )
        .context(Failure::Preflight));
    }
    let dir = std::env::temp_dir().join(format!(
        "zenn-sandbox-busybox-{}-{}",
        std::process::id(),
        unique()
    ));
    let root = dir.join("root");
    let result = (|| -> Result<()> {
        for sub in ["bin", "tmp", "srv", "etc"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        std::fs::copy(busybox, root.join("bin/busybox"))?;
        let applets = cmd!(sh, "{busybox} --list").quiet().read()?;
        for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        let tar = dir.join("rootfs.tar");
        cmd!(sh, "tar --create --file {tar} --directory {root} .").quiet().run()?;
        let change_args: Vec<String> =
            changes.iter().flat_map(|c| ["--change".to_string(), c.to_string()]).collect();
        cmd!(sh, "docker import {change_args...} {tar} {tag}").quiet().ignore_stdout().run()?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
        .with_context(|| format!("could not make image {tag} from /bin/busybox"))
        .context(Failure::Sandbox)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_the_pulled_repository_is_chosen_and_run_by_digest() {
        let digests =
            r#"["127.0.0.1:5000/other@sha256:bb","127.0.0.1:5000/zenn-clone-rails@sha256:aa"]"#;
        assert_eq!(
            pick_digest("127.0.0.1:5000/zenn-clone-rails:latest", digests),
            Pulled {
                run_ref: "127.0.0.1:5000/zenn-clone-rails@sha256:aa".to_string(),
                digest: Some("sha256:aa".to_string()),
            }
        );
    }

    #[test]
    fn an_image_without_digest_runs_by_its_tag() {
        assert_eq!(
            pick_digest("local/app:latest", "[]\n"),
            Pulled { run_ref: "local/app:latest".to_string(), digest: None }
        );
    }
}
