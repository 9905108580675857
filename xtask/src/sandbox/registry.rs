//! ECR's registry stand-in: the CNCF distribution registry (Debian's `docker-registry`), on
//! 127.0.0.1, storing under `target/sandbox/registry`, notifying the sandbox process of pushes.

use std::path::Path;
use std::process::Command;

/// The registry's configuration: no auth (docker trusts 127.0.0.0/8 without TLS), deletes
/// allowed, and every manifest push posted to `notify_url`.
pub fn config(port: u16, storage: &Path, notify_url: &str) -> String {
    format!(
        r#"# Written by `cargo xtask sandbox up`; rewritten on every start.
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
notifications:
  endpoints:
    - name: zenn-sandbox
      url: {notify_url}
      timeout: 5s
      threshold: 3
      backoff: 1s
      ignore:
        mediatypes:
          - application/octet-stream
        actions:
          - pull
"#,
        storage = storage.display(),
    )
}

pub fn command(config: &Path) -> Command {
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(config);
    cmd
}

/// The registry's API root: 200 when it is up.
pub fn health_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/v2/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_listens_on_loopback_and_notifies_of_manifest_pushes_only() {
        let text = config(5011, Path::new("/t/sandbox/registry"), "http://127.0.0.1:5012/events");
        assert!(text.contains("addr: 127.0.0.1:5011\n"), "{text}");
        assert!(text.contains("rootdirectory: /t/sandbox/registry\n"), "{text}");
        assert!(text.contains("url: http://127.0.0.1:5012/events\n"), "{text}");
        assert!(text.contains("- application/octet-stream\n"), "{text}");
        assert!(!text.contains("auth:"), "{text}");
    }

    #[test]
    fn command_names_the_config() {
        let cmd = command(Path::new("/t/registry.yml"));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(cmd.get_program(), "docker-registry");
        assert_eq!(args, ["serve", "/t/registry.yml"]);
    }
}
