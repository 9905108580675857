//! The AWS resources a deploy expects, created in moto from `deploy.toml` and
//! `rails/task-definition.json`: ECR repositories, cluster, network, task definition, service.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesError;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    LaunchType, NetworkConfiguration, SchedulingStrategy,
};
use serde_json::Value;

use crate::aws::ec2::{self, xml, xml::Element as _};
use crate::aws::logs::LogsApi as _;
use crate::aws::{Aws, SignedRequest};
use crate::deploy::target::Target;
use crate::failure::Failure;

/// The name (and `Name` tag) of the sandbox's VPC, subnet and security group.
const NETWORK_NAME: &str = "zenn-sandbox";
/// Keys of a described task definition that RegisterTaskDefinition does not take.
const READ_ONLY_KEYS: [&str; 8] = [
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
];

/// What the placeholders of `task-definition.json` stand for.
#[derive(Debug, Clone)]
pub struct Placeholders<'a> {
    pub registry: &'a str,
    pub account_id: &'a str,
    pub region: &'a str,
}

/// The task definition file with `{registry}`, `{account_id}`, `{region}` filled in, as the
/// RegisterTaskDefinition input (read-only keys of a described definition dropped).
pub fn render_task_definition(text: &str, values: &Placeholders) -> Result<Value> {
    let filled = text
        .replace("{registry}", values.registry)
        .replace("{account_id}", values.account_id)
        .replace("{region}", values.region);
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

/// Creates what is missing; returns one line per thing created. With everything in place it
/// costs one DescribeServices (and one DescribeRepositories when `repositories`).
pub async fn ensure(
    aws: &Aws,
    target: &Target,
    task_definition: &Path,
    values: &Placeholders<'_>,
    repositories: bool,
) -> Result<Vec<String>> {
    let mut created = Vec::new();
    if repositories {
        ensure_repositories(aws, target, &mut created).await?;
    }
    if service_active(aws, target).await? {
        return Ok(created);
    }
    let text = std::fs::read_to_string(task_definition)
        .with_context(|| format!("cannot read the task definition {}", task_definition.display()))
        .context(Failure::Input)?;
    let definition = render_task_definition(&text, values)
        .with_context(|| format!("{} is invalid", task_definition.display()))
        .context(Failure::Input)?;
    ensure_cluster(aws, target, &mut created).await?;
    // The book's console made the task definition's log group along with it.
    let logs = crate::aws::logs::Logs::new(aws.logs.clone());
    for group in crate::deploy::render::log_groups(&definition) {
        if logs.create_log_group(&group).await.context("cannot create the log group")? {
            created.push(format!("log group {group}"));
        }
    }
    let network = ensure_network(aws, values.region, &mut created).await?;
    let registered = register_task_definition(aws, &definition).await?;
    created.push(format!("task definition {registered}"));
    create_service(aws, target, &network, &registered).await?;
    created.push(format!(
        "service {} (desired 1, FARGATE, awsvpc, public IP, min 100% / max 200%, circuit breaker with rollback)",
        target.service
    ));
    Ok(created)
}

async fn ensure_repositories(aws: &Aws, target: &Target, created: &mut Vec<String>) -> Result<()> {
    for image in &target.images {
        let found =
            aws.ecr.describe_repositories().repository_names(&image.repository).send().await;
        match found {
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DescribeRepositoriesError::RepositoryNotFoundException(_))
                ) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("ECR DescribeRepositories failed")),
        }
        aws.ecr
            .create_repository()
            .repository_name(&image.repository)
            .image_tag_mutability(aws_sdk_ecr::types::ImageTagMutability::Mutable)
            .send()
            .await
            .with_context(|| format!("cannot create the ECR repository {}", image.repository))?;
        created.push(format!("ECR repository {}", image.repository));
    }
    Ok(())
}

async fn service_active(aws: &Aws, target: &Target) -> Result<bool> {
    let answer =
        aws.ecs.describe_services().cluster(&target.cluster).services(&target.service).send().await;
    match answer {
        Ok(out) => Ok(out.services().iter().any(|s| s.status() == Some("ACTIVE"))),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_cluster_not_found_exception()) => {
            Ok(false)
        }
        Err(e) => Err(anyhow::Error::new(e).context("ECS DescribeServices failed")),
    }
}

async fn ensure_cluster(aws: &Aws, target: &Target, created: &mut Vec<String>) -> Result<()> {
    let out = aws
        .ecs
        .describe_clusters()
        .clusters(&target.cluster)
        .send()
        .await
        .context("ECS DescribeClusters failed")?;
    if out.clusters().iter().any(|c| c.status() == Some("ACTIVE")) {
        return Ok(());
    }
    aws.ecs
        .create_cluster()
        .cluster_name(&target.cluster)
        .send()
        .await
        .with_context(|| format!("cannot create the cluster {}", target.cluster))?;
    created.push(format!("cluster {}", target.cluster));
    Ok(())
}

