//! The chapter's last check, done by the tool: the new task's log shows the entrypoint ran in
//! the deploy's mode. After a later deploy `db:migrate` ran and neither `db:create` nor
//! `db:seed` did; after a first deploy all three ran. The steps come from the target's
//! `entrypoint.first_deploy_only`.
//!
//! CloudWatch delivers lines seconds late, so the check reads until the log is complete (the
//! entrypoint's last `echo` is there, the line before it hands over to the server) or a bound
//! passes. A step that must not run fails the check the moment it shows.

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::aws::logs::{LogStream, LogsApi, StreamReader};
use crate::entrypoint::Mode;
use crate::failure::Failure;
use crate::report::human_duration;

/// The step every deploy runs (the entrypoint's migration).
pub const ALWAYS: &str = "db:migrate";
/// Lines of a log quoted when the check fails.
const QUOTED: usize = 40;
/// How often the log is read again while lines are missing.
const POLL: Duration = Duration::from_secs(2);

/// What the log of one deploy's task must show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub mode: Mode,
    /// Steps whose line must be in the log.
    pub ran: Vec<String>,
    /// Steps whose line must not be.
    pub not_ran: Vec<String>,
    /// The entrypoint's last `echo`: once it is in the log, every step before it is too.
    pub end: Option<String>,
}

impl Expectation {
    pub fn new(mode: Mode, first_deploy_only: &[String], end: Option<String>) -> Expectation {
        let (mut ran, not_ran) = match mode {
            Mode::First => (first_deploy_only.to_vec(), Vec::new()),
            Mode::Later => (Vec::new(), first_deploy_only.to_vec()),
        };
        ran.push(ALWAYS.to_string());
        Expectation { mode, ran, not_ran, end }
    }

    /// The check as the plan and the summary say it.
    pub fn describe(&self) -> String {
        let mut out = format!("{} ran", self.ran.join(", "));
        if !self.not_ran.is_empty() {
            out.push_str(&format!(", {} did not", self.not_ran.join(" and ")));
        }
        out
    }

