//! The EC2 calls the deploy makes, through EC2's Query API signed with SigV4: the EC2 SDK crate
//! takes minutes to compile for one call (a task's network interface → its public IP).

use anyhow::{anyhow, bail, Context, Result};

use crate::aws::{Aws, SignedRequest};

/// The EC2 API version the Query calls speak.
const VERSION: &str = "2016-11-15";

/// What the deploy needs of a network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    pub id: String,
    /// `in-use`, `available`, ...
    pub status: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
}

/// The public IP of a task's network interface; `None` when it has none or no longer exists
/// (ECS deletes a stopped task's interface).
pub async fn public_ip(aws: &Aws, eni_id: &str) -> Result<Option<String>> {
    Ok(network_interface(aws, eni_id).await?.and_then(|eni| eni.public_ip))
}

/// DescribeNetworkInterfaces for one interface; `None` when it does not exist.
pub async fn network_interface(aws: &Aws, eni_id: &str) -> Result<Option<NetworkInterface>> {
    let answer = query(
        aws,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Version", VERSION),
            ("NetworkInterfaceId.1", eni_id),
        ],
    )
    .await;
    match answer {
        Ok(xml) => parse_network_interface(&xml, eni_id),
        Err(e)
            if e.downcast_ref::<Ec2Error>()
                .is_some_and(|e| e.code == "InvalidNetworkInterfaceID.NotFound") =>
        {
            Ok(None)
        }
        Err(e) => Err(e.context(format!("cannot describe network interface {eni_id}"))),
    }
}

/// An error EC2 answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Ec2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EC2 answered {}: {}", self.code, self.message)
    }
}

impl std::error::Error for Ec2Error {}

