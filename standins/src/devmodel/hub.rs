//! The hub: the proxy's one connection to QEMU, shared by every client.
//!
//! A QEMU `-qmp unix:...,server=on` chardev serves one client at a time (a second one
//! waits, without a greeting, until the first leaves), so the proxy cannot open an
//! upstream connection per client. The hub multiplexes instead: it forwards each
//! client's commands with ids of its own and routes the replies back with the client's
//! id restored; it sends QEMU's events to every negotiated client, with the model's
//! events spliced in where QEMU would emit them. Clients negotiate with the proxy, which
//! negotiated with QEMU once.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::config::Role;
use super::fdpass::write_with_fds;
use super::proxy::{Lines, Shared};
use super::qom::PERIPHERAL;
use super::rewrite::{error_line, object_line, parse, return_line, status_of, Message};
use super::state::{Action, EventView, Timer};

/// How often the hub polls `query-migrate` when the `events` capability is off.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Prefix of the ids the hub gives commands it sends to QEMU.
const ID_PREFIX: &str = "devmodel-";

/// What the hub hears from client tasks and timers.
pub(crate) enum HubMsg {
    /// A client connected; `out` takes the bytes to write to it.
    Connected {
        client: u64,
        out: mpsc::UnboundedSender<Vec<u8>>,
    },
    /// A line from a client (without its `\n`), and the file descriptors it sent since
    /// its previous line (`SCM_RIGHTS`).
    Line {
        client: u64,
        line: Vec<u8>,
        fds: Vec<OwnedFd>,
    },
    /// A client went away.
    Closed { client: u64 },
    /// A model timer expired.
    Timer(Timer),
}

/// A reply slot in a client's queue; replies go out in the order commands came in.
enum Slot {
    /// Waiting for QEMU's reply to this hub id.
    Waiting(u64),
    /// Ready to send.
    Ready(Vec<u8>),
}

struct Client {
    out: mpsc::UnboundedSender<Vec<u8>>,
    negotiated: bool,
    slots: VecDeque<Slot>,
    /// Descriptors the client sent, for QEMU with its next forwarded command (QEMU
    /// keeps them for the command that names them, e.g. `getfd`).
    fds: Vec<OwnedFd>,
}

/// A command the hub sent to QEMU, and for whom.
struct InFlight {
    /// The client, or `None` for the proxy's own commands (polls, cancels, releases).
    client: Option<u64>,
    /// The client's `id`, restored in the reply.
    id: Option<Value>,
    name: String,
    arguments: Value,
}

pub(crate) struct Hub {
    shared: Arc<Shared>,
    upstream: OwnedWriteHalf,
    /// QEMU's greeting as clients get it: without `oob` (clients cannot negotiate it
    /// per connection through a shared monitor).
    greeting: Vec<u8>,
    clients: HashMap<u64, Client>,
    inflight: HashMap<u64, InFlight>,
    next_id: u64,
    timers: JoinSet<()>,
    timer_tx: mpsc::UnboundedSender<HubMsg>,
    /// Commands the model wants sent, sent at the end of the current step.
    outgoing: Vec<(&'static str, Value)>,
}

impl Hub {
    pub(crate) fn new(
        shared: Arc<Shared>,
        upstream: OwnedWriteHalf,
        greeting: &Value,
        timer_tx: mpsc::UnboundedSender<HubMsg>,
    ) -> Hub {
        let mut greeting = greeting.clone();
        if let Some(qmp) = greeting.get_mut("QMP").and_then(Value::as_object_mut) {
            qmp.insert("capabilities".into(), json!([]));
        }
        Hub {
            shared,
            upstream,
            greeting: format!("{greeting}\r\n").into_bytes(),
            clients: HashMap::new(),
            inflight: HashMap::new(),
            next_id: 0,
            timers: JoinSet::new(),
            timer_tx,
            outgoing: Vec::new(),
        }
    }

