//! Retries for the calls made outside the SDK ([`super::Aws::send_signed`]), as the SDK's
//! *standard* retry mode does them: at most 3 attempts, exponential backoff with full jitter,
//! for throttling, transient errors and transport failures. The classification is pure, over
//! the status and body AWS answered or the error the connection ended in.

use std::fmt;
use std::time::Duration;

/// Error codes AWS throttles with (the SDK's `THROTTLING_ERRORS`).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes of a failure on AWS's side that a later attempt may not meet (the SDK's
/// `TRANSIENT_ERRORS`, plus the internal errors EC2 and the JSON services name).
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// HTTP statuses worth another attempt whatever the body says.
const RETRY_STATUSES: &[u16] = &[429, 500, 502, 503, 504];

/// How often and how patiently a call is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The backoff's scale: the wait after the n-th failed attempt is at most `base * 2^(n-1)`.
    pub base: Duration,
    /// No wait is longer.
    pub cap: Duration,
}

impl RetryPolicy {
    /// The SDK's standard mode: 3 attempts, 1 s base, 20 s cap.
    pub const STANDARD: RetryPolicy =
        RetryPolicy { max_attempts: 3, base: Duration::from_secs(1), cap: Duration::from_secs(20) };

    /// The wait after `failed` attempts (1 for the first failure), full jitter: `random` (in
    /// [0, 1)) times `min(base * 2^(failed-1), cap)`.
    pub fn backoff(&self, failed: u32, random: f64) -> Duration {
        let exponent = failed.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        ceiling.mul_f64(random.clamp(0.0, 1.0))
    }
}

/// Why an attempt is worth repeating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retryable {
    /// AWS throttled the call (by its error code, or HTTP 429).
    Throttled(String),
    /// A transient failure: a transient error code or a 5xx status.
    Transient(String),
    /// The connection failed: refused, reset, timed out.
    Transport(String),
}

/// What is left when every attempt was throttled or failed transiently: the last answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// The signing name: `ec2`, `ecs`, `sts`.
    pub service: String,
    pub attempts: u32,
    pub why: Retryable,
    /// The last answer's message, when it had one.
    pub message: Option<String>,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Retryable::Throttled(what) | Retryable::Transient(what) | Retryable::Transport(what)) =
            &self.why;
        let service = self.service.to_uppercase();
        write!(f, "{service} answered {what} after {} attempts", self.attempts)?;
        if let Some(message) = &self.message {
            write!(f, " ({message})")?;
        }
        match self.why {
            Retryable::Throttled(_) => write!(
                f,
                ": AWS throttles the account's {service} calls; wait a minute and run the command again"
            ),
            _ => write!(f, ": AWS failed the call; run the command again"),
        }
    }
}

impl std::error::Error for GaveUp {}

/// Whether an answer of AWS is worth another attempt, and why.
pub fn classify_answer(status: u16, body: &str) -> Option<Retryable> {
    if status < 400 {
        return None;
    }
    let code = parse_error_body(body).map(|e| e.code);
    let with_status = |code: &Option<String>| match code {
        Some(code) => format!("{code} (HTTP {status})"),
        None => format!("HTTP {status}"),
    };
    match code.as_deref() {
        Some(c) if THROTTLING_CODES.contains(&c) => Some(Retryable::Throttled(with_status(&code))),
        Some(c) if TRANSIENT_CODES.contains(&c) => Some(Retryable::Transient(with_status(&code))),
        _ if status == 429 => Some(Retryable::Throttled(with_status(&code))),
        _ if RETRY_STATUSES.contains(&status) => Some(Retryable::Transient(with_status(&code))),
        _ => None,
    }
}

/// The code and message of an AWS error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: Option<String>,
}

/// The error code of an AWS error body: a JSON body's `__type` (namespace `ns#` and any
/// `:…` suffix stripped) or `code`, or an XML body's `<Error><Code>` (EC2's
/// `<Response><Errors><Error>`, the Query APIs' `<ErrorResponse><Error>`); and its message.
pub fn parse_error_body(body: &str) -> Option<ErrorBody> {
    let body = body.trim();
    if body.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(body).ok()?;
        let raw = value["__type"].as_str().or(value["code"].as_str()).or(value["Code"].as_str())?;
        let code = raw.rsplit('#').next().unwrap_or(raw);
        let code = code.split(':').next().unwrap_or(code).trim();
        let message = value["message"].as_str().or(value["Message"].as_str());
        return (!code.is_empty())
            .then(|| ErrorBody { code: code.to_string(), message: message.map(str::to_string) });
    }
    let document = roxmltree::Document::parse(body).ok()?;
    let error = document
        .descendants()
        .find(|n| n.has_tag_name("Error") && n.children().any(|c| c.tag_name().name() == "Code"))?;
    let text = |name: &str| {
        error
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    Some(ErrorBody { code: text("Code")?, message: text("Message") })
}

