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
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

/// The name of the target `--sandbox` selects (a `[targets.sandbox]` table is optional).
pub const SANDBOX: &str = "sandbox";
pub const FILE_NAME: &str = "deploy.toml";

mod file;

pub use file::DeployFile;

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
    /// The smoke boot: commands the built image runs once on this machine before anything is
    /// pushed (each one's first word replaces the image's entrypoint).
    pub smoke: Vec<Vec<String>>,
    /// Throwaway environment for the smoke boot, in place of the real secrets.
    pub smoke_env: BTreeMap<String, String>,
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Failure;
    use std::path::Path;

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
    fn a_service_is_a_name_or_a_table_whose_keys_are_checked() {
        let t = resolve(TargetFlags::default(), &no_env).unwrap();
        assert_eq!(
            (t.service.as_str(), t.service_settings.desired_count),
            ("zenn-clone-backend-service", 1)
        );
        let without = FILE.replace("service = \"zenn-clone-backend-service\"\n", "");
        let table = format!("{without}\n[defaults.service]\nname = \"web\"\ndesired_count = 3\nsubnets = [\"subnet-1\"]\n");
        let t = DeployFile::parse(&table)
            .unwrap()
            .resolve(&TargetFlags::default(), &DeployFlags::default(), &no_env, None)
            .unwrap();
        assert_eq!((t.service.as_str(), t.service_settings.desired_count), ("web", 3));
        assert_eq!(t.service_settings.subnets, ["subnet-1"]);
        let bad = format!("{without}\n[defaults.service]\nname = \"web\"\ndesired_cont = 3\n");
        let msg = format!("{:#}", DeployFile::parse(&bad).unwrap_err());
        assert!(msg.contains("unknown field `desired_cont`"), "{msg}");
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
