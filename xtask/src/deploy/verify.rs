//! The last check of a deploy: GET the health-check URL of the new task and expect the
//! status and, when configured, the JSON `message` the new code answers with.
//!
//! It retries within a short window (the task may still be wiring its network, nginx may
//! still be starting); a connection refused is retried like a wrong answer. When the window
//! closes, the error shows what came back last.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::deploy::target::VerifyConfig;
use crate::event::{Detail, VerifyView};
use crate::failure::Failure;
use crate::report::{human_duration, Reporter};

/// The placeholder in `verify.url` that stands for the new task's public IP.
pub const PUBLIC_IP: &str = "{public_ip}";
/// A body longer than this is not a health-check answer.
const BODY_LIMIT: u64 = 64 * 1024;
/// How much of a wrong body an error shows.
const BODY_SHOWN: usize = 300;
/// One attempt never waits longer than this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_WAIT: Duration = Duration::from_millis(250);
const MAX_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
pub struct VerifyRequest {
    pub url: String,
    pub expect_status: u16,
    /// When set, the JSON body's `message` must equal it.
    pub expect_message: Option<String>,
    /// How long to retry before failing.
    pub timeout: Duration,
}

impl VerifyRequest {
    /// The target's check, aimed at `public_ip` (when the URL has `{public_ip}`); a message
    /// given on the command line overrides the configured one.
    pub fn for_target(
        verify: &VerifyConfig,
        public_ip: Option<&str>,
        expect_message: Option<String>,
    ) -> Result<VerifyRequest> {
        Ok(VerifyRequest {
            url: health_url(&verify.url, public_ip)?,
            expect_status: verify.expect_status,
            expect_message: expect_message.or_else(|| verify.expect_message.clone()),
            timeout: verify.timeout,
        })
    }
}

/// What the health check answered.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOutcome {
    pub url: String,
    pub status: u16,
    /// The JSON body's `message`, when it has one.
    pub message: Option<String>,
    pub attempts: u32,
    pub duration: Duration,
}

impl VerifyOutcome {
    pub fn view(&self) -> VerifyView {
        VerifyView {
            url: self.url.clone(),
            status: self.status,
            message: self.message.clone(),
            attempts: self.attempts,
            duration_s: self.duration.as_secs_f64(),
        }
    }
}

/// The URL with `{public_ip}` replaced; a URL without the placeholder (a load balancer) is
/// used as it is.
pub fn health_url(template: &str, public_ip: Option<&str>) -> Result<String> {
    let url = match (template.contains(PUBLIC_IP), public_ip) {
        (true, Some(ip)) => template.replace(PUBLIC_IP, ip),
        (true, None) => {
            return Err(anyhow!(
                "`verify.url` ({template}) needs the new task's public IP, and the task has none: \
                 enable `assignPublicIp` in the service's network configuration, or set \
                 `verify.url` to a fixed URL (a load balancer)"
            )
            .context(Failure::Verify))
        }
        (false, _) => template.to_string(),
    };
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| {
            anyhow!(
                "the health-check URL `{url}` is invalid ({e}): fix `verify.url` in deploy.toml"
            )
        })
        .context(Failure::Input)?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(anyhow!(
            "the health-check URL `{url}` must be http:// or https:// with a host: fix `verify.url` in deploy.toml"
        )
        .context(Failure::Input));
    }
    Ok(url)
}

/// One answer, judged.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Expected {
        status: u16,
        message: Option<String>,
    },
    /// A reply that is not the expected one, described for the user.
    Wrong(String),
    /// No HTTP reply at all (refused, timed out, reset).
    Silent(String),
}

