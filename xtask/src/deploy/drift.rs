//! Drift: what differs between the rendered task definition and the revision the service
//! runs, field by field, apart from the image references (a deploy changes those on purpose)
//! and what ECS adds or reports on its own.

use std::fmt;

use serde_json::{Map, Value};

use crate::deploy::render::READ_ONLY_KEYS;

/// One field that differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `containerDefinitions[rails].environment[FEATURE].value`.
    pub path: String,
    /// What the service's revision has (`None`: not there).
    pub running: Option<Value>,
    /// What the repository's definition gives (`None`: not there).
    pub rendered: Option<Value>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.running, &self.rendered) {
            (None, Some(new)) => write!(f, "+ {}: {new}", self.path),
            (Some(old), None) => write!(f, "- {}: {old}", self.path),
            (Some(old), Some(new)) => write!(f, "~ {}: {old} → {new}", self.path),
            (None, None) => write!(f, "  {}", self.path),
        }
    }
}

/// The changes from `running` (a described revision) to `rendered` (the definition a deploy
/// would register), in path order.
pub fn diff(running: &Value, rendered: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    compare("", &normalize(running, ""), &normalize(rendered, ""), &mut changes);
    changes
}

/// Members that are not the definition's own: read-only keys, tags (compared apart), images,
/// and the empty values and zero `cpu` ECS fills in.
fn normalize(value: &Value, path: &str) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                let top = path.is_empty();
                if top && (READ_ONLY_KEYS.contains(&key.as_str()) || key == "tags") {
                    continue;
                }
                if path.starts_with("containerDefinitions") && key == "image" {
                    continue;
                }
                if path.starts_with("containerDefinitions") && key == "cpu" && v == &Value::from(0)
                {
                    continue;
                }
                let sub = if top { key.clone() } else { format!("{path}.{key}") };
                let v = normalize(v, &sub);
                if !is_empty(&v) {
                    out.insert(key.clone(), v);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| normalize(v, path)).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// What names an element of a list, so that lists compare by element, not by position.
fn key_of(item: &Value) -> Option<String> {
    ["name", "containerName", "sourceContainer", "sourceVolume", "containerPort", "key"]
        .iter()
        .find_map(|k| match &item[k] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

fn compare(path: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => compare(&sub, x, y, out),
                    (x, y) => {
                        out.push(Change { path: sub, running: x.cloned(), rendered: y.cloned() })
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if keyed(a) && keyed(b) => {
            let find = |list: &[Value], key: &str| {
                list.iter().find(|i| key_of(i).as_deref() == Some(key)).cloned()
            };
            let mut keys: Vec<String> = a.iter().chain(b).filter_map(key_of).collect();
            keys.dedup();
            let mut seen = Vec::new();
            for key in keys {
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key.clone());
                let sub = format!("{path}[{key}]");
                match (find(a, &key), find(b, &key)) {
                    (Some(x), Some(y)) => compare(&sub, &x, &y, out),
                    (x, y) => out.push(Change { path: sub, running: x, rendered: y }),
                }
            }
        }
        (a, b) if a != b => out.push(Change {
            path: path.to_string(),
            running: Some(a.clone()),
            rendered: Some(b.clone()),
        }),
        _ => {}
    }
}

/// A list whose every element has a naming key.
fn keyed(list: &[Value]) -> bool {
    !list.is_empty() && list.iter().all(|i| key_of(i).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn running() -> Value {
        json!({
            "taskDefinitionArn": "arn:aws:ecs:ap-northeast-1:1:task-definition/f:3",
            "revision": 3, "status": "ACTIVE", "family": "f", "cpu": "256",
            "compatibilities": ["EC2", "FARGATE"],
            "containerDefinitions": [
                {"name": "rails", "image": "r/rails@sha256:aa", "cpu": 0, "mountPoints": [],
                 "environment": [{"name": "RAILS_ENV", "value": "production"}]},
                {"name": "nginx", "image": "r/nginx@sha256:bb", "portMappings": [{"containerPort": 80, "hostPort": 80}]}
            ],
            "tags": [{"key": "xtask:git-commit", "value": "git-1"}]
        })
    }

    #[test]
    fn images_read_only_keys_tags_and_ecs_defaults_are_no_drift() {
        let rendered = json!({
            "family": "f", "cpu": "256",
            "containerDefinitions": [
                {"name": "nginx", "image": "r/nginx@sha256:cc", "portMappings": [{"containerPort": 80, "hostPort": 80}]},
                {"name": "rails", "image": "r/rails@sha256:dd",
                 "environment": [{"name": "RAILS_ENV", "value": "production"}]}
            ],
            "tags": [{"key": "xtask:git-commit", "value": "git-2"}]
        });
        assert_eq!(diff(&running(), &rendered), Vec::new());
    }

    #[test]
    fn an_added_variable_and_a_changed_memory_show_by_field() {
        let mut rendered = running();
        rendered["memory"] = json!("1024");
        rendered["containerDefinitions"][0]["environment"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "FEATURE", "value": "on"}));
        rendered["containerDefinitions"][1]["portMappings"][0]["hostPort"] = json!(8080);
        let lines: Vec<String> =
            diff(&running(), &rendered).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                r#"+ containerDefinitions[rails].environment[FEATURE]: {"name":"FEATURE","value":"on"}"#,
                r#"~ containerDefinitions[nginx].portMappings[80].hostPort: 80 → 8080"#,
                r#"+ memory: "1024""#,
            ]
        );
    }
}
