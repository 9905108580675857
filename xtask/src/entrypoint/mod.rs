//! The deploy mode of `rails/entrypoint.prod.sh`: the text edit is pure ([`edit`]); this module
//! reads the file and writes it atomically with its mode kept. A deploy checks the file with
//! [`status_file`] in preflight and edits it with [`apply_file`]; [`check_file`] serves
//! `cargo xtask entrypoint first|later --check` only.

mod edit;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

pub use edit::{Mode, Status};

use edit::Refusal;

use crate::failure::Failure;

/// What [`apply_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The file was rewritten.
    pub changed: bool,
    /// A unified-style diff of the change; empty when nothing changed.
    pub diff: String,
    /// The file's steps after the change.
    pub status: Status,
}

/// Puts the file at `path` in `mode`, writing it only when it changes.
/// Refuses (with [`Failure::Input`], file untouched) what it cannot edit safely.
pub fn apply_file(path: &Path, mode: Mode, steps: &[String]) -> Result<Applied> {
    let label = label(path);
    let text = read(path, &label)?;
    let after = edit::apply(&text, mode, steps).map_err(|r| refusal(&label, r))?;
    let status = edit::status(&after, steps).map_err(|r| refusal(&label, r))?;
    if after == text {
        return Ok(Applied { changed: false, diff: String::new(), status });
    }
    write_atomically(path, &label, after.as_bytes())?;
    Ok(Applied { changed: true, diff: edit::unified_diff(&label, &text, &after), status })
}

/// Succeeds when the file at `path` is in `mode`; changes nothing.
pub fn check_file(path: &Path, mode: Mode, steps: &[String]) -> Result<()> {
    let label = label(path);
    let status = status_file(path, steps)?;
    let differences = status.differences(mode);
    if differences.is_empty() {
        return Ok(());
    }
    Err(anyhow!(
        "{label} is not in {mode} mode: {}; run `cargo xtask entrypoint {mode}` and commit the result",
        differences.join(", ")
    )
    .context(Failure::Input))
}

/// The mode of each configured step in the file at `path`.
pub fn status_file(path: &Path, steps: &[String]) -> Result<Status> {
    let label = label(path);
    let text = read(path, &label)?;
    edit::status(&text, steps).map_err(|r| refusal(&label, r))
}

/// What the last `echo` of the file at `path` prints once the file is in `mode`: the log line
/// right before the entrypoint hands over to the server (the deploy's log check waits for it).
pub fn last_echo_file(path: &Path, mode: Mode, steps: &[String]) -> Result<Option<String>> {
    let label = label(path);
    let text = read(path, &label)?;
    let text = edit::apply(&text, mode, steps).map_err(|r| refusal(&label, r))?;
    Ok(last_echo(&text))
}

/// The words of the last active `echo` line of a script, unquoted.
pub fn last_echo(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let words = line.trim_start().strip_prefix("echo ")?.trim();
        let unquoted = words
            .strip_prefix('"')
            .and_then(|w| w.strip_suffix('"'))
            .or_else(|| words.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')))
            .unwrap_or(words);
        (!unquoted.is_empty()).then(|| unquoted.to_string())
    })
}

/// The path as the user knows it: relative to the project root when it is inside.
pub fn label(path: &Path) -> String {
    let root = crate::project::root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}

fn refusal(label: &str, refusal: Refusal) -> anyhow::Error {
    let at = refusal.line.map_or(String::new(), |n| format!(":{n}"));
    anyhow!("{label}{at}: {}", refusal.message).context(Failure::Input)
}

fn read(path: &Path, label: &str) -> Result<String> {
    let bytes = fs::read(path)
        .map_err(|e| anyhow!("cannot read {label}: {e}"))
        .context(
            "check the path (`--file`, or `entrypoint.file` in deploy.toml) and its permissions",
        )
        .context(Failure::Input)?;
    String::from_utf8(bytes)
        .map_err(|e| {
            anyhow!("{label} is not UTF-8 text ({e}): save it as UTF-8, then run this again")
        })
        .context(Failure::Input)
}

/// Replaces the file by a temporary file renamed over it in the same directory, so a failed
/// or interrupted write leaves the old file whole. Permissions (the executable bit) and,
/// where allowed, owner and group are kept; a symlink is followed, not replaced.
fn write_atomically(path: &Path, label: &str, contents: &[u8]) -> Result<()> {
    let target = fs::canonicalize(path)
        .map_err(|e| anyhow!("cannot resolve {label}: {e}"))
        .context(Failure::Input)?;
    let meta = fs::metadata(&target)
        .map_err(|e| anyhow!("cannot read the metadata of {label}: {e}"))
        .context(Failure::Input)?;
    // Root writes through a read-only mode, so the mode itself is the user's word.
    if meta.permissions().readonly() {
        return Err(anyhow!(
            "{label} is read-only: make it writable (`chmod u+w {label}`), then run this again"
        )
        .context(Failure::Input));
    }
    fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .map_err(|e| anyhow!("cannot write {label}: {e}: make it writable, then run this again"))
        .context(Failure::Input)?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().map_or("entrypoint".into(), |n| n.to_string_lossy());
    let temp = dir.join(format!(".{name}.xtask-{}.tmp", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))
        .and_then(|file| {
            // From here on the temporary file is ours to remove if anything fails.
            let filled = fill_temp(file, &meta, contents).and_then(|()| {
                fs::rename(&temp, &target).with_context(|| format!("cannot rename it over {label}"))
            });
            if filled.is_err() {
                let _ = fs::remove_file(&temp);
            }
            filled
        });
    if let Err(err) = written {
        return Err(err
            .context(format!(
                "cannot write {label} (left unchanged): check that {} is writable",
                dir.display()
            ))
            .context(Failure::Input));
    }
    // The rename is durable only once the directory is on disk; failing here loses nothing.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn fill_temp(mut file: fs::File, meta: &fs::Metadata, contents: &[u8]) -> Result<()> {
    file.write_all(contents)?;
    let ours = file.metadata()?;
    if (ours.uid(), ours.gid()) != (meta.uid(), meta.gid()) {
        // Keeps a user's ownership when root edits their checkout; without the right, ours stays.
        let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
    }
    file.set_permissions(meta.permissions())?;
    file.sync_all()?;
    Ok(())
}
