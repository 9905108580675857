//! Thin ECS calls that return plain values.
//!
//! [`EcsApi`] is the interface the roll's driver polls through: [`Ecs`] implements it over the
//! SDK client, the roll's tests implement it with scripted responses. Every method is one API
//! call, so a wrapper can count them; [`list_all_tasks`] and [`describe_all_tasks`] page and
//! batch on top.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::primitives::DateTime;
use aws_sdk_ecs::types;

/// DescribeTasks takes at most this many tasks per call.
pub const DESCRIBE_TASKS_BATCH: usize = 100;

/// A service as DescribeServices shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSnapshot {
    pub name: String,
    /// `ACTIVE`, `DRAINING` or `INACTIVE`.
    pub status: String,
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    pub task_definition: Option<String>,
    pub deployments: Vec<DeploymentSnapshot>,
    /// Newest first, as ECS returns them.
    pub events: Vec<ServiceEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSnapshot {
    /// `ecs-svc/…`; the `startedBy` of every task this deployment launches.
    pub id: String,
    /// `PRIMARY`, `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`; absent when ECS does not report it.
    pub rollout_state: Option<String>,
    pub rollout_state_reason: Option<String>,
    pub task_definition: Option<String>,
    pub created_at: Option<SystemTime>,
    pub desired: i32,
    pub pending: i32,
    pub running: i32,
    pub failed_tasks: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEvent {
    pub id: String,
    pub created_at: Option<SystemTime>,
    pub message: String,
}

/// A task as DescribeTasks shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSnapshot {
    pub arn: String,
    /// The last segment of the ARN, as the console shows it.
    pub id: String,
    /// `service:<name>` for a service's tasks.
    pub group: Option<String>,
    /// The deployment id for a service's tasks.
    pub started_by: Option<String>,
    pub task_definition_arn: Option<String>,
    /// `PROVISIONING`, `PENDING`, `ACTIVATING`, `RUNNING`, `DEACTIVATING`, `STOPPING`, `DEPROVISIONING`, `STOPPED`.
    pub last_status: String,
    pub desired_status: String,
    pub health: HealthStatus,
    pub created_at: Option<SystemTime>,
    pub started_at: Option<SystemTime>,
    pub stopped_at: Option<SystemTime>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    /// The task's elastic network interface (awsvpc), whose public IP the verification uses.
    pub eni_id: Option<String>,
    pub containers: Vec<ContainerSnapshot>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSnapshot {
    pub name: String,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    pub last_status: Option<String>,
    pub health: HealthStatus,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    /// No result yet, no health check, or not reported.
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }
}

/// The parts of a task definition the roll judges tasks by.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefinitionSnapshot {
    pub arn: String,
    /// The task's memory in MiB (`"512"`), when the definition sets it (Fargate requires it).
    pub memory: Option<String>,
    pub containers: Vec<ContainerDefinitionSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerDefinitionSnapshot {
    pub name: String,
    pub image: Option<String>,
    pub essential: bool,
    pub has_health_check: bool,
    /// The health check's `command` (`["CMD-SHELL", "curl … || exit 1"]`), empty without one.
    pub health_check_command: Vec<String>,
    /// The container's memory limit and reservation in MiB.
    pub memory: Option<i32>,
    pub memory_reservation: Option<i32>,
    /// `awslogs-group` and `awslogs-stream-prefix`, when the container logs to CloudWatch.
    pub log_group: Option<String>,
    pub log_stream_prefix: Option<String>,
}

impl TaskDefinitionSnapshot {
    pub fn essential(&self) -> impl Iterator<Item = &ContainerDefinitionSnapshot> {
        self.containers.iter().filter(|c| c.essential)
    }
}

/// Which tasks ListTasks returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DesiredStatus {
    Running,
    Stopped,
}

/// One page of ListTasks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskPage {
    pub arns: Vec<String>,
    pub next_token: Option<String>,
}

/// The ECS calls a roll makes; each method is exactly one API call.
/// What an UpdateService changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceUpdate {
    /// The revision to roll onto; `None`: forceNewDeployment on the current one.
    pub task_definition: Option<String>,
    pub desired_count: Option<i32>,
}

