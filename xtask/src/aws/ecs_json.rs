//! ECS calls through its JSON protocol (awsJson1_1), for the calls whose input and output are
//! task definitions and services as ECS's own JSON: the repository's file is sent as it is,
//! and what ECS describes is compared as it comes (drift, status, rollback).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::aws::{Aws, SignedRequest};

/// An ECS error answer: its code (`ClientException`) and message.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for EcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for EcsError {}

/// Calls `operation` with `input`; an ECS error is an [`EcsError`] in the chain.
pub async fn call(aws: &Aws, operation: &str, input: &Value) -> Result<Value> {
    let request = SignedRequest {
        service: "ecs",
        headers: vec![
            ("Content-Type", "application/x-amz-json-1.1".into()),
            ("X-Amz-Target", format!("AmazonEC2ContainerServiceV20141113.{operation}")),
        ],
        body: serde_json::to_vec(input)?,
    };
    let (status, text) =
        aws.send_signed(request).await.with_context(|| format!("ECS {operation} failed"))?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 {
        return Err(
            anyhow::Error::new(error_of(&answer, &text)).context(format!("ECS {operation} failed"))
        );
    }
    Ok(answer)
}

/// The code and message of an error body (`__type` may carry a namespace: `ns#Code`).
pub fn error_of(answer: &Value, text: &str) -> EcsError {
    let code = answer["__type"].as_str().unwrap_or("error");
    let code = code.rsplit('#').next().unwrap_or(code).to_string();
    let message = answer["message"].as_str().or(answer["Message"].as_str()).unwrap_or(text);
    EcsError { code, message: message.to_string() }
}

/// A revision ECS registered.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub arn: String,
    pub family: String,
    pub revision: i64,
    /// The task definition as ECS describes it.
    pub definition: Value,
    /// Its `tags` (`[{"key", "value"}]`).
    pub tags: Value,
}

impl Revision {
    fn from_answer(answer: &Value) -> Result<Revision> {
        let definition = answer["taskDefinition"].clone();
        let (Some(arn), Some(family), Some(revision)) = (
            definition["taskDefinitionArn"].as_str(),
            definition["family"].as_str(),
            definition["revision"].as_i64(),
        ) else {
            bail!("ECS answered no task definition ARN, family and revision");
        };
        Ok(Revision {
            arn: arn.to_string(),
            family: family.to_string(),
            revision,
            tags: answer["tags"].clone(),
            definition,
        })
    }

    /// `family:revision`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.family, self.revision)
    }
}

/// RegisterTaskDefinition of a rendered definition (its `tags` included).
pub async fn register_task_definition(aws: &Aws, definition: &Value) -> Result<Revision> {
    let answer = call(aws, "RegisterTaskDefinition", definition).await?;
    let mut revision = Revision::from_answer(&answer)?;
    // ECS answers the tags; a stand-in may not, and they are what was sent.
    if revision.tags.as_array().is_none_or(Vec::is_empty) {
        revision.tags = definition["tags"].clone();
    }
    Ok(revision)
}

/// DescribeTaskDefinition with its tags (`family`, `family:revision` or an ARN).
pub async fn describe_task_definition(aws: &Aws, task_definition: &str) -> Result<Revision> {
    let input = json!({ "taskDefinition": task_definition, "include": ["TAGS"] });
    Revision::from_answer(&call(aws, "DescribeTaskDefinition", &input).await?)
}

/// The ARNs of every ACTIVE revision of `family`, newest first.
pub async fn list_revisions(aws: &Aws, family: &str) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({ "familyPrefix": family, "status": "ACTIVE", "sort": "DESC" });
        if let Some(t) = &token {
            input["nextToken"] = Value::String(t.clone());
        }
        let answer = call(aws, "ListTaskDefinitions", &input).await?;
        arns.extend(
            answer["taskDefinitionArns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from),
        );
        match answer["nextToken"].as_str() {
            Some(next) if Some(next) != token.as_deref() => token = Some(next.to_string()),
            _ => break,
        }
    }
    // The prefix matches longer family names too; the order is by revision whatever ECS gave.
    arns.retain(|a| revision_of(a).is_some_and(|(f, _)| f == family));
    arns.sort_by_key(|a| std::cmp::Reverse(revision_of(a).map_or(0, |(_, r)| r)));
    Ok(arns)
}

/// `(family, revision)` of `…:task-definition/family:7` or `family:7`.
pub fn revision_of(arn: &str) -> Option<(&str, i64)> {
    let name = arn.rsplit_once("task-definition/").map_or(arn, |(_, n)| n);
    let (family, revision) = name.rsplit_once(':')?;
    Some((family, revision.parse().ok()?))
}

/// TagResource: adds `tags` to the resource.
pub async fn tag_resource(aws: &Aws, arn: &str, tags: &Value) -> Result<()> {
    call(aws, "TagResource", &json!({ "resourceArn": arn, "tags": tags })).await.map(drop)
}

/// Whether the cluster is ACTIVE (`false` when missing or inactive).
pub async fn cluster_active(aws: &Aws, cluster: &str) -> Result<bool> {
    let answer = call(aws, "DescribeClusters", &json!({ "clusters": [cluster] })).await?;
    Ok(answer["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["clusterName"] == cluster && c["status"] == "ACTIVE"))
}

pub async fn create_cluster(aws: &Aws, cluster: &str) -> Result<()> {
    call(aws, "CreateCluster", &json!({ "clusterName": cluster })).await.map(drop)
}

/// The service as ECS describes it, `None` when it is missing or INACTIVE (deleted).
pub async fn describe_service(aws: &Aws, cluster: &str, service: &str) -> Result<Option<Value>> {
    let input = json!({ "cluster": cluster, "services": [service] });
    let answer = match call(aws, "DescribeServices", &input).await {
        Ok(answer) => answer,
        Err(e)
            if e.downcast_ref::<EcsError>()
                .is_some_and(|e| e.code == "ClusterNotFoundException") =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    Ok(answer["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["serviceName"] == service && s["status"] != "INACTIVE")
        .cloned())
}

/// CreateService with `input` as ECS's JSON; returns the service.
pub async fn create_service(aws: &Aws, input: &Value) -> Result<Value> {
    let answer = call(aws, "CreateService", input).await?;
    let service = answer["service"].clone();
    if service.is_null() {
        return Err(anyhow!("ECS CreateService answered no service"));
    }
    Ok(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_read_from_arns_and_names() {
        let arn = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/zenn-clone-task-definition-backend:12";
        assert_eq!(revision_of(arn), Some(("zenn-clone-task-definition-backend", 12)));
        assert_eq!(revision_of("f:3"), Some(("f", 3)));
        assert_eq!(revision_of("f"), None);
    }

    #[test]
    fn errors_name_the_code_without_its_namespace() {
        let body = r#"{"__type":"com.amazonaws.ecs#ClientException","message":"Too many"}"#;
        let e = error_of(&serde_json::from_str(body).unwrap(), body);
        assert_eq!(e, EcsError { code: "ClientException".into(), message: "Too many".into() });
    }
}
