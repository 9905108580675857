//! STS GetCallerIdentity, as one signed Query call: the account the task definition's
//! `{account_id}` stands for.

use anyhow::{anyhow, Context, Result};

use crate::aws::{Aws, SignedRequest};

/// The account of the credentials in use.
pub async fn account_id(aws: &Aws) -> Result<String> {
    let request = SignedRequest {
        service: "sts",
        headers: vec![("Content-Type", "application/x-www-form-urlencoded; charset=utf-8".into())],
        body: b"Action=GetCallerIdentity&Version=2011-06-15".to_vec(),
    };
    let (status, text) = aws.send_signed(request).await.context("STS GetCallerIdentity failed")?;
    if status >= 400 {
        return Err(anyhow!("STS GetCallerIdentity answered {status}: {}", text.trim()));
    }
    account_of(&text).ok_or_else(|| anyhow!("STS GetCallerIdentity answered no account: {text}"))
}

/// The `<Account>` of a GetCallerIdentity answer.
fn account_of(xml: &str) -> Option<String> {
    let start = xml.find("<Account>")? + "<Account>".len();
    let end = start + xml[start..].find("</Account>")?;
    let account = xml[start..end].trim();
    (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()))
        .then(|| account.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's shape from the STS API reference.
    #[test]
    fn the_account_is_read_from_the_answer() {
        let xml = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::123456789012:assumed-role/deploy/ci</Arn>
    <UserId>AROAEXAMPLE:ci</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#;
        assert_eq!(account_of(xml).as_deref(), Some("123456789012"));
        assert_eq!(account_of("<Account>12</Account>"), None);
    }
}
