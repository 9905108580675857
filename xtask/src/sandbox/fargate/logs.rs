//! The awslogs stand-in: each container's output, from its start, in
//! `<logs dir>/<task id>/<container>.log`, under a header naming its awslogs stream.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};

use super::plan::ContainerPlan;
use crate::docker::Docker;
use crate::failure::Failure;

pub fn task_dir(logs_dir: &Path, task_id: &str) -> PathBuf {
    logs_dir.join(task_id)
}

/// The first line of a container's log file.
pub fn header(stream: &str) -> String {
    format!("==> {stream} <==")
}

/// Copies a started container's output into its log file (`docker logs --follow` shows it from
/// the start); the copy ends by itself when the container stops or is removed.
pub fn follow(logs_dir: &Path, task_id: &str, container: &ContainerPlan) -> io::Result<()> {
    let dir = task_dir(logs_dir, task_id);
    std::fs::create_dir_all(&dir)?;
    let mut file = File::create(dir.join(format!("{}.log", container.name())))?;
    writeln!(file, "{}", header(&container.def.log_stream(task_id)))?;
    let stderr = file.try_clone()?;
    let copy = Docker::default()
        .logs_follow(&container.docker_name)
        .expression()
        .stdin_null()
        .stdout_file(file)
        .stderr_file(stderr)
        .unchecked();
    std::thread::spawn(move || copy.run());
    Ok(())
}

/// `cargo xtask sandbox logs [TASK] [--container NAME]`: writes the logs of task `task` (its id
/// or a unique prefix) or, without one, of the task that logged last — every container's, or
/// one's; returns the task's id.
pub fn logs(
    logs_dir: &Path,
    task: Option<&str>,
    container: Option<&str>,
    out: &mut dyn Write,
) -> Result<String> {
    let tasks = logged_tasks(logs_dir)?;
    if tasks.is_empty() {
        return Err(anyhow!(
            "no task has logged in this sandbox yet ({} holds no task logs)",
            logs_dir.display()
        )
        .context(Failure::Input));
    }
    let chosen = match task {
        Some(wanted) => {
            let matching: Vec<&LoggedTask> =
                tasks.iter().filter(|t| t.id.starts_with(wanted)).collect();
            match matching.as_slice() {
                [one] => *one,
                [] => {
                    let known: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
                    return Err(anyhow!(
                        "no logs for task {wanted}: the sandbox has logs of {}",
                        known.join(", ")
                    )
                    .context(Failure::Input));
                }
                _ => {
                    return Err(anyhow!(
                        "{wanted} is the start of {} task ids: give more of the id",
                        matching.len()
                    )
                    .context(Failure::Input));
                }
            }
        }
        None => tasks.iter().max_by_key(|t| t.last_write).unwrap_or(&tasks[0]),
    };
    let files: Vec<&PathBuf> = chosen.files.iter().filter(|f| is_of(f, container)).collect();
    if files.is_empty() {
        let names: Vec<String> = chosen.files.iter().filter_map(|f| container_of(f)).collect();
        return Err(anyhow!(
            "task {} has no log of container {}: it has logs of {}",
            chosen.id,
            container.unwrap_or("-"),
            names.join(", ")
        )
        .context(Failure::Input));
    }
    for (i, file) in files.into_iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let mut source =
            File::open(file).with_context(|| format!("could not read {}", file.display()))?;
        io::copy(&mut source, out)?;
    }
    Ok(chosen.id.clone())
}

/// `logs --follow`: after `logs` showed the task, prints what its containers log next (a
/// container that starts later too), each run of lines under its stream's header; polls until
/// `keep_going` says stop.
pub fn tail(
    logs_dir: &Path,
    task_id: &str,
    container: Option<&str>,
    out: &mut dyn Write,
    keep_going: &dyn Fn() -> bool,
) -> Result<()> {
    let dir = task_dir(logs_dir, task_id);
    let log_files = |dir: &Path| -> Result<Vec<PathBuf>> {
        Ok(log_files(dir)?.into_iter().filter(|f| is_of(f, container)).collect())
    };
    let mut offsets = BTreeMap::new();
    for file in log_files(&dir)? {
        offsets.insert(file.clone(), std::fs::metadata(&file)?.len());
    }
    // `logs` printed the files in name order: the last one's header is the one on screen.
    let mut current = offsets.keys().last().cloned();
    while keep_going() {
        for file in log_files(&dir)? {
            let len = std::fs::metadata(&file)?.len();
            let from = offsets.get(&file).copied().filter(|from| *from <= len).unwrap_or(0);
            if len == from {
                continue;
            }
            let mut source =
                File::open(&file).with_context(|| format!("could not read {}", file.display()))?;
            if current.as_ref() != Some(&file) {
                if current.is_some() {
                    writeln!(out)?;
                }
                if from > 0 {
                    let mut first = String::new();
                    io::BufReader::new(File::open(&file)?).read_line(&mut first)?;
                    write!(out, "{first}")?;
                }
                current = Some(file.clone());
            }
            source.seek(io::SeekFrom::Start(from))?;
            io::copy(&mut (&mut source).take(len - from), out)?;
            offsets.insert(file, len);
        }
        out.flush()?;
        std::thread::sleep(TAIL_POLL);
    }
    Ok(())
}

const TAIL_POLL: Duration = Duration::from_millis(250);

/// The container a log file is of (`rails.log` → `rails`).
fn container_of(file: &Path) -> Option<String> {
    file.file_stem().map(|s| s.to_string_lossy().into_owned())
}

/// The file is the log of `container`, or any container's when `None`.
fn is_of(file: &Path, container: Option<&str>) -> bool {
    container.is_none_or(|c| container_of(file).as_deref() == Some(c))
}