/// Judges a reply: the status first, then the JSON `message` when one is expected.
fn judge(status: u16, body: &str, expect_status: u16, expect_message: Option<&str>) -> Answer {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string));
    let shown = shorten(body);
    if status != expect_status {
        return Answer::Wrong(format!("status {status} (expected {expect_status}), body: {shown}"));
    }
    match (expect_message, &message) {
        (Some(want), Some(got)) if want != got => Answer::Wrong(format!(
            "status {status} with message `{got}` (expected `{want}`), body: {shown}"
        )),
        (Some(want), None) => Answer::Wrong(format!(
            "status {status} but no JSON `message` (expected `{want}`), body: {shown}"
        )),
        _ => Answer::Expected { status, message },
    }
}

fn shorten(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(empty)".to_string();
    }
    match body.char_indices().nth(BODY_SHOWN) {
        Some((cut, _)) => format!("{}… ({} bytes)", &body[..cut], body.len()),
        None => body.to_string(),
    }
}

/// Whether the URL's host is a loopback address (the sandbox's tasks), which no proxy reaches.
fn is_loopback(url: &str) -> bool {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()))
        .is_some_and(|h| {
            h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        })
}

/// GETs the URL until it answers as expected or the window closes; errors carry `Failure::Verify`.
pub fn verify(req: &VerifyRequest, report: &Reporter) -> Result<VerifyOutcome> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(ATTEMPT_TIMEOUT))
        .user_agent(concat!("cargo-xtask-verify/", env!("CARGO_PKG_VERSION")));
    if is_loopback(&req.url) {
        config = config.proxy(None);
    }
    if req.url.starts_with("https://") {
        config = config.tls_config(system_roots());
    }
    let agent: ureq::Agent = config.build().into();
    let started = Instant::now();
    let deadline = started + req.timeout;
    let mut wait = FIRST_WAIT;
    let mut attempts = 0u32;
    loop {
        crate::interrupt::check(Failure::Verify)?;
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = get(&agent, &req.url, left.clamp(Duration::from_millis(200), ATTEMPT_TIMEOUT))
            .map_or_else(Answer::Silent, |(status, body)| {
                judge(status, &body, req.expect_status, req.expect_message.as_deref())
            });
        let problem = match answer {
            Answer::Expected { status, message } => {
                let outcome = VerifyOutcome {
                    url: req.url.clone(),
                    status,
                    message,
                    attempts,
                    duration: started.elapsed(),
                };
                report.info(format!(
                    "GET {} answered {status}{} (attempt {attempts}, {})",
                    req.url,
                    outcome.message.as_deref().map(|m| format!(" with `{m}`")).unwrap_or_default(),
                    human_duration(outcome.duration)
                ));
                return Ok(outcome);
            }
            Answer::Wrong(what) | Answer::Silent(what) => what,
        };
        if Instant::now() + wait >= deadline {
            let expected = match &req.expect_message {
                Some(m) => format!("status {} with message `{m}`", req.expect_status),
                None => format!("status {}", req.expect_status),
            };
            return Err(anyhow!(
                "GET {} did not answer {expected} within {} ({attempts} attempts); last answer: {problem}\n\
                 next: check that the new image has the change (the roll's digests), that the \
                 task's security group lets this machine reach it, and the app's log",
                req.url,
                human_duration(req.timeout)
            )
            .context(Failure::Verify));
        }
        report.progress(
            "verify",
            format!("verify: GET {}: {problem} (attempt {attempts}), retrying", req.url),
            Some(Detail::Verify { attempts, last: problem.clone() }),
        );
        std::thread::sleep(wait);
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// TLS trusting the system's roots, like the AWS SDK (and any TLS-inspecting proxy the system
/// trusts); ureq's built-in Mozilla roots when the system has none.
fn system_roots() -> ureq::tls::TlsConfig {
    let native = rustls_native_certs::load_native_certs();
    let roots: Vec<ureq::tls::Certificate<'static>> = native
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    let builder = ureq::tls::TlsConfig::builder();
    if roots.is_empty() {
        return builder.build();
    }
    builder.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots))).build()
}

