//! The last check of a deploy: GET the health-check URL of the new task and expect the
//! status and, when configured, the JSON `message` the new code answers with.
//!
//! It retries within a short window (the task may still be wiring its network, nginx may
//! still be starting); a connection refused is retried like a wrong answer. When the window
//! closes, the error shows what came back last.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use tokio::time::Instant;

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

/// What one attempt brought back: the status and the body, or why nothing came back.
type Reply = Result<(u16, String), String>;

/// GETs the URL until it answers as expected or the window closes; errors carry `Failure::Verify`.
pub async fn verify(req: &VerifyRequest, report: &Reporter) -> Result<VerifyOutcome> {
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
    retry(req, report, |timeout| {
        let (agent, url) = (agent.clone(), req.url.clone());
        async move {
            // ureq blocks: the GET runs off the runtime, which keeps the clock of the waits.
            tokio::task::spawn_blocking(move || get(&agent, &url, timeout))
                .await
                .unwrap_or_else(|e| Err(format!("no answer (the request did not finish: {e})")))
        }
    })
    .await
}

/// Asks `attempt` (given how long it may take) until the reply is the expected one or the
/// window closes, waiting `FIRST_WAIT` after the first, twice as long after each next, at
/// most `MAX_WAIT`.
async fn retry<A, F>(
    req: &VerifyRequest,
    report: &Reporter,
    mut attempt: A,
) -> Result<VerifyOutcome>
where
    A: FnMut(Duration) -> F,
    F: Future<Output = Reply>,
{
    let started = Instant::now();
    let deadline = started + req.timeout;
    let mut wait = FIRST_WAIT;
    let mut attempts = 0u32;
    loop {
        crate::interrupt::check(Failure::Verify)?;
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = attempt(left.clamp(Duration::from_millis(200), ATTEMPT_TIMEOUT))
            .await
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
        tokio::time::sleep(wait).await;
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
fn get(agent: &ureq::Agent, url: &str, timeout: Duration) -> Reply {
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
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use super::*;

    const MESSAGE: &str = "Success Health Check!!";
    const OK: (u16, &str) = (200, r#"{"message":"Success Health Check!!"}"#);
    const REFUSED: &str = "no answer (io: Connection refused (os error 111))";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn request(url: &str, message: Option<&str>, timeout: Duration) -> VerifyRequest {
        VerifyRequest {
            url: url.to_string(),
            expect_status: 200,
            expect_message: message.map(str::to_string),
            timeout,
        }
    }

    fn failure_text(result: Result<VerifyOutcome>) -> String {
        let err = result.expect_err("verification should fail");
        assert_eq!(Failure::exit_code_of(&err), Failure::Verify.exit_code());
        format!("{err:#}")
    }

    fn http(status: u16, body: &str) -> Reply {
        Ok((status, body.to_string()))
    }

    fn refused() -> Reply {
        Err(REFUSED.to_string())
    }

    /// One attempt the loop made: when (since the start) and how long it was allowed.
    #[derive(Debug, PartialEq)]
    struct Attempt {
        at: Duration,
        timeout: Duration,
    }

    /// Runs the retry loop against scripted replies, one per attempt (an attempt beyond the
    /// script fails the test), on the test's clock; also returns when the loop ended.
    async fn scripted(
        req: &VerifyRequest,
        replies: Vec<Reply>,
    ) -> (Result<VerifyOutcome>, Vec<Attempt>, Duration) {
        let started = Instant::now();
        let mut replies = VecDeque::from(replies);
        let mut attempts = Vec::new();
        let result = retry(req, &Reporter::plain(), |timeout| {
            attempts.push(Attempt { at: started.elapsed(), timeout });
            let reply = replies.pop_front();
            std::future::ready(
                reply.unwrap_or_else(|| panic!("attempt {} is beyond the script", attempts.len())),
            )
        })
        .await;
        assert!(replies.is_empty(), "{} scripted replies were never asked for", replies.len());
        (result, attempts, started.elapsed())
    }

    fn times(attempts: &[Attempt]) -> Vec<Duration> {
        attempts.iter().map(|a| a.at).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_right_first_answer_needs_no_wait() {
        let req = request("http://127.0.0.1/api/v1/health_check", Some(MESSAGE), ms(60_000));
        let (outcome, attempts, ended) = scripted(&req, vec![http(OK.0, OK.1)]).await;
        let outcome = outcome.expect("verified");
        assert_eq!((outcome.status, outcome.message.as_deref()), (200, Some(MESSAGE)));
        assert_eq!((outcome.attempts, outcome.duration), (1, Duration::ZERO));
        assert_eq!(attempts, [Attempt { at: Duration::ZERO, timeout: ATTEMPT_TIMEOUT }]);
        assert_eq!(ended, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn each_wrong_answer_is_retried_after_a_doubling_wait_until_the_right_one() {
        let req = request("http://127.0.0.1/api/v1/health_check", Some(MESSAGE), ms(60_000));
        let replies = vec![
            refused(),
            http(502, "<html>bad gateway</html>"),
            http(200, r#"{"message":"Success Health Check!"}"#),
            http(200, "pong"),
            http(OK.0, OK.1),
        ];
        let (outcome, attempts, _) = scripted(&req, replies).await;
        let outcome = outcome.expect("verified after four wrong answers");
        assert_eq!(times(&attempts), [ms(0), ms(250), ms(750), ms(1750), ms(3750)]);
        assert!(attempts.iter().all(|a| a.timeout == ATTEMPT_TIMEOUT), "{attempts:?}");
        assert_eq!((outcome.attempts, outcome.duration), (5, ms(3750)));
        assert_eq!(outcome.message.as_deref(), Some(MESSAGE));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_stop_doubling_at_two_seconds_and_the_last_attempt_gets_what_is_left() {
        let req = request("http://127.0.0.1/api/v1/health_check", None, ms(12_000));
        let mut replies: Vec<Reply> = (0..8).map(|_| refused()).collect();
        replies.push(http(500, "Internal Server Error"));
        let (result, attempts, ended) = scripted(&req, replies).await;
        let text = failure_text(result);
        let at = [0, 250, 750, 1750, 3750, 5750, 7750, 9750, 11_750].map(ms);
        let allowed = [5000, 5000, 5000, 5000, 5000, 5000, 4250, 2250, 250].map(ms);
        let expected: Vec<Attempt> =
            at.into_iter().zip(allowed).map(|(at, timeout)| Attempt { at, timeout }).collect();
        assert_eq!(attempts, expected);
        assert_eq!(ended, ms(11_750), "no wait after the last attempt");
        assert!(
            text.contains(
                "GET http://127.0.0.1/api/v1/health_check did not answer status 200 within 12s \
                 (9 attempts); last answer: status 500 (expected 200), body: Internal Server Error"
            ),
            "{text}"
        );
        assert!(text.contains("next: check that the new image has the change"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_shows_the_expected_message_and_the_last_answer() {
        let req = request("http://127.0.0.1/api/v1/health_check", Some(MESSAGE), ms(1000));
        let wrong = r#"{"message":"Health Check!!"}"#;
        let replies = vec![refused(), http(200, wrong), http(200, wrong)];
        let (result, attempts, ended) = scripted(&req, replies).await;
        let text = failure_text(result);
        assert_eq!(times(&attempts), [ms(0), ms(250), ms(750)]);
        assert_eq!(ended, ms(750));
        assert!(
            text.contains(
                "did not answer status 200 with message `Success Health Check!!` within 1.0s \
                 (3 attempts); last answer: status 200 with message `Health Check!!` (expected \
                 `Success Health Check!!`), body: {\"message\":\"Health Check!!\"}"
            ),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_shorter_than_the_first_wait_is_one_attempt_of_at_least_200ms() {
        let req = request("http://127.0.0.1/api/v1/health_check", None, ms(100));
        let (result, attempts, ended) = scripted(&req, vec![refused()]).await;
        let text = failure_text(result);
        assert_eq!(attempts, [Attempt { at: Duration::ZERO, timeout: ms(200) }]);
        assert_eq!(ended, Duration::ZERO);
        assert!(text.contains(&format!("(1 attempts); last answer: {REFUSED}")), "{text}");
    }

    /// A one-thread HTTP server, bound for its whole life, answering each connection with the
    /// next scripted reply (the last one repeats), `None` hanging up unanswered; stops when
    /// dropped.
    struct Server {
        url: String,
        served: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        fn start(replies: Vec<Option<(u16, &'static str)>>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
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
                    answer(stream, replies[n.min(replies.len() - 1)]);
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

    /// Reads the request, then writes `reply` or, for `None`, closes the connection.
    fn answer(stream: TcpStream, reply: Option<(u16, &str)>) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let Some((status, body)) = reply else { return };
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = reader.get_mut().write_all(reply.as_bytes());
    }

    /// The real GET, on paused time: the clock stands still while a request is in flight.
    #[tokio::test(start_paused = true)]
    async fn a_real_server_is_asked_until_it_answers_right() {
        let server = Server::start(vec![
            Some((500, "Internal Server Error")),
            Some((200, r#"{"message":"Health Check!!"}"#)),
            Some(OK),
        ]);
        let req = request(&server.url, Some(MESSAGE), ms(10_000));
        let outcome = verify(&req, &Reporter::plain()).await.expect("verified on the third GET");
        assert_eq!((outcome.status, outcome.message.as_deref()), (200, Some(MESSAGE)));
        assert_eq!((outcome.attempts, outcome.duration), (3, ms(750)));
        assert_eq!(server.served(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_real_server_that_hangs_up_gives_no_answer() {
        let server = Server::start(vec![None]);
        let req = request(&server.url, None, ms(1000));
        let text = failure_text(verify(&req, &Reporter::plain()).await);
        assert!(text.contains("(3 attempts); last answer: no answer ("), "{text}");
        assert_eq!(server.served(), 3);
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
