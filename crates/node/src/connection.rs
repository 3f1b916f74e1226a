//! One client connection: read, decode, execute, reply.
//!
//! The handler reads whatever the socket has, executes every complete command
//! in the buffer in order, and writes all their replies with one write: a
//! pipelined client gets one syscall per batch, not per command. A protocol
//! error is answered with Redis's `-ERR Protocol error: …` after the replies
//! to the commands before it, and closes this connection only.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use raftcache_resp::{write, Limits, Protocol, RequestDecoder};
use raftcache_sm::blocked::WaiterId;
use raftcache_sm::cmd::blocking;
use raftcache_sm::command::{lookup, unknown_command_error};
use raftcache_sm::{Kind, Op, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::clients::ClientEntry;
use crate::clock::now_ms;
use crate::cluster::ClusterError;
use crate::cluster::Command;
use crate::encode::encode;
use crate::events::{Kind as SubKind, Push, Pushes, Wakeup};
use crate::server::Shared;
use crate::session::{ReplyMode, Session};
use crate::transaction::{self, Transaction};

/// Read buffer size, and the least free space kept before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Replies are flushed once this much is buffered, so a long pipeline does not
/// build an unbounded output buffer.
const WRITE_FLUSH_AT: usize = 64 * 1024;

/// Serves one client until it disconnects, errs, or the server shuts down.
pub struct Handler {
    shared: Arc<Shared>,
    stream: TcpStream,
    entry: Arc<ClientEntry>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: RequestDecoder,
    session: Session,
    last_cmd: &'static str,
    /// Pushes from the node's event hub, once the connection subscribed.
    pushes: Option<Pushes>,
    /// The server's shutdown signal (a blocked client stops waiting on it).
    shutdown: CancellationToken,
}

/// How a blocked client's wait ended.
enum Wait {
    Wakeup(Wakeup),
    Timeout,
    /// The client disconnected, or the server is stopping.
    Gone,
}

/// What woke a connection waiting for input.
enum Wake {
    Read(usize),
    Push(Option<Push>),
    Stop,
}

/// The next push, or never if the connection has no push channel.
async fn next_push(rx: &mut Option<Pushes>) -> Option<Push> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Handler {
    pub fn new(shared: Arc<Shared>, stream: TcpStream, entry: Arc<ClientEntry>) -> Handler {
        let settings = shared.config.settings();
        let session = Session::new(entry.id, settings.requirepass.is_none());
        let (shared_hub, entry_id) = (shared.hub.clone(), entry.id);
        Handler {
            decoder: RequestDecoder::new(limits(settings.proto_max_bulk_len)),
            shared,
            stream,
            entry,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            session,
            last_cmd: "",
            // Every connection can receive pushes (a tracking redirect may
            // name any client).
            pushes: Some(shared_hub.attach(entry_id)),
            shutdown: CancellationToken::new(),
        }
    }

    /// Runs the connection to its end.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // The connection's own token: the server's shutdown, or the hub
        // closing it (output buffer limits).
        let shutdown = shutdown.child_token();
        self.shutdown = shutdown.clone();
        self.shared.hub.set_close(self.entry.id, shutdown.clone());
        if let Err(e) = self.serve(shutdown).await {
            debug!(client = self.entry.id, error = %e, "connection ended with an error");
        }
        self.shared.clients.unregister(self.entry.id);
        self.shared.hub.detach(self.entry.id);
        if self.session.tracking.is_some() {
            self.shared.set_tracking(self.shared.hub.tracking());
        }
    }

    async fn serve(&mut self, shutdown: CancellationToken) -> std::io::Result<()> {
        loop {
            let close = self.process_buffer().await?;
            self.flush().await?;
            if close {
                return Ok(());
            }
            let settings = self.shared.config.settings();
            self.decoder.set_limits(limits(settings.proto_max_bulk_len));
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            // Redis never times out a client that is subscribed.
            let idle = match settings.timeout {
                _ if self.session.subs.active() => Duration::MAX,
                0 => Duration::MAX,
                secs => Duration::from_secs(secs),
            };
            drop(settings);
            if let Some(pushes) = &self.pushes {
                pushes.set_busy(false);
            }
            let wake = tokio::select! {
                r = self.stream.read_buf(&mut self.rbuf) => Wake::Read(r?),
                p = next_push(&mut self.pushes) => Wake::Push(p),
                _ = shutdown.cancelled() => Wake::Stop,
                _ = tokio::time::sleep(idle) => {
                    debug!(client = self.entry.id, "closing idle client");
                    Wake::Stop
                }
            };
            let read = match wake {
                Wake::Read(n) => {
                    self.shared.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(pushes) = &self.pushes {
                        pushes.set_busy(true);
                    }
                    n
                }
                Wake::Stop => return Ok(()),
                Wake::Push(Some(push)) => {
                    self.write_push(push);
                    for push in self.drain_pushes() {
                        self.write_push(push);
                    }
                    continue;
                }
                Wake::Push(None) => {
                    self.pushes = None;
                    continue;
                }
            };
            if read == 0 {
                return Ok(());
            }
            let settings = self.shared.config.settings();
            if self.rbuf.len() as u64 > settings.client_query_buffer_limit {
                tracing::warn!(
                    client = self.entry.id,
                    "closing client that reached max query buffer length"
                );
                return Ok(());
            }
        }
    }

    /// Writes a push (a pub/sub message) to the output buffer: a RESP3
    /// push, or a plain array in RESP2.
    fn write_push(&mut self, push: Push) {
        let resp3 = self.session.proto == Protocol::Resp3;
        match push {
            Push::Message { kind, pattern, channel, payload, .. } => {
                let mut items = vec![Reply::Bulk(Bytes::from_static(kind.as_bytes()))];
                items.extend(pattern.map(Reply::Bulk));
                items.push(Reply::Bulk(channel));
                items.push(Reply::Bulk(payload));
                self.push_frame(&items);
            }
            Push::Invalidate { keys } => {
                let keys = keys.map_or(Reply::Nil, Reply::bulks);
                if resp3 {
                    self.push_frame(&[Reply::bulk(b"invalidate"), keys]);
                } else if self.session.subs.active() {
                    // RESP2 has no pushes: a redirect target in subscribed
                    // mode gets a message on __redis__:invalidate.
                    let items =
                        [Reply::bulk(b"message"), Reply::bulk(b"__redis__:invalidate"), keys];
                    self.push_frame(&items);
                }
            }
            Push::RedirectBroken { to } => {
                if resp3 {
                    self.push_frame(&[
                        Reply::bulk(b"tracking-redir-broken"),
                        Reply::Int(to as i64),
                    ]);
                }
            }
        }
    }

    /// Writes the pushes already waiting: messages and keyspace
    /// notifications now, before the replies of the command whose entry
    /// caused them (as Redis orders PUBLISH and most notifications: it sends
    /// those of list, hash and sorted-set writes after the reply, a
    /// difference DIFFERENCES.md lists); invalidations are returned, to go
    /// after the replies (Redis tells a client of its own change after the
    /// command's reply).
    fn drain_pushes(&mut self) -> Vec<Push> {
        let mut later = Vec::new();
        while let Some(push) = self.pushes.as_mut().and_then(|rx| rx.try_recv()) {
            match push {
                Push::Message { .. } => self.write_push(push),
                other => later.push(other),
            }
        }
        later
    }

    /// Encodes an out-of-band frame: `>` in RESP3, `*` in RESP2.
    fn push_frame(&mut self, items: &[Reply]) {
        match self.session.proto {
            Protocol::Resp3 => write::header(&mut self.wbuf, b'>', items.len() as i64),
            Protocol::Resp2 => write::array_header(&mut self.wbuf, items.len()),
        }
        for item in items {
            encode(item, self.session.proto, &mut self.wbuf);
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            tokio::select! {
                r = self.stream.write_all(&self.wbuf) => {
                    r?;
                    let n = self.wbuf.len() as u64;
                    self.shared.stats.net_output_bytes.fetch_add(n, Ordering::Relaxed);
                }
                // A client that does not read must not hold the connection
                // past its closing.
                _ = self.shutdown.cancelled() => {
                    return Err(std::io::ErrorKind::ConnectionAborted.into());
                }
            }
            self.wbuf.clear();
        }
        if let Some(pushes) = &self.pushes {
            pushes.written();
        }
        Ok(())
    }

    /// Executes every complete command in the read buffer. Consecutive writes
    /// go to the cluster as one group (and so usually one log entry), as do
    /// consecutive reads; anything else first waits for the group before it,
    /// so every command observes the effects of the commands before it on this
    /// connection. Returns true if the connection must close once the replies
    /// are written.
    async fn process_buffer(&mut self) -> std::io::Result<bool> {
        let mut executed = false;
        let mut group = Group::None;
        loop {
            let argv = match self.decoder.decode(&mut self.rbuf, self.session.authenticated) {
                Ok(Some(argv)) => argv,
                Ok(None) => break,
                Err(e) => {
                    self.flush_group(&mut group).await;
                    encode(&Reply::error(format!("ERR {e}")), self.session.proto, &mut self.wbuf);
                    debug!(client = self.entry.id, error = %e, "protocol error");
                    return Ok(true);
                }
            };
            executed = true;
            self.shared.stats.commands.fetch_add(1, Ordering::Relaxed);
            match self.classify(argv) {
                Class::Reply(reply) => {
                    self.flush_group(&mut group).await;
                    // A command refused while queueing aborts the transaction.
                    if let Some(tx) = &mut self.session.multi {
                        tx.dirty = true;
                    }
                    if self.last_cmd != "unknown" {
                        self.shared.stats.calls.rejected(self.last_cmd);
                    }
                    self.emit(&reply);
                }
                Class::Queued(reply) => {
                    self.emit(&reply);
                }
                Class::Transaction(name, argv) => {
                    self.flush_group(&mut group).await;
                    let started = Instant::now();
                    let reply = self.transaction(name, &argv).await;
                    let usec = started.elapsed().as_micros() as u64;
                    self.shared.stats.calls.ran(name, usec, &reply);
                    self.emit(&reply);
                }
                Class::Subscription(name, kind, argv) => {
                    self.flush_group(&mut group).await;
                    self.subscription(name, kind, &argv);
                    self.shared.stats.calls.ran(name, 0, &Reply::Ok);
                }
                Class::Block(cmd) => {
                    self.flush_group(&mut group).await;
                    let (started, name) = (Instant::now(), self.last_cmd);
                    match self.block(cmd).await {
                        Some(reply) => {
                            let usec = started.elapsed().as_micros() as u64;
                            self.shared.stats.calls.ran(name, usec, &reply);
                            self.emit(&reply)
                        }
                        None => return Ok(true),
                    }
                }
                Class::Connection(name, argv) => {
                    self.flush_group(&mut group).await;
                    let started = Instant::now();
                    // CLIENT LIST shows the command being run, like Redis.
                    self.publish();
                    self.entry.view.lock().expect("client view lock").last_cmd =
                        full_name(name, &argv);
                    let reply = if name == "config" && is_replicated_config_set(&argv) {
                        self.config_set_replicated(&argv).await
                    } else if name == "wait" {
                        self.wait_replicas(&argv).await
                    } else if name == "save" {
                        // SAVE blocks this connection until the snapshot is on disk.
                        match self.shared.cluster.save(Duration::from_secs(600)).await {
                            Some(_) => Reply::Ok,
                            None => Reply::err("ERR snapshot failed or timed out"),
                        }
                    } else {
                        self.session.execute(&self.shared, &self.entry, name, &argv)
                    };
                    if self.session.tracking.is_some() && self.pushes.is_none() {
                        self.pushes = Some(self.shared.hub.attach(self.entry.id));
                    }
                    let usec = started.elapsed().as_micros() as u64;
                    self.shared.stats.calls.ran(&full_name(name, &argv), usec, &reply);
                    self.emit(&reply);
                }
                Class::Write(cmd) => {
                    if !matches!(group, Group::Writes(_)) {
                        self.flush_group(&mut group).await;
                        group = Group::Writes(Vec::new());
                    }
                    group.push(cmd);
                }
                Class::Read(cmd) => {
                    if !matches!(group, Group::Reads(_)) {
                        self.flush_group(&mut group).await;
                        group = Group::Reads(Vec::new());
                    }
                    group.push(cmd);
                }
            }
            if self.session.close_after_reply {
                self.flush_group(&mut group).await;
                return Ok(true);
            }
            if group.len() >= MAX_GROUP {
                self.flush_group(&mut group).await;
            }
            if self.wbuf.len() >= WRITE_FLUSH_AT {
                self.flush_group(&mut group).await;
                self.flush().await?;
            }
        }
        self.flush_group(&mut group).await;
        if executed {
            self.publish();
        }
        Ok(false)
    }

    /// WAIT numreplicas timeout (Redis's argument errors, in its order).
    async fn wait_replicas(&self, argv: &[Bytes]) -> Reply {
        let int = |b: &Bytes| raftcache_sm::args::parse_i64(b);
        let Some(numreplicas) = int(&argv[1]) else {
            return Reply::err("ERR value is not an integer or out of range");
        };
        let Some(timeout) = int(&argv[2]) else {
            return Reply::err("ERR timeout is not an integer or out of range");
        };
        if timeout < 0 {
            return Reply::err("ERR timeout is negative");
        }
        let timeout = (timeout > 0).then(|| Duration::from_millis(timeout as u64));
        match self.shared.cluster.wait_replicas(numreplicas, timeout).await {
            Ok(n) => Reply::Int(n as i64),
            Err(e) => e.reply(),
        }
    }

    /// Runs a pending group through the cluster and writes its replies.
    async fn flush_group(&mut self, group: &mut Group) {
        let mut published: Vec<(usize, Bytes, bool)> = Vec::new();
        let started = Instant::now();
        let names: Vec<&'static str> = match group {
            Group::Reads(cmds) | Group::Writes(cmds) => {
                cmds.iter().map(|c| lookup(&c.argv[0]).map_or("unknown", |s| s.name)).collect()
            }
            Group::None => Vec::new(),
        };
        let (result, n) = match std::mem::replace(group, Group::None) {
            Group::None => return,
            Group::Writes(cmds) => {
                let n = cmds.len();
                for (i, cmd) in cmds.iter().enumerate() {
                    let name = &cmd.argv[0];
                    let shard = name.eq_ignore_ascii_case(b"spublish");
                    if shard || name.eq_ignore_ascii_case(b"publish") {
                        published.push((i, cmd.argv[1].clone(), shard));
                    }
                }
                if self.session.tracking.as_ref().is_some_and(|t| t.noloop) {
                    let keys = cmds.iter().flat_map(|c| command_keys(&c.argv)).collect::<Vec<_>>();
                    self.shared.hub.own_write(self.entry.id, keys);
                }
                (self.shared.cluster.write(cmds).await, n)
            }
            Group::Reads(cmds) => {
                let n = cmds.len();
                if !self.session.no_touch && self.shared.cluster.touches.wanted() {
                    for cmd in &cmds {
                        self.shared.cluster.touches.note(cmd.db, command_keys(&cmd.argv));
                    }
                }
                let tracked = self.tracked_keys(&cmds);
                if self.session.tracking.is_some() {
                    // What this client caches must not outlive a write the
                    // leader acknowledged without waiting for this node.
                    if let Err(e) = self.shared.cluster.tracking_ready().await {
                        let reply = e.reply();
                        (0..n).for_each(|_| self.emit(&reply));
                        return;
                    }
                }
                let result = if tracked.is_empty() {
                    self.shared.cluster.read(cmds).await
                } else {
                    // Remembered while the engine is locked for the read:
                    // a change after the read is an invalidation.
                    let (hub, id) = (self.shared.hub.clone(), self.entry.id);
                    self.shared.cluster.read_then(cmds, move || hub.remember(id, tracked)).await
                };
                (result, n)
            }
        };
        // Pushes this group's entries caused come before its replies.
        let later = self.drain_pushes();
        match result {
            Ok(mut replies) => {
                // PUBLISH counts the receivers on this node (the engine
                // cannot see subscriptions).
                for (i, channel, shard) in published {
                    if let Some(reply @ Reply::Int(_)) = replies.get_mut(i) {
                        *reply = Reply::Int(self.shared.hub.receivers(&channel, shard) as i64);
                    }
                }
                let usec = started.elapsed().as_micros() as u64 / names.len().max(1) as u64;
                for (name, reply) in names.iter().zip(&replies) {
                    self.shared.stats.calls.ran(name, usec, reply);
                }
                replies.iter().for_each(|r| self.emit(r))
            }
            Err(e) => {
                let reply = e.reply();
                (0..n).for_each(|_| self.emit(&reply));
            }
        }
        for push in later {
            self.write_push(push);
        }
    }

    /// The keys of a read group that client-side caching remembers: every
    /// key read, in the default mode (OPTIN: only after CLIENT CACHING yes;
    /// OPTOUT: unless CLIENT CACHING no), none in BCAST mode.
    fn tracked_keys(&mut self, cmds: &[Command]) -> Vec<Bytes> {
        let Some(t) = &self.session.tracking else { return Vec::new() };
        let caching = self.session.caching.take();
        let wanted = if t.bcast {
            false
        } else if t.optin {
            caching == Some(true)
        } else if t.optout {
            caching != Some(false)
        } else {
            true
        };
        if !wanted {
            return Vec::new();
        }
        cmds.iter().flat_map(|c| command_keys(&c.argv)).collect()
    }

    /// Writes a reply unless CLIENT REPLY says otherwise.
    fn emit(&mut self, reply: &Reply) {
        if reply.is_error() {
            self.shared.stats.calls.error_reply(reply);
        }
        match self.session.reply_mode {
            ReplyMode::On => encode(reply, self.session.proto, &mut self.wbuf),
            ReplyMode::Off => {}
            ReplyMode::Skip => self.session.reply_mode = ReplyMode::SkipNext,
            ReplyMode::SkipNext => self.session.reply_mode = ReplyMode::On,
        }
    }

    /// Decides where a command goes.
    fn classify(&mut self, argv: Vec<Bytes>) -> Class {
        let Some(spec) = lookup(&argv[0]) else {
            self.last_cmd = "unknown";
            return Class::Reply(unknown_command_error(&argv));
        };
        self.last_cmd = spec.name;
        if let Err(e) = spec.check_arity(argv.len()) {
            if spec.name == "exec" {
                // Redis's execCommandAbort: EXEC refused ends the transaction.
                self.session.multi = None;
                self.session.watches.clear();
                let Reply::Error(text) = e else { return Class::Reply(e) };
                let text = text.strip_prefix("ERR ").unwrap_or(&text);
                let abort = format!("EXECABORT Transaction discarded because of: {text}");
                return Class::Reply(Reply::error(abort));
            }
            return Class::Reply(e);
        }
        if !self.session.authenticated && !matches!(spec.name, "auth" | "hello" | "quit") {
            return Class::Reply(Reply::err("NOAUTH Authentication required."));
        }
        if self.session.subs.active()
            && self.session.proto == Protocol::Resp2
            && !matches!(
                spec.name,
                "subscribe"
                    | "ssubscribe"
                    | "psubscribe"
                    | "unsubscribe"
                    | "sunsubscribe"
                    | "punsubscribe"
                    | "ping"
                    | "quit"
                    | "reset"
            )
        {
            return Class::Reply(Reply::error(format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
                 RESET are allowed in this context",
                full_name(spec.name, &argv)
            )));
        }
        if let Some(tx) = &mut self.session.multi {
            if !transaction::runs_immediately(spec.name) {
                if transaction::refused_in_multi(spec.name) {
                    return Class::Reply(Reply::err(
                        "ERR Command not allowed inside a transaction",
                    ));
                }
                if let Err(e) = crate::subcommand::check(spec.name, &argv) {
                    return Class::Reply(e);
                }
                // Redis refuses a command that may grow memory while it is
                // queued if memory is over maxmemory and nothing may be
                // evicted (EXECABORT follows); under an evicting policy the
                // engine makes room at EXEC.
                if raftcache_sm::memory::denyoom(spec.name)
                    && over_maxmemory_without_eviction(&self.shared)
                {
                    return Class::Reply(Reply::err(raftcache_sm::memory::OOM));
                }
                match spec.kind {
                    Kind::Read(_) => tx.queue_engine(argv, false),
                    Kind::Write(_) => tx.queue_engine(argv, true),
                    Kind::Connection => tx.queue_node(spec.name, argv),
                }
                return Class::Queued(Reply::status("QUEUED"));
            }
        }
        if matches!(spec.name, "multi" | "exec" | "discard" | "watch" | "unwatch") {
            return Class::Transaction(spec.name, argv);
        }
        if let Some(kind) = subscription_command(spec.name) {
            return Class::Subscription(spec.name, kind, argv);
        }
        if blocking::blocks(spec.name) {
            return Class::Block(Command { db: self.session.db as u32, argv });
        }
        if spec.name == "ping"
            && self.session.subs.active()
            && self.session.proto == Protocol::Resp2
        {
            // In RESP2's subscribed mode PING answers in the push shape.
            let arg = argv.get(1).cloned().unwrap_or_default();
            if argv.len() > 2 {
                return Class::Reply(raftcache_sm::command::arity_error("ping"));
            }
            return Class::Queued(Reply::Array(vec![Reply::bulk(b"pong"), Reply::Bulk(arg)]));
        }
        let mut cmd = Command { db: self.session.db as u32, argv };
        match spec.kind {
            Kind::Read(_) => Class::Read(cmd),
            Kind::Write(_) if self.reads_only(spec.name, &cmd.argv) => {
                // Served like EVAL_RO / EVALSHA_RO, which behave the same for
                // a script flagged no-writes.
                let ro = if spec.name == "eval" { "eval_ro" } else { "evalsha_ro" };
                cmd.argv[0] = Bytes::from_static(ro.as_bytes());
                Class::Read(cmd)
            }
            Kind::Write(_) => Class::Write(cmd),
            Kind::Connection => Class::Connection(spec.name, cmd.argv),
        }
    }

    /// True for EVAL and EVALSHA of a script that declares `no-writes` and
    /// is already in this node's replicated script cache: it runs as a read,
    /// without the log. (A script not yet cached goes through the log once,
    /// which caches it, as EVAL does in Redis.)
    fn reads_only(&self, name: &str, argv: &[Bytes]) -> bool {
        let body_flags = |body: &[u8]| {
            body.starts_with(b"#!")
                && raftcache_sm::script::parse_shebang(body).is_ok_and(|f| f.read_only())
        };
        match name {
            "eval" if body_flags(&argv[1]) => {
                let sha = raftcache_sm::script::sha1_hex(&argv[1]);
                self.shared.cluster.sm.read().state.scripts().get(sha.as_bytes()).is_some()
            }
            "evalsha" => {
                let Some(sha) = raftcache_sm::script::Sha::parse(&argv[1]) else { return false };
                let machine = self.shared.cluster.sm.read();
                machine.state.scripts().body(&sha).is_some_and(|body| body_flags(body))
            }
            _ => false,
        }
    }

    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UN- forms: one reply per
    /// channel (pushes in RESP3), as Redis sends them.
    fn subscription(&mut self, name: &str, kind: SubKind, argv: &[Bytes]) {
        for items in self.subscribe_changes(name, kind, argv) {
            if self.session.reply_mode == ReplyMode::On {
                self.push_frame(&items);
            }
        }
    }

    /// Carries out a SUBSCRIBE-family command and returns its confirmations,
    /// one `[kind, channel, count]` per channel.
    fn subscribe_changes(&mut self, name: &str, kind: SubKind, argv: &[Bytes]) -> Vec<[Reply; 3]> {
        let id = self.entry.id;
        let hub = self.shared.hub.clone();
        let confirm = |channel: Reply, count: usize| {
            [Reply::bulk(name.as_bytes()), channel, Reply::Int(count as i64)]
        };
        let mut out = Vec::new();
        if matches!(name, "subscribe" | "psubscribe" | "ssubscribe") {
            if self.pushes.is_none() {
                self.pushes = Some(hub.attach(id));
            }
            for channel in &argv[1..] {
                if hub.subscribe(id, kind, channel) {
                    self.session.subs.of(kind).push(channel.clone());
                }
                out.push(confirm(Reply::Bulk(channel.clone()), self.session.subs.count(kind)));
            }
            return out;
        }
        // Unsubscribing: the channels named, or every one of this kind.
        let names: Vec<Bytes> =
            if argv.len() > 1 { argv[1..].to_vec() } else { self.session.subs.of(kind).clone() };
        if names.is_empty() {
            out.push(confirm(Reply::Nil, self.session.subs.count(kind)));
            return out;
        }
        for channel in names {
            hub.unsubscribe(id, kind, &channel);
            self.session.subs.of(kind).retain(|c| *c != channel);
            out.push(confirm(Reply::Bulk(channel), self.session.subs.count(kind)));
        }
        out
    }

    /// A blocking command (see `raftcache_sm::blocked`): one `Op::Block`
    /// entry, which answers at once if a key has data or queues the client;
    /// then the client waits for the engine to serve it, confirms through the
    /// log that it takes the element, and only then gets it. `None` if the
    /// client went away (the connection closes).
    async fn block(&mut self, cmd: Command) -> Option<Reply> {
        let b = match blocking::parse(&cmd.argv, now_ms()) {
            Ok(b) => b,
            Err(e) => return Some(e),
        };
        let deadline = b
            .timeout_ms
            .filter(|&t| t > 0)
            .map(|t| tokio::time::Instant::now() + Duration::from_millis(t as u64));
        let (hub, cluster) = (self.shared.hub.clone(), self.shared.cluster.clone());
        let client = self.entry.id;
        loop {
            let (waiter, mut wakeups) = hub.block(cluster.proposer.session, client);
            let op = Op::Block { waiter, db: cmd.db, argv: cmd.argv.clone() };
            let reply = match cluster.write_ops(vec![op]).await {
                Ok(mut replies) if replies.len() == 1 => replies.pop().expect("one reply"),
                Ok(_) => Reply::err("ERR internal error: no reply"),
                Err(e) => {
                    // It may have been queued: take it back.
                    hub.unblocked(waiter, client);
                    give_up(&cluster, waiter);
                    return Some(e.reply());
                }
            };
            if reply != Reply::Blocked {
                hub.unblocked(waiter, client);
                return Some(reply);
            }
            let name = String::from_utf8_lossy(&cmd.argv[0]).to_ascii_lowercase();
            self.show_blocked(Some(&name));
            let wait = self.wait_blocked(&mut wakeups, deadline).await;
            self.show_blocked(None);
            hub.unblocked(waiter, client);
            match wait {
                // The engine took this waiter out of the queues because its
                // node (this one) was silent too long: block again.
                Wait::Wakeup(Wakeup::Unblocked { reply: Reply::Blocked, served: false }) => {
                    if deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
                        return Some(b.timed_out());
                    }
                }
                Wait::Wakeup(Wakeup::Unblocked { reply, served: false }) => return Some(reply),
                Wait::Wakeup(Wakeup::Unblocked { reply, served: true }) => {
                    match cluster.write_ops(vec![Op::Delivered { waiter }]).await {
                        Ok(confirmed) if confirmed == [Reply::Int(1)] => return Some(reply),
                        // Given back meanwhile (our confirmation came too
                        // late): wait again, if there is time left.
                        Ok(_) => {
                            if deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
                                return Some(b.timed_out());
                            }
                        }
                        // A lock is never handed over unconfirmed: if the
                        // confirmation was lost the grant is given back and
                        // goes on, so the client hears the outcome is unknown
                        // (re-acquiring as the same owner gets the same token
                        // if it was confirmed after all).
                        Err(e @ ClusterError::Uncertain) if b.is_lock() => {
                            give_up(&cluster, waiter);
                            return Some(e.reply());
                        }
                        // An element: hand it over rather than lose it.
                        Err(ClusterError::Uncertain) => return Some(reply),
                        Err(e) => {
                            give_up(&cluster, waiter);
                            return Some(e.reply());
                        }
                    }
                }
                Wait::Wakeup(Wakeup::Cancel { error }) => {
                    give_up(&cluster, waiter);
                    return Some(if error {
                        Reply::err("UNBLOCKED client unblocked via CLIENT UNBLOCK")
                    } else {
                        b.timed_out()
                    });
                }
                Wait::Timeout => {
                    give_up(&cluster, waiter);
                    return Some(b.timed_out());
                }
                Wait::Gone => {
                    give_up(&cluster, waiter);
                    return None;
                }
            }
        }
    }

    /// Waits for a blocked client's wakeup, its timeout, or its going away
    /// (bytes it sends meanwhile are kept for after).
    async fn wait_blocked(
        &mut self,
        wakeups: &mut mpsc::UnboundedReceiver<Wakeup>,
        deadline: Option<tokio::time::Instant>,
    ) -> Wait {
        let shutdown = self.shutdown.clone();
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                w = wakeups.recv() => return w.map_or(Wait::Gone, Wait::Wakeup),
                _ = timer => return Wait::Timeout,
                _ = shutdown.cancelled() => return Wait::Gone,
                r = self.stream.read_buf(&mut self.rbuf) => match r {
                    Ok(0) | Err(_) => return Wait::Gone,
                    Ok(n) => {
                        self.shared.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                },
                // A RESP3 client keeps getting its messages and
                // invalidations while it is blocked, as in Redis.
                p = next_push(&mut self.pushes) => match p {
                    Some(push) => {
                        self.write_push(push);
                        while let Some(push) =
                            self.pushes.as_mut().and_then(|rx| rx.try_recv())
                        {
                            self.write_push(push);
                        }
                        if self.flush().await.is_err() {
                            return Wait::Gone;
                        }
                    }
                    None => self.pushes = None,
                },
            }
        }
    }

    /// CONFIG SET naming a cluster-wide parameter: checked whole first, the
    /// cluster-wide values proposed through the log (every replica changes
    /// them at one index), then the node's own values set.
    async fn config_set_replicated(&mut self, argv: &[Bytes]) -> Reply {
        let mut replicated = Vec::new();
        let next = match crate::config_cmd::prepare_set(&self.shared, argv, &mut replicated) {
            Ok(next) => next,
            Err(e) => return e,
        };
        let ops = replicated.into_iter().map(|(name, value)| Op::Config { name, value }).collect();
        match self.shared.cluster.write_ops(ops).await {
            Ok(replies) => {
                if let Some(e) = replies.into_iter().find(Reply::is_error) {
                    return e;
                }
            }
            Err(e) => return e.reply(),
        }
        crate::config_cmd::commit_set(&self.shared, next);
        Reply::Ok
    }

    /// MULTI, EXEC, DISCARD, WATCH and UNWATCH (outside a transaction's
    /// queue; see [`crate::transaction`]).
    async fn transaction(&mut self, name: &str, argv: &[Bytes]) -> Reply {
        match name {
            "multi" => {
                if self.session.multi.is_some() {
                    return Reply::err("ERR MULTI calls can not be nested");
                }
                self.session.multi = Some(Transaction::new(self.session.db));
                Reply::Ok
            }
            "discard" => {
                if self.session.multi.take().is_none() {
                    return Reply::err("ERR DISCARD without MULTI");
                }
                self.session.watches.clear();
                Reply::Ok
            }
            "unwatch" => {
                self.session.watches.clear();
                Reply::Ok
            }
            "watch" => {
                if self.session.multi.is_some() {
                    return Reply::err("ERR WATCH inside MULTI is not allowed");
                }
                let db = self.session.db as u32;
                match self.shared.cluster.watch(db, &argv[1..]).await {
                    Ok(marks) => {
                        // A key watched twice keeps its first mark, as in Redis.
                        for mark in marks {
                            let known = self
                                .session
                                .watches
                                .iter()
                                .any(|w| w.db == mark.db && w.key == mark.key);
                            if !known {
                                self.session.watches.push(mark);
                            }
                        }
                        Reply::Ok
                    }
                    Err(e) => e.reply(),
                }
            }
            _ => self.exec().await,
        }
    }

    /// EXEC: the queued commands as one engine operation (a log entry, or a
    /// read if none writes), the node's own commands run in place after it.
    async fn exec(&mut self) -> Reply {
        let Some(tx) = self.session.multi.take() else {
            return Reply::err("ERR EXEC without MULTI");
        };
        let watches = std::mem::take(&mut self.session.watches);
        if tx.dirty {
            return Reply::err(transaction::EXECABORT);
        }
        let mut plan = tx.plan();
        let published: Vec<(usize, Bytes, bool)> = plan
            .calls
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let shard = c.argv[0].eq_ignore_ascii_case(b"spublish");
                (shard || c.argv[0].eq_ignore_ascii_case(b"publish"))
                    .then(|| (i, c.argv[1].clone(), shard))
            })
            .collect();
        let engine = if !plan.needs_engine(!watches.is_empty()) {
            Reply::Array(Vec::new())
        } else if plan.writes {
            let calls = std::mem::take(&mut plan.calls);
            match self.shared.cluster.write_ops(vec![Op::Exec { watches, calls }]).await {
                Ok(mut replies) if replies.len() == 1 => replies.pop().expect("one reply"),
                Ok(_) => Reply::err("ERR internal error: EXEC got no reply"),
                Err(e) => return e.reply(),
            }
        } else {
            match self.shared.cluster.read_exec(&watches, &plan.calls).await {
                Ok(reply) => reply,
                Err(e) => return e.reply(),
            }
        };
        // Messages the transaction published come before its reply, and
        // PUBLISH counts this node's receivers (as a plain PUBLISH does).
        let later = self.drain_pushes();
        let engine = match engine {
            Reply::Array(mut items) => {
                for (i, channel, shard) in published {
                    if let Some(reply @ Reply::Int(_)) = items.get_mut(i) {
                        *reply = Reply::Int(self.shared.hub.receivers(&channel, shard) as i64);
                    }
                }
                Reply::Array(items)
            }
            other => other,
        };
        let reply = plan.assemble(engine, |name, argv| self.run_queued(name, argv));
        for push in later {
            self.write_push(push);
        }
        reply
    }

    /// A node command queued in a transaction, run at EXEC.
    fn run_queued(&mut self, name: &'static str, argv: &[Bytes]) -> Reply {
        if let Some(kind) = subscription_command(name) {
            let mut confirmations = self.subscribe_changes(name, kind, argv);
            return match confirmations.len() {
                1 => Reply::Array(confirmations.pop().expect("one").to_vec()),
                _ => Reply::Array(
                    confirmations.into_iter().map(|c| Reply::Array(c.to_vec())).collect(),
                ),
            };
        }
        self.session.execute(&self.shared, &self.entry, name, argv)
    }

    /// Publishes this connection's state for CLIENT LIST and INFO.
    fn publish(&self) {
        let mut view = self.entry.view.lock().expect("client view lock");
        view.db = self.session.db;
        view.resp = self.session.proto.version();
        if !self.last_cmd.is_empty() && !matches!(self.last_cmd, "client" | "config" | "command") {
            view.last_cmd.clear();
            view.last_cmd.push_str(self.last_cmd);
        }
        view.last_active = Instant::now();
        view.qbuf = self.rbuf.len();
        view.name.clone_from(&self.session.name);
        view.lib_name.clone_from(&self.session.lib_name);
        view.lib_ver.clone_from(&self.session.lib_ver);
        view.no_evict = self.session.no_evict;
        let subs = &self.session.subs;
        view.subs = [subs.channels.len(), subs.patterns.len(), subs.shard.len()];
        view.multi = self.session.multi.as_ref().map_or(-1, |t| t.queued() as i64);
        view.tracking = self.session.tracking.is_some();
        view.bcast = self.session.tracking.as_ref().is_some_and(|t| t.bcast);
    }

    /// Shows this connection as blocked in `cmd` (or no longer blocked).
    fn show_blocked(&self, cmd: Option<&str>) {
        let mut view = self.entry.view.lock().expect("client view lock");
        view.blocked = cmd.is_some();
        if let Some(cmd) = cmd {
            view.last_cmd.clear();
            view.last_cmd.push_str(cmd);
            view.last_active = Instant::now();
        }
    }
}