pub trait EcsApi {
    async fn describe_service(&self, cluster: &str, service: &str) -> Result<ServiceSnapshot>;
    /// One page of the service's tasks with the given desired status.
    async fn list_tasks_page(
        &self,
        cluster: &str,
        service: &str,
        desired: DesiredStatus,
        next_token: Option<&str>,
    ) -> Result<TaskPage>;
    /// At most [`DESCRIBE_TASKS_BATCH`] tasks; the ones ECS answers MISSING (not visible yet,
    /// or forgotten a while after they stopped) are left out, and the roll asks again.
    async fn describe_tasks(&self, cluster: &str, arns: &[String]) -> Result<Vec<TaskSnapshot>>;
    async fn stop_task(&self, cluster: &str, arn: &str, reason: &str) -> Result<()>;
    /// UpdateService onto `update.task_definition`, or with forceNewDeployment when there is
    /// none; returns the service as the call left it.
    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        update: &ServiceUpdate,
    ) -> Result<ServiceSnapshot>;
    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<TaskDefinitionSnapshot>;
}

/// Every task ARN ListTasks returns, all pages.
pub async fn list_all_tasks(
    api: &impl EcsApi,
    cluster: &str,
    service: &str,
    desired: DesiredStatus,
) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api.list_tasks_page(cluster, service, desired, token.as_deref()).await?;
        arns.extend(page.arns);
        match page.next_token {
            Some(next) if Some(&next) != token.as_ref() => token = Some(next),
            _ => return Ok(arns),
        }
    }
}

/// DescribeTasks in batches of [`DESCRIBE_TASKS_BATCH`].
pub async fn describe_all_tasks(
    api: &impl EcsApi,
    cluster: &str,
    arns: &[String],
) -> Result<Vec<TaskSnapshot>> {
    let mut tasks = Vec::with_capacity(arns.len());
    for batch in arns.chunks(DESCRIBE_TASKS_BATCH) {
        tasks.extend(api.describe_tasks(cluster, batch).await?);
    }
    Ok(tasks)
}

/// An [`EcsApi`] that counts the calls made through it, by operation.
pub struct Counting<'a, A> {
    api: &'a A,
    calls: RefCell<BTreeMap<&'static str, u32>>,
}

impl<'a, A: EcsApi> Counting<'a, A> {
    pub fn new(api: &'a A) -> Self {
        Counting { api, calls: RefCell::new(BTreeMap::new()) }
    }

    pub fn calls(&self) -> BTreeMap<&'static str, u32> {
        self.calls.borrow().clone()
    }

    fn count(&self, op: &'static str) {
        *self.calls.borrow_mut().entry(op).or_default() += 1;
    }
}

impl<A: EcsApi> EcsApi for Counting<'_, A> {
    async fn describe_service(&self, cluster: &str, service: &str) -> Result<ServiceSnapshot> {
        self.count("DescribeServices");
        self.api.describe_service(cluster, service).await
    }
    async fn list_tasks_page(
        &self,
        cluster: &str,
        service: &str,
        desired: DesiredStatus,
        next_token: Option<&str>,
    ) -> Result<TaskPage> {
        self.count("ListTasks");
        self.api.list_tasks_page(cluster, service, desired, next_token).await
    }
    async fn describe_tasks(&self, cluster: &str, arns: &[String]) -> Result<Vec<TaskSnapshot>> {
        self.count("DescribeTasks");
        self.api.describe_tasks(cluster, arns).await
    }
    async fn stop_task(&self, cluster: &str, arn: &str, reason: &str) -> Result<()> {
        self.count("StopTask");
        self.api.stop_task(cluster, arn, reason).await
    }
    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        update: &ServiceUpdate,
    ) -> Result<ServiceSnapshot> {
        self.count("UpdateService");
        self.api.update_service(cluster, service, update).await
    }
    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<TaskDefinitionSnapshot> {
        self.count("DescribeTaskDefinition");
        self.api.describe_task_definition(task_definition).await
    }
}

