//! The one place that builds the AWS SDK configuration and clients.
//!
//! Settings come from the standard chain (`AWS_PROFILE`, `AWS_REGION`, SSO, environment
//! keys, instance roles) with the target's region, profile and endpoint on top, or the fixed
//! keys a stand-in's target carries (real credentials must never reach a stand-in).

use std::time::{Duration, SystemTime};

#[cfg(test)]
pub mod canned;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod ecs_json;
pub mod logs;
pub mod retry;
pub mod sts;

use anyhow::{anyhow, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::deploy::target::{Credentials, Target};
use crate::failure::Failure;
use retry::{GaveUp, RetryPolicy};

/// Clients for one target, built once and shared (cloning a client is cheap).
#[derive(Clone, Debug)]
pub struct Aws {
    pub sdk: SdkConfig,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// How [`Aws::send_signed`] retries (the SDK's clients retry on their own).
    pub retry: RetryPolicy,
}

impl Aws {
    /// Builds the SDK configuration and the clients for `target`.
    pub async fn connect(target: &Target) -> Aws {
        let sdk = sdk_config(target).await;
        Aws {
            ecr: aws_sdk_ecr::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            sdk,
            retry: RetryPolicy::STANDARD,
        }
    }

    /// The same clients, `send_signed` retrying by `retry` (tests wait microseconds).
    #[cfg(test)]
    pub fn with_retry(self, retry: RetryPolicy) -> Aws {
        Aws { retry, ..self }
    }

    /// Resolves credentials now, so a missing login fails before anything changes.
    pub async fn check_credentials(&self, target: &Target) -> Result<()> {
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

/// A request for an API without an SDK crate here (EC2's Query API, whose crate takes minutes
/// to compile; ECS calls whose input is the repository's JSON as is), signed with SigV4.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    /// The signing name: `ec2`, `ecs`.
    pub service: &'a str,
    /// Headers besides the signature's (`Content-Type`, `X-Amz-Target`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Aws {
    /// The region every call goes to.
    pub fn region(&self) -> Result<String> {
        self.sdk
            .region()
            .map(|r| r.to_string())
            .context("no AWS region is configured: set AWS_REGION or `region` in deploy.toml")
            .context(Failure::Preflight)
    }

    /// The URL of `service`: the target's endpoint when it has one, else AWS's regional one.
    pub fn endpoint(&self, service: &str) -> Result<String> {
        Ok(match self.sdk.endpoint_url() {
            Some(url) => format!("{}/", url.trim_end_matches('/')),
            None => format!("https://{service}.{}.amazonaws.com/", self.region()?),
        })
    }

    /// POSTs `request` to the service's endpoint, signed with the configured credentials;
    /// returns the status code and body (an AWS error is a status >= 400, not an `Err`).
    /// Throttling, transient errors and connection failures are retried by `self.retry`, each
    /// attempt signed anew; when they last, the error is a [`GaveUp`] naming the last answer.
    pub async fn send_signed(&self, request: SignedRequest<'_>) -> Result<(u16, String)> {
        let url = self.endpoint(request.service)?;
        let region = self.region()?;
        let provider = self
            .sdk
            .credentials_provider()
            .context("no AWS credentials provider is configured")
            .context(Failure::Preflight)?;
        let service = request.service.to_string();
        let mut failed = 0;
        loop {
            // The provider caches: this refreshes only credentials about to expire.
            let credentials = provider
                .provide_credentials()
                .await
                .context("AWS credentials did not resolve")
                .context(Failure::Preflight)?;
            let headers = signed_headers(credentials, &region, &url, &request, SystemTime::now())?;
            let (to, body) = (url.clone(), request.body.clone());
            let answer = tokio::task::spawn_blocking(move || post(&to, &headers, &body))
                .await
                .map_err(|e| anyhow!("the {service} request did not complete: {e}"))?;
            let why = match &answer {
                Ok((status, text)) => retry::classify_answer(*status, text),
                Err(e) => retry::classify_transport(e),
            };
            let Some(why) = why else {
                return answer.with_context(|| format!("cannot reach {url}"));
            };
            failed += 1;
            if failed >= self.retry.max_attempts {
                return Err(match answer {
                    Ok((_, text)) => anyhow::Error::new(GaveUp {
                        service,
                        attempts: failed,
                        why,
                        message: retry::parse_error_body(&text).and_then(|e| e.message),
                    }),
                    Err(e) => anyhow::Error::new(e)
                        .context(format!("cannot reach {url} after {failed} attempts")),
                });
            }
            tokio::time::sleep(self.retry.backoff(failed, fastrand::f64())).await;
        }
    }
}

/// Every header of `request` POSTed to `url`: its own, plus `X-Amz-Date`, `Authorization`
/// (and `X-Amz-Security-Token` with temporary credentials) of a SigV4 signature at `time`.
fn signed_headers(
    credentials: aws_credential_types::Credentials,
    region: &str,
    url: &str,
    request: &SignedRequest,
    time: SystemTime,
) -> Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(request.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .context("cannot build SigV4 signing parameters")?
        .into();
    let headers = request.headers.iter().map(|(k, v)| (*k, v.as_str()));
    let signable = SignableRequest::new("POST", url, headers, SignableBody::Bytes(&request.body))
        .context("cannot sign the request")?;
    let (instructions, _) =
        sign(signable, &params).context("cannot sign the request")?.into_parts();
    let mut all: Vec<(String, String)> =
        request.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    all.extend(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())));
    Ok(all)
}