/// Takes a waiter out of the engine's queues, in the background (its client
/// is answered already or gone): if it was served meanwhile, the element is
/// given back. Retried while the cluster has no quorum, for
/// [`GIVE_UP_RETRY`]; past that the waiter's deadline, the grant's pending
/// timeout, or this node's give-back when the grant is applied does it (see
/// `raftcache_sm::blocked` and [`crate::events::Hub::dispatch`]).
pub(crate) fn give_up(cluster: &Arc<crate::cluster::Cluster>, waiter: WaiterId) {
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let end = tokio::time::Instant::now() + GIVE_UP_RETRY;
        loop {
            match cluster.write_ops(vec![Op::Unblock { waiter }]).await {
                Err(ClusterError::NoLeader | ClusterError::Uncertain)
                    if tokio::time::Instant::now() < end =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => return,
            }
        }
    });
}

/// How long a node keeps trying to take a gone waiter out of the queues.
const GIVE_UP_RETRY: Duration = Duration::from_secs(60);

/// True for CONFIG SET naming a cluster-wide parameter.
fn is_replicated_config_set(argv: &[Bytes]) -> bool {
    argv.len() >= 4
        && argv[1].eq_ignore_ascii_case(b"set")
        && argv[2..].chunks(2).any(|pair| crate::config_cmd::replicated(&pair[0]))
}

