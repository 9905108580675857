//! `deploy.toml` + flags + the AWS environment (+ an [`Overlay`]), resolved into one [`Target`].
//!
//! Precedence, highest first: command-line flags, the standard AWS environment
//! (`AWS_PROFILE`, `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`), the target's
//! table in `deploy.toml`, its `[defaults]` table, the built-in defaults (the chapter's names).
//! The file never holds credentials; those come from the standard AWS chain. An overlay (the
//! local sandbox hands one over) replaces the AWS side as a whole: region, endpoint, registry
//! and credentials are its own, and the AWS environment does not apply. Nothing after the
//! resolution changes a target, so `cargo xtask config` shows what a deploy uses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::failure::Failure;

/// The name of the target `--sandbox` selects (a `[targets.sandbox]` table is optional).
pub const SANDBOX: &str = "sandbox";
pub const FILE_NAME: &str = "deploy.toml";

/// Everything a deploy needs, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub name: String,
    /// What the target stands for, when it is not plain AWS (`the local sandbox`).
    pub label: Option<String>,
    /// The flags that select this target again (`--sandbox`, `--target staging`), for the
    /// commands a message tells the user to run next.
    pub cli_flags: Vec<String>,
    pub region: String,
    /// The named profile of the standard chain, when one is set.
    pub profile: Option<String>,
    /// Where credentials come from.
    pub credentials: Credentials,
    /// Endpoint for every AWS API call (the sandbox's moto server, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Registry host (`host[:port]`) to push to, instead of the one in ECR's authorization token.
    pub registry: Option<String>,
    pub cluster: String,
    pub service: String,
    /// How `first-deploy` creates the service when it is missing.
    pub service_settings: ServiceSettings,
    /// The task definition kept in the repository (relative to the project root).
    pub task_definition: PathBuf,
    pub strategy: RollStrategy,
    pub images: Vec<Image>,
    pub entrypoint: EntrypointConfig,
    pub verify: VerifyConfig,
    #[serde(with = "secs")]
    pub roll_timeout: Duration,
    /// How to read a task's container logs, when not through CloudWatch: a command with
    /// `{task_id}` in it.
    pub logs_command: Option<String>,
}

/// The service `first-deploy` creates when it is missing (`[defaults.service]` and the
/// target's `service` table; the network of a stand-in comes with its overlay).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSettings {
    pub desired_count: i32,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub minimum_healthy_percent: i32,
    pub maximum_percent: i32,
}

/// Where a target's AWS credentials come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum Credentials {
    /// The standard chain: AWS_PROFILE / `profile`, SSO, environment keys, instance roles.
    Chain,
    /// Fixed keys of a stand-in that accepts any (the sandbox): real ones must never reach it.
    Static {
        access_key_id: String,
        #[serde(skip)]
        secret_access_key: String,
    },
}

/// What a stand-in for AWS (the sandbox) hands over: it replaces the target's AWS side.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// The target it stands for (`sandbox`): its table in deploy.toml applies, if any.
    pub target: String,
    /// What it is, for messages (`the local sandbox`).
    pub label: String,
    /// The flags that select it (`--sandbox`).
    pub cli_flags: Vec<String>,
    /// The region its resources live in.
    pub region: String,
    pub endpoint_url: String,
    pub registry: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// How to read a task's container logs (`{task_id}` in it).
    pub logs_command: Option<String>,
    /// The subnets and security groups of its network, for a service it has none of.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