fn post(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.post(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = request.send(body)?;
    let status = response.status().as_u16();
    let text = response.body_mut().with_config().limit(64 << 20).read_to_string()?;
    Ok((status, text))
}

/// `aws_config::defaults(BehaviorVersion::latest())` with the target's settings on top.
pub async fn sdk_config(target: &Target) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(target.region.clone()));
    match &target.credentials {
        Credentials::Static { access_key_id, secret_access_key } => {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "target",
            ));
        }
        Credentials::Chain => {
            if let Some(profile) = &target.profile {
                loader = loader.profile_name(profile);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values from botocore's `SigV4Auth` for the same request at the same time, so a
    /// signature AWS accepts from the CLI is the one this sends.
    #[test]
    fn signatures_match_botocore() {
        let request = SignedRequest {
            service: "ec2",
            headers: vec![(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            )],
            body: b"Action=DescribeNetworkInterfaces&Version=2016-11-15&NetworkInterfaceId.1=eni-0f7db099b9f3ae2c4".to_vec(),
        };
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_738_324_800);
        let url = "https://ec2.ap-northeast-1.amazonaws.com/";
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let header = |headers: &[(String, String)], name: &str| {
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
        };

        let plain =
            aws_credential_types::Credentials::new("AKIDEXAMPLE", secret, None, None, "test");
        let headers = signed_headers(plain, "ap-northeast-1", url, &request, time).unwrap();
        assert_eq!(header(&headers, "x-amz-date").as_deref(), Some("20250131T120000Z"));
        assert_eq!(
            header(&headers, "authorization").as_deref(),
            Some("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250131/ap-northeast-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=2dafe4b4f5def9ec958f1f4c633f423d60fda291a9a097ce30e43816b608be17")
        );
        assert_eq!(
            header(&headers, "content-type").as_deref(),
            Some("application/x-www-form-urlencoded; charset=utf-8")
        );

        let session = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            secret,
            Some("SESSIONTOKEN".into()),
            None,
            "test",
        );
        let headers = signed_headers(session, "ap-northeast-1", url, &request, time).unwrap();
        assert_eq!(header(&headers, "x-amz-security-token").as_deref(), Some("SESSIONTOKEN"));
        assert_eq!(
            header(&headers, "authorization").as_deref(),
            Some("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250131/ap-northeast-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=006832576c8df7f430876e7bb0dfbc5270f6edde9c3250e71548b772d15d7733")
        );
    }
}
