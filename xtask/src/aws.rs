//! The one place that builds the AWS SDK configuration and clients.
//!
//! Settings come from the standard chain (`AWS_PROFILE`, `AWS_REGION`, SSO, environment
//! keys, instance roles) with the target's region, profile and endpoint on top. The sandbox
//! target uses fixed dummy credentials: moto accepts any, and real ones must never reach it.

use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::config::Target;
use crate::failure::Failure;

/// Clients for one target, built once and shared (cloning a client is cheap).
#[derive(Clone, Debug)]
pub struct Aws {
    pub sdk: SdkConfig,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
}

impl Aws {
    /// Builds the SDK configuration and the clients for `target`.
    pub async fn connect(target: &Target) -> Aws {
        let sdk = sdk_config(target).await;
        Aws { ecr: aws_sdk_ecr::Client::new(&sdk), ecs: aws_sdk_ecs::Client::new(&sdk), sdk }
    }

    /// Resolves credentials now, so a missing login fails before anything changes.
    pub async fn check_credentials(&self, target: &Target) -> Result<()> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self.sdk.credentials_provider().context(
            "no AWS credentials provider is configured: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        );
        let provider = provider.context(Failure::Preflight)?;
        provider.provide_credentials().await.map(drop).map_err(|e| {
            let hint = match &target.profile {
                Some(p) => format!(
                    "AWS credentials for profile `{p}` did not resolve: run `aws sso login --profile {p}` \
                     or check ~/.aws/config"
                ),
                None => "AWS credentials did not resolve: set AWS_PROFILE (and run `aws sso login`), \
                         or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    .to_string(),
            };
            anyhow::Error::new(e).context(hint).context(Failure::Preflight)
        })
    }
}

/// `aws_config::defaults(BehaviorVersion::latest())` with the target's settings on top.
pub async fn sdk_config(target: &Target) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(target.region.clone()));
    if target.sandbox {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            "sandbox", "sandbox", None, None, "sandbox",
        ));
    } else if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &target.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// A single-threaded tokio runtime for the commands that call AWS.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime for the AWS SDK")
}