/// Deploy settings the command line overrides (flattened into the deploy commands and
/// `config`, so that `config` shows what a deploy with the same flags uses).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeployFlags {
    /// How to roll the service onto the new images [default: deploy.toml's `strategy`]
    #[arg(long, value_enum)]
    pub strategy: Option<RollStrategy>,
    /// How long the roll may take before it fails [default: deploy.toml's `timeouts.roll`]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub timeout: Option<Duration>,
    /// The JSON `message` the health check must answer [default: deploy.toml's
    /// `verify.expect_message`, else any]
    #[arg(long, value_name = "TEXT")]
    pub expect_message: Option<String>,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// One image the deploy builds and pushes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    /// The container of the task definition that runs this image (`rails`, `nginx`).
    pub container: String,
    /// The ECR repository name (`zenn-clone-rails`).
    pub repository: String,
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub build_args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntrypointConfig {
    pub file: PathBuf,
    /// Steps that run on the first deploy only (`db:create`, `db:seed`).
    pub first_deploy_only: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyConfig {
    /// The health-check URL; `{public_ip}` is replaced by the new task's public IP.
    pub url: String,
    pub expect_status: u16,
    /// When set, the JSON body's `message` must equal it.
    pub expect_message: Option<String>,
    /// How long verification retries before it fails.
    #[serde(with = "secs")]
    pub timeout: Duration,
}

/// How the service is rolled onto the new image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RollStrategy {
    /// UpdateService with forceNewDeployment: the new task starts before the old one stops.
    ForceNewDeployment,
    /// The chapter's way: stop the running tasks and let the service replace them (downtime).
    StopTasks,
}

impl fmt::Display for RollStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RollStrategy::ForceNewDeployment => "force-new-deployment",
            RollStrategy::StopTasks => "stop-tasks",
        })
    }
}

impl std::str::FromStr for RollStrategy {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "force-new-deployment" => Ok(RollStrategy::ForceNewDeployment),
            "stop-tasks" => Ok(RollStrategy::StopTasks),
            _ => bail!("unknown strategy `{s}`: use `force-new-deployment` or `stop-tasks`"),
        }
    }
}

/// Overrides from the command line (flattened into every command that talks to AWS).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TargetFlags {
    /// Deploy target from deploy.toml [default: the file's `default_target`]
    #[arg(long, value_name = "NAME", conflicts_with = "sandbox")]
    pub target: Option<String>,
    /// Use the local sandbox (moto, a local registry, Docker) instead of AWS; it has its own
    /// region, endpoints and credentials
    #[arg(long, conflicts_with_all = ["region", "profile", "endpoint_url"])]
    pub sandbox: bool,
    /// AWS region [env: AWS_REGION]
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile from ~/.aws/config [env: AWS_PROFILE]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Endpoint URL for all AWS API calls [env: AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

impl TargetFlags {
    /// The target name these flags select, before the file is read.
    pub fn requested(&self) -> Option<&str> {
        if self.sandbox {
            Some(SANDBOX)
        } else {
            self.target.as_deref()
        }
    }
}

/// `deploy.toml`, parsed but not resolved.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployFile {
    default_target: Option<String>,
    #[serde(default)]
    defaults: RawTarget,
    #[serde(default)]
    targets: BTreeMap<String, RawTarget>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    registry: Option<String>,
    cluster: Option<String>,
    service: Option<RawService>,
    task_definition: Option<PathBuf>,
    strategy: Option<String>,
    images: Option<BTreeMap<String, RawImage>>,
    entrypoint: Option<RawEntrypoint>,
    verify: Option<RawVerify>,
    timeouts: Option<RawTimeouts>,
}

/// `service = "name"`, or a table with the name and how to create the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawService {
    Name(String),
    Table(RawServiceTable),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceTable {
    name: Option<String>,
    desired_count: Option<i32>,
    subnets: Option<Vec<String>>,
    security_groups: Option<Vec<String>>,
    assign_public_ip: Option<bool>,
    minimum_healthy_percent: Option<i32>,
    maximum_percent: Option<i32>,
}

impl RawService {
    fn table(self) -> RawServiceTable {
        match self {
            RawService::Name(name) => {
                RawServiceTable { name: Some(name), ..RawServiceTable::default() }
            }
            RawService::Table(table) => table,
        }
    }