/// True if this node's replica holds more data than `maxmemory` under
/// `noeviction` (what a write that may grow memory is refused for).
fn over_maxmemory_without_eviction(shared: &Shared) -> bool {
    let machine = shared.cluster.sm.read();
    let memory = machine.state.memory();
    memory.maxmemory > 0
        && memory.policy == raftcache_sm::memory::Policy::NoEviction
        && machine.state.used_memory() > memory.maxmemory
}

/// The key arguments of a command (by its table entry).
fn command_keys(argv: &[Bytes]) -> Vec<Bytes> {
    lookup(&argv[0]).map(|spec| spec.keys(argv).into_iter().cloned().collect()).unwrap_or_default()
}

/// The registry a subscription command works on.
fn subscription_command(name: &str) -> Option<SubKind> {
    match name {
        "subscribe" | "unsubscribe" => Some(SubKind::Channel),
        "psubscribe" | "punsubscribe" => Some(SubKind::Pattern),
        "ssubscribe" | "sunsubscribe" => Some(SubKind::Shard),
        _ => None,
    }
}

/// `client|list` for container commands, the plain name otherwise.
fn full_name(name: &str, argv: &[Bytes]) -> String {
    match (name, argv.get(1)) {
        ("client" | "config" | "command" | "pubsub" | "object" | "script", Some(sub)) => {
            format!("{name}|{}", String::from_utf8_lossy(sub).to_ascii_lowercase())
        }
        _ => name.to_string(),
    }
}

