//! The part of an ECS task definition Fargate runs, as ECS returns it (camelCase JSON).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::failure::Failure;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    pub container_definitions: Vec<ContainerDefinition>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    pub name: String,
    pub image: String,
    /// ECS's default is `true`.
    #[serde(default)]
    pub essential: Option<bool>,
    /// Hard limit, MiB.
    #[serde(default)]
    pub memory: Option<u64>,
    /// Soft limit, MiB.
    #[serde(default)]
    pub memory_reservation: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub environment: Vec<KeyValue>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<SecretRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes_from: Vec<VolumeFrom>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub depends_on: Vec<Dependency>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub entry_point: Option<Vec<String>>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub working_directory: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Seconds to wait for the dependencies' conditions before giving up.
    #[serde(default)]
    pub start_timeout: Option<u64>,
    #[serde(default)]
    pub log_configuration: Option<LogConfiguration>,
    #[serde(default)]
    pub linux_parameters: Option<LinuxParameters>,
}

/// The part of `linuxParameters` the sandbox honours.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    /// Run an init process as PID 1 that forwards signals and reaps children (`docker --init`).
    #[serde(default)]
    pub init_process_enabled: Option<bool>,
}

impl ContainerDefinition {
    pub fn is_essential(&self) -> bool {
        self.essential.unwrap_or(true)
    }

    /// The awslogs stream name: `<prefix>/<container>/<task id>`.
    pub fn log_stream(&self, task_id: &str) -> String {
        let prefix = self
            .log_configuration
            .as_ref()
            .and_then(|l| l.options.get("awslogs-stream-prefix"))
            .filter(|p| !p.is_empty());
        match prefix {
            Some(prefix) => format!("{prefix}/{}/{task_id}", self.name),
            None => format!("{}/{task_id}", self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    #[serde(default)]
    pub host_port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KeyValue {
    pub name: String,
    pub value: String,
}

/// Only the name: the sandbox supplies the value from its own settings, whatever `valueFrom` says.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SecretRef {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    pub source_container: String,
    #[serde(default)]
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub container_name: String,
    pub condition: Condition,
}

/// When a container may start, relative to one it depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Condition {
    Start,
    Complete,
    Success,
    Healthy,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Start => "START",
            Condition::Complete => "COMPLETE",
            Condition::Success => "SUCCESS",
            Condition::Healthy => "HEALTHY",
        }
    }
}

/// Seconds, as ECS gives them; ECS's defaults apply where a field is missing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub command: Vec<String>,
    #[serde(default)]
    pub interval: Option<u64>,
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub start_period: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    #[serde(default)]
    pub log_driver: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

impl TaskDefinition {
    /// The task definition itself (as `rails/task-definition.json` holds it) or a whole
    /// DescribeTaskDefinition response (`{"taskDefinition": {...}}`).
    pub fn from_json(text: &str) -> Result<TaskDefinition> {
        let value: Value = serde_json::from_str(text)
            .context("the task definition is not JSON")
            .context(Failure::Input)?;
        TaskDefinition::from_value(value)
    }

    pub fn from_value(mut value: Value) -> Result<TaskDefinition> {
        if let Some(inner) = value.get_mut("taskDefinition") {
            value = inner.take();
        }
        serde_json::from_value(value)
            .context("the task definition does not have the shape ECS gives it (containerDefinitions, camelCase keys)")
            .context(Failure::Input)
    }
}

/// Moto and the AWS CLI write `null` for some unset lists.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_describe_response_and_nulls_are_accepted() {
        let def = TaskDefinition::from_json(
            r#"{"taskDefinition": {"family": "f", "containerDefinitions": [
                {"name": "web", "image": "r/web", "environment": null, "portMappings": null,
                 "essential": false, "logConfiguration": {"logDriver": "awslogs", "options": null}}
            ]}}"#,
        )
        .unwrap();
        let web = &def.container_definitions[0];
        assert_eq!(web.name, "web");
        assert!(!web.is_essential());
        assert!(web.environment.is_empty() && web.port_mappings.is_empty());
        assert_eq!(web.log_stream("t1"), "web/t1");
    }

    #[test]
    fn a_definition_without_containers_is_an_input_error() {
        let err = TaskDefinition::from_json(r#"{"family": "f"}"#).unwrap_err();
        assert_eq!(Failure::of(&err), Some(Failure::Input));
        assert!(format!("{err:#}").contains("containerDefinitions"), "{err:#}");
    }

    #[test]
    fn an_unknown_condition_is_refused() {
        let text = r#"{"containerDefinitions": [{"name": "a", "image": "i",
            "dependsOn": [{"containerName": "b", "condition": "READY"}]}]}"#;
        assert!(TaskDefinition::from_json(text).is_err());
    }
}
