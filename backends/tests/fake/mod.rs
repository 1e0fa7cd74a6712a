//! A scripted fake QMP monitor: a unix socket whose peer side runs a test's script, so
//! tests can make a monitor say anything a broken, hostile or merely odd QEMU could.

#![allow(dead_code)]

pub mod child;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backends::qemu::QmpDriver;
use backends::qmp::{QmpClient, QmpEndpoint};
use plans::QmpAddress;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// QEMU 10.0.2's greeting, as the fakes send it.
pub const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "fake"}, "capabilities": ["oob"]}}"#;
/// The timeout the fake-peer tests give the client.
pub const SHORT: Duration = Duration::from_secs(2);

/// A greeting from a QEMU of this version, e.g. `greeting(2, 0, 0)`.
pub fn greeting(major: u32, minor: u32, micro: u32) -> String {
    json!({"QMP": {"version": {"qemu": {"major": major, "minor": minor, "micro": micro}, "package": "fake"}, "capabilities": ["oob"]}})
        .to_string()
}

/// The monitor side of one connection.
pub struct Peer {
    pub lines: Lines<BufReader<Box<dyn AsyncRead + Send + Unpin>>>,
    pub out: Box<dyn AsyncWrite + Send + Unpin>,
}

impl Peer {
    pub fn new(read: Box<dyn AsyncRead + Send + Unpin>, write: Box<dyn AsyncWrite + Send + Unpin>) -> Peer {
        Peer {
            lines: BufReader::new(read).lines(),
            out: write,
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.out.write_all(line.as_bytes()).await.expect("peer write");
        self.out.write_all(b"\n").await.expect("peer write");
        self.out.flush().await.expect("peer flush");
    }

    /// Like `send`, but `false` once the client hung up, for scripts that outlive it.
    pub async fn try_send(&mut self, line: &str) -> bool {
        self.out.write_all(line.as_bytes()).await.is_ok()
            && self.out.write_all(b"\n").await.is_ok()
            && self.out.flush().await.is_ok()
    }

    /// The next command from the client, or `None` once it hung up.
    pub async fn recv(&mut self) -> Option<Value> {
        let line = self.lines.next_line().await.ok()??;
        Some(serde_json::from_str(&line).expect("client sent JSON"))
    }

    /// Reads a command and checks its name; returns its id.
    pub async fn expect(&mut self, name: &str) -> Value {
        let command = self.recv().await.expect("a command");
        assert_eq!(command["execute"], name, "{command}");
        command["id"].clone()
    }

    pub async fn reply(&mut self, id: &Value, value: Value) {
        self.send(&json!({"return": value, "id": id}).to_string()).await;
    }

    /// Greeting plus `qmp_capabilities`.
    pub async fn handshake(&mut self) {
        self.send(GREETING).await;
        let id = self.expect("qmp_capabilities").await;
        self.reply(&id, json!({})).await;
    }

    /// Holds the connection open without a word until the client hangs up.
    pub async fn idle(mut self) {
        while self.recv().await.is_some() {}
    }
}

/// A fake monitor on a unix socket that runs `script` on the first connection.
pub struct Fake {
    pub endpoint: QmpEndpoint,
    pub script: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Fake {
    /// The socket's path.
    pub fn path(&self) -> PathBuf {
        match &self.endpoint {
            QmpEndpoint::Unix(path) => path.clone(),
            QmpEndpoint::Tcp(addr) => panic!("not a unix socket: {addr}"),
        }
    }
}

pub fn fake<F, Fut>(script: F) -> Fake
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("fake.qmp");
    let listener = UnixListener::bind(&path).expect("bind");
    let script = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (read, write) = stream.into_split();
        script(Peer::new(Box::new(read), Box::new(write))).await;
    });
    Fake {
        endpoint: QmpEndpoint::Unix(path),
        script,
        _dir: dir,
    }
}

pub async fn connect(fake: &Fake) -> QmpClient {
    QmpClient::connect(&fake.endpoint, "test", SHORT)
        .await
        .expect("connect to fake peer")
}

pub fn event(name: &str, data: Value) -> String {
    json!({"event": name, "data": data, "timestamp": {"seconds": 1700000000, "microseconds": 250000}})
        .to_string()
}

/// Writes `total` bytes of `x` without a newline, then a newline; returns how many
/// bytes the socket took before the client closed it.
pub async fn write_long_line(peer: &mut Peer, total: usize) -> usize {
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0;
    while written < total {
        if peer.out.write_all(&chunk).await.is_err() {
            return written;
        }
        written += chunk.len();
    }
    if peer.out.write_all(b"\n").await.is_err() {
        return written;
    }
    let _ = peer.out.flush().await;
    written
}

