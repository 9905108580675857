//! Database URLs as Rails reads them (`mysql2://user:password@host:port/database?socket=...`):
//! where the server is, a printable form without the password, and whether it answers.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::{Host, ParseError, Url};

/// libmariadb's socket when the host is `localhost` and no socket is given.
const DEFAULT_SOCKET: &str = "/run/mysqld/mysqld.sock";

/// Where a MySQL-protocol server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Socket(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Socket(path) => write!(f, "unix socket {}", path.display()),
        }
    }
}

/// The parts of a database URL the xtask cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUrl {
    pub endpoint: Endpoint,
    pub database: Option<String>,
    /// The URL with its password replaced by `***`, safe to print.
    pub redacted: String,
}

pub fn parse(text: &str) -> Result<DbUrl> {
    let (scheme, rest) =
        text.split_once("://").ok_or_else(|| anyhow!("not a URL (expected mysql2://...)"))?;
    if !matches!(scheme, "mysql2" | "mysql" | "trilogy") {
        bail!("scheme `{scheme}` is not MySQL's: expected mysql2://");
    }
    let url = Url::parse(text).map_err(|e| match e {
        ParseError::InvalidPort => {
            // The url crate's error names no text: the port is what follows the host's last `:`.
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let port = host_port.rsplit_once(':').map_or("", |(_, p)| p);
            anyhow!("port `{port}` is not a number")
        }
        ParseError::InvalidIpv6Address => {
            anyhow!("unclosed `[` in the host, or no IPv6 address within `[...]`")
        }
        e => anyhow!("{e}"),
    })?;
    let host = match url.host() {
        Some(Host::Ipv6(address)) => address.to_string(),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    let socket = url
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "socket")
        .map(|(_, value)| PathBuf::from(percent_decode(value)));

    // As libmariadb does: an explicit socket wins, and `localhost` means the default socket.
    let endpoint = match socket {
        Some(path) => Endpoint::Socket(path),
        None if host.is_empty() || host == "localhost" => Endpoint::Socket(DEFAULT_SOCKET.into()),
        None => Endpoint::Tcp { host, port: url.port().unwrap_or(3306) },
    };
    let mut redacted = url.clone();
    if url.password().is_some() {
        redacted
            .set_password(Some("***"))
            .map_err(|()| anyhow!("cannot hide the password in the URL: check its form"))?;
    }
    let database =
        Some(percent_decode(url.path().trim_start_matches('/'))).filter(|d| !d.is_empty());
    Ok(DbUrl { endpoint, database, redacted: redacted.into() })
}

/// The URL of `database` on the server listening on `socket`, as `TEST_DATABASE_URL`.
pub fn socket_url(socket: &Path, database: &str) -> String {
    format!(
        "mysql2://root@localhost/{database}?socket={}",
        utf8_percent_encode(&socket.to_string_lossy(), SOCKET_PATH)
    )
}

/// All but unreserved characters and `/` are encoded, so the URL survives YAML and URI parsing.
const SOCKET_PATH: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// `%XX` decoded, `+` kept: the socket is a path, not a form field.
fn percent_decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Waits at most `timeout` for the server's first packet: a MySQL handshake means it answers.
/// Runs in a thread, so even a name lookup that hangs cannot hold the caller past the deadline.
pub fn probe(endpoint: &Endpoint, timeout: Duration) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let target = endpoint.clone();
    std::thread::spawn(move || {
        let _ = tx.send(greet(&target, timeout));
    });
    let result = rx
        .recv_timeout(timeout)
        .unwrap_or_else(|_| Err(anyhow!("no answer within {}s", timeout.as_secs_f32())));
    result.map_err(|reason| anyhow!("{endpoint}: {reason:#}"))
}

fn greet(endpoint: &Endpoint, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let left = || timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
    let mut stream: Box<dyn Read> = match endpoint {
        Endpoint::Tcp { host, port } => {
            let addrs: Vec<_> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| anyhow!("cannot resolve `{host}`: {e}"))?
                .collect();
            let mut last = anyhow!("`{host}` resolves to no address");
            let mut connected = None;
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, left()) {
                    Ok(s) => {
                        connected = Some(s);
                        break;
                    }
                    Err(e) => last = anyhow!("cannot connect to {addr}: {e}"),
                }
            }
            let s = connected.ok_or(last)?;
            s.set_read_timeout(Some(left()))?;
            Box::new(s)
        }
        Endpoint::Socket(path) => {
            let s = UnixStream::connect(path)
                .map_err(|e| anyhow!("cannot connect to {}: {e}", path.display()))?;
            s.set_read_timeout(Some(left()))?;
            Box::new(s)
        }
    };
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).map_err(|e| anyhow!("connected, but no greeting: {e}"))?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut payload = vec![0u8; len.min(1024)];
    stream.read_exact(&mut payload).map_err(|e| anyhow!("connected, but no greeting: {e}"))?;
    greeting(&payload)
}

