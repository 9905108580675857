//! Progress and results: redrawn lines on a terminal, plain lines when piped,
//! and with `--json` one JSON object per event on stdout (human text stays on stderr).

use std::collections::HashMap;
use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::{Detail, Envelope, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// stderr is a terminal: progress redraws one live line.
    Terminal,
    /// stderr is a file or pipe: progress prints a line only when it changes.
    Plain,
}

pub struct Reporter {
    style: Style,
    json: bool,
    started: Instant,
    state: Mutex<State>,
    /// Sees every event as it is emitted, JSON or not (tests act on a step's start).
    #[cfg(test)]
    hook: Option<Box<EventHook>>,
}

/// What a test's reporter calls with each event.
#[cfg(test)]
type EventHook = dyn Fn(&Event) + Send + Sync;

#[derive(Default)]
struct State {
    /// A progress line is drawn on the terminal and must be cleared before other output.
    live: bool,
    /// Last progress text per key, so plain output repeats nothing.
    last_progress: HashMap<String, String>,
    /// Every phase that ended, in order, for the summary.
    phases: Vec<PhaseRecord>,
}

/// A phase that ended: its name, how long it took, whether it succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRecord {
    pub name: &'static str,
    pub duration: Duration,
    pub ok: bool,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        let style = if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            Style::Terminal
        } else {
            Style::Plain
        };
        Reporter {
            style,
            json,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            #[cfg(test)]
            hook: None,
        }
    }

    /// A reporter that prints plain lines and no JSON, for tests.
    #[cfg(test)]
    pub fn plain() -> Reporter {
        Reporter {
            style: Style::Plain,
            json: false,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            hook: None,
        }
    }

    /// A [`Reporter::plain`] that calls `hook` with every event.
    #[cfg(test)]
    pub fn plain_with_hook(hook: impl Fn(&Event) + Send + Sync + 'static) -> Reporter {
        Reporter { hook: Some(Box::new(hook)), ..Reporter::plain() }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// Time since the command started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A line for the user (stderr); with `--json` also a `log` event.
    pub fn info(&self, msg: impl Display) {
        let msg = msg.to_string();
        self.line(&msg);
        self.emit(Event::Log { message: msg });
    }

    /// A warning for the user; with `--json` also a `warning` event.
    pub fn warn(&self, msg: impl Display) {
        let msg = msg.to_string();
        self.line(&format!("warning: {msg}"));
        self.emit(Event::Warning { message: msg });
    }

    /// The phases that ended so far, in order.
    pub fn phases(&self) -> Vec<PhaseRecord> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).phases.clone()
    }

    /// Starts a phase: prints `==> name` and emits `phase_start`.
    pub fn phase(&self, name: &'static str) -> Phase<'_> {
        self.line(&format!("==> {name}"));
        self.emit(Event::PhaseStart { phase: name.to_string() });
        Phase { reporter: self, name, started: Instant::now() }
    }

    /// Progress of a long wait. On a terminal the line is redrawn in place; otherwise it is
    /// printed only when its text differs from the previous one for the same `key`.
    pub fn progress(&self, key: &str, text: impl Display, detail: Option<Detail>) {
        let text = text.to_string();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.last_progress.get(key) == Some(&text) {
            return;
        }
        state.last_progress.insert(key.to_string(), text.clone());
        match self.style {
            Style::Terminal => {
                let width = terminal_width();
                let shown: String = text.chars().take(width.saturating_sub(1)).collect();
                write_stderr(&format!("\r\x1b[2K{shown}"));
                state.live = true;
            }
            Style::Plain => write_stderr(&format!("{text}\n")),
        }
        drop(state);
        self.emit(Event::Progress { key: key.to_string(), message: text, detail });
    }

    /// Writes the event as a JSON line on stdout when `--json` is on; otherwise does nothing.
    pub fn emit(&self, event: Event) {
        #[cfg(test)]
        if let Some(hook) = &self.hook {
            hook(&event);
        }
        if !self.json {
            return;
        }
        let envelope = Envelope { elapsed_s: round_ms(self.started.elapsed()), event };
        match serde_json::to_string(&envelope) {
            Ok(line) => write_stdout(&format!("{line}\n")),
            Err(e) => write_stderr(&format!("cannot write a JSON event: {e}\n")),
        }
    }

    /// Prints a human line on stderr, first clearing a live progress line.
    pub fn line(&self, text: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let clear = if state.live { "\r\x1b[2K" } else { "" };
        state.live = false;
        write_stderr(&format!("{clear}{text}\n"));
    }
}

/// Writes to stderr, ignoring a closed stream (`cargo xtask … 2>&1 | head`). Under `cargo test`
/// it goes through `eprint!`, which the test harness captures, so passing tests stay quiet.
fn write_stderr(text: &str) {
    if cfg!(test) {
        eprint!("{text}");
    } else {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
}

/// Writes to stdout, ignoring a closed stream; captured under `cargo test` like [`write_stderr`].
fn write_stdout(text: &str) {
    if cfg!(test) {
        print!("{text}");
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// A running phase; `finish` (or drop, as a failure) reports its duration.
pub struct Phase<'r> {
    reporter: &'r Reporter,
    name: &'static str,
    started: Instant,
}

impl Phase<'_> {
    /// Ends the phase as a success and returns its duration.
    pub fn finish(self) -> Duration {
        let elapsed = self.started.elapsed();
        self.end(true, elapsed);
        std::mem::forget(self);
        elapsed
    }

    fn end(&self, ok: bool, elapsed: Duration) {
        let record = PhaseRecord { name: self.name, duration: elapsed, ok };
        self.reporter.state.lock().unwrap_or_else(|e| e.into_inner()).phases.push(record);
        let status = if ok { "done" } else { "failed" };
        self.reporter.line(&format!("    {} {status} in {}", self.name, human_duration(elapsed)));
        self.reporter.emit(Event::PhaseEnd {
            phase: self.name.to_string(),
            ok,
            duration_s: round_ms(elapsed),
        });
    }
}

impl Drop for Phase<'_> {
    fn drop(&mut self) {
        self.end(false, self.started.elapsed());
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100)
}

/// `1.2s`, `42s`, `3m05s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.1}s")
    } else if secs < 60.0 {
        format!("{}s", secs.round() as u64)
    } else {
        let total = secs.round() as u64;
        format!("{}m{:02}s", total / 60, total % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
    }

    #[test]
    fn phases_are_recorded_in_order_with_their_outcome() {
        let report = Reporter::plain();
        report.phase("build").finish();
        drop(report.phase("push"));
        let names: Vec<(&str, bool)> = report.phases().iter().map(|p| (p.name, p.ok)).collect();
        assert_eq!(names, [("build", true), ("push", false)]);
    }
}
