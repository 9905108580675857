//! What a `ci` run leaves behind: Docker containers that were not there when it began, and
//! processes started from this checkout's `target/` (moto from the sandbox's venv, the
//! registry with its configuration there, `xtask sandbox serve`). A green run leaves none.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::docker::containers;

/// The containers (`<id> <name>`), running or not.
pub fn containers(sh: &Shell) -> Result<BTreeSet<String>> {
    let listed = containers::list_named(sh)
        .quiet()
        .read()
        .context("cannot list Docker's containers (`docker ps --all`)")?;
    Ok(listed.lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
}

/// The running processes whose command line names a path under `dir`, but this one and its
/// ancestors (`cargo xtask ci` itself runs from `target/`): `(pid, command line)`.
pub fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let own = ancestry(std::process::id());
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if own.contains(&pid) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if let Some(line) = mentions(&raw, dir) {
            found.push((pid, line));
        }
    }
    found.sort();
    found
}

/// The command line (NUL-separated arguments, as `/proc/<pid>/cmdline` holds it) joined with
/// spaces, when an argument is `dir` or a path below it.
pub fn mentions(cmdline: &[u8], dir: &Path) -> Option<String> {
    let dir = dir.to_string_lossy();
    let dir = dir.trim_end_matches('/');
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let under = |arg: &str| {
        arg.split(['=', ':']).any(|part| {
            part == dir || part.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
        })
    };
    args.iter().any(|a| under(a)).then(|| args.join(" "))
}

/// `pid` and its parents, up to init.
fn ancestry(pid: u32) -> BTreeSet<u32> {
    let mut chain = BTreeSet::new();
    let mut current = pid;
    while current > 1 && chain.insert(current) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{current}/status")) else {
            break;
        };
        let parent = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|p| p.trim().parse().ok());
        match parent {
            Some(parent) => current = parent,
            None => break,
        }
    }
    chain
}

/// What is left: the containers of `after` not in `before`, and the processes; an error
/// naming each, or `Ok` when nothing is.
pub fn check(
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    processes: &[(u32, String)],
) -> Result<(), String> {
    let containers: Vec<&String> = after.difference(before).collect();
    if containers.is_empty() && processes.is_empty() {
        return Ok(());
    }
    let mut lines = vec!["the run left these behind:".to_string()];
    lines.extend(containers.iter().map(|c| format!("  container {c}")));
    lines.extend(processes.iter().map(|(pid, line)| format!("  process {pid}: {line}")));
    lines.push(
        "  (`cargo xtask sandbox down` stops the sandbox's; a test that leaves one must remove it)"
            .into(),
    );
    Err(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_names_the_directory_in_an_argument_or_an_option_value() {
        let dir = Path::new("/work/main/target/");
        let serve =
            b"/work/main/target/debug/xtask\0sandbox\0serve\0--dir\0/work/main/target/sandbox\0";
        assert_eq!(
            mentions(serve, dir).as_deref(),
            Some("/work/main/target/debug/xtask sandbox serve --dir /work/main/target/sandbox")
        );
        let registry = b"docker-registry\0serve\0--config=/work/main/target/sandbox/registry.yml\0";
        assert!(mentions(registry, dir).is_some());
        assert!(mentions(b"/work/main/target\0", dir).is_some());
        assert_eq!(mentions(b"/work/main/target-old/x\0", dir), None);
        assert_eq!(mentions(b"sleep\0infinity\0", dir), None);
        assert_eq!(mentions(b"", dir), None);
    }

    #[test]
    fn containers_there_before_the_run_are_not_the_runs() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let before = set(&["a1 someone-elses"]);
        assert_eq!(check(&before, &set(&["a1 someone-elses"]), &[]), Ok(()));
        let left = check(
            &before,
            &set(&["a1 someone-elses", "b2 zenn-sandbox-1a2b3c-db"]),
            &[(42, "python moto_sandbox.py".into())],
        )
        .unwrap_err();
        assert!(left.contains("container b2 zenn-sandbox-1a2b3c-db"), "{left}");
        assert!(left.contains("process 42: python moto_sandbox.py"), "{left}");
        assert!(!left.contains("someone-elses"), "{left}");
    }

    #[test]
    fn this_process_is_its_own_ancestor() {
        let chain = ancestry(std::process::id());
        assert!(chain.contains(&std::process::id()));
    }
}