    /// `self` where set, `base` elsewhere, key by key.
    fn over(self, base: Option<RawService>) -> RawService {
        let (a, b) = (self.table(), base.map(RawService::table).unwrap_or_default());
        RawService::Table(RawServiceTable {
            name: a.name.or(b.name),
            desired_count: a.desired_count.or(b.desired_count),
            subnets: a.subnets.or(b.subnets),
            security_groups: a.security_groups.or(b.security_groups),
            assign_public_ip: a.assign_public_ip.or(b.assign_public_ip),
            minimum_healthy_percent: a.minimum_healthy_percent.or(b.minimum_healthy_percent),
            maximum_percent: a.maximum_percent.or(b.maximum_percent),
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    repository: Option<String>,
    dockerfile: Option<PathBuf>,
    context: Option<PathBuf>,
    build_args: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntrypoint {
    file: Option<PathBuf>,
    first_deploy_only: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    url: Option<String>,
    expect_status: Option<u16>,
    expect_message: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    roll: Option<String>,
}

/// Keys that would mean credentials in the file; refused with a pointer to the AWS chain.
const CREDENTIAL_KEYS: [&str; 5] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "secret_access_key",
    "password",
];

impl DeployFile {
    /// Reads `deploy.toml` from the project root.
    pub fn load(root: &Path) -> Result<DeployFile> {
        let path = root.join(FILE_NAME);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))
            .context("deploy.toml is required: restore it from git (`git checkout deploy.toml`)")
            .context(Failure::Input)?;
        DeployFile::parse(&text).with_context(|| format!("{} is invalid", path.display()))
    }

    /// Parses the file's text; errors name the line and the key.
    pub fn parse(text: &str) -> Result<DeployFile> {
        for (n, line) in text.lines().enumerate() {
            let key = line.split('=').next().unwrap_or("").trim().trim_matches('"').to_lowercase();
            if line.contains('=') && CREDENTIAL_KEYS.contains(&key.as_str()) {
                return Err(anyhow!(
                    "line {}: `{key}` looks like a credential; deploy.toml never holds credentials: \
                     remove it and use AWS_PROFILE, `aws sso login` or the AWS_* environment variables",
                    n + 1
                )
                .context(Failure::Input));
            }
        }
        let file: DeployFile =
            toml::from_str(text).map_err(|e| toml_error(text, &e)).context(Failure::Input)?;
        if let Some(name) = &file.default_target {
            if !file.targets.contains_key(name) && name != SANDBOX {
                return Err(anyhow!(
                    "`default_target = \"{name}\"` names no [targets.{name}] table (known: {})",
                    file.target_names().join(", ")
                )
                .context(Failure::Input));
            }
        }
        Ok(file)
    }

    /// The targets the file defines, plus the built-in sandbox.
    pub fn target_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.targets.keys().cloned().collect();
        if !names.iter().any(|n| n == SANDBOX) {
            names.push(SANDBOX.to_string());
        }
        names
    }

    /// Resolves the selected target with the flags and the environment; with an overlay, the
    /// overlay's target with the overlay's AWS side. The one place a target is made.
    pub fn resolve(
        &self,
        flags: &TargetFlags,
        deploy: &DeployFlags,
        env: &dyn Fn(&str) -> Option<String>,
        overlay: Option<&Overlay>,
    ) -> Result<Target> {
        self.resolve_inner(flags, deploy, env, overlay).context(Failure::Input)
    }