fn log_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

struct LoggedTask {
    id: String,
    /// Its `*.log` files, by name.
    files: Vec<PathBuf>,
    last_write: SystemTime,
}

fn logged_tasks(logs_dir: &Path) -> Result<Vec<LoggedTask>> {
    let entries = match std::fs::read_dir(logs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("could not list {}", logs_dir.display())),
    };
    let mut tasks = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        let mut last_write = SystemTime::UNIX_EPOCH;
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let path = file.path();
            if path.extension().is_some_and(|e| e == "log") {
                last_write = last_write.max(file.metadata()?.modified()?);
                files.push(path);
            }
        }
        if files.is_empty() {
            continue;
        }
        files.sort();
        tasks.push(LoggedTask {
            id: entry.file_name().to_string_lossy().into_owned(),
            files,
            last_write,
        });
    }
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("zenn-fargate-logs-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn log(&self, task: &str, container: &str, text: &str, age_s: u64) {
            let dir = task_dir(&self.0, task);
            std::fs::create_dir_all(&dir).unwrap();
            let file = File::create(dir.join(format!("{container}.log"))).unwrap();
            (&file).write_all(text.as_bytes()).unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(age_s)).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn shown(dir: &Path, task: Option<&str>) -> Result<(String, String)> {
        let mut out = Vec::new();
        let id = logs(dir, task, None, &mut out)?;
        Ok((id, String::from_utf8(out).unwrap()))
    }

    #[test]
    fn without_a_task_the_one_that_logged_last_is_shown_every_container_by_name() {
        let dir = TempDir::new("latest");
        dir.log("aaaa1111", "rails", "==> ecs/rails/aaaa1111 <==\nold\n", 60);
        dir.log("bbbb2222", "rails", "==> ecs/rails/bbbb2222 <==\ndb:migrate\n", 10);
        dir.log("bbbb2222", "nginx", "==> ecs/nginx/bbbb2222 <==\nGET /\n", 5);
        let (id, text) = shown(&dir.0, None).unwrap();
        assert_eq!(id, "bbbb2222");
        assert_eq!(
            text,
            "==> ecs/nginx/bbbb2222 <==\nGET /\n\n==> ecs/rails/bbbb2222 <==\ndb:migrate\n"
        );
    }

    #[test]
    fn one_container_is_shown_when_named() {
        let dir = TempDir::new("container");
        dir.log("bbbb2222", "rails", "==> ecs/rails/bbbb2222 <==\ndb:migrate\n", 10);
        dir.log("bbbb2222", "nginx", "==> ecs/nginx/bbbb2222 <==\nGET /\n", 5);
        let mut out = Vec::new();
        assert_eq!(logs(&dir.0, None, Some("rails"), &mut out).unwrap(), "bbbb2222");
        assert_eq!(String::from_utf8(out).unwrap(), "==> ecs/rails/bbbb2222 <==\ndb:migrate\n");
        let missing = logs(&dir.0, None, Some("web"), &mut Vec::new()).unwrap_err();
        assert_eq!(Failure::of(&missing), Some(Failure::Input));
        assert!(format!("{missing:#}").contains("it has logs of nginx, rails"), "{missing:#}");
    }

    #[test]
    fn a_task_is_found_by_a_unique_prefix_of_its_id() {
        let dir = TempDir::new("prefix");
        dir.log("aaaa1111", "rails", "first\n", 60);
        dir.log("aabb2222", "rails", "second\n", 10);
        assert_eq!(
            shown(&dir.0, Some("aaaa")).unwrap(),
            ("aaaa1111".to_string(), "first\n".to_string())
        );
        let ambiguous = shown(&dir.0, Some("aa")).unwrap_err();
        assert!(format!("{ambiguous:#}").contains("2 task ids"), "{ambiguous:#}");
        let unknown = shown(&dir.0, Some("cc")).unwrap_err();
        assert_eq!(Failure::of(&unknown), Some(Failure::Input));
        assert!(format!("{unknown:#}").contains("aaaa1111, aabb2222"), "{unknown:#}");
    }

    #[test]
    fn follow_prints_what_is_logged_next_under_each_streams_header() {
        let dir = TempDir::new("tail");
        dir.log("cccc3333", "nginx", "==> ecs/nginx/cccc3333 <==\nstarted\n", 10);
        dir.log("cccc3333", "rails", "==> ecs/rails/cccc3333 <==\nbooting\n", 10);
        let task = task_dir(&dir.0, "cccc3333");
        let append = |name: &str, text: &str| {
            let mut file = File::options().append(true).create(true).open(task.join(name)).unwrap();
            file.write_all(text.as_bytes()).unwrap();
        };
        let polls = Cell::new(0);
        let keep_going = || {
            polls.set(polls.get() + 1);
            match polls.get() {
                1 => append("rails.log", "db:migrate\n"),
                2 => {
                    append("nginx.log", "GET /\n");
                    append("rails.log", "listening\n");
                }
                _ => return false,
            }
            true
        };
        let mut out = Vec::new();
        tail(&dir.0, "cccc3333", None, &mut out, &keep_going).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "db:migrate\n\n==> ecs/nginx/cccc3333 <==\nGET /\n\n==> ecs/rails/cccc3333 <==\nlistening\n"
        );
    }

    #[test]
    fn no_logs_at_all_says_so() {
        let dir = TempDir::new("empty");
        let err = shown(&dir.0.join("missing"), None).unwrap_err();
        assert!(format!("{err:#}").contains("no task has logged"), "{err:#}");
    }
}