/// How a QEMU-like fake answers one command instead of the way QEMU would.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `{"return": <value>, "id": <id>}`.
    Return(Value),
    /// This line, made from the command's id.
    Line(fn(&Value) -> String),
    /// Nothing, ever: a stopped or hung QEMU.
    Silence,
    /// Close the connection: a QEMU that exited.
    Hangup,
}

/// What a QEMU-like fake says about itself.
#[derive(Debug, Clone)]
pub struct Imitation {
    /// The greeting it sends.
    pub greeting: String,
    /// Its `query-status` status.
    pub status: &'static str,
    /// Its `query-status` running flag.
    pub running: bool,
    /// Commands it answers otherwise than QEMU would.
    pub odd: Vec<(&'static str, Answer)>,
}

impl Imitation {
    /// A QEMU 10.0.2 source running its guest.
    pub fn source() -> Self {
        Imitation {
            greeting: GREETING.to_owned(),
            status: "running",
            running: true,
            odd: Vec::new(),
        }
    }

    /// A QEMU 10.0.2 destination started with `-incoming defer`.
    pub fn destination() -> Self {
        Imitation {
            greeting: GREETING.to_owned(),
            status: "inmigrate",
            running: false,
            odd: Vec::new(),
        }
    }

    /// The same, greeting as this version.
    pub fn version(mut self, major: u32, minor: u32, micro: u32) -> Self {
        self.greeting = greeting(major, minor, micro);
        self
    }

    /// The same, answering `command` this way from now on.
    pub fn answering(mut self, command: &'static str, answer: Answer) -> Self {
        self.odd.push((command, answer));
        self
    }
}

/// The command names a fake received, in order.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Answers as QEMU would every command the driver sends (TCG, no migration yet, no
/// VFIO devices, capabilities off), and logs each command's name.
pub async fn imitate(mut peer: Peer, qemu: Imitation, log: Log) {
    peer.send(&qemu.greeting).await;
    while let Some(command) = peer.recv().await {
        let name = command["execute"].as_str().unwrap_or_default().to_owned();
        log.lock().unwrap_or_else(|e| e.into_inner()).push(name.clone());
        let odd = qemu.odd.iter().find(|(odd, _)| *odd == name).map(|(_, a)| a);
        let line = match odd {
            Some(Answer::Return(value)) => json!({"return": value, "id": command["id"]}).to_string(),
            Some(Answer::Line(line)) => line(&command["id"]),
            Some(Answer::Silence) => continue,
            Some(Answer::Hangup) => return,
            None => json!({"return": usual(&name, &qemu), "id": command["id"]}).to_string(),
        };
        if !peer.try_send(&line).await {
            return;
        }
    }
}

/// What QEMU answers to the commands the driver sends.
fn usual(name: &str, qemu: &Imitation) -> Value {
    match name {
        "query-status" => json!({"status": qemu.status, "running": qemu.running}),
        "query-kvm" => json!({"enabled": false, "present": true}),
        "query-memory-size-summary" => json!({"base-memory": 67108864}),
        "qom-list" => json!([]),
        "query-migrate-capabilities" => json!([
            {"capability": "events", "state": false},
            {"capability": "pause-before-switchover", "state": false},
            {"capability": "auto-converge", "state": false},
        ]),
        "query-migrate-parameters" => json!({
            "downtime-limit": 300, "max-bandwidth": 134217728u64,
            "cpu-throttle-initial": 20, "cpu-throttle-increment": 10, "max-cpu-throttle": 99,
        }),
        _ => json!({}),
    }
}

/// A fake that imitates QEMU (see [`imitate`]), and its log.
pub fn qemu_like(qemu: Imitation) -> (Fake, Log) {
    let log = Log::default();
    let kept = Arc::clone(&log);
    (fake(move |peer| imitate(peer, qemu, kept)), log)
}

/// Two QEMU-like fakes and a driver for them, nothing connected yet.
pub struct FakePair {
    pub source: Fake,
    pub source_log: Log,
    pub destination: Fake,
    pub destination_log: Log,
    pub driver: QmpDriver,
}

/// A driver over two QEMU-like fakes that gives each step `timeout`.
pub fn fake_pair(source: Imitation, destination: Imitation, timeout: Duration) -> FakePair {
    let (source, source_log) = qemu_like(source);
    let (destination, destination_log) = qemu_like(destination);
    let driver = QmpDriver::new(
        &QmpAddress::Unix(source.path()),
        &QmpAddress::Unix(destination.path()),
    )
    .with_timeout(timeout);
    FakePair {
        source,
        source_log,
        destination,
        destination_log,
        driver,
    }
}