    fn resolve_inner(
        &self,
        flags: &TargetFlags,
        deploy: &DeployFlags,
        env: &dyn Fn(&str) -> Option<String>,
        overlay: Option<&Overlay>,
    ) -> Result<Target> {
        if overlay.is_some()
            && (flags.region.is_some() || flags.profile.is_some() || flags.endpoint_url.is_some())
        {
            bail!("--region, --profile and --endpoint-url do not apply to the sandbox: it has its own region, endpoints and credentials");
        }
        let name = match (overlay, flags.requested()) {
            (Some(overlay), _) => overlay.target.clone(),
            (None, Some(name)) => name.to_string(),
            (None, None) => self.default_target.clone().unwrap_or_else(|| "production".to_string()),
        };
        let table = match self.targets.get(&name) {
            Some(table) => table.clone(),
            None if overlay.is_some() => RawTarget::default(),
            None => bail!(
                "unknown target `{name}`: deploy.toml has no [targets.{name}] (known: {})",
                self.target_names().join(", ")
            ),
        };
        let raw = table.over(&self.defaults);

        let env = |key: &str| env(key).filter(|v| !v.is_empty());
        let (region, profile, endpoint_url, registry) = if let Some(overlay) = overlay {
            let (endpoint, registry) = (overlay.endpoint_url.clone(), overlay.registry.clone());
            (overlay.region.clone(), None, Some(endpoint), Some(registry))
        } else {
            let region = flags
                .region
                .clone()
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .or(raw.region)
                .unwrap_or_else(default_region);
            let profile = flags.profile.clone().or_else(|| env("AWS_PROFILE")).or(raw.profile);
            let endpoint =
                flags.endpoint_url.clone().or_else(|| env("AWS_ENDPOINT_URL")).or(raw.endpoint_url);
            (region, profile, endpoint, raw.registry)
        };
        if let Some(url) = &endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("endpoint URL `{url}` must start with http:// or https://");
            }
        }

        let strategy = match (deploy.strategy, raw.strategy) {
            (Some(strategy), _) => strategy,
            (None, Some(s)) => s.parse().context("key `strategy`")?,
            (None, None) => RollStrategy::ForceNewDeployment,
        };

        let mut images = Vec::new();
        for (container, image) in raw.images.unwrap_or_default() {
            let repository = image.repository.with_context(|| {
                format!("image `{container}` has no `repository`: set [defaults.images.{container}] repository")
            })?;
            images.push(Image {
                dockerfile: image
                    .dockerfile
                    .unwrap_or_else(|| PathBuf::from(&container).join("Dockerfile.prod")),
                context: image.context.unwrap_or_else(|| PathBuf::from(&container)),
                build_args: image.build_args.unwrap_or_default(),
                repository,
                container,
            });
        }
        if images.is_empty() {
            bail!("target `{name}` builds no image: add [defaults.images.<container>] tables");
        }

        let entrypoint = raw.entrypoint.unwrap_or_default();
        let entrypoint = EntrypointConfig {
            file: entrypoint.file.unwrap_or_else(|| PathBuf::from("rails/entrypoint.prod.sh")),
            first_deploy_only: entrypoint
                .first_deploy_only
                .unwrap_or_else(|| vec!["db:create".to_string(), "db:seed".to_string()]),
        };
        if entrypoint.first_deploy_only.is_empty() {
            bail!("`entrypoint.first_deploy_only` is empty: list the steps that run on the first deploy only, such as \"db:create\"");
        }

        let verify = raw.verify.unwrap_or_default();
        let verify = VerifyConfig {
            url: verify.url.unwrap_or_else(|| "http://{public_ip}/api/v1/health_check".to_string()),
            expect_status: verify.expect_status.unwrap_or(200),
            expect_message: deploy.expect_message.clone().or(verify.expect_message),
            timeout: match verify.timeout {
                Some(t) => parse_duration(&t).context("key `verify.timeout`")?,
                None => Duration::from_secs(60),
            },
        };
        let roll_timeout = match (deploy.timeout, raw.timeouts.and_then(|t| t.roll)) {
            (Some(timeout), _) => timeout,
            (None, Some(t)) => parse_duration(&t).context("key `timeouts.roll`")?,
            (None, None) => Duration::from_secs(600),
        };
        let service = raw.service.map(RawService::table).unwrap_or_default();
        let service_settings = ServiceSettings {
            desired_count: service.desired_count.unwrap_or(1),
            subnets: match (overlay, service.subnets) {
                (Some(o), _) => o.subnets.clone(),
                (None, subnets) => subnets.unwrap_or_default(),
            },
            security_groups: match (overlay, service.security_groups) {
                (Some(o), _) => o.security_groups.clone(),
                (None, groups) => groups.unwrap_or_default(),
            },
            assign_public_ip: service.assign_public_ip.unwrap_or(true),
            minimum_healthy_percent: service.minimum_healthy_percent.unwrap_or(100),
            maximum_percent: service.maximum_percent.unwrap_or(200),
        };
        if service_settings.desired_count < 1 {
            bail!(
                "`service.desired_count` is {}: a deploy needs at least 1 task",
                service_settings.desired_count
            );
        }
        let credentials = match overlay {
            Some(o) => Credentials::Static {
                access_key_id: o.access_key_id.clone(),
                secret_access_key: o.secret_access_key.clone(),
            },
            None => Credentials::Chain,
        };
        let cli_flags = match overlay {
            Some(o) => o.cli_flags.clone(),
            None if flags.target.is_some() => vec!["--target".to_string(), name.clone()],
            None => Vec::new(),
        };

        Ok(Target {
            label: overlay.map(|o| o.label.clone()),
            cli_flags,
            region,
            profile,
            credentials,
            logs_command: overlay.and_then(|o| o.logs_command.clone()),
            endpoint_url,
            registry,
            cluster: raw.cluster.unwrap_or_else(|| "zenn-clone-cluster".to_string()),
            service: service.name.unwrap_or_else(|| "zenn-clone-backend-service".to_string()),
            service_settings,
            task_definition: raw
                .task_definition
                .unwrap_or_else(|| PathBuf::from("rails/task-definition.json")),
            strategy,
            images,
            entrypoint,
            verify,
            roll_timeout,
            name,
        })
    }
}

