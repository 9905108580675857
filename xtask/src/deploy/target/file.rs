//! `deploy.toml` as written: its tables parsed strictly (unknown keys, credentials and bad
//! values are errors naming the line), merged target over `[defaults]`, and resolved with the
//! flags, the environment and an overlay into a [`Target`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use super::*;
use crate::failure::Failure;

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
#[derive(Debug, Clone)]
enum RawService {
    Name(String),
    Table(RawServiceTable),
}

/// By hand rather than `untagged`, so that a bad key in the table is named in the error.
impl<'de> Deserialize<'de> for RawService {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawService;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the service's name, or a table with `name` and how to create it")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<RawService, E> {
                Ok(RawService::Name(name.to_string()))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<RawService, M::Error> {
                let table = RawServiceTable::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RawService::Table(table))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
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
    smoke: Option<Vec<Vec<String>>>,
    smoke_env: Option<BTreeMap<String, String>>,
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
                smoke: image.smoke.unwrap_or_default(),
                smoke_env: image.smoke_env.unwrap_or_default(),
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

/// `top`'s keys over `base`'s.
fn merge_maps(
    top: Option<BTreeMap<String, String>>,
    base: Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    match (top, base) {
        (Some(mut t), Some(b)) => {
            for (k, v) in b {
                t.entry(k).or_insert(v);
            }
            Some(t)
        }
        (t, b) => t.or(b),
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
                build_args: merge_maps(image.build_args, b.build_args),
                smoke: image.smoke.or(b.smoke),
                smoke_env: merge_maps(image.smoke_env, b.smoke_env),
            },
            None => image,
        };
        out.insert(name, merged);
    }
    Some(out)
}
