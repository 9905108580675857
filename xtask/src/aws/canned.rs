//! SDK clients whose every HTTP exchange answers with one canned body, so a test runs the
//! SDK's own deserializer over a response shaped as AWS sends it (`test_data/`), not as our
//! conversions expect it.

use std::path::PathBuf;

use aws_credential_types::Credentials;
use aws_sdk_ecs::config::{BehaviorVersion, Region};
use aws_sdk_ecs::types;
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

#[derive(Debug)]
struct Canned(Vec<u8>);

impl HttpConnector for Canned {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let status = StatusCode::try_from(200).expect("200 is a status code");
        let mut response = Response::new(status, SdkBody::from(self.0.clone()));
        response.headers_mut().insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(response))
    }
}

/// An ECS client that receives `body` for every call.
pub fn ecs_client(body: Vec<u8>) -> aws_sdk_ecs::Client {
    let connector = SharedHttpConnector::new(Canned(body));
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("ap-northeast-1"))
        .credentials_provider(Credentials::new("AKIDEXAMPLE", "example", None, None, "test"))
        .http_client(http_client_fn(move |_, _| connector.clone()))
        .build();
    aws_sdk_ecs::Client::from_conf(config)
}

/// A file under `xtask/test_data/`.
pub fn fixture(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data").join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

/// The tasks of a DescribeTasks response file, as the SDK parses it.
pub async fn described_tasks(path: &str) -> Vec<types::Task> {
    let out = ecs_client(fixture(path))
        .describe_tasks()
        .cluster("zenn-clone-cluster")
        .tasks("0f6e4a1b2c3d4e5f60718293a4b5c6d7")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {}", aws_sdk_ecs::error::DisplayErrorContext(e)));
    out.tasks().to_vec()
}

/// The first service of a DescribeServices response file, as the SDK parses it.
pub async fn described_service(path: &str) -> types::Service {
    let out = ecs_client(fixture(path))
        .describe_services()
        .cluster("zenn-clone-cluster")
        .services("zenn-clone-backend-service")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {}", aws_sdk_ecs::error::DisplayErrorContext(e)));
    out.services().first().cloned().unwrap_or_else(|| panic!("{path}: no service"))
}

/// The task definition of a DescribeTaskDefinition response file, as the SDK parses it.
pub async fn described_task_definition(path: &str) -> types::TaskDefinition {
    let out = ecs_client(fixture(path))
        .describe_task_definition()
        .task_definition("zenn-clone-task-definition-backend:7")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {}", aws_sdk_ecs::error::DisplayErrorContext(e)));
    out.task_definition().cloned().unwrap_or_else(|| panic!("{path}: no task definition"))
}
