//! The repository's task definition made the target's: placeholders filled, every image the
//! deploy built pinned by digest, and tags that say what the revision is (commit, digests,
//! entrypoint mode, xtask version). The result is RegisterTaskDefinition's input as ECS's JSON
//! protocol takes it, so it is sent as it is.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::aws::ecs::ContainerDefinitionSnapshot;
use crate::entrypoint::Mode;

/// Keys of a described task definition that RegisterTaskDefinition does not take.
pub const READ_ONLY_KEYS: [&str; 8] = [
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
];

/// Tag keys of a revision this tool registered.
pub const TAG_GIT: &str = "xtask:git-commit";
pub const TAG_MODE: &str = "xtask:entrypoint-mode";
pub const TAG_VERSION: &str = "xtask:version";
/// `xtask:digest:<container>`.
pub const TAG_DIGEST: &str = "xtask:digest:";
/// Set once the revision served the health check (a rollback goes back to one of those).
pub const TAG_VERIFIED: &str = "xtask:verified";

/// What the placeholders of `task-definition.json` stand for.
#[derive(Debug, Clone, PartialEq)]
pub struct Placeholders {
    pub registry: String,
    pub account_id: String,
    pub region: String,
}

/// What a revision is, as its tags say.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RevisionTags {
    /// `git-<sha>[-dirty]`.
    pub git_commit: Option<String>,
    pub mode: Option<Mode>,
    pub xtask_version: Option<String>,
    /// Container → `sha256:…`.
    pub digests: BTreeMap<String, String>,
    /// When the revision answered the health check (RFC 3339).
    pub verified: Option<String>,
}

impl RevisionTags {
    /// ECS's `tags` member: `[{"key": …, "value": …}]`.
    pub fn to_json(&self) -> Value {
        let mut tags = Vec::new();
        if let Some(git) = &self.git_commit {
            tags.push(json!({ "key": TAG_GIT, "value": git }));
        }
        if let Some(mode) = self.mode {
            tags.push(json!({ "key": TAG_MODE, "value": mode.to_string() }));
        }
        if let Some(version) = &self.xtask_version {
            tags.push(json!({ "key": TAG_VERSION, "value": version }));
        }
        for (container, digest) in &self.digests {
            tags.push(json!({ "key": format!("{TAG_DIGEST}{container}"), "value": digest }));
        }
        if let Some(at) = &self.verified {
            tags.push(json!({ "key": TAG_VERIFIED, "value": at }));
        }
        Value::Array(tags)
    }

    /// Reads ECS's `tags` (tags of others are ignored).
    pub fn from_json(tags: &Value) -> RevisionTags {
        let mut out = RevisionTags::default();
        for tag in tags.as_array().into_iter().flatten() {
            let (Some(key), Some(value)) = (tag["key"].as_str(), tag["value"].as_str()) else {
                continue;
            };
            let value = value.to_string();
            match key {
                TAG_GIT => out.git_commit = Some(value),
                TAG_MODE => {
                    out.mode = match value.as_str() {
                        "first" => Some(Mode::First),
                        "later" => Some(Mode::Later),
                        _ => None,
                    }
                }
                TAG_VERSION => out.xtask_version = Some(value),
                TAG_VERIFIED => out.verified = Some(value),
                _ => {
                    if let Some(container) = key.strip_prefix(TAG_DIGEST) {
                        out.digests.insert(container.to_string(), value);
                    }
                }
            }
        }
        out
    }

    /// Whether this tool registered the revision.
    pub fn is_ours(&self) -> bool {
        self.mode.is_some() || self.xtask_version.is_some()
    }
}

/// The task definition file with its placeholders filled in and read-only keys dropped, as
/// RegisterTaskDefinition's input, without images pinned or tags.
pub fn fill(text: &str, values: &Placeholders) -> Result<Value> {
    let filled = text
        .replace("{registry}", &values.registry)
        .replace("{account_id}", &values.account_id)
        .replace("{region}", &values.region);
    if let Some(unknown) = unknown_placeholder(&filled) {
        bail!("unknown placeholder `{unknown}`: use {{registry}}, {{account_id}} or {{region}}");
    }
    let mut json: Value = serde_json::from_str(&filled).context("it is not valid JSON")?;
    let object = json.as_object_mut().context("it must be a JSON object")?;
    for key in READ_ONLY_KEYS {
        object.remove(key);
    }
    if !object.get("family").is_some_and(Value::is_string) {
        bail!("it has no `family`");
    }
    let containers = object.get("containerDefinitions").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        bail!("it has no `containerDefinitions`");
    }
    Ok(json)
}

