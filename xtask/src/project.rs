//! Where things are: the repository root, cargo's target directory, this binary.

use std::path::{Path, PathBuf};

/// The repository root. `cargo run` sets `CARGO_MANIFEST_DIR` at run time too, so a copy of
/// the repository (as the end-to-end tests make) is served by the same binary.
pub fn root() -> PathBuf {
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
                root().join(dir)
            }
        }
        None => root().join("target"),
    }
}