/// `line 13, column 11: <what>` on one line (toml's own text adds a multi-line snippet).
fn toml_error(text: &str, err: &toml::de::Error) -> anyhow::Error {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            anyhow!("line {line}, column {column}: {message}")
        }
        None => anyhow!("{message}"),
    }
}

fn default_region() -> String {
    "ap-northeast-1".to_string()
}

impl RawTarget {
    /// `self` where set, `base` elsewhere; image tables merge key by key.
    fn over(self, base: &RawTarget) -> RawTarget {
        let base = base.clone();
        RawTarget {
            region: self.region.or(base.region),
            profile: self.profile.or(base.profile),
            endpoint_url: self.endpoint_url.or(base.endpoint_url),
            registry: self.registry.or(base.registry),
            cluster: self.cluster.or(base.cluster),
            service: match (self.service, base.service) {
                (Some(top), b) => Some(top.over(b)),
                (None, b) => b,
            },
            task_definition: self.task_definition.or(base.task_definition),
            strategy: self.strategy.or(base.strategy),
            images: merge_images(self.images, base.images),
            entrypoint: match (self.entrypoint, base.entrypoint) {
                (Some(a), Some(b)) => Some(RawEntrypoint {
                    file: a.file.or(b.file),
                    first_deploy_only: a.first_deploy_only.or(b.first_deploy_only),
                }),
                (a, b) => a.or(b),
            },
            verify: match (self.verify, base.verify) {
                (Some(a), Some(b)) => Some(RawVerify {
                    url: a.url.or(b.url),
                    expect_status: a.expect_status.or(b.expect_status),
                    expect_message: a.expect_message.or(b.expect_message),
                    timeout: a.timeout.or(b.timeout),
                }),
                (a, b) => a.or(b),
            },
            timeouts: match (self.timeouts, base.timeouts) {
                (Some(a), Some(b)) => Some(RawTimeouts { roll: a.roll.or(b.roll) }),
                (a, b) => a.or(b),
            },
        }
    }
}

fn merge_images(
    top: Option<BTreeMap<String, RawImage>>,
    base: Option<BTreeMap<String, RawImage>>,
) -> Option<BTreeMap<String, RawImage>> {
    let (top, base) = match (top, base) {
        (None, b) => return b,
        (t, None) => return t,
        (Some(t), Some(b)) => (t, b),
    };
    let mut out = base;
    for (name, image) in top {
        let merged = match out.remove(&name) {
            Some(b) => RawImage {
                repository: image.repository.or(b.repository),
                dockerfile: image.dockerfile.or(b.dockerfile),
                context: image.context.or(b.context),
                build_args: match (image.build_args, b.build_args) {
                    (Some(mut t), Some(b)) => {
                        for (k, v) in b {
                            t.entry(k).or_insert(v);
                        }
                        Some(t)
                    }
                    (t, b) => t.or(b),
                },
            },
            None => image,
        };
        out.insert(name, merged);
    }
    Some(out)
}