/// [`fill`], then each container of `images` runs that exact reference
/// (`<registry>/<repository>@sha256:…`), and the revision carries `tags`.
pub fn render(
    text: &str,
    values: &Placeholders,
    images: &BTreeMap<String, String>,
    tags: &RevisionTags,
) -> Result<Value> {
    let mut json = fill(text, values)?;
    let containers = json["containerDefinitions"].as_array_mut().context("no containers")?;
    for (name, image) in images {
        let Some(container) = containers.iter_mut().find(|c| c["name"] == name.as_str()) else {
            bail!("the task definition has no container `{name}` for the image it builds: fix `images` in deploy.toml or the task definition");
        };
        container["image"] = Value::String(image.clone());
    }
    let object: &mut Map<String, Value> = json.as_object_mut().context("not an object")?;
    object.insert("tags".to_string(), tags.to_json());
    Ok(json)
}

/// `{name}` left in the text that is no placeholder this file knows.
/// The log groups a task definition's containers log to through awslogs, once each.
pub fn log_groups(definition: &Value) -> Vec<String> {
    let mut groups: Vec<String> = definition["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["logConfiguration"]["logDriver"] == "awslogs")
        .filter_map(|c| c["logConfiguration"]["options"]["awslogs-group"].as_str())
        .map(String::from)
        .collect();
    groups.dedup();
    groups
}

/// One container of a task definition as ECS's JSON gives it (a registered revision), as the
/// roll and the log check read it.
pub fn container_snapshot(definition: &Value, name: &str) -> Option<ContainerDefinitionSnapshot> {
    let c = definition["containerDefinitions"].as_array()?.iter().find(|c| c["name"] == name)?;
    let logs = &c["logConfiguration"];
    let log_option = |key: &str| {
        (logs["logDriver"] == "awslogs")
            .then(|| logs["options"][key].as_str().map(String::from))
            .flatten()
    };
    Some(ContainerDefinitionSnapshot {
        name: name.to_string(),
        image: c["image"].as_str().map(String::from),
        essential: c["essential"].as_bool().unwrap_or(true),
        has_health_check: c["healthCheck"].is_object(),
        health_check_command: c["healthCheck"]["command"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        memory: c["memory"].as_i64().and_then(|m| i32::try_from(m).ok()),
        memory_reservation: c["memoryReservation"].as_i64().and_then(|m| i32::try_from(m).ok()),
        log_group: log_option("awslogs-group"),
        log_stream_prefix: log_option("awslogs-stream-prefix"),
    })
}

fn unknown_placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let len =
            after.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(after.len());
        if len > 0 && after[len..].starts_with('}') {
            return Some(&rest[open..open + len + 2]);
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483";

    fn values() -> Placeholders {
        Placeholders {
            registry: "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com".into(),
            account_id: "123456789012".into(),
            region: "ap-northeast-1".into(),
        }
    }

    fn repository_file() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rails/task-definition.json"),
        )
        .unwrap()
    }

    #[test]
    fn the_repository_definition_is_filled_pinned_and_tagged() {
        let images = BTreeMap::from([(
            "rails".to_string(),
            format!("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails@{DIGEST}"),
        )]);
        let tags = RevisionTags {
            git_commit: Some("git-0123abc".into()),
            mode: Some(Mode::Later),
            xtask_version: Some("0.1.0".into()),
            digests: BTreeMap::from([("rails".to_string(), DIGEST.to_string())]),
            verified: None,
        };
        let json = render(&repository_file(), &values(), &images, &tags).unwrap();
        let text = json.to_string();
        assert!(!text.contains("{registry}") && !text.contains("{account_id}"), "{text}");
        assert_eq!(json["containerDefinitions"][0]["image"], images["rails"].as_str());
        assert_eq!(
            json["containerDefinitions"][1]["image"],
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-nginx",
            "an image the deploy did not build stays as the file names it"
        );
        assert_eq!(json["executionRoleArn"], "arn:aws:iam::123456789012:role/ecsTaskExecutionRole");
        assert_eq!(RevisionTags::from_json(&json["tags"]), tags);
    }

    #[test]
    fn a_container_the_definition_lacks_is_refused() {
        let images = BTreeMap::from([("worker".to_string(), format!("r/w@{DIGEST}"))]);
        let err =
            render(&repository_file(), &values(), &images, &RevisionTags::default()).unwrap_err();
        assert!(err.to_string().contains("no container `worker`"), "{err}");
    }

    #[test]
    fn placeholders_are_filled_and_read_only_keys_dropped() {
        let text = r#"{"family": "f", "revision": 3, "status": "ACTIVE",
            "containerDefinitions": [{"name": "a", "image": "{registry}/a"}]}"#;
        let json = fill(text, &values()).unwrap();
        assert!(json.get("revision").is_none() && json.get("status").is_none());
        assert_eq!(
            json["containerDefinitions"][0]["image"],
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/a"
        );
    }

    #[test]
    fn unknown_placeholders_and_missing_keys_are_refused() {
        let err = fill(r#"{"family": "{famly}"}"#, &values()).unwrap_err();
        assert!(err.to_string().contains("{famly}"), "{err}");
        assert!(fill(r#"{"containerDefinitions": [{}]}"#, &values()).is_err());
        assert!(fill(r#"{"family": "f", "containerDefinitions": []}"#, &values()).is_err());
        assert!(fill("not json", &values()).is_err());
    }

    /// Runs botocore's check of RegisterTaskDefinition's input shape on `definition`.
    fn botocore_check(name: &str, definition: &Value) -> std::process::Output {
        let python = crate::sandbox::moto_python(&crate::report::Reporter::plain()).unwrap();
        let dir = crate::project::target_dir().join("xtask-unit").join("render");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(definition).unwrap()).unwrap();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("test_data/render/validate_register_input.py");
        std::process::Command::new(python).arg(script).arg(&file).output().unwrap()
    }

    #[test]
    #[ignore = "needs the sandbox's moto venv (botocore's service model): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
    fn the_rendered_definition_is_valid_register_task_definition_input_for_botocore() {
        let images = BTreeMap::from([
            (
                "rails".to_string(),
                format!(
                    "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-rails@{DIGEST}"
                ),
            ),
            (
                "nginx".to_string(),
                format!(
                    "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/zenn-clone-nginx@{DIGEST}"
                ),
            ),
        ]);
        let tags = RevisionTags {
            git_commit: Some("git-0123abc-dirty".into()),
            mode: Some(Mode::First),
            xtask_version: Some("0.1.0".into()),
            digests: BTreeMap::from([("rails".to_string(), DIGEST.to_string())]),
            verified: Some("2026-12-02T12:00:00Z".into()),
        };
        let rendered = render(&repository_file(), &values(), &images, &tags).unwrap();
        let out = botocore_check("rendered", &rendered);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "botocore refuses the rendered definition:\n{said}");

        // The check can fail: an enum value ECS does not know and a member the shape lacks.
        let mut broken = rendered.clone();
        broken["networkMode"] = Value::String("awsvpcc".into());
        broken["containerDefinitions"][0]["imageTag"] = Value::String("latest".into());
        let out = botocore_check("broken", &broken);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains("networkMode") && said.contains("imageTag"), "{said}");
    }

    #[test]
    fn a_containers_awslogs_options_are_read_from_the_registered_json() {
        let definition: Value = serde_json::from_str(&repository_file()).unwrap();
        let rails = container_snapshot(&definition, "rails").unwrap();
        assert_eq!(rails.log_group.as_deref(), Some("/ecs/zenn-clone-task-definition-backend"));
        assert_eq!(rails.log_stream_prefix.as_deref(), Some("ecs"));
        assert!(rails.essential && rails.has_health_check);
        assert_eq!(container_snapshot(&definition, "web"), None);
        let other = json!({"containerDefinitions": [{"name": "a", "logConfiguration":
            {"logDriver": "fluentd", "options": {"awslogs-group": "g"}}}]});
        assert_eq!(container_snapshot(&other, "a").unwrap().log_group, None);
        assert_eq!(log_groups(&definition), ["/ecs/zenn-clone-task-definition-backend"]);
        assert!(log_groups(&other).is_empty());
    }

    #[test]
    fn tags_of_others_are_ignored() {
        let tags = json!([{"key": "team", "value": "web"}, {"key": TAG_MODE, "value": "first"}]);
        let read = RevisionTags::from_json(&tags);
        assert_eq!(read.mode, Some(Mode::First));
        assert!(read.is_ours());
        assert!(!RevisionTags::from_json(&json!([{"key": "team", "value": "web"}])).is_ours());
    }
}
