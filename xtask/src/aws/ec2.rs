//! The EC2 calls the deploy makes, through EC2's Query API signed with SigV4: the EC2 SDK crate
//! takes minutes to compile for one call (a task's network interface → its public IP).

use anyhow::{anyhow, bail, Context, Result};

use crate::aws::{Aws, SignedRequest};
use xml::Element as _;

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

/// The Query API's `application/x-www-form-urlencoded` body, encoded as botocore sends it.
fn form_encode(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
}

/// The interface `eni_id` in a DescribeNetworkInterfaces response; `None` when it is absent.
pub fn parse_network_interface(xml: &str, eni_id: &str) -> Result<Option<NetworkInterface>> {
    let document =
        xml::parse(xml).context("EC2 answered DescribeNetworkInterfaces with malformed XML")?;
    let root = document.root_element();
    if root.tag_name().name() != "DescribeNetworkInterfacesResponse" {
        bail!(
            "EC2 answered `{}` where DescribeNetworkInterfacesResponse was expected",
            root.tag_name().name()
        );
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
    let document = xml::parse(xml).ok()?;
    let error = document.root_element().child("Errors")?.child("Error")?;
    Some(Ec2Error {
        code: error.text_of("Code")?,
        message: error.text_of("Message").unwrap_or_default(),
    })
}

/// EC2's responses as roxmltree documents, walked by the local names of their elements.
pub mod xml {
    use anyhow::Result;
    pub use roxmltree::{Document, Node};

    pub fn parse(text: &str) -> Result<Document<'_>> {
        Ok(Document::parse(text)?)
    }

    pub trait Element<'a, 'input: 'a> {
        /// The first child element `name`.
        fn child(&self, name: &str) -> Option<Node<'a, 'input>>;
        fn children_named(&self, name: &str) -> impl Iterator<Item = Node<'a, 'input>>;
        /// The trimmed text of the direct child `name`, when it has any.
        fn text_of(&self, name: &str) -> Option<String>;
    }

    impl<'a, 'input: 'a> Element<'a, 'input> for Node<'a, 'input> {
        fn child(&self, name: &str) -> Option<Node<'a, 'input>> {
            self.children_named(name).next()
        }

        fn children_named(&self, name: &str) -> impl Iterator<Item = Node<'a, 'input>> {
            self.children().filter(move |c| c.is_element() && c.tag_name().name() == name)
        }

        fn text_of(&self, name: &str) -> Option<String> {
            self.child(name)
                .and_then(|c| c.text())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        }
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
    fn query_parameters_are_form_encoded() {
        assert_eq!(
            form_encode(&[("Action", "CreateTags"), ("Tag.1.Value", "zenn sandbox/1")]),
            "Action=CreateTags&Tag.1.Value=zenn+sandbox%2F1"
        );
    }

    mod retried {
        use super::*;
        use crate::aws::retry::scripted::{Reply, Server};

        const THROTTLED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>d2a3d7b2-5a1c-4c2e-9a57-36e0e8e5d0b1</RequestID></Response>"#;
        const UNAUTHORIZED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestID></Response>"#;
        const ENI: &str = "eni-0f7db099b9f3ae2c4";

        fn described(server: &Server) -> usize {
            server
                .requests()
                .iter()
                .filter(|r| r.contains("Action=DescribeNetworkInterfaces"))
                .filter(|r| r.to_lowercase().contains("x-amz-date:"))
                .filter(|r| r.contains("AWS4-HMAC-SHA256 Credential="))
                .count()
        }

        #[tokio::test]
        async fn a_throttled_describe_is_retried_until_it_answers() {
            let server =
                Server::start(vec![Reply::Answer(503, THROTTLED), Reply::Answer(200, DESCRIBED)]);
            let eni = network_interface(&server.aws().await, ENI).await.unwrap().unwrap();
            assert_eq!(eni.public_ip.as_deref(), Some("54.250.12.34"));
            assert_eq!(described(&server), 2, "one throttled attempt, one answered, each signed");
        }

        #[tokio::test]
        async fn three_throttles_fail_naming_the_code_and_the_attempts() {
            let server = Server::start(vec![
                Reply::Answer(503, THROTTLED),
                Reply::Answer(503, THROTTLED),
                Reply::Answer(503, THROTTLED),
                Reply::Answer(200, DESCRIBED),
            ]);
            let err = network_interface(&server.aws().await, ENI).await.unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("RequestLimitExceeded"), "{text}");
            assert!(text.contains("after 3 attempts"), "{text}");
            assert!(text.contains("Request limit exceeded."), "{text}");
            assert!(text.contains(ENI), "{text}");
            assert_eq!(described(&server), 3);
        }

        #[tokio::test]
        async fn an_unauthorized_call_is_not_retried() {
            let server = Server::start(vec![
                Reply::Answer(403, UNAUTHORIZED),
                Reply::Answer(200, DESCRIBED),
            ]);
            let err = network_interface(&server.aws().await, ENI).await.unwrap_err();
            let e = err.downcast_ref::<Ec2Error>().expect("EC2's own error");
            assert_eq!(e.code, "UnauthorizedOperation");
            assert_eq!(described(&server), 1);
        }

        #[tokio::test]
        async fn a_connection_closed_without_an_answer_is_retried() {
            let server = Server::start(vec![Reply::HangUp, Reply::Answer(200, DESCRIBED)]);
            let eni = network_interface(&server.aws().await, ENI).await.unwrap().unwrap();
            assert_eq!(eni.status, "in-use");
            assert_eq!(described(&server), 2);
        }

        #[tokio::test]
        async fn a_refused_connection_fails_after_three_attempts_naming_the_endpoint() {
            let server = Server::start(Vec::new());
            let aws = server.aws().await;
            drop(server);
            let err = network_interface(&aws, ENI).await.unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("cannot reach http://127.0.0.1:"), "{text}");
            assert!(text.contains("after 3 attempts"), "{text}");
        }
    }
}