/// Judges the first packet a server sends: a v10 handshake, or an error packet to report.
fn greeting(payload: &[u8]) -> Result<()> {
    match payload.first() {
        Some(10) => Ok(()),
        Some(0xff) => {
            let message = String::from_utf8_lossy(payload.get(3..).unwrap_or_default());
            bail!("the server refused the connection: {}", message.trim())
        }
        _ => bail!("the server does not speak the MySQL protocol"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_url_with_password_is_redacted() {
        let url = parse("mysql2://app:s3cret@db.example.com:3307/zenn_test").unwrap();
        assert_eq!(url.endpoint, Endpoint::Tcp { host: "db.example.com".into(), port: 3307 });
        assert_eq!(url.database.as_deref(), Some("zenn_test"));
        assert_eq!(url.redacted, "mysql2://app:***@db.example.com:3307/zenn_test");
        assert!(!url.redacted.contains("s3cret"));
    }

    #[test]
    fn port_defaults_to_3306_and_ipv6_works() {
        let url = parse("mysql2://root@127.0.0.1/zenn").unwrap();
        assert_eq!(url.endpoint, Endpoint::Tcp { host: "127.0.0.1".into(), port: 3306 });
        let url = parse("mysql2://root@[::1]:3310/zenn").unwrap();
        assert_eq!(url.endpoint, Endpoint::Tcp { host: "::1".into(), port: 3310 });
    }

    #[test]
    fn socket_wins_and_localhost_means_the_default_socket() {
        let url = parse("mysql2://root@localhost/t?socket=/tmp/a%20b/my.sock&x=1").unwrap();
        assert_eq!(url.endpoint, Endpoint::Socket("/tmp/a b/my.sock".into()));
        let url = parse("mysql2://root@localhost/t").unwrap();
        assert_eq!(url.endpoint, Endpoint::Socket(DEFAULT_SOCKET.into()));
    }

    #[test]
    fn socket_url_round_trips() {
        let path = Path::new("/work/my repo/target/mariadb/run-1/mysqld.sock");
        let url = socket_url(path, "zenn_clone_test");
        assert_eq!(
            url,
            "mysql2://root@localhost/zenn_clone_test?socket=/work/my%20repo/target/mariadb/run-1/mysqld.sock"
        );
        let parsed = parse(&url).unwrap();
        assert_eq!(parsed.endpoint, Endpoint::Socket(path.into()));
        assert_eq!(parsed.database.as_deref(), Some("zenn_clone_test"));
    }

    #[test]
    fn bad_urls_are_rejected() {
        assert!(parse("postgres://x@y/z").is_err());
        assert!(parse("db.example.com:3306").is_err());
        let error = |url| parse(url).unwrap_err().to_string();
        assert_eq!(error("mysql2://x@y:port/z"), "port `port` is not a number");
        assert_eq!(error("mysql2://x:p@y:99999/z?socket=a"), "port `99999` is not a number");
        assert!(error("mysql2://x@[::1/z").starts_with("unclosed `[` in the host"));
    }

    #[test]
    fn greeting_is_judged() {
        assert!(greeting(&[10, b'1', b'0']).is_ok());
        let err = greeting(b"\xff\x6a\x04Host '10.0.0.9' is not allowed").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server refused the connection: Host '10.0.0.9' is not allowed"
        );
        assert!(greeting(b"HTTP/1.1 400").is_err());
    }

    #[test]
    fn a_silent_server_fails_within_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Endpoint::Tcp { host: "127.0.0.1".into(), port };
        let started = Instant::now();
        let err = probe(&endpoint, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(err.to_string().starts_with(&format!("127.0.0.1:{port}: ")), "{err}");
        drop(listener);
    }

    #[test]
    fn a_closed_port_fails_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = Endpoint::Tcp { host: "127.0.0.1".into(), port };
        let err = probe(&endpoint, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("cannot connect to 127.0.0.1"), "{err}");
    }
}