/// `500ms`, `90s`, `10m`, `1m30s`, `1h` (humantime's syntax: `1m 30s`, `2min` too).
pub fn parse_duration(text: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .map_err(|_| anyhow!("`{text}` is not a duration: write it like `90s`, `10m` or `1m30s`"))
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl Target {
    /// The target as `key = value` lines for `cargo xtask config` (no credentials exist in it).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<36} {v}\n"));
        let label = self.label.as_ref().map(|l| format!(" ({l})")).unwrap_or_default();
        line("target", format!("{}{label}", self.name));
        line("region", self.region.clone());
        let credentials = match (&self.credentials, &self.profile) {
            (Credentials::Static { access_key_id, .. }, _) => {
                format!("(fixed keys of the stand-in, access key id `{access_key_id}`)")
            }
            (Credentials::Chain, Some(profile)) => {
                format!("profile `{profile}` of the standard chain")
            }
            (Credentials::Chain, None) => "(the standard credential chain)".to_string(),
        };
        line("credentials", credentials);
        line("endpoint_url", self.endpoint_url.clone().unwrap_or_else(|| "(AWS default)".into()));
        line(
            "registry",
            self.registry.clone().unwrap_or_else(|| "(from the ECR authorization token)".into()),
        );
        line("cluster", self.cluster.clone());
        line("service", self.service.clone());
        let s = &self.service_settings;
        line("service.desired_count", s.desired_count.to_string());
        let none = |v: &[String]| {
            if v.is_empty() {
                "(none: first-deploy cannot create the service)".to_string()
            } else {
                v.join(", ")
            }
        };
        line("service.subnets", none(&s.subnets));
        line("service.security_groups", none(&s.security_groups));
        line("service.assign_public_ip", s.assign_public_ip.to_string());
        line("service.minimum_healthy_percent", s.minimum_healthy_percent.to_string());
        line("service.maximum_percent", s.maximum_percent.to_string());
        line("task_definition", self.task_definition.display().to_string());
        line("strategy", self.strategy.to_string());
        for image in &self.images {
            let p = format!("images.{}", image.container);
            line(&format!("{p}.repository"), image.repository.clone());
            line(&format!("{p}.dockerfile"), image.dockerfile.display().to_string());
            line(&format!("{p}.context"), image.context.display().to_string());
            for (k, v) in &image.build_args {
                line(&format!("{p}.build_args.{k}"), v.clone());
            }
        }
        line("entrypoint.file", self.entrypoint.file.display().to_string());
        line("entrypoint.first_deploy_only", self.entrypoint.first_deploy_only.join(", "));
        line("verify.url", self.verify.url.clone());
        line("verify.expect_status", self.verify.expect_status.to_string());
        line(
            "verify.expect_message",
            self.verify.expect_message.clone().unwrap_or_else(|| "(any)".into()),
        );
        line("verify.timeout", format!("{}s", self.verify.timeout.as_secs()));
        line("timeouts.roll", format!("{}s", self.roll_timeout.as_secs()));
        if let Some(logs) = &self.logs_command {
            line("logs", logs.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
default_target = "production"

[defaults]
region = "ap-northeast-1"
cluster = "zenn-clone-cluster"
service = "zenn-clone-backend-service"

[defaults.images.rails]
repository = "zenn-clone-rails"
dockerfile = "rails/Dockerfile.prod"
context = "rails"

[defaults.images.nginx]
repository = "zenn-clone-nginx"

[targets.production]
profile = "zenn"

[targets.staging]
service = "zenn-clone-staging"
[targets.staging.images.rails]
build_args = { RUBY_IMAGE = "ruby:3.1.2-slim" }
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve(flags: TargetFlags, env: &dyn Fn(&str) -> Option<String>) -> Result<Target> {
        DeployFile::parse(FILE)?.resolve(&flags, &DeployFlags::default(), env, None)
    }

    #[test]
    fn defaults_follow_the_chapter() {
        let t = resolve(TargetFlags::default(), &no_env).unwrap();
        assert_eq!(t.name, "production");
        assert_eq!(t.region, "ap-northeast-1");
        assert_eq!(t.profile.as_deref(), Some("zenn"));
        assert_eq!(t.cluster, "zenn-clone-cluster");
        assert_eq!(t.service, "zenn-clone-backend-service");
        assert_eq!(t.strategy, RollStrategy::ForceNewDeployment);
        assert_eq!(t.verify.url, "http://{public_ip}/api/v1/health_check");
        assert_eq!(t.roll_timeout, Duration::from_secs(600));
        assert_eq!(t.entrypoint.first_deploy_only, ["db:create", "db:seed"]);
        let nginx = t.images.iter().find(|i| i.container == "nginx").unwrap();
        assert_eq!(nginx.dockerfile, Path::new("nginx/Dockerfile.prod"));
        assert_eq!(nginx.context, Path::new("nginx"));
    }

    #[test]
    fn target_table_overrides_defaults_key_by_key() {
        let flags = TargetFlags { target: Some("staging".into()), ..TargetFlags::default() };
        let t = resolve(flags, &no_env).unwrap();
        assert_eq!(t.service, "zenn-clone-staging");
        assert_eq!(t.cluster, "zenn-clone-cluster");
        let rails = t.images.iter().find(|i| i.container == "rails").unwrap();
        assert_eq!(rails.repository, "zenn-clone-rails");
        assert_eq!(rails.build_args["RUBY_IMAGE"], "ruby:3.1.2-slim");
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let env = |k: &str| match k {
            "AWS_REGION" => Some("us-east-1".to_string()),
            "AWS_PROFILE" => Some("from-env".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://localhost:4566".to_string()),
            _ => None,
        };
        let t = resolve(TargetFlags::default(), &env).unwrap();
        assert_eq!(t.region, "us-east-1");
        assert_eq!(t.profile.as_deref(), Some("from-env"));
        assert_eq!(t.endpoint_url.as_deref(), Some("http://localhost:4566"));

        let flags = TargetFlags {
            region: Some("eu-west-1".into()),
            profile: Some("from-flag".into()),
            ..TargetFlags::default()
        };
        let t = resolve(flags, &env).unwrap();
        assert_eq!(t.region, "eu-west-1");
        assert_eq!(t.profile.as_deref(), Some("from-flag"));
    }

    fn overlay() -> Overlay {
        Overlay {
            target: SANDBOX.into(),
            label: "the local sandbox".into(),
            cli_flags: vec!["--sandbox".into()],
            region: "ap-northeast-1".into(),
            endpoint_url: "http://127.0.0.1:5010".into(),
            registry: "127.0.0.1:5011".into(),
            access_key_id: "sandbox".into(),
            secret_access_key: "sandbox-secret".into(),
            logs_command: Some("cargo xtask sandbox logs {task_id}".into()),
            subnets: vec!["subnet-1".into()],
            security_groups: vec!["sg-1".into()],
        }
    }

    #[test]
    fn an_overlay_replaces_the_aws_side_and_ignores_the_aws_environment() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("https://ecs.amazonaws.com".to_string()),
            "AWS_REGION" => Some("us-east-1".to_string()),
            "AWS_PROFILE" => Some("prod".to_string()),
            _ => None,
        };
        let file = format!("{FILE}\n[targets.sandbox]\ntimeouts = {{ roll = \"5m\" }}\n");
        let t = DeployFile::parse(&file)
            .unwrap()
            .resolve(&TargetFlags::default(), &DeployFlags::default(), &env, Some(&overlay()))
            .unwrap();
        assert_eq!(t.name, "sandbox");
        assert_eq!(t.region, "ap-northeast-1");
        assert_eq!(t.profile, None);
        assert_eq!(t.endpoint_url.as_deref(), Some("http://127.0.0.1:5010"));
        assert_eq!(t.registry.as_deref(), Some("127.0.0.1:5011"));
        assert_eq!(t.cli_flags, ["--sandbox"]);
        assert!(
            matches!(t.credentials, Credentials::Static { ref access_key_id, .. } if access_key_id == "sandbox")
        );
        assert_eq!(t.roll_timeout, Duration::from_secs(300), "the sandbox table applies");
        assert!(!t.describe().contains("sandbox-secret"), "{}", t.describe());
        assert!(!serde_json::to_string(&t).unwrap().contains("sandbox-secret"));
    }

    #[test]
    fn an_overlay_refuses_the_aws_flags() {
        for flags in [
            TargetFlags { region: Some("eu-west-1".into()), ..TargetFlags::default() },
            TargetFlags { profile: Some("p".into()), ..TargetFlags::default() },
            TargetFlags { endpoint_url: Some("http://x".into()), ..TargetFlags::default() },
        ] {
            let err = DeployFile::parse(FILE)
                .unwrap()
                .resolve(&flags, &DeployFlags::default(), &no_env, Some(&overlay()))
                .unwrap_err();
            assert_eq!(Failure::of(&err), Some(Failure::Input));
            assert!(format!("{err:#}").contains("do not apply to the sandbox"), "{err:#}");
        }
    }

    #[test]
    fn deploy_flags_are_part_of_the_resolution() {
        let deploy = DeployFlags {
            strategy: Some(RollStrategy::StopTasks),
            timeout: Some(Duration::from_secs(90)),
            expect_message: Some("Success Health Check!!".into()),
        };
        let t = DeployFile::parse(FILE)
            .unwrap()
            .resolve(&TargetFlags::default(), &deploy, &no_env, None)
            .unwrap();
        assert_eq!(t.strategy, RollStrategy::StopTasks);
        assert_eq!(t.roll_timeout, Duration::from_secs(90));
        assert_eq!(t.verify.expect_message.as_deref(), Some("Success Health Check!!"));
        assert!(t.describe().contains("stop-tasks"), "{}", t.describe());
    }

    #[test]
    fn unknown_target_names_the_known_ones() {
        let flags = TargetFlags { target: Some("stagin".into()), ..TargetFlags::default() };
        let err = resolve(flags, &no_env).unwrap_err();
        assert_eq!(Failure::of(&err), Some(Failure::Input));
        let msg = format!("{err:#}");
        assert!(msg.contains("unknown target `stagin`"), "{msg}");
        assert!(msg.contains("production, staging, sandbox"), "{msg}");
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = DeployFile::parse("[defaults]\nregion = \"x\"\nregoin = \"y\"\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("regoin"), "{msg}");
        assert_eq!(Failure::of(&err), Some(Failure::Input));
    }

    #[test]
    fn credentials_are_refused() {
        let err = DeployFile::parse("[defaults]\naws_secret_access_key = \"abc\"\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 2") && msg.contains("never holds credentials"), "{msg}");
        assert!(!msg.contains("abc"), "the value must not be echoed: {msg}");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let err = DeployFile::parse("[defaults\nregion = 1\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        let err = DeployFile::parse("[defaults]\ncluster = zenn\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("invalid input: line 2, column 11: "), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "10", "m", "1x", "s10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("10").unwrap_err().to_string(),
            "`10` is not a duration: write it like `90s`, `10m` or `1m30s`"
        );
    }

    #[test]
    fn the_repository_file_resolves_every_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let file = DeployFile::load(root).unwrap();
        for name in file.target_names() {
            let flags = TargetFlags { target: Some(name.clone()), ..TargetFlags::default() };
            let t = file.resolve(&flags, &DeployFlags::default(), &no_env, None).unwrap();
            assert_eq!(t.images.len(), 2, "{name}");
        }
    }
}
