//! Images: the pull a task starts with, and the small busybox image every task's pause
//! container runs (made from Debian's busybox-static, since nothing can be pulled from the internet).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use xshell::{cmd, Shell};

use super::plan::repository;
use crate::docker::{self, containers};
use crate::failure::Failure;

/// What a pull leaves: the reference to create the container from and the digest it had.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// `repo@sha256:...`, so the container runs exactly the digest recorded, even if `latest`
    /// moves while the task starts.
    pub run_ref: String,
    pub digest: Option<String>,
}

/// Pulls `reference` (a push since the last task is picked up, as on Fargate). A tag in a
/// registry is first resolved to its digest and the image pulled by that digest: a pull by tag
/// would move the tag in the Docker engine, which the deploy shares (it builds and pushes under
/// the same names). The error is docker's or the registry's own message.
pub fn pull(sh: &Shell, reference: &str) -> Result<Pulled, String> {
    let pinned = match by_digest(reference)? {
        Some(pinned) => pinned,
        None => reference.to_string(),
    };
    docker::output(containers::pull(sh, &pinned))?;
    let digests = docker::output(containers::image_repo_digests(sh, &pinned))?;
    Ok(pick_digest(&pinned, &digests))
}

/// Media types a registry may store a pushed image's manifest as.
const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// `host/repo@sha256:…` for `host/repo:tag`, from the registry's `Docker-Content-Digest`;
/// `None` for a reference already by digest or without a registry host (a local image).
fn by_digest(reference: &str) -> Result<Option<String>, String> {
    let Some((host, path)) = registry_parts(reference) else { return Ok(None) };
    let repo = repository(path);
    let tag = path.strip_prefix(repo).and_then(|t| t.strip_prefix(':')).unwrap_or("latest");
    let url = format!("http://{host}/v2/{repo}/manifests/{tag}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .head(&url)
        .header("Accept", MANIFEST_TYPES)
        .call()
        .map_err(|e| format!("failed to resolve ref {reference}: {e}"))?;
    match response.status().as_u16() {
        200 => {}
        404 => return Err(format!("manifest for {reference} not found: manifest unknown")),
        status => {
            return Err(format!("failed to resolve ref {reference}: registry answered {status}"))
        }
    }
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.starts_with("sha256:"))
        .ok_or_else(|| format!("failed to resolve ref {reference}: the registry gave no digest"))?;
    Ok(Some(format!("{host}/{repo}@{digest}")))
}

/// `("127.0.0.1:5011", "zenn-clone-rails:latest")`: the registry host and the rest, for a
/// reference by tag whose first part is a host (has a `.` or `:`, or is `localhost`).
fn registry_parts(reference: &str) -> Option<(&str, &str)> {
    if reference.contains('@') {
        return None;
    }
    let (host, path) = reference.split_once('/')?;
    (host.contains('.') || host.contains(':') || host == "localhost").then_some((host, path))
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
    let present =
        containers::image_id(sh, tag).quiet().ignore_stdout().ignore_stderr().run().is_ok();
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
        containers::import(sh, changes, &tar, tag).quiet().ignore_stdout().run()?;
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
    fn only_a_registry_reference_by_tag_is_resolved_to_a_digest() {
        assert_eq!(
            registry_parts("127.0.0.1:5011/zenn-clone-rails:latest"),
            Some(("127.0.0.1:5011", "zenn-clone-rails:latest"))
        );
        assert_eq!(registry_parts("localhost/team/app"), Some(("localhost", "team/app")));
        assert_eq!(registry_parts("127.0.0.1:5011/zenn-clone-rails@sha256:aa"), None);
        assert_eq!(registry_parts("zenn-sandbox/pause:busybox"), None);
        assert_eq!(registry_parts("busybox"), None);
    }

    #[test]
    fn an_image_without_digest_runs_by_its_tag() {
        assert_eq!(
            pick_digest("local/app:latest", "[]\n"),
            Pulled { run_ref: "local/app:latest".to_string(), digest: None }
        );
    }
}