    /// Runs until QEMU closes the monitor (then every client is disconnected).
    pub(crate) async fn run(
        mut self,
        mut from_qemu: Lines<OwnedReadHalf>,
        mut inbox: mpsc::UnboundedReceiver<HubMsg>,
    ) {
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let result = tokio::select! {
                line = from_qemu.next() => match line {
                    Some(Ok(line)) => {
                        self.qemu_line(&line);
                        Ok(())
                    }
                    _ => return,
                },
                message = inbox.recv() => match message {
                    Some(message) => self.handle(message).await,
                    None => return,
                },
                _ = poll.tick() => {
                    if self.shared.model().wants_poll() {
                        self.outgoing.push(("query-migrate", json!({})));
                    }
                    Ok(())
                }
            };
            if result.is_err() {
                return;
            }
            self.publish();
            for (name, arguments) in std::mem::take(&mut self.outgoing) {
                if self.send_own(name, arguments).await.is_err() {
                    return;
                }
            }
            while self.timers.try_join_next().is_some() {}
        }
    }

    async fn handle(&mut self, message: HubMsg) -> std::io::Result<()> {
        match message {
            HubMsg::Connected { client, out } => {
                let _ = out.send(self.greeting.clone());
                self.clients.insert(
                    client,
                    Client {
                        out,
                        negotiated: false,
                        slots: VecDeque::new(),
                        fds: Vec::new(),
                    },
                );
                Ok(())
            }
            HubMsg::Closed { client } => {
                self.clients.remove(&client);
                self.inflight.retain(|_, f| f.client != Some(client));
                Ok(())
            }
            HubMsg::Line { client, line, fds } => {
                if let Some(c) = self.clients.get_mut(&client) {
                    c.fds.extend(fds);
                }
                self.client_line(client, &line).await
            }
            HubMsg::Timer(timer) => {
                let actions = self.shared.model().on_timer(timer);
                self.schedule(actions);
                Ok(())
            }
        }
    }