/// [`EcsApi`] over the SDK client.
#[derive(Clone, Debug)]
pub struct Ecs {
    client: aws_sdk_ecs::Client,
}

impl Ecs {
    pub fn new(client: aws_sdk_ecs::Client) -> Ecs {
        Ecs { client }
    }

    /// One page of ListTasks of one service or, with `None`, of the whole cluster.
    pub async fn list_tasks_of(
        &self,
        cluster: &str,
        service: Option<&str>,
        desired: DesiredStatus,
        next_token: Option<&str>,
    ) -> Result<TaskPage> {
        let status = match desired {
            DesiredStatus::Running => types::DesiredStatus::Running,
            DesiredStatus::Stopped => types::DesiredStatus::Stopped,
        };
        let out = self
            .client
            .list_tasks()
            .cluster(cluster)
            .set_service_name(service.map(str::to_string))
            .desired_status(status)
            .set_next_token(next_token.map(str::to_string))
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| {
                let whose = service.map_or("the whole cluster".to_string(), |s| format!("`{s}`"));
                format!("ListTasks for {whose} in cluster `{cluster}` failed")
            })?;
        Ok(TaskPage {
            arns: out.task_arns().to_vec(),
            next_token: out.next_token().map(str::to_string),
        })
    }
}

fn sdk_error<E: std::error::Error + 'static>(e: E) -> anyhow::Error {
    anyhow!("{}", DisplayErrorContext(e))
}

impl EcsApi for Ecs {
    async fn describe_service(&self, cluster: &str, service: &str) -> Result<ServiceSnapshot> {
        let out = self
            .client
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| {
                format!("DescribeServices for `{service}` in cluster `{cluster}` failed")
            })?;
        if let Some(found) = out.services().first() {
            return Ok(service_snapshot(found));
        }
        let reason = out.failures().first().and_then(|f| f.reason()).unwrap_or("not returned");
        bail!(
            "service `{service}` not found in cluster `{cluster}` ({reason}): \
             check `cluster` and `service` in deploy.toml and the region"
        )
    }

    async fn list_tasks_page(
        &self,
        cluster: &str,
        service: &str,
        desired: DesiredStatus,
        next_token: Option<&str>,
    ) -> Result<TaskPage> {
        self.list_tasks_of(cluster, Some(service), desired, next_token).await
    }

    async fn describe_tasks(&self, cluster: &str, arns: &[String]) -> Result<Vec<TaskSnapshot>> {
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(arns.to_vec()))
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("DescribeTasks in cluster `{cluster}` failed"))?;
        Ok(out.tasks().iter().map(task_snapshot).collect())
    }

    async fn stop_task(&self, cluster: &str, arn: &str, reason: &str) -> Result<()> {
        self.client
            .stop_task()
            .cluster(cluster)
            .task(arn)
            .reason(reason)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("StopTask for {arn} failed"))?;
        Ok(())
    }

    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        update: &ServiceUpdate,
    ) -> Result<ServiceSnapshot> {
        let call = self.client.update_service().cluster(cluster).service(service);
        let call = match &update.task_definition {
            Some(td) => call.task_definition(td),
            None => call.force_new_deployment(true),
        };
        let call = call.set_desired_count(update.desired_count);
        let what = update
            .task_definition
            .as_ref()
            .map_or("forceNewDeployment".to_string(), |td| format!("taskDefinition {td}"));
        let out = call
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("UpdateService ({what}) for `{service}` failed"))?;
        out.service()
            .map(service_snapshot)
            .ok_or_else(|| anyhow!("UpdateService for `{service}` returned no service"))
    }

    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<TaskDefinitionSnapshot> {
        let out = self
            .client
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("DescribeTaskDefinition for {task_definition} failed"))?;
        let def = out.task_definition().ok_or_else(|| {
            anyhow!("DescribeTaskDefinition for {task_definition} returned nothing")
        })?;
        Ok(task_definition_snapshot(def, task_definition))
    }
}

