//! A webhook receiver on loopback for the tests: a small HTTP/1.1 server (plain, or TLS
//! with a certificate the test made) that records every request and answers as told,
//! and the check of a request's signature with another HMAC implementation (ring's)
//! than the tool's.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// With this status at once.
    Status(u16),
    /// Never: it reads the request and keeps the connection open.
    Hang,
    /// The first request after this long, every other one at once; 204 for all.
    SlowFirst(Duration),
    /// With 500 for the first `n` requests, 204 afterwards.
    FailFirst(usize),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `X-Vfio-Migrate-Event`.
    pub event: String,
    /// `X-Vfio-Migrate-Delivery`.
    pub delivery: String,
    /// `X-Vfio-Migrate-Signature`.
    pub signature: Option<String>,
    /// `Content-Type`.
    pub content_type: String,
    /// The body's exact bytes.
    pub body: Vec<u8>,
    /// When its body had arrived.
    pub at: Instant,
}

impl Request {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Whether the signature header is `sha256=` and the HMAC-SHA256 of the body under
    /// `key`, checked with ring.
    pub fn signed_with(&self, key: &[u8]) -> bool {
        let Some(hex) = self.signature.as_deref().and_then(|s| s.strip_prefix("sha256=")) else {
            return false;
        };
        let Some(tag) = unhex(hex) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        ring::hmac::verify(&key, &self.body, &tag).is_ok()
    }
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A receiver listening on 127.0.0.1 until dropped.
pub struct Receiver {
    /// Where to POST: `http://127.0.0.1:PORT/hook` (or `https://`).
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// A plain HTTP receiver.
    pub fn start(answer: Answer) -> Receiver {
        Receiver::listen(answer, None)
    }

    /// An HTTPS receiver with the certificate and key in these PEM files.
    pub fn start_tls(answer: Answer, cert: &Path, key: &Path) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("read the certificate")
            .collect::<Result<_, _>>()
            .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("read the key");
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("the server's certificate");
        Receiver::listen(answer, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn listen(answer: Answer, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve(stream, answer, seen).await,
                        Some(acceptor) => {
                            // A client that does not trust the certificate hangs up here.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, answer, seen).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            url: format!("{scheme}://127.0.0.1:{port}/hook"),
            requests,
            _runtime: runtime,
        }
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits up to `within` for a `result`; returns the requests there are.
    pub fn wait_for_result(&self, within: Duration) -> Vec<Request> {
        let until = Instant::now() + within;
        loop {
            let seen = self.requests();
            if seen.iter().any(|r| r.event == "result") || Instant::now() >= until {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `within` for at least `n` requests; returns those there are.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Request> {
        let until = Instant::now() + within;
        loop {
            let seen = self.requests();
            if seen.len() >= n || Instant::now() >= until {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Reads requests off one connection (kept alive) and answers each.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, answer: Answer, seen: Arc<Mutex<Vec<Request>>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        let count = {
            let Ok(mut seen) = seen.lock() else { return };
            seen.push(request);
            seen.len()
        };
        let status = match answer {
            Answer::Status(status) => status,
            Answer::Hang => return std::future::pending().await,
            Answer::SlowFirst(wait) => {
                if count == 1 {
                    tokio::time::sleep(wait).await;
                }
                204
            }
            Answer::FailFirst(n) if count <= n => 500,
            Answer::FailFirst(_) => 204,
        };
        let reply = format!("HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\n\r\n");
        if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.get_mut().flush().await;
    }
}

/// One request: its head up to the blank line, then `content-length` bytes of body.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Option<Request> {
    let mut line = String::new();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let length: usize = header("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(Request {
        event: header("x-vfio-migrate-event").unwrap_or_default(),
        delivery: header("x-vfio-migrate-delivery").unwrap_or_default(),
        signature: header("x-vfio-migrate-signature"),
        content_type: header("content-type").unwrap_or_default(),
        body,
        at: Instant::now(),
    })
}