/// Whether a connection error is worth another attempt: the connection was refused, reset or
/// timed out, not an address that does not resolve, a bad URL or a TLS failure.
pub fn classify_transport(error: &ureq::Error) -> Option<Retryable> {
    use std::io::ErrorKind as K;
    match error {
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::TimedOut
                    | K::UnexpectedEof
                    | K::Interrupted
            ) =>
        {
            Some(Retryable::Transport(e.to_string()))
        }
        ureq::Error::Timeout(t) => Some(Retryable::Transport(format!("timed out: {t}"))),
        ureq::Error::ConnectionFailed => Some(Retryable::Transport("connection failed".into())),
        _ => None,
    }
}

/// A local HTTP server answering a script of responses, one connection each, for tests that
/// drive a signed call through its retries.
#[cfg(test)]
pub(crate) mod scripted {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::RetryPolicy;
    use crate::aws::Aws;
    use crate::deploy::target::{DeployFile, DeployFlags, TargetFlags};

    /// What the server does with one connection.
    #[derive(Debug, Clone)]
    pub enum Reply {
        /// An HTTP response: status and body.
        Answer(u16, &'static str),
        /// Reads the request and closes the connection without a word.
        HangUp,
    }

    pub struct Server {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<String>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        /// Listens on 127.0.0.1; answers each connection with the next reply, then closes.
        pub fn start(script: Vec<Reply>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (seen, stopped) = (requests.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                for reply in script {
                    let Ok((mut stream, _)) = listener.accept() else { return };
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    seen.lock().unwrap().push(read_request(&mut stream));
                    if let Reply::Answer(status, body) = reply {
                        let head = format!(
                            "HTTP/1.1 {status} Scripted\r\nContent-Type: text/xml;charset=UTF-8\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(body.as_bytes());
                    }
                }
            });
            Server { addr, requests, stop, thread: Some(thread) }
        }

        /// Clients for the sandbox's target pointed at this server, retrying within milliseconds.
        pub async fn aws(&self) -> Aws {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let overlay = crate::sandbox::overlay(self.addr.port(), 1);
            let target = DeployFile::load(root)
                .unwrap()
                .resolve(
                    &TargetFlags::default(),
                    &DeployFlags::default(),
                    &|_| None,
                    Some(&overlay),
                )
                .unwrap();
            Aws::connect(&target).await.with_retry(RetryPolicy {
                max_attempts: 3,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(5),
            })
        }

        /// The port it listens on (127.0.0.1).
        pub fn port(&self) -> u16 {
            self.addr.port()
        }

        /// The requests received so far, head and body.
        pub fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            // Wakes a thread still waiting in `accept` for replies nobody asked for.
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// The request's head and its `Content-Length` of body.
    fn read_request(stream: &mut TcpStream) -> String {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&data).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    return text;
                }
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&data).to_string(),
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EC2's error shape (the EC2 API reference, "Error codes"), as it answers a throttled call.
    const EC2_THROTTLED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>d2a3d7b2-5a1c-4c2e-9a57-36e0e8e5d0b1</RequestID></Response>"#;
    const EC2_UNAUTHORIZED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestID></Response>"#;
    const EC2_INTERNAL: &str = r#"<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred.</Message></Error></Errors><RequestID>x</RequestID></Response>"#;
    /// The Query APIs' shape (STS), namespaced.
    const STS_THROTTLED: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>Throttling</Code>
    <Message>Rate exceeded</Message>
  </Error>
  <RequestId>1f2e3d4c-5b6a-7980-1a2b-3c4d5e6f7a8b</RequestId>
</ErrorResponse>"#;
    const STS_DENIED: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error><RequestId>x</RequestId></ErrorResponse>"#;
    /// awsJson1_1 (ECS), plain and namespaced.
    const ECS_THROTTLED: &str = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    const ECS_THROTTLED_NS: &str =
        r#"{"__type":"com.amazonaws.ecs#ThrottlingException","message":"Rate exceeded"}"#;
    const ECS_CLIENT: &str = r#"{"__type":"com.amazonaws.ecs#ClientException","message":"Unable to describe task definition."}"#;
    const ECS_SERVER: &str = r#"{"__type":"com.amazonaws.ecs#ServerException","message":"Service Unavailable. Please try again later."}"#;

    fn throttled(what: &str) -> Option<Retryable> {
        Some(Retryable::Throttled(what.to_string()))
    }

