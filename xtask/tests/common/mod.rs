//! What the tests that drive the binary share.

use std::path::{Path, PathBuf};

/// A scratch checkout for a sandbox of its own under `target/test-tmp/<name>-<pid>`: this
/// checkout's `deploy.toml`, the given task definition, an empty `target/sandbox`, and (it
/// takes half a minute to build) this checkout's moto venv when it has one.
pub fn scratch_checkout(name: &str, task_definition: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest.parent().unwrap();
    let root = repo.join("target/test-tmp").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("rails")).unwrap();
    std::fs::create_dir_all(root.join("target/sandbox")).unwrap();
    std::fs::copy(repo.join("deploy.toml"), root.join("deploy.toml")).unwrap();
    std::fs::write(root.join("rails/task-definition.json"), task_definition).unwrap();
    let venv = repo.join("target/sandbox/venv");
    if venv.is_dir() {
        std::os::unix::fs::symlink(venv, root.join("target/sandbox/venv")).unwrap();
    }
    root
}
