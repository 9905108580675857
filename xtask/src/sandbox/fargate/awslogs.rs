//! The awslogs driver's stand-in: each container's output goes to CloudWatch Logs (the
//! sandbox's moto), under the group and the stream awslogs would use
//! (`<awslogs-group>`, `<awslogs-stream-prefix>/<container>/<task id>`), so the deploy's log
//! check and `cargo xtask logs` read the sandbox's tasks exactly as they read AWS's.
//!
//! As on Fargate, a task whose log group is missing does not start (unless the container asks
//! for `awslogs-create-group`), and the stream is created before the container starts. Lines
//! are read with `docker logs --follow` (the container writes to Docker's own log, so a slow
//! or absent CloudWatch never blocks it) and sent in batches: at most a second late, within
//! PutLogEvents' limits.

use std::io::{self, BufRead, BufReader};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::definition::ContainerDefinition;
use crate::docker::Docker;
use crate::sandbox::admin::Admin;

/// One line, as PutLogEvents takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
}

/// The CloudWatch Logs calls the driver makes.
pub trait LogService: Send + Sync {
    fn log_group_exists(&self, region: &str, group: &str) -> Result<bool>;
    /// Succeeds when the group exists already.
    fn create_log_group(&self, region: &str, group: &str) -> Result<()>;
    /// Succeeds when the stream exists already.
    fn create_log_stream(&self, region: &str, group: &str, stream: &str) -> Result<()>;
    fn put_log_events(
        &self,
        region: &str,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<()>;
}

/// Where the tasks' containers log: a CloudWatch Logs service, or nowhere (runner tests that
/// do not read logs).
#[derive(Clone)]
pub struct Awslogs {
    service: Option<Arc<dyn LogService>>,
    /// `awslogs-region` when a container sets none.
    region: String,
}

impl std::fmt::Debug for Awslogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to = if self.service.is_some() { "CloudWatch Logs" } else { "nowhere" };
        write!(f, "Awslogs({to}, {})", self.region)
    }
}

impl Awslogs {
    pub fn to(service: Arc<dyn LogService>, region: &str) -> Awslogs {
        Awslogs { service: Some(service), region: region.to_string() }
    }

    /// The containers' output is dropped.
    pub fn nowhere(region: &str) -> Awslogs {
        Awslogs { service: None, region: region.to_string() }
    }

    /// What awslogs needs before `container` starts: its group (created only with
    /// `awslogs-create-group`, as Fargate does) and its stream. The error is the task's
    /// `ResourceInitializationError`.
    pub fn prepare(&self, def: &ContainerDefinition, task_id: &str) -> Result<(), String> {
        let (Some(service), Some(to)) = (&self.service, self.destination(def, task_id)) else {
            return Ok(());
        };
        let failed = |e: anyhow::Error| {
            format!(
                "ResourceInitializationError: failed to validate logger args: failed to create \
                 Cloudwatch log stream {} in {}: {e:#}",
                to.stream, to.group
            )
        };
        if to.create_group {
            service.create_log_group(&to.region, &to.group).map_err(failed)?;
        } else if !service.log_group_exists(&to.region, &to.group).map_err(failed)? {
            return Err(failed(anyhow!(
                "ResourceNotFoundException: The specified log group does not exist. (create it, \
                 or set awslogs-create-group)"
            )));
        }
        service.create_log_stream(&to.region, &to.group, &to.stream).map_err(failed)
    }

    /// Sends the output of the started container `docker_name` to its stream, from its start
    /// until it stops or is removed (in threads of their own); the sending thread, which ends
    /// once the last line is sent.
    pub fn ship(
        &self,
        def: &ContainerDefinition,
        task_id: &str,
        docker_name: &str,
    ) -> io::Result<Option<JoinHandle<()>>> {
        let (Some(service), Some(to)) = (self.service.clone(), self.destination(def, task_id))
        else {
            return Ok(None);
        };
        let reader = Docker::default()
            .logs_follow(docker_name)
            .expression()
            .stdin_null()
            .stderr_to_stdout()
            .unchecked()
            .reader()?;
        let (lines, received) = mpsc::channel::<String>();
        std::thread::Builder::new().name(format!("log {docker_name}")).spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                if lines.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                    return;
                }
                line.clear();
            }
        })?;
        let sender = std::thread::Builder::new()
            .name(format!("awslogs {docker_name}"))
            .spawn(move || send_lines(&*service, &to, &received))?;
        Ok(Some(sender))
    }

    fn destination(&self, def: &ContainerDefinition, task_id: &str) -> Option<Destination> {
        let config = def.log_configuration.as_ref()?;
        if config.log_driver != "awslogs" {
            return None;
        }
        let option = |name: &str| config.options.get(name).filter(|v| !v.is_empty());
        Some(Destination {
            region: option("awslogs-region").unwrap_or(&self.region).clone(),
            group: option("awslogs-group")?.clone(),
            stream: def.log_stream(task_id),
            create_group: option("awslogs-create-group").is_some_and(|v| v == "true"),
        })
    }
}