fn time(t: Option<&DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

fn health(h: Option<&types::HealthStatus>) -> HealthStatus {
    match h {
        Some(types::HealthStatus::Healthy) => HealthStatus::Healthy,
        Some(types::HealthStatus::Unhealthy) => HealthStatus::Unhealthy,
        _ => HealthStatus::Unknown,
    }
}

pub fn service_snapshot(s: &types::Service) -> ServiceSnapshot {
    ServiceSnapshot {
        name: s.service_name().unwrap_or_default().to_string(),
        status: s.status().unwrap_or_default().to_string(),
        desired: s.desired_count(),
        running: s.running_count(),
        pending: s.pending_count(),
        task_definition: owned(s.task_definition()),
        deployments: s
            .deployments()
            .iter()
            .map(|d| DeploymentSnapshot {
                id: d.id().unwrap_or_default().to_string(),
                status: d.status().unwrap_or_default().to_string(),
                rollout_state: d.rollout_state().map(|r| r.as_str().to_string()),
                rollout_state_reason: owned(d.rollout_state_reason()),
                task_definition: owned(d.task_definition()),
                created_at: time(d.created_at()),
                desired: d.desired_count(),
                pending: d.pending_count(),
                running: d.running_count(),
                failed_tasks: d.failed_tasks(),
            })
            .collect(),
        events: s
            .events()
            .iter()
            .map(|e| ServiceEvent {
                id: e.id().unwrap_or_default().to_string(),
                created_at: time(e.created_at()),
                message: e.message().unwrap_or_default().to_string(),
            })
            .collect(),
    }
}

pub fn task_snapshot(t: &types::Task) -> TaskSnapshot {
    let arn = t.task_arn().unwrap_or_default().to_string();
    let eni_id = t
        .attachments()
        .iter()
        .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|a| a.details())
        .find(|kv| kv.name() == Some("networkInterfaceId"))
        .and_then(|kv| owned(kv.value()));
    TaskSnapshot {
        id: arn.rsplit('/').next().unwrap_or_default().to_string(),
        arn,
        group: owned(t.group()),
        started_by: owned(t.started_by()),
        task_definition_arn: owned(t.task_definition_arn()),
        last_status: t.last_status().unwrap_or_default().to_string(),
        desired_status: t.desired_status().unwrap_or_default().to_string(),
        health: health(t.health_status()),
        created_at: time(t.created_at()),
        started_at: time(t.started_at()),
        stopped_at: time(t.stopped_at()),
        stop_code: t.stop_code().map(|c| c.as_str().to_string()),
        stopped_reason: owned(t.stopped_reason()),
        eni_id,
        containers: t
            .containers()
            .iter()
            .map(|c| ContainerSnapshot {
                name: c.name().unwrap_or_default().to_string(),
                image: owned(c.image()),
                image_digest: owned(c.image_digest()),
                last_status: owned(c.last_status()),
                health: health(c.health_status()),
                exit_code: c.exit_code(),
                reason: owned(c.reason()),
            })
            .collect(),
    }
}

pub fn task_definition_snapshot(
    def: &types::TaskDefinition,
    requested: &str,
) -> TaskDefinitionSnapshot {
    TaskDefinitionSnapshot {
        arn: def.task_definition_arn().unwrap_or(requested).to_string(),
        memory: owned(def.memory()),
        containers: def
            .container_definitions()
            .iter()
            .map(|c| {
                let log_option = |key: &str| {
                    c.log_configuration()
                        .and_then(|l| l.options())
                        .and_then(|o| o.get(key))
                        .cloned()
                };
                ContainerDefinitionSnapshot {
                    name: c.name().unwrap_or_default().to_string(),
                    image: owned(c.image()),
                    // ECS treats a container without `essential` as essential.
                    essential: c.essential().unwrap_or(true),
                    has_health_check: c.health_check().is_some(),
                    health_check_command: c
                        .health_check()
                        .map(|h| h.command().to_vec())
                        .unwrap_or_default(),
                    memory: c.memory(),
                    memory_reservation: c.memory_reservation(),
                    log_group: log_option("awslogs-group"),
                    log_stream_prefix: log_option("awslogs-stream-prefix"),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