/// The service's awsvpc network.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub vpc: String,
    pub subnet: String,
    pub security_group: String,
}

pub async fn ensure_network(aws: &Aws, region: &str, created: &mut Vec<String>) -> Result<Network> {
    let mut made = false;
    let tagged = [("Filter.1.Name", "tag:Name"), ("Filter.1.Value.1", NETWORK_NAME)];
    let vpc = match first_id(&ec2_call(aws, "DescribeVpcs", &tagged).await?, "vpcSet", "vpcId") {
        Some(id) => id,
        None => {
            made = true;
            let answer = ec2_call(
                aws,
                "CreateVpc",
                &[
                    ("CidrBlock", "10.0.0.0/16"),
                    ("TagSpecification.1.ResourceType", "vpc"),
                    ("TagSpecification.1.Tag.1.Key", "Name"),
                    ("TagSpecification.1.Tag.1.Value", NETWORK_NAME),
                ],
            )
            .await?;
            let id = text_at(&answer, &["vpc", "vpcId"])?;
            ec2_call(
                aws,
                "ModifyVpcAttribute",
                &[("VpcId", &id), ("EnableDnsHostnames.Value", "true")],
            )
            .await?;
            id
        }
    };
    let in_vpc = [("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", vpc.as_str())];
    let subnet = match first_id(
        &ec2_call(aws, "DescribeSubnets", &in_vpc).await?,
        "subnetSet",
        "subnetId",
    ) {
        Some(id) => id,
        None => {
            made = true;
            let zone = format!("{region}a");
            let answer = ec2_call(
                aws,
                "CreateSubnet",
                &[
                    ("VpcId", &vpc),
                    ("CidrBlock", "10.0.1.0/24"),
                    ("AvailabilityZone", &zone),
                    ("TagSpecification.1.ResourceType", "subnet"),
                    ("TagSpecification.1.Tag.1.Key", "Name"),
                    ("TagSpecification.1.Tag.1.Value", NETWORK_NAME),
                ],
            )
            .await?;
            text_at(&answer, &["subnet", "subnetId"])?
        }
    };
    let named = [
        ("Filter.1.Name", "vpc-id"),
        ("Filter.1.Value.1", vpc.as_str()),
        ("Filter.2.Name", "group-name"),
        ("Filter.2.Value.1", NETWORK_NAME),
    ];
    let security_group = match first_id(
        &ec2_call(aws, "DescribeSecurityGroups", &named).await?,
        "securityGroupInfo",
        "groupId",
    ) {
        Some(id) => id,
        None => {
            made = true;
            let answer = ec2_call(
                aws,
                "CreateSecurityGroup",
                &[
                    ("GroupName", NETWORK_NAME),
                    ("GroupDescription", "zenn-clone backend in the sandbox: HTTP from anywhere"),
                    ("VpcId", &vpc),
                ],
            )
            .await?;
            let id = xml::parse(&answer)?
                .root_element()
                .text_of("groupId")
                .context("CreateSecurityGroup answered no groupId")?;
            ec2_call(
                aws,
                "AuthorizeSecurityGroupIngress",
                &[
                    ("GroupId", &id),
                    ("IpPermissions.1.IpProtocol", "tcp"),
                    ("IpPermissions.1.FromPort", "80"),
                    ("IpPermissions.1.ToPort", "80"),
                    ("IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0"),
                ],
            )
            .await?;
            id
        }
    };
    let network = Network { vpc, subnet, security_group };
    if !made {
        return Ok(network);
    }
    created.push(format!(
        "VPC {} with subnet {} and security group {} (port 80 open)",
        network.vpc, network.subnet, network.security_group
    ));
    Ok(network)
}

async fn ec2_call(aws: &Aws, action: &str, params: &[(&str, &str)]) -> Result<String> {
    let mut all = vec![("Action", action), ("Version", "2016-11-15")];
    all.extend_from_slice(params);
    ec2::query(aws, &all).await
}

/// The id in the first `item` of a Describe* response's `set`.
fn first_id(answer: &str, set: &str, id: &str) -> Option<String> {
    let document = xml::parse(answer).ok()?;
    let id = document.root_element().child(set)?.child("item")?.text_of(id);
    id
}

fn text_at(answer: &str, path: &[&str]) -> Result<String> {
    let document = xml::parse(answer)?;
    let root = document.root_element();
    let mut element = root;
    for name in path {
        element = element.child(name).with_context(|| {
            format!("EC2 answered no `{}` in {}", path.join("."), root.tag_name().name())
        })?;
    }
    Ok(element.text().unwrap_or_default().trim().to_string())
}