fn limits(max_bulk_len: u64) -> Limits {
    Limits { max_bulk_len: max_bulk_len.min(i64::MAX as u64) as i64, ..Limits::default() }
}

/// Most commands in one group (and so, at most, in one log entry from one
/// connection).
const MAX_GROUP: usize = 1024;

/// Where one command goes.
enum Class {
    /// Answered at once (unknown command, wrong arity, NOAUTH); inside MULTI
    /// it aborts the transaction.
    Reply(Reply),
    /// Answered at once, no error (`+QUEUED` inside MULTI, PING in RESP2's
    /// subscribed mode).
    Queued(Reply),
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction(&'static str, Vec<Bytes>),
    /// SUBSCRIBE and friends.
    Subscription(&'static str, SubKind, Vec<Bytes>),
    /// A command that may block the client (BLPOP …).
    Block(Command),
    /// Served by the node from connection state.
    Connection(&'static str, Vec<Bytes>),
    Read(Command),
    Write(Command),
}

/// Consecutive commands of one kind waiting to run.
enum Group {
    None,
    Reads(Vec<Command>),
    Writes(Vec<Command>),
}

impl Group {
    fn push(&mut self, cmd: Command) {
        match self {
            Group::Reads(v) | Group::Writes(v) => v.push(cmd),
            Group::None => {}
        }
    }

    fn len(&self) -> usize {
        match self {
            Group::Reads(v) | Group::Writes(v) => v.len(),
            Group::None => 0,
        }
    }
}
