//! The long-running sandbox process (`cargo xtask sandbox serve`, started by `up`): it hears
//! the registry's push notifications and mirrors each tagged manifest into moto's ECR, so
//! `describe_images` shows what `docker push` sent, as ECR would. The scheduler runs beside it,
//! in a thread of the same process (`scheduler::driver`).

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use aws_sdk_ecr::operation::put_image::PutImageError;
use aws_smithy_types::date_time::{DateTime, Format};
use serde::Deserialize;

use crate::aws::Aws;

/// Where the registry posts its notifications.
pub const EVENTS_PATH: &str = "/registry/events";

/// One manifest pushed under a tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub media_type: String,
}

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    action: String,
    target: EventTarget,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTarget {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: Option<String>,
}

/// The tagged manifest pushes in a notification envelope (blob pushes and pulls are skipped).
pub fn manifest_pushes(body: &[u8]) -> Result<Vec<Push>> {
    let envelope: Envelope = serde_json::from_slice(body)
        .context("the registry sent a notification that is not an event envelope")?;
    Ok(envelope
        .events
        .into_iter()
        .filter(|e| e.action == "push" && is_manifest(&e.target.media_type))
        .filter_map(|e| {
            let tag = e.target.tag.filter(|t| !t.is_empty())?;
            Some(Push {
                repository: e.target.repository,
                tag,
                digest: e.target.digest,
                media_type: e.target.media_type,
            })
        })
        .collect())
}

fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type.contains("image.index")
}

/// What became of one push in ECR.
#[derive(Debug, PartialEq)]
pub enum Mirrored {
    Put,
    /// The same manifest already carried this tag.
    AlreadyThere,
    /// ECR has no such repository (on AWS the push itself would have failed).
    NoRepository,
}

/// Copies pushes from the registry at `registry` (host:port) into ECR.
pub struct Mirror {
    pub aws: Aws,
    pub registry: String,
}

impl Mirror {
    pub async fn mirror(&self, push: &Push) -> Result<Mirrored> {
        let manifest = self.manifest(push)?;
        let result = self
            .aws
            .ecr
            .put_image()
            .repository_name(&push.repository)
            .image_manifest(manifest)
            .image_manifest_media_type(&push.media_type)
            .image_tag(&push.tag)
            .image_digest(&push.digest)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Mirrored::Put),
            Err(e) => match e.as_service_error() {
                Some(PutImageError::ImageAlreadyExistsException(_)) => Ok(Mirrored::AlreadyThere),
                Some(PutImageError::RepositoryNotFoundException(_)) => Ok(Mirrored::NoRepository),
                _ => Err(anyhow::Error::new(e).context("ECR PutImage failed")),
            },
        }
    }

    fn manifest(&self, push: &Push) -> Result<String> {
        let url =
            format!("http://{}/v2/{}/manifests/{}", self.registry, push.repository, push.digest);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        agent
            .get(&url)
            .header("Accept", &push.media_type)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .with_context(|| format!("cannot read the manifest {url}"))
    }

    /// Mirrors every push of a notification and says what happened, one line each.
    pub async fn handle(&self, body: &[u8]) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for push in manifest_pushes(body)? {
            let name = format!("{}:{} {}", push.repository, push.tag, push.digest);
            lines.push(match self.mirror(&push).await {
                Ok(Mirrored::Put) => format!("mirrored {name} into ECR"),
                Ok(Mirrored::AlreadyThere) => format!("{name} is already in ECR"),
                Ok(Mirrored::NoRepository) => format!(
                    "warning: {name} was pushed, but ECR has no repository `{}`: create it (first-deploy does) and push again",
                    push.repository
                ),
                Err(e) => format!("error: mirroring {name} failed: {e:#}"),
            });
        }
        Ok(lines)
    }
}

/// Serves health checks and registry notifications until the process is stopped.
pub fn serve(listener: TcpListener, mirror: &Mirror) -> Result<()> {
    let runtime = crate::aws::runtime()?;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = runtime.block_on(answer(stream, mirror)) {
                    log(&format!("error: {e:#}"));
                }
            }
            Err(e) => log(&format!("error: accepting a connection: {e}")),
        }
    }
    Ok(())
}