/// One container's stream.
#[derive(Debug, Clone, PartialEq)]
struct Destination {
    region: String,
    group: String,
    stream: String,
    create_group: bool,
}

/// Batches the lines received until the sender hangs up, then sends what is left.
fn send_lines(service: &dyn LogService, to: &Destination, lines: &mpsc::Receiver<String>) {
    let send = |events: Vec<LogEvent>| {
        if events.is_empty() {
            return;
        }
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=SEND_ATTEMPTS {
            match service.put_log_events(&to.region, &to.group, &to.stream, &events) {
                Ok(()) => return,
                Err(e) if attempt == SEND_ATTEMPTS => eprintln!(
                    "sandbox: {} line(s) of {} could not be sent to CloudWatch Logs: {e:#}",
                    events.len(),
                    to.stream
                ),
                Err(_) => std::thread::sleep(wait),
            }
            wait *= 2;
        }
    };
    let mut batch = Batcher::default();
    loop {
        let received = match batch.due_in(Instant::now()) {
            Some(wait) => lines.recv_timeout(wait),
            None => lines.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(line) => {
                for full in batch.push(&line, epoch_millis(), Instant::now()) {
                    send(full);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return send(batch.take()),
        }
        if batch.due_in(Instant::now()) == Some(Duration::ZERO) {
            send(batch.take());
        }
    }
}

const SEND_ATTEMPTS: u32 = 3;

fn epoch_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A batch is sent at most this long after its first line arrived.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);
/// PutLogEvents' limits: events per call, bytes per call (each event counts 26 bytes more than
/// its message), bytes per event.
const MAX_EVENTS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
const MAX_MESSAGE_BYTES: usize = 262_144 - EVENT_OVERHEAD;

/// Lines into PutLogEvents batches, as awslogs makes them: one event per line without its line
/// end, empty lines dropped, a longer line split; timestamps never go back (a batch must be in
/// order). Pure: the caller gives the clock.
#[derive(Debug, Default)]
pub struct Batcher {
    events: Vec<LogEvent>,
    bytes: usize,
    first_at: Option<Instant>,
    last_timestamp: i64,
}

impl Batcher {
    /// Adds `line`, read at `timestamp` (ms since the epoch, `at` on the monotonic clock);
    /// returns the batches that are full and must be sent now, in order.
    pub fn push(&mut self, line: &str, timestamp: i64, at: Instant) -> Vec<Vec<LogEvent>> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let timestamp = timestamp.max(self.last_timestamp);
        self.last_timestamp = timestamp;
        let mut full = Vec::new();
        for message in split_at_limit(line, MAX_MESSAGE_BYTES) {
            let size = message.len() + EVENT_OVERHEAD;
            if self.events.len() == MAX_EVENTS || self.bytes + size > MAX_BATCH_BYTES {
                full.push(self.take());
            }
            self.first_at.get_or_insert(at);
            self.bytes += size;
            self.events.push(LogEvent { timestamp, message: message.to_string() });
        }
        full
    }

    /// How long until the batch is due: `None` when it is empty, zero when it is due now.
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        self.first_at.map(|first| (first + BATCH_DELAY).saturating_duration_since(now))
    }

    /// The batch so far, leaving it empty.
    pub fn take(&mut self) -> Vec<LogEvent> {
        self.bytes = 0;
        self.first_at = None;
        std::mem::take(&mut self.events)
    }
}

/// `text` in pieces of at most `limit` bytes, cut at character boundaries; none when empty.
fn split_at_limit(mut text: &str, limit: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    while !text.is_empty() {
        let mut end = text.len().min(limit);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, rest) = text.split_at(end);
        pieces.push(piece);
        text = rest;
    }
    pieces
}

