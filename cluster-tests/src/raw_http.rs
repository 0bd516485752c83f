//! One HTTP/1.1 request written byte for byte on a fresh TCP connection, for request targets an
//! HTTP client library would rewrite before sending: reqwest (through the `url` crate) resolves
//! `..` and `%2e%2e` segments, so `GET /control/v1/../v1/tenant` would reach the server as
//! `GET /v1/tenant`. Here the target goes on the request line exactly as given.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::RawResponse;

/// Upper bound on reading one answer.
const READ_LIMIT: usize = 16 << 20;

/// Sends `method target HTTP/1.1` to `addr` with `headers` and an optional body (content type,
/// bytes), with `Connection: close`, and reads the whole answer (`Content-Length`, chunked, or
/// up to the end of the connection). Fails when there is no complete answer within `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> anyhow::Result<RawResponse> {
    tokio::time::timeout(timeout, exchange(addr, method, target, headers, body))
        .await
        .map_err(|_| anyhow!("{method} {target} to {addr}: no complete answer within {timeout:?}"))?
        .with_context(|| format!("{method} {target} to {addr}"))
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> anyhow::Result<RawResponse> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((content_type, bytes)) = body {
        if !content_type.is_empty() {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", bytes.len()));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    stream
        .write_all(head.as_bytes())
        .await
        .context("write head")?;
    if let Some((_, bytes)) = body {
        stream.write_all(bytes).await.context("write body")?;
    }
    stream.flush().await.context("flush")?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(READ_LIMIT as u64)
        .read_to_end(&mut answer)
        .await
        .context("read answer")?;
    parse(&answer)
}

/// Parses one complete HTTP/1.1 answer.
fn parse(answer: &[u8]) -> anyhow::Result<RawResponse> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", answer.len()))?;
    let head = std::str::from_utf8(&answer[..end]).context("head is not UTF-8")?;
    let rest = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        ensure!(
            rest.len() >= length,
            "body cut off: {} of {length} bytes",
            rest.len()
        );
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(RawResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("chunk size line cut off"))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).context("chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        ensure!(rest.len() >= size + 2, "chunk cut off");
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_answers() {
        let fixed = parse(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 9\r\n\r\n{\"msg\":1}")
            .expect("parses");
        assert_eq!((fixed.status, fixed.body.as_str()), (400, "{\"msg\":1}"));
        let chunked = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!((chunked.status, chunked.body.as_str()), (200, "abcde"));
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab").is_err());
    }
}
