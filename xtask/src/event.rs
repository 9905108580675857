//! What `--json` prints: one [`Event`] per line on stdout, in an [`Envelope`] that adds the
//! time since the command started. The same types read it back (the rehearsal), so the
//! output's shape is this file and nothing else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One line of `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Seconds since the command started.
    pub elapsed_s: f64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A line for the user.
    Log {
        message: String,
    },
    Warning {
        message: String,
    },
    PhaseStart {
        phase: String,
    },
    PhaseEnd {
        phase: String,
        ok: bool,
        duration_s: f64,
    },
    /// A long wait, as it stands.
    Progress {
        key: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Detail>,
    },
    /// One step of a deploy's plan, as `--dry-run` shows it.
    PlanStep(StepView),
    /// A step of the plan starts running.
    StepStart(StepView),
    StepEnd {
        index: usize,
        ok: bool,
        duration_s: f64,
    },
    Entrypoint {
        file: String,
        mode: String,
        changed: bool,
        diff: String,
    },
    EntrypointStatus {
        file: String,
        mode: String,
        steps: serde_json::Value,
    },
    EntrypointCheck {
        file: String,
        mode: String,
    },
    ImageBuilt {
        container: String,
        uri: String,
        image_id: String,
        tags: Vec<String>,
    },
    ImagePushed(PushedView),
    RollDone(RollView),
    VerifyDone(VerifyView),
    /// The new tasks' log showed the entrypoint's mode.
    LogCheck(LogCheckView),
    /// The sandbox is up.
    Sandbox {
        endpoint_url: Option<String>,
        registry: String,
        created: Vec<String>,
    },
    /// A component of the sandbox and its health.
    Component {
        name: String,
        address: String,
        pid: Option<u32>,
        health: String,
    },
    BaseImage {
        image: String,
        duration_s: f64,
    },
    /// The resolved target (`cargo xtask config`).
    Config {
        target: serde_json::Value,
    },
    /// What runs now (`cargo xtask status`).
    Status(StatusView),
    /// How the command ended.
    Result(Outcome),
}

/// Details of a [`Event::Progress`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Roll(RollProgress),
    /// Repositories whose `latest` does not show the push yet.
    EcrLatest {
        pending: Vec<String>,
    },
    /// A sandbox component starting.
    Component {
        component: String,
    },
    BaseImage {
        image: String,
        elapsed_s: u64,
    },
    /// The health check's last answer.
    Verify {
        attempts: u32,
        last: String,
    },
}