/// One GET: the status and the body, or why nothing came back.
fn get(agent: &ureq::Agent, url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut response = agent
        .get(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
        .map_err(|e| format!("no answer ({e})"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_string()
        .map_err(|e| format!("status {status}, body unreadable ({e})"))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use super::*;

    const OK: (u16, &str) = (200, r#"{"message":"Success Health Check!!"}"#);

    /// A one-thread HTTP server answering each request with the next scripted reply (the last
    /// one repeats); stops when dropped.
    struct Server {
        url: String,
        served: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        fn start(replies: Vec<(u16, &'static str)>) -> Server {
            Server::on(TcpListener::bind("127.0.0.1:0").expect("bind a local port"), replies)
        }

        fn on(listener: TcpListener, replies: Vec<(u16, &'static str)>) -> Server {
            let addr = listener.local_addr().expect("local address");
            let served = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let (count, halt) = (served.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if halt.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = replies[n.min(replies.len() - 1)];
                    answer(stream, status, body);
                }
            });
            Server {
                url: format!("http://{addr}/api/v1/health_check"),
                served,
                stop,
                thread: Some(thread),
            }
        }

        fn served(&self) -> usize {
            self.served.load(Ordering::SeqCst)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let addr = self.url.trim_start_matches("http://").split('/').next().unwrap_or("");
            let _ = TcpStream::connect(addr);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn answer(stream: TcpStream, status: u16, body: &str) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = reader.get_mut().write_all(reply.as_bytes());
    }

    fn request(url: &str, message: Option<&str>, timeout_ms: u64) -> VerifyRequest {
        VerifyRequest {
            url: url.to_string(),
            expect_status: 200,
            expect_message: message.map(str::to_string),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn failure_text(result: Result<VerifyOutcome>) -> String {
        let err = result.expect_err("verification should fail");
        assert_eq!(Failure::exit_code_of(&err), Failure::Verify.exit_code());
        format!("{err:#}")
    }

    #[test]
    fn expected_answer_passes_first_time() {
        let server = Server::start(vec![OK]);
        let req = request(&server.url, Some("Success Health Check!!"), 5000);
        let outcome = verify(&req, &Reporter::plain()).expect("verified");
        assert_eq!(outcome.status, 200);
        assert_eq!(outcome.message.as_deref(), Some("Success Health Check!!"));
        assert_eq!(outcome.attempts, 1);
        assert_eq!(server.served(), 1);
    }

    #[test]
    fn wrong_message_fails_showing_what_came_back() {
        let server = Server::start(vec![(200, r#"{"message":"Health Check!!"}"#)]);
        let req = request(&server.url, Some("Success Health Check!!"), 600);
        let text = failure_text(verify(&req, &Reporter::plain()));
        assert!(
            text.contains("did not answer status 200 with message `Success Health Check!!`"),
            "{text}"
        );
        assert!(
            text.contains("message `Health Check!!` (expected `Success Health Check!!`)"),
            "{text}"
        );
        assert!(text.contains(r#"body: {"message":"Health Check!!"}"#), "{text}");
        assert!(server.served() >= 2, "a wrong answer is retried within the window");
    }

    #[test]
    fn server_error_is_retried_until_the_answer_is_right() {
        let server = Server::start(vec![
            (500, r#"{"error":"boot"}"#),
            (502, "<html>bad gateway</html>"),
            OK,
        ]);
        let req = request(&server.url, Some("Success Health Check!!"), 10_000);
        let outcome = verify(&req, &Reporter::plain()).expect("verified after two errors");
        assert_eq!(outcome.attempts, 3);
        assert_eq!(server.served(), 3);
    }

    #[test]
    fn persistent_server_error_fails_with_status_and_body() {
        let server = Server::start(vec![(500, "Internal Server Error")]);
        let text = failure_text(verify(&request(&server.url, None, 600), &Reporter::plain()));
        assert!(
            text.contains("last answer: status 500 (expected 200), body: Internal Server Error"),
            "{text}"
        );
    }

    #[test]
    fn server_that_comes_up_late_is_waited_for() {
        // Take a free port, free it, and open it again only after a moment: refused until then.
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            Server::on(TcpListener::bind(("127.0.0.1", port)).expect("rebind the port"), vec![OK])
        });
        let url = format!("http://127.0.0.1:{port}/api/v1/health_check");
        let outcome =
            verify(&request(&url, Some("Success Health Check!!"), 10_000), &Reporter::plain());
        let server = late.join().expect("server thread");
        let outcome = outcome.expect("verified once the server is up");
        assert!(outcome.attempts >= 2, "refused attempts came first: {outcome:?}");
        assert_eq!(server.served(), 1);
    }

    #[test]
    fn nothing_listening_fails_with_no_answer() {
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let url = format!("http://127.0.0.1:{port}/api/v1/health_check");
        let text = failure_text(verify(&request(&url, None, 400), &Reporter::plain()));
        assert!(text.contains("last answer: no answer"), "{text}");
    }

    #[test]
    fn judge_checks_status_then_message() {
        let ok = r#"{"message":"Success Health Check!!"}"#;
        assert_eq!(
            judge(200, ok, 200, Some("Success Health Check!!")),
            Answer::Expected { status: 200, message: Some("Success Health Check!!".into()) }
        );
        assert_eq!(
            judge(200, ok, 200, None),
            Answer::Expected { status: 200, message: Some("Success Health Check!!".into()) }
        );
        assert_eq!(judge(200, "pong", 200, None), Answer::Expected { status: 200, message: None });
        assert!(
            matches!(judge(200, "pong", 200, Some("x")), Answer::Wrong(w) if w.contains("no JSON `message`"))
        );
        assert!(
            matches!(judge(404, ok, 200, None), Answer::Wrong(w) if w.starts_with("status 404 (expected 200)"))
        );
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "x".repeat(1000);
        let shown = shorten(&body);
        assert!(shown.ends_with("… (1000 bytes)") && shown.len() < 400, "{shown}");
        assert_eq!(shorten("  \n"), "(empty)");
    }

    #[test]
    fn url_takes_the_public_ip_or_stays_fixed() {
        let t = "http://{public_ip}/api/v1/health_check";
        assert_eq!(
            health_url(t, Some("203.0.113.7")).ok().as_deref(),
            Some("http://203.0.113.7/api/v1/health_check")
        );
        assert_eq!(
            health_url("https://api.example.com/api/v1/health_check", None).ok().as_deref(),
            Some("https://api.example.com/api/v1/health_check")
        );
        let no_ip = health_url(t, None).expect_err("no public IP");
        assert_eq!(Failure::of(&no_ip), Some(Failure::Verify));
        assert!(format!("{no_ip:#}").contains("assignPublicIp"));
        let bad = health_url("ftp://example.com/x", None).expect_err("not http");
        assert_eq!(Failure::of(&bad), Some(Failure::Input));
    }

    #[test]
    fn loopback_hosts_bypass_proxies() {
        assert!(is_loopback("http://127.0.0.5/api/v1/health_check"));
        assert!(is_loopback("http://localhost:8080/"));
        assert!(is_loopback("http://[::1]/"));
        assert!(!is_loopback("http://203.0.113.7/"));
    }

    #[test]
    fn request_uses_the_target_and_the_command_line_message() -> Result<()> {
        let config = VerifyConfig {
            url: "http://{public_ip}/api/v1/health_check".to_string(),
            expect_status: 200,
            expect_message: Some("Health Check!!".to_string()),
            timeout: Duration::from_secs(60),
        };
        let req = VerifyRequest::for_target(&config, Some("198.51.100.2"), None)?;
        assert_eq!(req.url, "http://198.51.100.2/api/v1/health_check");
        assert_eq!(req.expect_message.as_deref(), Some("Health Check!!"));
        let req = VerifyRequest::for_target(
            &config,
            Some("198.51.100.2"),
            Some("Success Health Check!!".into()),
        )?;
        assert_eq!(req.expect_message.as_deref(), Some("Success Health Check!!"));
        Ok(())
    }
}