async fn answer(stream: TcpStream, mirror: &Mirror) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let request = match super::http::read_request(&mut reader) {
        Ok(r) => r,
        Err(e) => {
            super::http::write_response(
                &mut writer,
                400,
                &serde_json::json!({ "error": format!("{e:#}") }).to_string(),
            )?;
            return Err(e);
        }
    };
    let (status, body) = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/health") => {
            (200, serde_json::json!({ "ok": true, "pid": std::process::id() }).to_string())
        }
        ("POST", EVENTS_PATH) => match mirror.handle(&request.body).await {
            Ok(lines) => {
                lines.iter().for_each(|l| log(l));
                // Always 2xx: the registry would otherwise retry this envelope forever.
                (200, "{}".to_string())
            }
            Err(e) => {
                log(&format!("error: {e:#}"));
                (200, "{}".to_string())
            }
        },
        (method, path) => {
            (404, serde_json::json!({ "error": format!("no route {method} {path}") }).to_string())
        }
    };
    super::http::write_response(&mut writer, status, &body)
        .map_err(|e| anyhow!("answering {} {}: {e}", request.method, request.path))
}

/// A timestamped line in the process's log (its stdout goes to `logs/serve.log`).
pub(super) fn log(line: &str) {
    println!("{} {line}", utc(DateTime::from(SystemTime::now()).secs()));
}

/// Now as ISO 8601 with milliseconds (`2025-01-31T12:00:00.123Z`), as moto takes times.
pub(super) fn iso_now() -> String {
    let now = DateTime::from(SystemTime::now());
    // Always three digits (smithy trims trailing zeros), so that times sort as text.
    let millis = now.subsec_nanos() / 1_000_000;
    format!("{}.{millis:03}Z", utc(now.secs()).trim_end_matches('Z'))
}

/// `2025-01-31T12:00:00Z` from seconds since the epoch.
fn utc(epoch: i64) -> String {
    DateTime::from_secs(epoch).fmt(Format::DateTime).unwrap_or_else(|_| format!("@{epoch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope the registry (distribution 2.8) posts after `docker push`: blob pushes
    /// first (filtered by the config's `ignore`, but skipped here too), then the manifest.
    const ENVELOPE: &str = r#"{
   "events": [
      {
         "id": "0d4a1ba6-6f8e-4bb5-9a7e-3c4d2b8f0d11",
         "timestamp": "2025-01-31T12:00:00.000000000Z",
         "action": "push",
         "target": {
            "mediaType": "application/octet-stream",
            "size": 150,
            "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "length": 150,
            "repository": "zenn-clone-rails",
            "url": "http://127.0.0.1:5011/v2/zenn-clone-rails/blobs/sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         },
         "request": { "id": "r1", "addr": "127.0.0.1:40000", "host": "127.0.0.1:5011", "method": "PUT", "useragent": "docker/20.10.24" },
         "actor": {},
         "source": { "addr": "host:5011", "instanceID": "i1" }
      },
      {
         "id": "6b3c1a6e-2a55-4d2e-8f22-bb0e0b9a1d2c",
         "timestamp": "2025-01-31T12:00:01.000000000Z",
         "action": "push",
         "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 527,
            "digest": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "length": 527,
            "repository": "zenn-clone-rails",
            "url": "http://127.0.0.1:5011/v2/zenn-clone-rails/manifests/sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "tag": "latest"
         },
         "request": { "id": "r2", "addr": "127.0.0.1:40000", "host": "127.0.0.1:5011", "method": "PUT", "useragent": "docker/20.10.24" },
         "actor": {},
         "source": { "addr": "host:5011", "instanceID": "i1" }
      },
      {
         "id": "c2",
         "timestamp": "2025-01-31T12:00:02.000000000Z",
         "action": "pull",
         "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "repository": "zenn-clone-rails",
            "tag": "latest"
         }
      }
   ]
}"#;

    #[test]
    fn only_tagged_manifest_pushes_are_mirrored() {
        assert_eq!(
            manifest_pushes(ENVELOPE.as_bytes()).unwrap(),
            [Push {
                repository: "zenn-clone-rails".into(),
                tag: "latest".into(),
                digest: "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
                    .into(),
                media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            }]
        );
    }

    #[test]
    fn a_push_by_digest_alone_is_skipped() {
        let untagged = ENVELOPE.replace(",\n            \"tag\": \"latest\"\n         },\n         \"request\": { \"id\": \"r2\"", "\n         },\n         \"request\": { \"id\": \"r2\"");
        assert_ne!(untagged, ENVELOPE);
        assert!(manifest_pushes(untagged.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn log_times_are_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_738_324_800), "2025-01-31T12:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_malformed_notification_is_an_error() {
        assert!(manifest_pushes(b"{\"nope\": 1}").is_err());
    }
}
