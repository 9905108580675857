//! Client of the launcher's admin API (`/_sandbox/...` on moto's port, documented in
//! `moto_sandbox.py`): how the sandbox scheduler records in moto what ECS would know.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A task as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_arn: String,
    pub task_id: String,
    pub cluster: String,
    pub task_definition_arn: String,
    pub group: String,
    pub started_by: String,
    pub launch_type: String,
    pub last_status: String,
    pub desired_status: String,
    pub health_status: String,
    pub stopped_reason: Option<String>,
    pub stop_code: Option<String>,
    pub created_at: Option<String>,
    pub pull_started_at: Option<String>,
    pub pull_stopped_at: Option<String>,
    pub started_at: Option<String>,
    pub stopping_at: Option<String>,
    pub stopped_at: Option<String>,
    pub network_interface_id: Option<String>,
    pub attachment_status: Option<String>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    pub runtime_id: Option<String>,
    pub last_status: Option<String>,
    pub health_status: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub service_arn: String,
    pub service_name: String,
    pub cluster: String,
    pub status: String,
    pub desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    pub task_definition: Option<String>,
    pub launch_type: Option<String>,
    pub network_configuration: Value,
    pub deployment_configuration: Value,
    /// PRIMARY first.
    pub deployments: Vec<Deployment>,
    /// Newest first.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub status: String,
    pub task_definition: String,
    pub desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    pub failed_tasks: i32,
    pub rollout_state: String,
    pub rollout_state_reason: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub created_at: String,
    pub message: String,
}

/// What the scheduler observed of a task; unset fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    /// Times as ISO 8601 (`2025-01-31T12:00:00.000Z`); RUNNING and STOPPED imply their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerUpdate>,
    /// `Some(None)` removes the public IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUpdate {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentUpdate {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_state_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_tasks: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<i32>,
}

/// The admin API of the moto at `endpoint_url` (`http://127.0.0.1:5010`).
#[derive(Debug, Clone)]
pub struct Admin {
    endpoint: String,
    base: String,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct Tasks {
    tasks: Vec<Task>,
}
#[derive(Deserialize)]
struct OneTask {
    task: Task,
}
#[derive(Deserialize)]
struct Services {
    services: Vec<Service>,
}
#[derive(Deserialize)]
struct OneService {
    service: Service,
}
#[cfg(test)]
#[derive(Deserialize)]
struct OneDeployment {
    deployment: Deployment,
}

impl Admin {
    pub fn new(endpoint_url: &str) -> Admin {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let endpoint = endpoint_url.trim_end_matches('/').to_string();
        Admin { base: format!("{endpoint}/_sandbox"), endpoint, agent }
    }

    /// DescribeTaskDefinition through moto's own ECS API: the response text,
    /// `{"taskDefinition": {...}}`.
    pub fn describe_task_definition(&self, region: &str, task_definition: &str) -> Result<String> {
        let body = json!({ "taskDefinition": task_definition });
        let operation = "AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition";
        match self.aws_json(region, "ecs", operation, &body)? {
            (status, text) if status >= 300 => Err(anyhow!(
                "DescribeTaskDefinition {task_definition} answered {status}: {}",
                text.trim()
            )),
            (_, text) => Ok(text),
        }
    }

    /// An awsJson1.1 call to moto's API of `service` in `region`, as the SDK sends it (moto
    /// routes by the Authorization header's credential scope and checks no signature): the
    /// status code and the response text (an AWS error is a status >= 300, not an `Err`).
    pub fn aws_json(
        &self,
        region: &str,
        service: &str,
        target: &str,
        body: &Value,
    ) -> Result<(u16, String)> {
        let scope = format!(
            "AWS4-HMAC-SHA256 Credential=sandbox/20250101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let mut answer = self
            .agent
            .post(&format!("{}/", self.endpoint))
            .header("X-Amz-Target", target)
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("Authorization", &scope)
            .send(body.to_string())
            .with_context(|| {
                format!("the sandbox's moto does not answer {}: is the sandbox up?", self.endpoint)
            })?;
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string()?;
        Ok((status, text))
    }

    /// Every task of the cluster, stopped ones included.
    pub fn tasks(&self, cluster: &str) -> Result<Vec<Task>> {
        Ok(self.call::<Tasks>("GET", &format!("/ecs/tasks?cluster={cluster}"), None)?.tasks)
    }

    /// Starts a task of the service's deployment (default: PRIMARY), as ECS's scheduler would.
    pub fn start_task(
        &self,
        cluster: &str,
        service: &str,
        deployment: Option<&str>,
    ) -> Result<Task> {
        let mut body = json!({ "cluster": cluster, "service": service });
        if let Some(id) = deployment {
            body["deploymentId"] = json!(id);
        }
        Ok(self.call::<OneTask>("POST", "/ecs/tasks", Some(body))?.task)
    }

    pub fn update_task(&self, task_id: &str, update: &TaskUpdate) -> Result<Task> {
        let body = serde_json::to_value(update)?;
        Ok(self.call::<OneTask>("POST", &format!("/ecs/tasks/{task_id}"), Some(body))?.task)
    }

    pub fn services(&self, cluster: &str) -> Result<Vec<Service>> {
        Ok(self
            .call::<Services>("GET", &format!("/ecs/services?cluster={cluster}"), None)?
            .services)
    }

    pub fn update_deployments(
        &self,
        cluster: &str,
        service: &str,
        deployments: &[DeploymentUpdate],
    ) -> Result<Service> {
        let body = json!({ "deployments": deployments });
        Ok(self
            .call::<OneService>("POST", &format!("/ecs/services/{cluster}/{service}"), Some(body))?
            .service)
    }

    /// A new PRIMARY deployment (the circuit breaker's rollback, for one).
    #[cfg(test)]
    pub fn new_deployment(
        &self,
        cluster: &str,
        service: &str,
        task_definition: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Deployment> {
        let mut body = json!({});
        if let Some(td) = task_definition {
            body["taskDefinition"] = json!(td);
        }
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        let path = format!("/ecs/services/{cluster}/{service}/deployments");
        Ok(self.call::<OneDeployment>("POST", &path, Some(body))?.deployment)
    }

    /// A service event, shown newest first by DescribeServices.
    pub fn add_event(&self, cluster: &str, service: &str, message: &str) -> Result<Event> {
        #[derive(Deserialize)]
        struct OneEvent {
            event: Event,
        }
        let path = format!("/ecs/services/{cluster}/{service}/events");
        Ok(self.call::<OneEvent>("POST", &path, Some(json!({ "message": message })))?.event)
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let answer = match body {
            Some(body) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            None => self.agent.get(&url).call(),
        };
        let mut answer = answer.with_context(|| {
            format!("the sandbox's moto does not answer {url}: is the sandbox up?")
        })?;
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        if status >= 300 {
            let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = error["error"].as_str().unwrap_or(&text);
            return Err(anyhow!("sandbox admin API {method} {path} answered {status}: {error}"));
        }
        serde_json::from_str(&text)
            .with_context(|| format!("unexpected answer from {method} {path}: {text}"))
    }
}