    #[test]
    fn codes_are_read_from_every_error_shape() {
        let code = |body: &str| parse_error_body(body).map(|e| e.code);
        assert_eq!(code(EC2_THROTTLED).as_deref(), Some("RequestLimitExceeded"));
        assert_eq!(code(STS_THROTTLED).as_deref(), Some("Throttling"));
        assert_eq!(code(ECS_THROTTLED).as_deref(), Some("ThrottlingException"));
        assert_eq!(code(ECS_THROTTLED_NS).as_deref(), Some("ThrottlingException"));
        assert_eq!(
            code(r#"{"__type":"aws.protocols#SlowDown:http://internal.amazon.com/coral/"}"#)
                .as_deref(),
            Some("SlowDown")
        );
        assert_eq!(
            code(r#"{"code":"TooManyRequestsException"}"#).as_deref(),
            Some("TooManyRequestsException")
        );
        assert_eq!(code(""), None);
        assert_eq!(code("<html>Bad Gateway</html>"), None);
        assert_eq!(code("not json {"), None);
        let message = |body: &str| parse_error_body(body).and_then(|e| e.message);
        assert_eq!(message(EC2_THROTTLED).as_deref(), Some("Request limit exceeded."));
        assert_eq!(message(STS_THROTTLED).as_deref(), Some("Rate exceeded"));
        assert_eq!(message(ECS_THROTTLED_NS).as_deref(), Some("Rate exceeded"));
    }

    #[test]
    fn throttling_codes_are_retried_whatever_the_status() {
        assert_eq!(
            classify_answer(503, EC2_THROTTLED),
            throttled("RequestLimitExceeded (HTTP 503)")
        );
        assert_eq!(classify_answer(400, STS_THROTTLED), throttled("Throttling (HTTP 400)"));
        assert_eq!(
            classify_answer(400, ECS_THROTTLED),
            throttled("ThrottlingException (HTTP 400)")
        );
        assert_eq!(
            classify_answer(400, ECS_THROTTLED_NS),
            throttled("ThrottlingException (HTTP 400)")
        );
        assert_eq!(classify_answer(429, ""), throttled("HTTP 429"));
    }

    #[test]
    fn server_errors_and_transient_codes_are_retried() {
        let transient = |what: &str| Some(Retryable::Transient(what.to_string()));
        assert_eq!(classify_answer(500, EC2_INTERNAL), transient("InternalError (HTTP 500)"));
        assert_eq!(classify_answer(500, ECS_SERVER), transient("ServerException (HTTP 500)"));
        assert_eq!(classify_answer(502, "<html>Bad Gateway</html>"), transient("HTTP 502"));
        assert_eq!(classify_answer(504, ""), transient("HTTP 504"));
        assert_eq!(
            classify_answer(400, r#"{"__type":"RequestTimeoutException","message":"x"}"#),
            transient("RequestTimeoutException (HTTP 400)")
        );
    }

    #[test]
    fn client_errors_and_successes_are_not_retried() {
        assert_eq!(classify_answer(403, EC2_UNAUTHORIZED), None);
        assert_eq!(classify_answer(403, STS_DENIED), None);
        assert_eq!(classify_answer(400, ECS_CLIENT), None);
        assert_eq!(classify_answer(501, ""), None);
        assert_eq!(classify_answer(200, ECS_THROTTLED), None);
    }

    #[test]
    fn refused_reset_and_timed_out_connections_are_retried() {
        use std::io::{Error, ErrorKind};
        let io = |kind| ureq::Error::Io(Error::new(kind, "x"));
        assert!(classify_transport(&io(ErrorKind::ConnectionRefused)).is_some());
        assert!(classify_transport(&io(ErrorKind::ConnectionReset)).is_some());
        assert!(classify_transport(&io(ErrorKind::TimedOut)).is_some());
        assert!(classify_transport(&ureq::Error::Timeout(ureq::Timeout::Global)).is_some());
        assert!(classify_transport(&ureq::Error::ConnectionFailed).is_some());
        assert_eq!(classify_transport(&ureq::Error::HostNotFound), None);
        assert_eq!(classify_transport(&ureq::Error::BadUri("x".into())), None);
        assert_eq!(classify_transport(&io(ErrorKind::PermissionDenied)), None);
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling_capped_at_20_s() {
        let p = RetryPolicy::STANDARD;
        let secs = |failed, r| p.backoff(failed, r).as_secs_f64();
        assert_eq!(secs(1, 0.999_999).round(), 1.0);
        assert_eq!(secs(2, 0.999_999).round(), 2.0);
        assert_eq!(secs(3, 0.5), 2.0);
        assert_eq!(secs(6, 0.999_999).round(), 20.0, "32 s is capped");
        assert_eq!(secs(40, 1.0), 20.0, "no overflow");
        assert_eq!(secs(1, 0.0), 0.0);
        // Jitter spreads over the whole range, not around the ceiling.
        let mut rng = fastrand::Rng::with_seed(7);
        let waits: Vec<f64> = (0..200).map(|_| secs(2, rng.f64())).collect();
        assert!(waits.iter().all(|w| (0.0..2.0).contains(w)));
        assert!(waits.iter().any(|w| *w < 0.5) && waits.iter().any(|w| *w > 1.5), "{waits:?}");
    }
}