/// RegisterTaskDefinition with the file's JSON as the input, unchanged: ECS's JSON protocol
/// takes exactly the shape the repository keeps.
async fn register_task_definition(aws: &Aws, definition: &Value) -> Result<String> {
    let request = SignedRequest {
        service: "ecs",
        headers: vec![
            ("Content-Type", "application/x-amz-json-1.1".into()),
            ("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition".into()),
        ],
        body: serde_json::to_vec(definition)?,
    };
    let (status, text) =
        aws.send_signed(request).await.context("ECS RegisterTaskDefinition failed")?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 {
        let kind = answer["__type"].as_str().unwrap_or("error");
        let message = answer["message"].as_str().or(answer["Message"].as_str()).unwrap_or(&text);
        return Err(anyhow!("ECS RegisterTaskDefinition answered {kind}: {message}"));
    }
    let definition = &answer["taskDefinition"];
    match (definition["family"].as_str(), definition["revision"].as_i64()) {
        (Some(family), Some(revision)) => Ok(format!("{family}:{revision}")),
        _ => bail!("ECS RegisterTaskDefinition answered no family and revision"),
    }
}

async fn create_service(
    aws: &Aws,
    target: &Target,
    network: &Network,
    task_definition: &str,
) -> Result<()> {
    let vpc = AwsVpcConfiguration::builder()
        .subnets(&network.subnet)
        .security_groups(&network.security_group)
        .assign_public_ip(AssignPublicIp::Enabled)
        .build()?;
    let breaker = DeploymentCircuitBreaker::builder().enable(true).rollback(true).build();
    let deployment = DeploymentConfiguration::builder()
        .minimum_healthy_percent(100)
        .maximum_percent(200)
        .deployment_circuit_breaker(breaker)
        .build();
    aws.ecs
        .create_service()
        .cluster(&target.cluster)
        .service_name(&target.service)
        .task_definition(task_definition)
        .desired_count(1)
        .launch_type(LaunchType::Fargate)
        .scheduling_strategy(SchedulingStrategy::Replica)
        .network_configuration(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
        .deployment_configuration(deployment)
        .send()
        .await
        .with_context(|| format!("cannot create the service {}", target.service))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: Placeholders = Placeholders {
        registry: "127.0.0.1:5011",
        account_id: "123456789012",
        region: "ap-northeast-1",
    };

    fn stand_in() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/task-definition.json"),
        )
        .unwrap()
    }

    #[test]
    fn placeholders_are_filled_and_read_only_keys_dropped() {
        let with_extra =
            stand_in().replacen('{', "{\n  \"revision\": 3,\n  \"status\": \"ACTIVE\",", 1);
        let json = render_task_definition(&with_extra, &VALUES).unwrap();
        assert_eq!(json["family"], "zenn-clone-task-definition-backend");
        let rails = &json["containerDefinitions"][0];
        assert_eq!(rails["image"], "127.0.0.1:5011/zenn-clone-rails");
        assert_eq!(rails["logConfiguration"]["options"]["awslogs-region"], "ap-northeast-1");
        assert_eq!(json["executionRoleArn"], "arn:aws:iam::123456789012:role/ecsTaskExecutionRole");
        assert!(json.get("revision").is_none() && json.get("status").is_none());
        assert!(!json.to_string().contains("{registry}"));
    }

    #[test]
    fn unknown_placeholders_and_missing_keys_are_refused() {
        let err = render_task_definition(&stand_in().replace("{region}", "{regoin}"), &VALUES)
            .unwrap_err();
        assert!(format!("{err:#}").contains("unknown placeholder `{regoin}`"), "{err:#}");
        let err = render_task_definition(r#"{"containerDefinitions": [{"name": "a"}]}"#, &VALUES)
            .unwrap_err();
        assert!(format!("{err:#}").contains("no `family`"), "{err:#}");
        assert!(render_task_definition("[1]", &VALUES).is_err());
        assert_eq!(unknown_placeholder(r#"{"command": ["sh", "-c", "echo ${HOME}"]}"#), None);
    }

    #[test]
    fn ids_are_read_from_describe_and_create_answers() {
        let describe = r#"<DescribeVpcsResponse><requestId>1</requestId><vpcSet><item><vpcId>vpc-1</vpcId><state>available</state></item><item><vpcId>vpc-2</vpcId></item></vpcSet></DescribeVpcsResponse>"#;
        assert_eq!(first_id(describe, "vpcSet", "vpcId").as_deref(), Some("vpc-1"));
        assert_eq!(
            first_id("<DescribeVpcsResponse><vpcSet/></DescribeVpcsResponse>", "vpcSet", "vpcId"),
            None
        );
        let create = r#"<CreateSubnetResponse><subnet><subnetId>subnet-9</subnetId><vpcId>vpc-1</vpcId></subnet></CreateSubnetResponse>"#;
        assert_eq!(text_at(create, &["subnet", "subnetId"]).unwrap(), "subnet-9");
        assert!(text_at(create, &["vpc", "vpcId"]).is_err());
    }
}