/// A step of a plan: its place, its phase, the steps it runs beside, and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    pub index: usize,
    pub phase: String,
    /// Steps with the same group run at the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_by_side: Option<String>,
    /// Runs even after an earlier step failed (it puts something back).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always: bool,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedView {
    pub container: String,
    pub repository: String,
    pub uri: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerView {
    pub name: String,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    pub last_status: Option<String>,
    pub health: String,
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub arn: String,
    pub eni_id: Option<String>,
    pub last_status: String,
    pub health: String,
    pub containers: Vec<ContainerView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollView {
    pub strategy: String,
    pub deployment_id: String,
    pub tasks: Vec<TaskView>,
    pub api_calls: BTreeMap<String, u32>,
    pub api_call_total: u32,
    pub polls: u32,
    pub duration_s: f64,
    pub first_task_after_s: Option<f64>,
    pub healthy_after_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollProgress {
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    pub healthy: usize,
    pub deployment_id: String,
    pub rollout_state: Option<String>,
    pub failed_tasks: i32,
    pub new_tasks: Vec<TaskView>,
    pub old_tasks_left: Vec<String>,
    pub waiting_for: String,
    pub roll_elapsed_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyView {
    pub url: String,
    pub status: u16,
    pub message: Option<String>,
    pub attempts: u32,
    pub duration_s: f64,
}

/// The deploy's log check: the steps the new tasks' log showed, and did not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogCheckView {
    pub container: String,
    /// `first` or `later`.
    pub mode: String,
    pub ran: Vec<String>,
    pub not_ran: Vec<String>,
    pub streams: Vec<String>,
    pub lines_read: usize,
    pub waited_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageView {
    pub container: String,
    pub uri: String,
    pub digest: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseView {
    pub phase: String,
    pub duration_s: f64,
    pub ok: bool,
}

/// The first-mode task of a first deploy, which created and seeded the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seeded {
    pub task_id: Option<String>,
    pub public_ip: Option<String>,
    pub images: Vec<ImageView>,
}

/// What `cargo xtask status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub service: String,
    pub cluster: String,
    /// The service's revision (ARN) and its number.
    pub task_definition: Option<String>,
    pub revision: Option<i64>,
    /// From the revision's tags.
    pub git_commit: Option<String>,
    pub entrypoint_mode: Option<String>,
    pub verified: Option<String>,
    pub desired: i64,
    pub running: i64,
    pub images: Vec<RunningImage>,
    pub tasks: Vec<RunningTask>,
    pub deployments: Vec<DeploymentView>,
    /// Whether the repository's definition differs from the revision (images aside).
    pub drift: bool,
    pub drift_fields: Vec<String>,
    /// A deployment IN_PROGRESS of a revision this tool registered and did not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<InterruptedView>,
}

/// A deploy that stopped waiting (Ctrl-C, a kill) while ECS went on rolling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterruptedView {
    pub deployment_id: String,
    pub revision: i64,
    pub git_commit: Option<String>,
    /// When the deployment started (RFC 3339) and how long it has run.
    pub rolling_since: Option<String>,
    pub rolling_s: Option<f64>,
    /// The deploy from this checkout that holds the deploy lock, when one does: then it is not
    /// interrupted but under way.
    pub held_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningImage {
    pub container: String,
    pub image: String,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningTask {
    pub task_arn: String,
    pub last_status: String,
    pub health: String,
    pub public_ip: Option<String>,
    pub task_definition: Option<String>,
    /// Container → the digest it runs.
    pub digests: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub id: String,
    pub status: String,
    pub rollout_state: Option<String>,
    pub task_definition: Option<String>,
    pub running: i64,
}

impl StatusView {
    /// The human form.
    pub fn describe(&self) -> String {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
        let mut out = format!(
            "service   {} in cluster {}
",
            self.service, self.cluster
        );
        out.push_str(&format!(
            "revision  {} ({}), commit {}, entrypoint {} mode, verified {}\n",
            self.revision.map_or("-".to_string(), |r| r.to_string()),
            dash(&self.task_definition),
            dash(&self.git_commit),
            dash(&self.entrypoint_mode),
            dash(&self.verified),
        ));
        for i in &self.images {
            out.push_str(&format!("image     {:<8} {}\n", i.container, i.image));
        }
        out.push_str(&format!("tasks     desired {}, running {}\n", self.desired, self.running));
        for t in &self.tasks {
            let id = t.task_arn.rsplit('/').next().unwrap_or(&t.task_arn);
            let td = t.task_definition.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("-");
            out.push_str(&format!(
                "  task    {id} {} {} at {} ({td})\n",
                t.last_status,
                t.health,
                t.public_ip.as_deref().unwrap_or("no public IP")
            ));
        }
        for d in &self.deployments {
            let td = d.task_definition.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("-");
            out.push_str(&format!(
                "  deployment {} {} {} ({td}, {} running)\n",
                d.id,
                d.status,
                d.rollout_state.as_deref().unwrap_or("-"),
                d.running
            ));
        }
        if let Some(i) = &self.interrupted {
            let since = match (&i.rolling_since, i.rolling_s) {
                (Some(at), Some(s)) => format!(
                    "{at} ({} ago)",
                    crate::report::human_duration(std::time::Duration::from_secs_f64(s))
                ),
                (Some(at), None) => at.clone(),
                _ => "an unknown time".to_string(),
            };
            let what = format!(
                "revision {} ({}) rolling since {since}",
                i.revision,
                i.git_commit.as_deref().unwrap_or("no commit")
            );
            match &i.held_by {
                Some(holder) => out.push_str(&format!(
                    "deploy under way: {what}, by this checkout's deploy ({holder})\n"
                )),
                None => out.push_str(&format!(
                    "interrupted deploy: {what}; run `cargo xtask deploy` again on that commit to attach\n"
                )),
            }
        }
        if self.drift {
            out.push_str("drift     the repository's task definition differs (images aside):\n");
            for f in &self.drift_fields {
                out.push_str(&format!("  {f}\n"));
            }
        } else {
            out.push_str("drift     none (images aside)\n");
        }
        out
    }
}

/// The last event of every command: success with what a deploy left, or the error.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// Every new task's public IP (a service of several tasks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<VerifyView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeded_by: Option<Seeded>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// The revision the service runs now (its ARN and number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// What the deploy created (a first deploy from nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    /// The log check of each roll (a first deploy has two: first mode, then later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_checks: Vec<LogCheckView>,
    /// The interrupted deploy's deployment this deploy attached to (no build, no push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached: Option<AttachedView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachedView {
    pub deployment_id: String,
    /// `family:N`.
    pub revision: String,
    /// How long the deployment had run when the deploy attached to it.
    pub started_s_ago: Option<f64>,
}

impl Outcome {
    /// The failed command's outcome.
    pub fn failed(exit_code: u8, error: String) -> Outcome {
        Outcome { ok: false, exit_code: Some(exit_code), error: Some(error), ..Outcome::default() }
    }
}

/// Reads `--json` output back: every line that is an event (others are skipped).
pub fn parse_lines(text: &str) -> Vec<Envelope> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_they_were_written() {
        let events = [
            Event::Log { message: "hello".into() },
            Event::PhaseEnd { phase: "build".into(), ok: true, duration_s: 1.5 },
            Event::Progress {
                key: "ecr-latest".into(),
                message: "waiting".into(),
                detail: Some(Detail::EcrLatest { pending: vec!["zenn-clone-rails".into()] }),
            },
            Event::StepStart(StepView {
                index: 3,
                phase: "build".into(),
                side_by_side: Some("build".into()),
                always: false,
                text: "docker build --no-cache rails".into(),
            }),
            Event::Result(Outcome::failed(7, "roll failed".into())),
        ];
        for event in events {
            let line =
                serde_json::to_string(&Envelope { elapsed_s: 0.25, event: event.clone() }).unwrap();
            let back: Envelope = serde_json::from_str(&line).unwrap();
            assert_eq!(back.event, event, "{line}");
        }
    }

    #[test]
    fn the_wire_names_the_event_and_flattens_its_fields() {
        let line = serde_json::to_string(&Envelope {
            elapsed_s: 1.0,
            event: Event::PhaseStart { phase: "roll".into() },
        })
        .unwrap();
        assert_eq!(line, r#"{"elapsed_s":1.0,"event":"phase_start","phase":"roll"}"#);
        let ok = Outcome { ok: true, command: Some("deploy".into()), ..Outcome::default() };
        let line =
            serde_json::to_string(&Envelope { elapsed_s: 2.0, event: Event::Result(ok) }).unwrap();
        assert_eq!(line, r#"{"elapsed_s":2.0,"event":"result","ok":true,"command":"deploy"}"#);
    }
}
