//! `cargo xtask logs [TASK] [--container NAME] [--since DURATION] [--follow] [target flags]`:
//! a task's container logs from CloudWatch Logs, through its task definition's awslogs options
//! (the sandbox's tasks log to moto's CloudWatch Logs under the same names). By default the
//! newest task of the service; every container, each line behind its container's name when
//! more than one is shown.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};

use crate::aws::ecs::{
    describe_all_tasks, list_all_tasks, DesiredStatus, EcsApi, TaskDefinitionSnapshot, TaskSnapshot,
};
use crate::aws::logs::{LogEvent, LogStream, Logs, StreamReader};
use crate::deploy::inspect::Inspect;
use crate::deploy::target::{parse_duration, DeployFlags, TargetFlags};
use crate::failure::Failure;
use crate::interrupt;
use crate::report::Reporter;

/// How often `--follow` reads the streams again.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The task's id (or the start of it, or its ARN) [default: the service's newest task]
    pub task: Option<String>,
    /// Only this container's log (`rails`, `nginx`)
    #[arg(long, short, value_name = "NAME")]
    pub container: Option<String>,
    /// Only what was logged in the last DURATION (`10m`, `1h`) [default: from the start]
    #[arg(long, value_name = "DURATION", value_parser = since_arg)]
    pub since: Option<Duration>,
    /// Keep printing what the containers log, until Ctrl-C
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub target: TargetFlags,
}

pub(super) fn since_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

