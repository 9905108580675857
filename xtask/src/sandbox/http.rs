//! The little HTTP/1.1 the sandbox process serves: one request per connection, bodies sized by
//! Content-Length. Its callers are the registry's notifier and health checks, nothing else.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};

/// Largest request body accepted (a notification envelope is a few kB).
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

pub fn read_request(reader: &mut impl BufRead) -> Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).context("reading the request line")?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("malformed request line `{}`", line.trim_end());
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line).context("reading a header")? == 0 {
            bail!("connection closed inside the headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            bail!("malformed header `{header}`");
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value.parse().with_context(|| format!("bad Content-Length `{value}`"))?;
        } else if name == "transfer-encoding" && !value.eq_ignore_ascii_case("identity") {
            bail!("Transfer-Encoding `{value}` is not supported: send a Content-Length");
        }
    }
    if length > MAX_BODY {
        bail!("request body of {length} bytes is too large");
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).context("reading the request body")?;
    Ok(Request { method, path, body })
}

pub fn write_response(writer: &mut impl Write, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Error",
    };
    write!(
        writer,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_notification_post() {
        let raw = "POST /registry/events HTTP/1.1\r\nHost: 127.0.0.1:5012\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 13\r\nContent-Type: application/vnd.docker.distribution.events.v1+json\r\n\r\n{\"events\":[]}";
        let req = read_request(&mut raw.as_bytes()).unwrap();
        assert_eq!(
            req,
            Request {
                method: "POST".into(),
                path: "/registry/events".into(),
                body: b"{\"events\":[]}".to_vec()
            }
        );
    }

    #[test]
    fn reads_a_get_without_body() {
        let req = read_request(&mut "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes()).unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str(), req.body.len()), ("GET", "/health", 0));
    }

    #[test]
    fn refuses_chunked_and_truncated_requests() {
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(format!("{:#}", read_request(&mut chunked.as_bytes()).unwrap_err())
            .contains("Transfer-Encoding"));
        let short = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc";
        assert!(read_request(&mut short.as_bytes()).is_err());
        assert!(read_request(&mut "garbage\r\n\r\n".as_bytes()).is_err());
    }

    #[test]
    fn writes_a_sized_response() {
        let mut out = Vec::new();
        write_response(&mut out, 200, "{\"ok\":true}").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}"
        );
    }
}
