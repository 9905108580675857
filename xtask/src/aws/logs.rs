//! CloudWatch Logs: where a task's containers log through the awslogs driver
//! (`<awslogs-group>`, stream `<awslogs-stream-prefix>/<container>/<task id>`), read the same
//! way from AWS and from the sandbox (whose tasks send their output to moto's CloudWatch Logs).

use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};
use aws_sdk_cloudwatchlogs::error::DisplayErrorContext;

use crate::aws::ecs::ContainerDefinitionSnapshot;

/// One log line as CloudWatch keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
}

/// Where one container of one task logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStream {
    pub container: String,
    pub group: String,
    pub stream: String,
}

impl LogStream {
    /// The stream awslogs writes for `container` in task `task_id`, when it logs through awslogs
    /// with a group and a stream prefix (without a prefix, awslogs names streams by container ID,
    /// which the task does not tell).
    pub fn of(container: &ContainerDefinitionSnapshot, task_id: &str) -> Option<LogStream> {
        let (group, prefix) =
            (container.log_group.as_ref()?, container.log_stream_prefix.as_ref()?);
        Some(LogStream {
            container: container.name.clone(),
            group: group.clone(),
            stream: format!("{prefix}/{}/{task_id}", container.name),
        })
    }
}

/// One page of a stream read forward.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogPage {
    pub events: Vec<LogEvent>,
    /// The token for the next page; CloudWatch returns the one it was given at the end.
    pub next_forward_token: Option<String>,
}

/// The CloudWatch Logs calls the tool makes; each method is exactly one API call.
pub trait LogsApi {
    /// GetLogEvents forward: after `token`, or from `since` (the head when `None`) without one.
    /// `None` when the group or the stream does not exist (yet).
    async fn events_page(
        &self,
        stream: &LogStream,
        since: Option<SystemTime>,
        token: Option<&str>,
    ) -> Result<Option<LogPage>>;
    /// GetLogEvents from the end: the last `count` events, oldest first; `None` when the group
    /// or the stream does not exist.
    async fn last_events(&self, stream: &LogStream, count: i32) -> Result<Option<Vec<LogEvent>>>;
    /// CreateLogGroup; `false` when it already existed.
    async fn create_log_group(&self, group: &str) -> Result<bool>;
    /// Whether the log group exists (DescribeLogGroups by prefix).
    async fn log_group_exists(&self, group: &str) -> Result<bool>;
}

/// A stream read forward across calls: each [`StreamReader::read`] returns what arrived since
/// the last one (`logs --follow`, the deploy's log check).
#[derive(Debug, Clone)]
pub struct StreamReader {
    pub stream: LogStream,
    since: Option<SystemTime>,
    token: Option<String>,
    /// The stream existed at the last read.
    pub exists: bool,
}

/// Pages read in one [`StreamReader::read`] at most (10,000 events each), so a flood of lines
/// cannot hold a follower forever.
const MAX_PAGES_PER_READ: usize = 20;

impl StreamReader {
    pub fn new(stream: LogStream, since: Option<SystemTime>) -> StreamReader {
        StreamReader { stream, since, token: None, exists: false }
    }

    /// The events that arrived since the last read, oldest first (none while the stream is
    /// missing).
    pub async fn read(&mut self, api: &impl LogsApi) -> Result<Vec<LogEvent>> {
        let mut events = Vec::new();
        for _ in 0..MAX_PAGES_PER_READ {
            let Some(page) =
                api.events_page(&self.stream, self.since, self.token.as_deref()).await?
            else {
                self.exists = false;
                return Ok(events);
            };
            self.exists = true;
            let last_page = page.events.is_empty()
                || page.next_forward_token.is_none()
                || page.next_forward_token == self.token;
            events.extend(page.events);
            if page.next_forward_token.is_some() {
                self.token = page.next_forward_token;
            }
            if last_page {
                break;
            }
        }
        Ok(events)
    }
}

/// [`LogsApi`] over the SDK client.
#[derive(Clone, Debug)]
pub struct Logs {
    client: aws_sdk_cloudwatchlogs::Client,
}

impl Logs {
    pub fn new(client: aws_sdk_cloudwatchlogs::Client) -> Logs {
        Logs { client }
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn events_of(events: &[aws_sdk_cloudwatchlogs::types::OutputLogEvent]) -> Vec<LogEvent> {
    events
        .iter()
        .map(|e| LogEvent {
            timestamp: e.timestamp().unwrap_or_default(),
            message: e.message().unwrap_or_default().trim_end_matches(['\r', '\n']).to_string(),
        })
        .collect()
}

impl LogsApi for Logs {
    async fn events_page(
        &self,
        stream: &LogStream,
        since: Option<SystemTime>,
        token: Option<&str>,
    ) -> Result<Option<LogPage>> {
        let mut call = self
            .client
            .get_log_events()
            .log_group_name(&stream.group)
            .log_stream_name(&stream.stream)
            .start_from_head(true)
            .set_next_token(token.map(str::to_string));
        if token.is_none() {
            call = call.set_start_time(since.map(millis));
        }
        match call.send().await {
            Ok(out) => Ok(Some(LogPage {
                events: events_of(out.events()),
                next_forward_token: out.next_forward_token().map(str::to_string),
            })),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                Ok(None)
            }
            Err(e) => Err(anyhow!("{}", DisplayErrorContext(e))).with_context(|| {
                format!(
                    "CloudWatch Logs GetLogEvents of {} in {} failed",
                    stream.stream, stream.group
                )
            }),
        }
    }

    async fn last_events(&self, stream: &LogStream, count: i32) -> Result<Option<Vec<LogEvent>>> {
        let call = self
            .client
            .get_log_events()
            .log_group_name(&stream.group)
            .log_stream_name(&stream.stream)
            .start_from_head(false)
            .limit(count);
        match call.send().await {
            Ok(out) => Ok(Some(events_of(out.events()))),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                Ok(None)
            }
            Err(e) => Err(anyhow!("{}", DisplayErrorContext(e))).with_context(|| {
                format!(
                    "CloudWatch Logs GetLogEvents of {} in {} failed",
                    stream.stream, stream.group
                )
            }),
        }
    }

