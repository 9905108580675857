//! Thin Amazon ECR calls that return plain values.
//!
//! Errors name the call and the repository; which failure class they belong to is decided
//! by the caller, which knows whether it is a preflight, a push or a check.

use std::fmt;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_ecr::error::DisplayErrorContext;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability};
use aws_sdk_ecr::Client;

/// A secret string: its `Debug` is redacted and it has no `Display`, so it cannot end up in a
/// log line or an error message by accident. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// What `docker login` needs, from ECR's authorization token.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub username: String,
    pub password: Secret,
    /// The registry host (`<account>.dkr.ecr.<region>.amazonaws.com`), from the proxy endpoint.
    pub registry: String,
}

/// An ECR repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    /// `<account>.dkr.ecr.<region>.amazonaws.com/<name>`.
    pub uri: String,
}

/// The image a tag points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedImage {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: Option<SystemTime>,
}

/// GetAuthorizationToken, decoded.
pub async fn authorization(ecr: &Client) -> Result<Authorization> {
    let out = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| anyhow!("{}", DisplayErrorContext(e)))
        .context("ECR GetAuthorizationToken failed")?;
    let data = out
        .authorization_data()
        .first()
        .context("ECR GetAuthorizationToken returned no authorization data")?;
    let token =
        data.authorization_token().context("ECR GetAuthorizationToken returned no token")?;
    let (username, password) = decode_token(token)?;
    let endpoint =
        data.proxy_endpoint().context("ECR GetAuthorizationToken returned no proxy endpoint")?;
    Ok(Authorization { username, password, registry: registry_host(endpoint) })
}

/// `base64("AWS:<password>")` → (`AWS`, password). The error never contains the token.
pub fn decode_token(token: &str) -> Result<(String, Secret)> {
    let bytes = aws_smithy_types::base64::decode(token)
        .map_err(|_| anyhow!("ECR authorization token is not valid base64"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("ECR authorization token is not valid UTF-8"))?;
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok((user.to_string(), Secret::new(password)))
        }
        _ => bail!("ECR authorization token is not of the form `user:password`"),
    }
}

/// `https://123.dkr.ecr.ap-northeast-1.amazonaws.com/` → `123.dkr.ecr.ap-northeast-1.amazonaws.com`.
pub fn registry_host(proxy_endpoint: &str) -> String {
    let rest = proxy_endpoint
        .strip_prefix("https://")
        .or_else(|| proxy_endpoint.strip_prefix("http://"))
        .unwrap_or(proxy_endpoint);
    rest.trim_end_matches('/').to_string()
}

/// DescribeRepositories for one name; `None` when it does not exist.
pub async fn describe_repository(ecr: &Client, name: &str) -> Result<Option<Repository>> {
    match ecr.describe_repositories().repository_names(name).send().await {
        Ok(out) => {
            let repo = out
                .repositories()
                .iter()
                .find(|r| r.repository_name() == Some(name))
                .with_context(|| format!("ECR DescribeRepositories did not return `{name}`"))?;
            Ok(Some(to_repository(name, repo.repository_uri())?))
        }
        Err(e) if e.as_service_error().is_some_and(|e| e.is_repository_not_found_exception()) => {
            Ok(None)
        }
        Err(e) => Err(anyhow!("{}", DisplayErrorContext(e)))
            .with_context(|| format!("ECR DescribeRepositories `{name}` failed")),
    }
}

/// CreateRepository with scan on push and mutable tags (so `latest` can move).
pub async fn create_repository(ecr: &Client, name: &str) -> Result<Repository> {
    let out = ecr
        .create_repository()
        .repository_name(name)
        .image_scanning_configuration(
            ImageScanningConfiguration::builder().scan_on_push(true).build(),
        )
        .image_tag_mutability(ImageTagMutability::Mutable)
        .send()
        .await
        .map_err(|e| anyhow!("{}", DisplayErrorContext(e)))
        .with_context(|| format!("ECR CreateRepository `{name}` failed"))?;
    let repo = out.repository().context("ECR CreateRepository returned no repository")?;
    to_repository(name, repo.repository_uri())
}

fn to_repository(name: &str, uri: Option<&str>) -> Result<Repository> {
    let uri = uri.with_context(|| format!("ECR returned no URI for repository `{name}`"))?;
    Ok(Repository { name: name.to_string(), uri: uri.to_string() })
}

/// DescribeImages for one tag; `None` when the tag (or the repository) does not exist yet.
pub async fn tagged_image(
    ecr: &Client,
    repository: &str,
    tag: &str,
) -> Result<Option<TaggedImage>> {
    let id = ImageIdentifier::builder().image_tag(tag).build();
    let out = match ecr.describe_images().repository_name(repository).image_ids(id).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_image_not_found_exception() || e.is_repository_not_found_exception()
            }) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(anyhow!("{}", DisplayErrorContext(e)))
                .with_context(|| format!("ECR DescribeImages `{repository}:{tag}` failed"))
        }
    };
    let Some(detail) = out.image_details().first() else { return Ok(None) };
    let digest = detail
        .image_digest()
        .with_context(|| format!("ECR DescribeImages `{repository}:{tag}` returned no digest"))?;
    Ok(Some(TaggedImage {
        digest: digest.to_string(),
        tags: detail.image_tags().to_vec(),
        pushed_at: detail.image_pushed_at().and_then(|t| SystemTime::try_from(*t).ok()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_decodes_to_user_and_password() {
        // base64("AWS:123456789012-auth-token"), as moto returns it
        let (user, password) = decode_token("QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu").unwrap();
        assert_eq!(user, "AWS");
        assert_eq!(password.expose(), "123456789012-auth-token");
    }

    #[test]
    fn password_may_contain_colons() {
        let token = aws_smithy_types::base64::encode("AWS:a:b:c");
        assert_eq!(decode_token(&token).unwrap().1.expose(), "a:b:c");
    }

    #[test]
    fn bad_tokens_fail_without_echoing_them() {
        for token in ["not base64 at all!", &aws_smithy_types::base64::encode("no-colon-secret")] {
            let msg = format!("{:#}", decode_token(token).unwrap_err());
            assert!(!msg.contains(token) && !msg.contains("secret"), "{msg}");
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        let auth = Authorization {
            username: "AWS".into(),
            password: Secret::new("hunter2"),
            registry: "r".into(),
        };
        let shown = format!("{auth:?} {:?}", auth.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Secret(****)"), "{shown}");
    }

    #[test]
    fn registry_host_comes_from_the_proxy_endpoint() {
        assert_eq!(
            registry_host("https://123456789012.dkr.ecr.ap-northeast-1.amazonaws.com"),
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com"
        );
        assert_eq!(registry_host("http://127.0.0.1:5011/"), "127.0.0.1:5011");
        assert_eq!(registry_host("registry.local:443"), "registry.local:443");
    }
}