    /// What the lines read so far say.
    pub fn judge(&self, lines: &[String]) -> Verdict {
        for step in &self.not_ran {
            if let Some((n, line)) = lines.iter().enumerate().find(|(_, l)| mentions(l, step)) {
                return Verdict::Failed(format!(
                    "{step} ran in {} mode (log line {}: {line})",
                    self.mode,
                    n + 1
                ));
            }
        }
        let missing: Vec<String> =
            self.ran.iter().filter(|s| !lines.iter().any(|l| mentions(l, s))).cloned().collect();
        if !missing.is_empty() {
            return Verdict::Pending(missing);
        }
        let complete = match &self.end {
            Some(end) => lines.iter().any(|l| l.contains(end.as_str())),
            // Without a known last line: one line after the last step's.
            None => {
                let last = lines.iter().rposition(|l| self.ran.iter().any(|s| mentions(l, s)));
                last.is_some_and(|i| i + 1 < lines.len())
            }
        };
        match (complete, &self.end) {
            (true, _) => Verdict::Passed,
            (false, Some(end)) => {
                Verdict::Pending(vec![format!("the entrypoint's last line `{end}`")])
            }
            (false, None) => Verdict::Pending(vec!["a line after the last step".to_string()]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// What is still missing.
    Pending(Vec<String>),
    Failed(String),
}

/// `line` names `step` as a word of its own (`db:seed`, not `db:seed:replant` or `xdb:seed`).
pub fn mentions(line: &str, step: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':' || c == '-';
    line.match_indices(step).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + step.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// The check passed for every task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogCheckOutcome {
    pub container: String,
    pub mode: Mode,
    pub ran: Vec<String>,
    pub not_ran: Vec<String>,
    /// The streams read, one per new task.
    pub streams: Vec<String>,
    pub lines_read: usize,
    pub waited_s: f64,
}

impl LogCheckOutcome {
    pub fn view(&self) -> crate::event::LogCheckView {
        crate::event::LogCheckView {
            container: self.container.clone(),
            mode: self.mode.to_string(),
            ran: self.ran.clone(),
            not_ran: self.not_ran.clone(),
            streams: self.streams.clone(),
            lines_read: self.lines_read,
            waited_s: self.waited_s,
        }
    }

    /// The summary's line.
    pub fn line(&self) -> String {
        let mut out = format!("{}: {} ran", self.container, self.ran.join(", "));
        if !self.not_ran.is_empty() {
            out.push_str(&format!(", no {}", self.not_ran.join(", no ")));
        }
        out.push_str(&format!(
            " ({} mode; {} lines of {})",
            self.mode,
            self.lines_read,
            self.streams.join(", ")
        ));
        out
    }
}

/// Reads each stream until its log passes `expect`, one fails it, or `timeout` passes.
pub async fn check(
    api: &impl LogsApi,
    streams: Vec<LogStream>,
    expect: &Expectation,
    timeout: Duration,
) -> Result<LogCheckOutcome> {
    let started = tokio::time::Instant::now();
    let container = streams.first().map(|s| s.container.clone()).unwrap_or_default();
    let names: Vec<String> = streams.iter().map(|s| s.stream.clone()).collect();
    let mut readers: Vec<(StreamReader, Vec<String>, Verdict)> = streams
        .into_iter()
        .map(|s| (StreamReader::new(s, None), Vec::new(), Verdict::Pending(expect.ran.clone())))
        .collect();
    loop {
        for (reader, lines, verdict) in readers.iter_mut().filter(|(_, _, v)| *v != Verdict::Passed)
        {
            let events = reader.read(api).await.map_err(|e| {
                e.context(format!(
                    "cannot read {} in {}: check that the credentials allow logs:GetLogEvents",
                    reader.stream.stream, reader.stream.group
                ))
                .context(Failure::Verify)
            })?;
            lines.extend(events.into_iter().map(|e| e.message));
            *verdict = expect.judge(lines);
            if let Verdict::Failed(why) = verdict {
                return Err(anyhow!(
                    "the log check failed: {why}; the entrypoint's {} mode was expected ({})\n{}",
                    expect.mode,
                    expect.describe(),
                    quote(&reader.stream, lines)
                )
                .context(Failure::Verify));
            }
        }
        if readers.iter().all(|(_, _, v)| *v == Verdict::Passed) {
            return Ok(LogCheckOutcome {
                container,
                mode: expect.mode,
                ran: expect.ran.clone(),
                not_ran: expect.not_ran.clone(),
                streams: names,
                lines_read: readers.iter().map(|(_, l, _)| l.len()).sum(),
                waited_s: started.elapsed().as_secs_f64(),
            });
        }
        if started.elapsed() >= timeout {
            let (reader, lines, verdict) =
                readers.iter().find(|(_, _, v)| *v != Verdict::Passed).expect("one is pending");
            let missing = match verdict {
                Verdict::Pending(missing) => missing.join(", "),
                _ => String::new(),
            };
            let state = if reader.exists { "" } else { " (the stream does not exist)" };
            return Err(anyhow!(
                "the log check failed: after {} the log of {}{state} still lacks {missing}; the \
                 entrypoint's {} mode was expected ({}); `cargo xtask logs` shows the task's log\n{}",
                human_duration(timeout),
                reader.stream.stream,
                expect.mode,
                expect.describe(),
                quote(&reader.stream, lines)
            )
            .context(Failure::Verify));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn quote(stream: &LogStream, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("no line of {} in {} was read", stream.stream, stream.group);
    }
    let from = lines.len().saturating_sub(QUOTED);
    let mut out = format!(
        "the log read ({} of {} lines, {} in {}):",
        lines.len() - from,
        lines.len(),
        stream.stream,
        stream.group
    );
    for line in &lines[from..] {
        out.push_str(&format!("\n  | {line}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::logs::fake::FakeLogs;
    use crate::failure::Failure;

    const GROUP: &str = "/ecs/zenn-clone-task-definition-backend";
    const END: &str = "exec pumactl start";

    fn steps() -> Vec<String> {
        vec!["db:create".into(), "db:seed".into()]
    }

    /// What rails/entrypoint.prod.sh prints, in `mode`.
    fn boot(mode: Mode) -> Vec<&'static str> {
        let mut lines = vec!["Start entrypoint.prod.sh", "rm -f /myapp/tmp/pids/server.pid"];
        if mode == Mode::First {
            lines.push("bundle exec rails db:create RAILS_ENV=production");
            lines.push("Created database 'zenn_clone_production'");
        }
        lines.push("bundle exec rails db:migrate RAILS_ENV=production");
        if mode == Mode::First {
            lines.push("bundle exec rails db:seed RAILS_ENV=production");
        }
        lines.extend([
            END,
            "Puma starting in single mode...",
            "* Listening on unix:///myapp/tmp/sockets/puma.sock",
        ]);
        lines
    }

    fn owned(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    fn stream(task: &str) -> LogStream {
        LogStream {
            container: "rails".into(),
            group: GROUP.into(),
            stream: format!("ecs/rails/{task}"),
        }
    }

    #[test]
    fn steps_are_named_as_words() {
        assert!(mentions("bundle exec rails db:seed RAILS_ENV=production", "db:seed"));
        assert!(mentions("\"db:seed\"", "db:seed"));
        assert!(!mentions("bundle exec rails db:seed:replant", "db:seed"));
        assert!(!mentions("rails xdb:seed", "db:seed"));
        assert!(!mentions("db:seeds", "db:seed"));
    }

    #[test]
    fn each_mode_passes_its_own_log_and_fails_the_other() {
        let later = Expectation::new(Mode::Later, &steps(), Some(END.into()));
        let first = Expectation::new(Mode::First, &steps(), Some(END.into()));
        assert_eq!(later.describe(), "db:migrate ran, db:create and db:seed did not");
        assert_eq!(first.describe(), "db:create, db:seed, db:migrate ran");
        assert_eq!(later.judge(&owned(&boot(Mode::Later))), Verdict::Passed);
        assert_eq!(first.judge(&owned(&boot(Mode::First))), Verdict::Passed);
        let Verdict::Failed(why) = later.judge(&owned(&boot(Mode::First))) else { panic!() };
        assert_eq!(why, "db:create ran in later mode (log line 3: bundle exec rails db:create RAILS_ENV=production)");
        assert_eq!(
            first.judge(&owned(&boot(Mode::Later))),
            Verdict::Pending(vec!["db:create".into(), "db:seed".into()])
        );
    }

    #[test]
    fn a_log_is_pending_until_its_last_line_arrives() {
        let later = Expectation::new(Mode::Later, &steps(), Some(END.into()));
        let all = boot(Mode::Later);
        assert_eq!(later.judge(&owned(&all[..2])), Verdict::Pending(vec!["db:migrate".into()]));
        assert_eq!(
            later.judge(&owned(&all[..3])),
            Verdict::Pending(vec!["the entrypoint's last line `exec pumactl start`".into()])
        );
        // Without a known last line, one line after the migration's will do.
        let unknown = Expectation::new(Mode::Later, &steps(), None);
        assert!(matches!(unknown.judge(&owned(&all[..3])), Verdict::Pending(_)));
        assert_eq!(unknown.judge(&owned(&all[..4])), Verdict::Passed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_check_waits_for_late_lines_of_every_task() {
        let logs = FakeLogs::new();
        let later = Expectation::new(Mode::Later, &steps(), Some(END.into()));
        let (a, b) = (stream("aaaa"), stream("bbbb"));
        logs.push(GROUP, &a.stream, &boot(Mode::Later));
        logs.push(GROUP, &b.stream, &boot(Mode::Later)[..3]);
        let checking = check(&logs, vec![a.clone(), b.clone()], &later, Duration::from_secs(60));
        let late = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            logs.push(GROUP, &b.stream, &boot(Mode::Later)[3..]);
        };
        let (outcome, ()) = tokio::join!(checking, late);
        let outcome = outcome.unwrap();
        assert_eq!(outcome.streams, ["ecs/rails/aaaa", "ecs/rails/bbbb"]);
        assert_eq!(outcome.lines_read, 12);
        assert!(outcome.waited_s >= 5.0, "{}", outcome.waited_s);
        assert_eq!(
            outcome.line(),
            "rails: db:migrate ran, no db:create, no db:seed (later mode; 12 lines of ecs/rails/aaaa, ecs/rails/bbbb)"
        );
    }

    /// The entrypoint left in first mode on a later deploy: the check fails (exit 9) and shows
    /// the lines it saw.
    #[tokio::test(start_paused = true)]
    async fn a_later_deploy_of_a_first_mode_entrypoint_fails_with_the_lines_seen() {
        let logs = FakeLogs::new();
        let later = Expectation::new(Mode::Later, &steps(), Some(END.into()));
        let a = stream("aaaa");
        logs.push(GROUP, &a.stream, &boot(Mode::First));
        let err = check(&logs, vec![a], &later, Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(Failure::of(&err), Some(Failure::Verify));
        let text = format!("{err:#}");
        assert!(text.contains("the log check failed: db:create ran in later mode"), "{text}");
        assert!(text.contains("  | bundle exec rails db:seed RAILS_ENV=production"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_log_that_never_completes_fails_after_the_bound() {
        let logs = FakeLogs::new();
        let first = Expectation::new(Mode::First, &steps(), Some(END.into()));
        let err =
            check(&logs, vec![stream("cccc")], &first, Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(Failure::of(&err), Some(Failure::Verify));
        let text = format!("{err:#}");
        assert!(text.contains("after 30s the log of ecs/rails/cccc (the stream does not exist) still lacks db:create, db:seed, db:migrate"), "{text}");
        assert!(text.contains("no line of ecs/rails/cccc"), "{text}");
    }
}