/// One signed EC2 Query API call (`Action=...&Version=...&...`); the response's XML, or the
/// error EC2 answered as an [`Ec2Error`].
pub async fn query(aws: &Aws, params: &[(&str, &str)]) -> Result<String> {
    let body = form_encode(params);
    let request = SignedRequest {
        service: "ec2",
        headers: vec![("Content-Type", "application/x-www-form-urlencoded; charset=utf-8".into())],
        body: body.into_bytes(),
    };
    let action = params.iter().find(|(k, _)| *k == "Action").map_or("?", |(_, v)| *v);
    let (status, text) =
        aws.send_signed(request).await.with_context(|| format!("EC2 {action} failed"))?;
    if status >= 400 {
        return Err(match parse_error(&text) {
            Some(e) => anyhow::Error::new(e),
            None => anyhow!(
                "EC2 {action} answered HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ),
        });
    }
    Ok(text)
}

fn form_encode(params: &[(&str, &str)]) -> String {
    params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encoding as SigV4 and the Query API expect (RFC 3986 unreserved kept).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The interface `eni_id` in a DescribeNetworkInterfaces response; `None` when it is absent.
pub fn parse_network_interface(xml: &str, eni_id: &str) -> Result<Option<NetworkInterface>> {
    let root =
        xml::parse(xml).context("EC2 answered DescribeNetworkInterfaces with malformed XML")?;
    if root.name != "DescribeNetworkInterfacesResponse" {
        bail!("EC2 answered `{}` where DescribeNetworkInterfacesResponse was expected", root.name);
    }
    let Some(set) = root.child("networkInterfaceSet") else {
        return Ok(None);
    };
    for item in set.children_named("item") {
        let id = item.text_of("networkInterfaceId").unwrap_or_default();
        if id != eni_id {
            continue;
        }
        return Ok(Some(NetworkInterface {
            id,
            status: item.text_of("status").unwrap_or_default(),
            private_ip: item.text_of("privateIpAddress"),
            public_ip: item.child("association").and_then(|a| a.text_of("publicIp")),
        }));
    }
    Ok(None)
}

/// The first error of an EC2 error response (`<Response><Errors><Error>`).
pub fn parse_error(xml: &str) -> Option<Ec2Error> {
    let root = xml::parse(xml).ok()?;
    let error = root.child("Errors")?.child("Error")?;
    Some(Ec2Error {
        code: error.text_of("Code")?,
        message: error.text_of("Message").unwrap_or_default(),
    })
}

/// Just enough XML for EC2's responses: elements, text, entities; attributes, comments and
/// declarations are skipped.
pub mod xml {
    use anyhow::{bail, Result};

    #[derive(Debug, Default, PartialEq)]
    pub struct Element {
        pub name: String,
        pub text: String,
        pub children: Vec<Element>,
    }

    impl Element {
        pub fn child(&self, name: &str) -> Option<&Element> {
            self.children.iter().find(|c| c.name == name)
        }

        pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
            self.children.iter().filter(move |c| c.name == name)
        }

        /// The trimmed text of the direct child `name`, when it has any.
        pub fn text_of(&self, name: &str) -> Option<String> {
            self.child(name).map(|c| c.text.trim().to_string()).filter(|t| !t.is_empty())
        }
    }

    pub fn parse(text: &str) -> Result<Element> {
        let mut stack: Vec<Element> = Vec::new();
        let mut root = None;
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            if let Some(top) = stack.last_mut() {
                top.text.push_str(&unescape(&rest[..open]));
            }
            rest = &rest[open..];
            if let Some(after) = rest.strip_prefix("<!--") {
                let end =
                    after.find("-->").ok_or_else(|| anyhow::anyhow!("unterminated comment"))?;
                rest = &after[end + 3..];
                continue;
            }
            let end = rest.find('>').ok_or_else(|| anyhow::anyhow!("unterminated tag"))?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let Some(element) = stack.pop() else { bail!("unexpected closing tag </{name}>") };
                if element.name != name.trim() {
                    bail!("<{}> closed by </{}>", element.name, name.trim());
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let name =
                tag.trim_end_matches('/').split_whitespace().next().unwrap_or("").to_string();
            if name.is_empty() {
                bail!("empty tag name");
            }
            let element = Element { name, ..Element::default() };
            if self_closing {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            } else {
                stack.push(element);
            }
        }
        if let Some(open) = stack.last() {
            bail!("<{}> is never closed", open.name);
        }
        root.ok_or_else(|| anyhow::anyhow!("no element"))
    }

    fn unescape(text: &str) -> String {
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-shaped answer (AWS's documented example, an ECS task's interface), with the
    /// nested `privateIpAddressesSet` that repeats `privateIpAddress` and `association`.
    const DESCRIBED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeNetworkInterfacesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>fc45294c-006b-457b-bab9-012f5b3b0e40</requestId>
     <networkInterfaceSet>
       <item>
         <networkInterfaceId>eni-0f7db099b9f3ae2c4</networkInterfaceId>
         <subnetId>subnet-0a1b2c3d4e5f67890</subnetId>
         <vpcId>vpc-0123456789abcdef0</vpcId>
         <availabilityZone>ap-northeast-1a</availabilityZone>
         <description>arn:aws:ecs:ap-northeast-1:123456789012:attachment/4f4b2e0c-6f5e-4b1a-9f3e-5d2c1b0a9e8f</description>
         <ownerId>123456789012</ownerId>
         <requesterId>578734482556</requesterId>
         <requesterManaged>true</requesterManaged>
         <status>in-use</status>
         <macAddress>06:1c:2d:3e:4f:50</macAddress>
         <privateIpAddress>10.0.1.47</privateIpAddress>
         <privateDnsName>ip-10-0-1-47.ap-northeast-1.compute.internal</privateDnsName>
         <sourceDestCheck>true</sourceDestCheck>
         <groupSet>
           <item>
             <groupId>sg-0123456789abcdef0</groupId>
             <groupName>zenn-clone-backend-sg</groupName>
           </item>
         </groupSet>
         <attachment>
           <attachmentId>ela-attach-0a1b2c3d4e5f67890</attachmentId>
           <instanceOwnerId>amazon-aws</instanceOwnerId>
           <deviceIndex>1</deviceIndex>
           <status>attached</status>
           <attachTime>2025-01-31T12:00:00.000Z</attachTime>
           <deleteOnTermination>false</deleteOnTermination>
         </attachment>
         <association>
           <publicIp>54.250.12.34</publicIp>
           <publicDnsName>ec2-54-250-12-34.ap-northeast-1.compute.amazonaws.com</publicDnsName>
           <ipOwnerId>amazon</ipOwnerId>
         </association>
         <tagSet/>
         <privateIpAddressesSet>
           <item>
             <privateIpAddress>10.0.1.47</privateIpAddress>
             <privateDnsName>ip-10-0-1-47.ap-northeast-1.compute.internal</privateDnsName>
             <primary>true</primary>
             <association>
               <publicIp>54.250.12.34</publicIp>
               <publicDnsName>ec2-54-250-12-34.ap-northeast-1.compute.amazonaws.com</publicDnsName>
               <ipOwnerId>amazon</ipOwnerId>
             </association>
           </item>
         </privateIpAddressesSet>
         <ipv6AddressesSet/>
         <interfaceType>interface</interfaceType>
       </item>
     </networkInterfaceSet>
</DescribeNetworkInterfacesResponse>"#;

    const ERROR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidNetworkInterfaceID.NotFound</Code><Message>The networkInterface ID &apos;eni-0f7db099b9f3ae2c4&apos; does not exist</Message></Error></Errors><RequestID>59dbff89-35bd-4eac-99ed-be587EXAMPLE</RequestID></Response>"#;

    #[test]
    fn public_and_private_ip_come_from_the_interface_itself() {
        let eni = parse_network_interface(DESCRIBED, "eni-0f7db099b9f3ae2c4").unwrap().unwrap();
        assert_eq!(
            eni,
            NetworkInterface {
                id: "eni-0f7db099b9f3ae2c4".into(),
                status: "in-use".into(),
                private_ip: Some("10.0.1.47".into()),
                public_ip: Some("54.250.12.34".into()),
            }
        );
    }

    #[test]
    fn an_interface_without_association_has_no_public_ip() {
        let start = DESCRIBED.find("         <association>").unwrap();
        let end = DESCRIBED.find("         <tagSet/>").unwrap();
        let private_only = format!("{}{}", &DESCRIBED[..start], &DESCRIBED[end..]);
        let eni = parse_network_interface(&private_only, "eni-0f7db099b9f3ae2c4").unwrap().unwrap();
        assert_eq!(eni.public_ip, None);
        assert_eq!(eni.private_ip.as_deref(), Some("10.0.1.47"));
    }

    #[test]
    fn another_or_no_interface_is_none() {
        assert_eq!(parse_network_interface(DESCRIBED, "eni-other").unwrap(), None);
        let empty = r#"<DescribeNetworkInterfacesResponse><requestId>x</requestId><networkInterfaceSet/></DescribeNetworkInterfacesResponse>"#;
        assert_eq!(parse_network_interface(empty, "eni-0f7db099b9f3ae2c4").unwrap(), None);
    }

    #[test]
    fn errors_carry_code_and_unescaped_message() {
        assert_eq!(
            parse_error(ERROR),
            Some(Ec2Error {
                code: "InvalidNetworkInterfaceID.NotFound".into(),
                message: "The networkInterface ID 'eni-0f7db099b9f3ae2c4' does not exist".into(),
            })
        );
        assert_eq!(parse_error(DESCRIBED), None);
    }

    #[test]
    fn malformed_xml_is_an_error() {
        assert!(xml::parse("<a><b></a>").is_err());
        assert!(xml::parse("<a>").is_err());
        assert!(parse_network_interface("<Other/>", "eni-1").is_err());
    }

    #[test]
    fn query_parameters_are_percent_encoded() {
        assert_eq!(
            form_encode(&[("Action", "CreateTags"), ("Tag.1.Value", "zenn sandbox/1")]),
            "Action=CreateTags&Tag.1.Value=zenn%20sandbox%2F1"
        );
    }
}