    /// One line from a client: answered here, or forwarded with a hub id.
    async fn client_line(&mut self, client: u64, line: &[u8]) -> std::io::Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let negotiated = self.clients.get(&client).is_some_and(|c| c.negotiated);
        let (name, arguments, id) = match parse(line) {
            Some(Message::Command { name, arguments, id }) => (name, arguments, id),
            other => {
                // QEMU's own answers to input that is not a command.
                let desc = match other {
                    None if serde_json::from_slice::<Value>(line).is_ok() => {
                        "QMP input must be a JSON object"
                    }
                    None => "JSON parse error",
                    Some(_) => "QMP input lacks member 'execute'",
                };
                self.reply(client, error_line("GenericError", desc, None).into_bytes());
                return Ok(());
            }
        };
        if name == "qmp_capabilities" {
            // The greeting offered no capabilities, so any `enable` is refused as QEMU would.
            let asked = arguments
                .get("enable")
                .and_then(Value::as_array)
                .and_then(|a| a.first().cloned());
            let reply = if negotiated {
                let desc = "Capabilities negotiation is already complete, command ignored";
                error_line("CommandNotFound", desc, id.as_ref())
            } else if let Some(capability) = asked {
                let desc = format!(
                    "Capability '{}' not available",
                    capability.as_str().unwrap_or("?")
                );
                error_line("GenericError", &desc, id.as_ref())
            } else {
                if let Some(c) = self.clients.get_mut(&client) {
                    c.negotiated = true;
                }
                return_line(json!({}), id.as_ref())
            };
            self.reply(client, reply.into_bytes());
            return Ok(());
        }
        if !negotiated {
            let desc = "Expecting capabilities negotiation with 'qmp_capabilities'";
            self.reply(
                client,
                error_line("CommandNotFound", desc, id.as_ref()).into_bytes(),
            );
            return Ok(());
        }
        let (local, actions) = self.answer(&name, &arguments, id.as_ref());
        if let Some(reply) = local {
            self.reply(client, reply.into_bytes());
            self.schedule(actions);
            return Ok(());
        }
        let Ok(Value::Object(mut command)) = serde_json::from_slice::<Value>(line) else {
            return Ok(());
        };
        let hub_id = self.next_hub_id();
        command.insert("id".into(), json!(format!("{ID_PREFIX}{hub_id}")));
        self.inflight.insert(
            hub_id,
            InFlight {
                client: Some(client),
                id,
                name,
                arguments,
            },
        );
        let mut fds = Vec::new();
        if let Some(c) = self.clients.get_mut(&client) {
            c.slots.push_back(Slot::Waiting(hub_id));
            fds = std::mem::take(&mut c.fds);
        }
        let line = format!("{}\n", Value::Object(command));
        write_with_fds(&mut self.upstream, line.as_bytes(), fds).await
    }

    /// The proxy's own reply to a command about the modelled devices, if it is one.
    fn answer(&mut self, name: &str, arguments: &Value, id: Option<&Value>) -> (Option<String>, Vec<Action>) {
        let mut model = self.shared.model();
        if let Some(reply) = model.qom_command(name, arguments, id) {
            return (Some(reply), Vec::new());
        }
        match name {
            "device_del" => {
                let outcome = arguments
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|d| model.device_del(d));
                let reply = outcome.map(|outcome| match outcome {
                    Ok(()) => return_line(json!({}), id),
                    Err((class, desc)) => error_line(class, &desc, id),
                });
                (reply, Vec::new())
            }
            "migrate-continue"
                if model.role() == Role::Source
                    && arguments.get("state").and_then(Value::as_str) == Some("pre-switchover") =>
            {
                if model.holding() {
                    let desc = "Migration not in expected state: device";
                    return (Some(error_line("GenericError", desc, id)), Vec::new());
                }
                match model.begin_hold() {
                    Some((_, actions)) => (Some(return_line(json!({}), id)), actions),
                    None => (None, Vec::new()),
                }
            }
            _ => (None, Vec::new()),
        }
    }

    /// One line from QEMU: an event for everyone, or a reply for whoever asked.
    fn qemu_line(&mut self, line: &[u8]) {
        match parse(line) {
            Some(Message::Event {
                name,
                data,
                timestamp,
            }) => self.event(line, &name, data, timestamp),
            Some(Message::Reply { id, ok, object }) => self.qemu_reply(id, ok, object),
            // Nothing else is expected after the greeting; clients would not know it either.
            _ => {}
        }
    }

    /// Sends QEMU's event to every negotiated client, with the model's events around it.
    fn event(&mut self, line: &[u8], name: &str, data: Value, timestamp: Value) {
        let mut view = EventView::Keep;
        let mut actions = Vec::new();
        if matches!(name, "STOP" | "RESUME" | "MIGRATION") {
            let mut model = self.shared.model();
            actions = model.on_event(name, &data);
            if name == "MIGRATION" {
                view = model.client_view(&data);
            }
        }
        let outbox = self.shared.model().take_outbox();
        for injection in outbox.iter().filter(|i| i.before) {
            self.broadcast(injection.line.as_bytes());
        }
        match view {
            EventView::Keep => {
                let mut bytes = line.to_vec();
                bytes.push(b'\n');
                self.broadcast(&bytes);
            }
            EventView::Drop => {}
            EventView::Replace(data) => {
                let event = json!({"timestamp": timestamp, "event": name, "data": data});
                self.broadcast(format!("{event}\r\n").as_bytes());
            }
        }
        for injection in outbox.iter().filter(|i| !i.before) {
            self.broadcast(injection.line.as_bytes());
        }
        self.schedule(actions);
    }

    /// Routes QEMU's reply to the client (with its id back) or to the hub's own use.
    fn qemu_reply(&mut self, id: Option<Value>, ok: bool, mut object: Map<String, Value>) {
        let hub_id = id
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix(ID_PREFIX))
            .and_then(|n| n.parse::<u64>().ok());
        let Some(sent) = hub_id.and_then(|n| self.inflight.remove(&n).map(|f| (n, f))) else {
            return;
        };
        let (hub_id, flight) = sent;
        let Some(client) = flight.client else {
            if ok && flight.name == "query-migrate" {
                let status = object
                    .get("return")
                    .and_then(status_of)
                    .unwrap_or("none")
                    .to_owned();
                let actions = self.shared.model().on_polled_status(&status);
                self.schedule(actions);
            }
            return;
        };
        match flight.id {
            Some(id) => object.insert("id".into(), id),
            None => object.remove("id"),
        };
        if ok {
            self.inspect(&flight.name, &flight.arguments, &mut object);
        }
        let line = object_line(object).into_bytes();
        if let Some(c) = self.clients.get_mut(&client) {
            if let Some(slot) = c
                .slots
                .iter_mut()
                .find(|s| matches!(s, Slot::Waiting(n) if *n == hub_id))
            {
                *slot = Slot::Ready(line);
            }
        }
        self.flush(client);
    }

    /// Learns from a successful reply and adds what the modelled devices add to it.
    fn inspect(&mut self, name: &str, arguments: &Value, object: &mut Map<String, Value>) {
        match name {
            "qom-list" => {
                let path = arguments.get("path").and_then(Value::as_str).unwrap_or("");
                if path.trim_end_matches('/') == PERIPHERAL {
                    let children = self.shared.model().peripheral_children();
                    if let Some(list) = object.get_mut("return").and_then(Value::as_array_mut) {
                        list.extend(children);
                    }
                }
            }
            "query-migrate" => {
                if let Some(info) = object.get_mut("return").and_then(Value::as_object_mut) {
                    let mut model = self.shared.model();
                    // Without `MIGRATION` events there is nothing to keep in order with,
                    // so what a client polls counts as much as the proxy's own polls.
                    if model.wants_poll() {
                        let status = info
                            .get("status")
                            .and_then(Value::as_str)
                            .unwrap_or("none")
                            .to_owned();
                        let actions = model.on_polled_status(&status);
                        drop(model);
                        self.schedule(actions);
                        model = self.shared.model();
                    }
                    model.rewrite_query_migrate(info);
                }
            }
            "migrate" | "migrate-incoming" | "migrate-set-capabilities" => {
                let actions = self.shared.model().on_command_ok(name, arguments);
                self.schedule(actions);
            }
            _ => {}
        }
    }

    /// Queues a reply the proxy made itself, behind the client's earlier commands.
    fn reply(&mut self, client: u64, line: Vec<u8>) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.slots.push_back(Slot::Ready(line));
        }
        self.flush(client);
    }

    fn flush(&mut self, client: u64) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        while let Some(Slot::Ready(_)) = c.slots.front() {
            if let Some(Slot::Ready(line)) = c.slots.pop_front() {
                let _ = c.out.send(line);
            }
        }
    }

    fn broadcast(&self, bytes: &[u8]) {
        for client in self.clients.values().filter(|c| c.negotiated) {
            let _ = client.out.send(bytes.to_vec());
        }
    }

    /// Sends the model's pending events (those with no QEMU event to sit next to).
    fn publish(&mut self) {
        let outbox = self.shared.model().take_outbox();
        for injection in outbox {
            self.broadcast(injection.line.as_bytes());
        }
    }

    /// Starts the model's timers; queues the commands it wants sent.
    fn schedule(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Timer(delay, timer) => {
                    let tx = self.timer_tx.clone();
                    self.timers.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(HubMsg::Timer(timer));
                    });
                }
                Action::Upstream(name, arguments) => self.outgoing.push((name, arguments)),
            }
        }
    }

    async fn send_own(&mut self, name: &'static str, arguments: Value) -> std::io::Result<()> {
        let hub_id = self.next_hub_id();
        self.inflight.insert(
            hub_id,
            InFlight {
                client: None,
                id: None,
                name: name.to_owned(),
                arguments: arguments.clone(),
            },
        );
        let command = json!({"execute": name, "arguments": arguments, "id": format!("{ID_PREFIX}{hub_id}")});
        self.upstream.write_all(format!("{command}\n").as_bytes()).await
    }

    fn next_hub_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}