impl Args {
    pub fn run(self, report: &Reporter) -> Result<()> {
        let target = super::inspect_target::resolve(&self.target, &DeployFlags::default())?;
        let inspect = Inspect::connect(&target)?;
        let (cluster, service) = (&target.cluster, &target.service);
        let tasks = inspect.rt.block_on(async {
            let mut arns =
                list_all_tasks(&inspect.ecs, cluster, service, DesiredStatus::Running).await?;
            arns.extend(
                list_all_tasks(&inspect.ecs, cluster, service, DesiredStatus::Stopped).await?,
            );
            describe_all_tasks(&inspect.ecs, cluster, &arns).await
        });
        let tasks = tasks
            .with_context(|| format!("cannot list the tasks of `{service}` in cluster `{cluster}`"))
            .context(Failure::Preflight)?;
        let task = choose_task(&tasks, self.task.as_deref(), service)?;
        let arn = task.task_definition_arn.as_deref().ok_or_else(|| {
            anyhow!("task {} names no task definition, so its log streams are unknown", task.id)
        })?;
        let definition = inspect
            .rt
            .block_on(inspect.ecs.describe_task_definition(arn))
            .context(Failure::Preflight)?;
        let streams = streams_of(&definition, &task.id, self.container.as_deref())?;
        report.info(format!(
            "task {} ({}{}): {}",
            task.id,
            task.last_status,
            task.started_at
                .map(|t| format!(", started {}", crate::deploy::push::timestamp(t)))
                .unwrap_or_default(),
            streams
                .iter()
                .map(|s| format!("{} in {}", s.stream, s.group))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if self.follow {
            interrupt::install();
        }
        let since = self.since.map(|d| SystemTime::now() - d);
        let api = Logs::new(inspect.aws.logs.clone());
        let style = Style::new(&streams, std::io::stdout().is_terminal());
        let mut readers: Vec<StreamReader> =
            streams.into_iter().map(|s| StreamReader::new(s, since)).collect();
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let shown = inspect.rt.block_on(async {
            let mut printed = 0usize;
            loop {
                let mut batch: Vec<(usize, LogEvent)> = Vec::new();
                for (i, reader) in readers.iter_mut().enumerate() {
                    let events = reader.read(&api).await.with_context(|| {
                        "check that the credentials allow logs:GetLogEvents".to_string()
                    })?;
                    batch.extend(events.into_iter().map(|e| (i, e)));
                }
                // One container's lines stay in order; lines of several interleave by time.
                batch.sort_by_key(|(_, e)| e.timestamp);
                for (i, event) in &batch {
                    writeln!(out, "{}", style.line(*i, &event.message))?;
                }
                out.flush()?;
                printed += batch.len();
                if !self.follow || interrupt::interrupted() {
                    return Ok::<usize, anyhow::Error>(printed);
                }
                let slept = tokio::time::sleep(FOLLOW_POLL);
                slept.await;
                if interrupt::interrupted() {
                    return Ok(printed);
                }
            }
        });
        match shown {
            Ok(0) if !self.follow => {
                let missing: Vec<&str> = readers
                    .iter()
                    .filter(|r| !r.exists)
                    .map(|r| r.stream.stream.as_str())
                    .collect();
                if !missing.is_empty() {
                    report.warn(format!(
                        "no log yet: {} does not exist (a container that never started has none)",
                        missing.join(", ")
                    ));
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            // The reader went away (`… | head`): nothing more to show.
            Err(e) if is_broken_pipe(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
            == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The task `wanted` names (its id, the start of its id, or its ARN), or the newest one.
pub fn choose_task<'a>(
    tasks: &'a [TaskSnapshot],
    wanted: Option<&str>,
    service: &str,
) -> Result<&'a TaskSnapshot> {
    let group = format!("service:{service}");
    let ours: Vec<&TaskSnapshot> =
        tasks.iter().filter(|t| t.group.as_deref().is_none_or(|g| g == group)).collect();
    let Some(wanted) = wanted else {
        return ours
            .iter()
            .max_by_key(|t| (t.created_at.or(t.started_at), t.started_at))
            .copied()
            .ok_or_else(|| {
                anyhow!(
                    "service `{service}` has no task, running or recently stopped: deploy first"
                )
                .context(Failure::Input)
            });
    };
    let id = wanted.rsplit('/').next().unwrap_or(wanted);
    let matching: Vec<&TaskSnapshot> =
        ours.iter().filter(|t| t.id.starts_with(id)).copied().collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => {
            let known: Vec<&str> = ours.iter().map(|t| t.id.as_str()).collect();
            Err(anyhow!(
                "service `{service}` has no task {id} (ECS keeps stopped tasks about an hour); its tasks: {}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
            .context(Failure::Input))
        }
        many => Err(anyhow!("{id} is the start of {} task ids: give more of the id", many.len())
            .context(Failure::Input)),
    }
}

/// The awslogs streams of the task's containers (or of one).
pub fn streams_of(
    definition: &TaskDefinitionSnapshot,
    task_id: &str,
    container: Option<&str>,
) -> Result<Vec<LogStream>> {
    let chosen: Vec<_> =
        definition.containers.iter().filter(|c| container.is_none_or(|n| c.name == n)).collect();
    if chosen.is_empty() {
        let names: Vec<&str> = definition.containers.iter().map(|c| c.name.as_str()).collect();
        return Err(anyhow!(
            "the task definition has no container {}: it has {}",
            container.unwrap_or("-"),
            names.join(", ")
        )
        .context(Failure::Input));
    }
    let streams: Vec<LogStream> = chosen.iter().filter_map(|c| LogStream::of(c, task_id)).collect();
    if streams.is_empty() {
        let names: Vec<&str> = chosen.iter().map(|c| c.name.as_str()).collect();
        return Err(anyhow!(
            "{} does not log through awslogs with a group and a stream prefix: set `logConfiguration` \
             (`awslogs-group`, `awslogs-stream-prefix`) in the task definition",
            names.join(", ")
        )
        .context(Failure::Input));
    }
    Ok(streams)
}

/// How lines are shown: plain for one container; behind the container's name, padded, for
/// several (colored on a terminal).
pub struct Style {
    prefixes: Vec<Option<String>>,
}

impl Style {
    pub fn new(streams: &[LogStream], terminal: bool) -> Style {
        let width = streams.iter().map(|s| s.container.len()).max().unwrap_or(0);
        let several = streams.len() > 1;
        let colors = ["36", "35", "33", "32", "34", "31"];
        let prefixes = streams
            .iter()
            .enumerate()
            .map(|(i, s)| {
                several.then(|| {
                    let name = format!("{:<width$} |", s.container);
                    match terminal {
                        true => format!("\x1b[{}m{name}\x1b[0m ", colors[i % colors.len()]),
                        false => format!("{name} "),
                    }
                })
            })
            .collect();
        Style { prefixes }
    }

    pub fn line(&self, stream: usize, message: &str) -> String {
        match self.prefixes.get(stream).cloned().flatten() {
            Some(prefix) => format!("{prefix}{message}"),
            None => message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ecs::{ContainerDefinitionSnapshot, HealthStatus};

    fn task(id: &str, created: u64, group: &str) -> TaskSnapshot {
        TaskSnapshot {
            arn: format!("arn:aws:ecs:ap-northeast-1:123456789012:task/zenn-clone-cluster/{id}"),
            id: id.to_string(),
            group: Some(group.to_string()),
            started_by: None,
            task_definition_arn: None,
            last_status: "RUNNING".into(),
            desired_status: "RUNNING".into(),
            health: HealthStatus::Healthy,
            created_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(created)),
            started_at: None,
            stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            eni_id: None,
            containers: Vec::new(),
        }
    }

    const SERVICE: &str = "zenn-clone-backend-service";

    #[test]
    fn the_newest_task_of_the_service_is_the_default_and_an_id_prefix_picks_one() {
        let svc = "service:zenn-clone-backend-service";
        let tasks = vec![
            task("aaaa1111", 10, svc),
            task("aabb2222", 30, svc),
            task("cccc3333", 50, "family:x"),
        ];
        assert_eq!(choose_task(&tasks, None, SERVICE).unwrap().id, "aabb2222");
        assert_eq!(choose_task(&tasks, Some("aaaa"), SERVICE).unwrap().id, "aaaa1111");
        let arn = "arn:aws:ecs:ap-northeast-1:123456789012:task/zenn-clone-cluster/aabb2222";
        assert_eq!(choose_task(&tasks, Some(arn), SERVICE).unwrap().id, "aabb2222");
        let many = choose_task(&tasks, Some("aa"), SERVICE).unwrap_err();
        assert!(format!("{many:#}").contains("start of 2 task ids"), "{many:#}");
        let other = choose_task(&tasks, Some("cccc"), SERVICE).unwrap_err();
        assert_eq!(Failure::of(&other), Some(Failure::Input));
        assert!(format!("{other:#}").contains("its tasks: aaaa1111, aabb2222"), "{other:#}");
        let none = choose_task(&[], None, SERVICE).unwrap_err();
        assert!(format!("{none:#}").contains("has no task"), "{none:#}");
    }

    fn definition() -> TaskDefinitionSnapshot {
        let c = |name: &str, logs: bool| ContainerDefinitionSnapshot {
            name: name.into(),
            log_group: logs.then(|| "/ecs/zenn-clone-task-definition-backend".into()),
            log_stream_prefix: logs.then(|| "ecs".into()),
            ..ContainerDefinitionSnapshot::default()
        };
        TaskDefinitionSnapshot {
            arn: "td".into(),
            memory: None,
            containers: vec![c("rails", true), c("nginx", true), c("sidecar", false)],
        }
    }

    #[test]
    fn streams_are_the_containers_awslogs_streams() {
        let all = streams_of(&definition(), "t1", None).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.stream.as_str()).collect();
        assert_eq!(names, ["ecs/rails/t1", "ecs/nginx/t1"]);
        assert_eq!(streams_of(&definition(), "t1", Some("nginx")).unwrap().len(), 1);
        let unknown = streams_of(&definition(), "t1", Some("web")).unwrap_err();
        assert!(format!("{unknown:#}").contains("it has rails, nginx, sidecar"), "{unknown:#}");
        let silent = streams_of(&definition(), "t1", Some("sidecar")).unwrap_err();
        assert!(
            format!("{silent:#}").contains("sidecar does not log through awslogs"),
            "{silent:#}"
        );
    }

    #[test]
    fn lines_are_plain_for_one_container_and_prefixed_for_several() {
        let all = streams_of(&definition(), "t1", None).unwrap();
        let piped = Style::new(&all, false);
        assert_eq!(piped.line(0, "db:migrate"), "rails | db:migrate");
        assert_eq!(piped.line(1, "GET /"), "nginx | GET /");
        let terminal = Style::new(&all, true);
        assert_eq!(terminal.line(0, "x"), "\x1b[36mrails |\x1b[0m x");
        let one = Style::new(&all[..1], true);
        assert_eq!(one.line(0, "db:migrate"), "db:migrate");
    }
}