/// moto's CloudWatch Logs, through the launcher's port.
impl LogService for Admin {
    fn log_group_exists(&self, region: &str, group: &str) -> Result<bool> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Groups {
            log_groups: Vec<Group>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Group {
            log_group_name: String,
        }
        let text =
            logs_call(self, region, "DescribeLogGroups", json!({ "logGroupNamePrefix": group }))?
                .ok_or_else(|| anyhow!("DescribeLogGroups answered an error"))?;
        let groups: Groups = serde_json::from_str(&text)?;
        Ok(groups.log_groups.iter().any(|g| g.log_group_name == group))
    }

    fn create_log_group(&self, region: &str, group: &str) -> Result<()> {
        logs_call(self, region, "CreateLogGroup", json!({ "logGroupName": group })).map(drop)
    }

    fn create_log_stream(&self, region: &str, group: &str, stream: &str) -> Result<()> {
        let body = json!({ "logGroupName": group, "logStreamName": stream });
        logs_call(self, region, "CreateLogStream", body).map(drop)
    }

    fn put_log_events(
        &self,
        region: &str,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<()> {
        let events: Vec<Value> = events
            .iter()
            .map(|e| json!({ "timestamp": e.timestamp, "message": e.message }))
            .collect();
        let body = json!({ "logGroupName": group, "logStreamName": stream, "logEvents": events });
        logs_call(self, region, "PutLogEvents", body).map(drop)
    }
}

/// One `Logs_20140328` call: the response text, `None` when what was to be created exists.
fn logs_call(admin: &Admin, region: &str, operation: &str, body: Value) -> Result<Option<String>> {
    let target = format!("Logs_20140328.{operation}");
    let (status, text) = admin.aws_json(region, "logs", &target, &body)?;
    if status < 300 {
        return Ok(Some(text));
    }
    let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = error["__type"].as_str().unwrap_or_default();
    if code.ends_with("ResourceAlreadyExistsException") {
        return Ok(None);
    }
    let message = error["message"].as_str().unwrap_or(text.trim());
    Err(anyhow!("{operation} answered {status}: {code}: {message}"))
}

/// CloudWatch Logs in memory, for tests.
#[cfg(test)]
pub mod memory {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct Memory {
        pub groups: Mutex<Vec<String>>,
        /// `<region> <group> <stream>` → its events.
        pub streams: Mutex<BTreeMap<String, Vec<LogEvent>>>,
    }

    impl Memory {
        /// The messages of `stream` (in any group and region).
        pub fn messages(&self, stream: &str) -> Vec<String> {
            let streams = self.streams.lock().unwrap();
            let found = streams.iter().find(|(key, _)| key.ends_with(&format!(" {stream}")));
            found
                .map(|(_, events)| events.iter().map(|e| e.message.clone()).collect())
                .unwrap_or_default()
        }
    }

    impl LogService for Memory {
        fn log_group_exists(&self, _: &str, group: &str) -> Result<bool> {
            Ok(self.groups.lock().unwrap().iter().any(|g| g == group))
        }
        fn create_log_group(&self, _: &str, group: &str) -> Result<()> {
            self.groups.lock().unwrap().push(group.to_string());
            Ok(())
        }
        fn create_log_stream(&self, region: &str, group: &str, stream: &str) -> Result<()> {
            let key = format!("{region} {group} {stream}");
            self.streams.lock().unwrap().entry(key).or_default();
            Ok(())
        }
        fn put_log_events(
            &self,
            region: &str,
            group: &str,
            stream: &str,
            events: &[LogEvent],
        ) -> Result<()> {
            let key = format!("{region} {group} {stream}");
            let mut streams = self.streams.lock().unwrap();
            let stream = streams.get_mut(&key).ok_or_else(|| {
                anyhow!("ResourceNotFoundException: The specified log stream does not exist.")
            })?;
            stream.extend_from_slice(events);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::Memory;
    use super::*;

    fn messages(batch: &[LogEvent]) -> Vec<&str> {
        batch.iter().map(|e| e.message.as_str()).collect()
    }

    #[test]
    fn a_line_is_an_event_without_its_line_end_and_empty_lines_are_dropped() {
        let now = Instant::now();
        let mut batch = Batcher::default();
        assert_eq!(batch.due_in(now), None);
        assert!(batch.push("db:migrate\r\n", 1_000, now).is_empty());
        assert!(batch.push("\n", 1_001, now).is_empty());
        assert!(batch.push("exec pumactl start\n", 1_002, now).is_empty());
        let sent = batch.take();
        assert_eq!(messages(&sent), ["db:migrate", "exec pumactl start"]);
        assert_eq!(sent[1].timestamp, 1_002);
        assert_eq!(batch.due_in(now), None);
    }

    #[test]
    fn a_batch_is_due_a_second_after_its_first_line() {
        let start = Instant::now();
        let mut batch = Batcher::default();
        batch.push("one", 5, start);
        batch.push("two", 6, start + Duration::from_millis(700));
        assert_eq!(
            batch.due_in(start + Duration::from_millis(400)),
            Some(Duration::from_millis(600))
        );
        assert_eq!(batch.due_in(start + Duration::from_secs(2)), Some(Duration::ZERO));
        assert_eq!(messages(&batch.take()), ["one", "two"]);
        batch.push("three", 7, start + Duration::from_secs(3));
        assert_eq!(batch.due_in(start + Duration::from_secs(3)), Some(BATCH_DELAY));
    }

    #[test]
    fn timestamps_never_go_back_within_a_stream() {
        let now = Instant::now();
        let mut batch = Batcher::default();
        batch.push("late clock", 2_000, now);
        batch.push("clock stepped back", 1_500, now);
        let stamps: Vec<i64> = batch.take().iter().map(|e| e.timestamp).collect();
        assert_eq!(stamps, [2_000, 2_000]);
    }

    #[test]
    fn batches_stay_within_put_log_events_limits() {
        let now = Instant::now();
        let mut batch = Batcher::default();
        let mut full = Vec::new();
        for i in 0..MAX_EVENTS + 5 {
            full.extend(batch.push(&format!("{i}"), 1, now));
        }
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), MAX_EVENTS);
        assert_eq!(batch.take().len(), 5);