    async fn create_log_group(&self, group: &str) -> Result<bool> {
        match self.client.create_log_group().log_group_name(group).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_already_exists_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow!("{}", DisplayErrorContext(e)))
                .with_context(|| format!("CloudWatch Logs CreateLogGroup {group} failed")),
        }
    }

    async fn log_group_exists(&self, group: &str) -> Result<bool> {
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_log_groups()
                .log_group_name_prefix(group)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| anyhow!("{}", DisplayErrorContext(e)))
                .with_context(|| format!("CloudWatch Logs DescribeLogGroups {group} failed"))?;
            if out.log_groups().iter().any(|g| g.log_group_name() == Some(group)) {
                return Ok(true);
            }
            match out.next_token() {
                Some(next) if Some(next) != token.as_deref() => token = Some(next.to_string()),
                _ => return Ok(false),
            }
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A scripted [`LogsApi`]: streams whose events are added as a test goes, paged the way
    //! GetLogEvents pages (a token per position; the same token back at the end).
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default)]
    pub struct FakeLogs {
        pub streams: RefCell<BTreeMap<(String, String), Vec<LogEvent>>>,
        pub groups: RefCell<Vec<String>>,
        /// Events per page.
        pub page_size: usize,
        pub calls: RefCell<u32>,
    }

    impl FakeLogs {
        pub fn new() -> FakeLogs {
            FakeLogs { page_size: 2, ..FakeLogs::default() }
        }

        pub fn push(&self, group: &str, stream: &str, lines: &[&str]) {
            let mut streams = self.streams.borrow_mut();
            let events = streams.entry((group.to_string(), stream.to_string())).or_default();
            for line in lines {
                let timestamp = 1_750_000_000_000 + events.len() as i64;
                events.push(LogEvent { timestamp, message: line.to_string() });
            }
        }
    }

    impl LogsApi for FakeLogs {
        async fn events_page(
            &self,
            stream: &LogStream,
            since: Option<SystemTime>,
            token: Option<&str>,
        ) -> Result<Option<LogPage>> {
            *self.calls.borrow_mut() += 1;
            let streams = self.streams.borrow();
            let Some(events) = streams.get(&(stream.group.clone(), stream.stream.clone())) else {
                return Ok(None);
            };
            let from = match token {
                Some(t) => t.strip_prefix("f/").context("bad token")?.parse::<usize>()?,
                None => {
                    let since = since.map_or(0, millis);
                    events.iter().position(|e| e.timestamp >= since).unwrap_or(events.len())
                }
            };
            let to = (from + self.page_size).min(events.len());
            Ok(Some(LogPage {
                events: events[from..to].to_vec(),
                next_forward_token: Some(format!("f/{to}")),
            }))
        }

        async fn last_events(
            &self,
            stream: &LogStream,
            count: i32,
        ) -> Result<Option<Vec<LogEvent>>> {
            *self.calls.borrow_mut() += 1;
            let streams = self.streams.borrow();
            Ok(streams
                .get(&(stream.group.clone(), stream.stream.clone()))
                .map(|events| events[events.len().saturating_sub(count as usize)..].to_vec()))
        }

        async fn create_log_group(&self, group: &str) -> Result<bool> {
            let mut groups = self.groups.borrow_mut();
            if groups.iter().any(|g| g == group) {
                return Ok(false);
            }
            groups.push(group.to_string());
            Ok(true)
        }

        async fn log_group_exists(&self, group: &str) -> Result<bool> {
            Ok(self.groups.borrow().iter().any(|g| g == group))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeLogs;
    use super::*;

    fn rails(prefix: Option<&str>) -> ContainerDefinitionSnapshot {
        ContainerDefinitionSnapshot {
            name: "rails".into(),
            log_group: Some("/ecs/zenn-clone-task-definition-backend".into()),
            log_stream_prefix: prefix.map(String::from),
            ..ContainerDefinitionSnapshot::default()
        }
    }

    #[test]
    fn the_stream_is_named_as_awslogs_names_it() {
        let stream = LogStream::of(&rails(Some("ecs")), "0123abcd").unwrap();
        assert_eq!(stream.group, "/ecs/zenn-clone-task-definition-backend");
        assert_eq!(stream.stream, "ecs/rails/0123abcd");
        assert_eq!(LogStream::of(&rails(None), "0123abcd"), None);
    }

    #[tokio::test]
    async fn a_reader_returns_each_line_once_across_pages_and_reads() {
        let logs = FakeLogs::new();
        let stream = LogStream::of(&rails(Some("ecs")), "t1").unwrap();
        let mut reader = StreamReader::new(stream.clone(), None);
        assert!(reader.read(&logs).await.unwrap().is_empty());
        assert!(!reader.exists);
        logs.push(&stream.group, &stream.stream, &["a", "b", "c"]);
        let first: Vec<String> =
            reader.read(&logs).await.unwrap().into_iter().map(|e| e.message).collect();
        assert_eq!(first, ["a", "b", "c"]);
        assert!(reader.exists);
        assert!(reader.read(&logs).await.unwrap().is_empty());
        logs.push(&stream.group, &stream.stream, &["d"]);
        let next: Vec<String> =
            reader.read(&logs).await.unwrap().into_iter().map(|e| e.message).collect();
        assert_eq!(next, ["d"]);
    }
}