        // 5 lines of 300 KiB: each splits in two events; 1 MiB holds 4 such events.
        let line = "é".repeat(150 * 1024);
        for _ in 0..5 {
            full = batch.push(&line, 1, now);
            for sent in &full {
                let bytes: usize = sent.iter().map(|e| e.message.len() + EVENT_OVERHEAD).sum();
                assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
            }
        }
        let rest = batch.take();
        assert!(rest.iter().all(|e| e.message.len() <= MAX_MESSAGE_BYTES));
        assert_eq!(rest.iter().map(|e| e.message.len()).sum::<usize>() % line.len(), 0);
    }

    #[test]
    fn a_long_line_is_split_at_character_boundaries() {
        assert_eq!(split_at_limit("ab€cd", 3), ["ab", "€", "cd"]);
        assert!(split_at_limit("", 3).is_empty());
    }

    fn container(options: Value) -> ContainerDefinition {
        serde_json::from_value(json!({
            "name": "rails", "image": "rails",
            "logConfiguration": {"logDriver": "awslogs", "options": options}
        }))
        .unwrap()
    }

    #[test]
    fn a_missing_group_fails_the_task_unless_the_container_asks_to_create_it() {
        let service = Arc::new(Memory::default());
        let logs = Awslogs::to(service.clone(), "ap-northeast-1");
        let options = json!({"awslogs-group": "/ecs/app", "awslogs-stream-prefix": "ecs"});
        let err = logs.prepare(&container(options.clone()), "t1").unwrap_err();
        assert!(err.starts_with("ResourceInitializationError: "), "{err}");
        assert!(err.contains("The specified log group does not exist"), "{err}");
        assert!(service.streams.lock().unwrap().is_empty());

        let mut creating = options.clone();
        creating["awslogs-create-group"] = json!("true");
        creating["awslogs-region"] = json!("us-east-1");
        logs.prepare(&container(creating), "t1").unwrap();
        logs.prepare(&container(options), "t2").unwrap();
        let streams: Vec<String> = service.streams.lock().unwrap().keys().cloned().collect();
        assert_eq!(
            streams,
            ["ap-northeast-1 /ecs/app ecs/rails/t2", "us-east-1 /ecs/app ecs/rails/t1"]
        );
    }

    #[test]
    fn a_container_without_awslogs_needs_nothing() {
        let service = Arc::new(Memory::default());
        let logs = Awslogs::to(service.clone(), "ap-northeast-1");
        let def: ContainerDefinition =
            serde_json::from_value(json!({"name": "web", "image": "nginx"})).unwrap();
        logs.prepare(&def, "t1").unwrap();
        let json_file: ContainerDefinition = serde_json::from_value(json!({
            "name": "web", "image": "nginx",
            "logConfiguration": {"logDriver": "json-file", "options": {"awslogs-group": "/x"}}
        }))
        .unwrap();
        logs.prepare(&json_file, "t1").unwrap();
        assert!(service.streams.lock().unwrap().is_empty());
    }
}
