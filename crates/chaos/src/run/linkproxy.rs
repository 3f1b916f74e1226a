//! Delay, loss and stalls on the Raft peer links, without `sch_netem`: a TCP
//! proxy of the harness's own on every directed link.
//!
//! **Where it sits.** Nodes reach each other at the addresses of their
//! membership (`--peers 1=10.A.B.1:7380,…`), which every node shares, so the
//! proxy cannot be put in by giving nodes other addresses. Instead, in each
//! node's namespace, one `nat OUTPUT` rule per other node redirects that
//! node's connections to `10.A.B.j:7380` to `127.0.0.1:17380+j` of the same
//! namespace, where the harness listens with a socket made inside that
//! namespace (a thread of the harness enters it with `setns` and makes the
//! sockets; a socket keeps its namespace). The proxy connects on to
//! `10.A.B.j:7380` from a socket of the same namespace, marked (`SO_MARK`) so
//! that the rule lets it through. Hence a proxied connection leaves node
//! `i`'s namespace from `i`'s own address, exactly as before: the partition
//! faults (`iptables -A INPUT -s …` in the receiver's namespace) keep working
//! on proxied links, and the clients (RESP) and the admin API are never
//! proxied.
//!
//! **What it does.** Bytes from `i` to `j` go through the state of the link
//! `(i, j)`, the replies through `(j, i)`: a delay with jitter (each chunk is
//! held until its arrival time plus the delay, never overtaking the chunk
//! before it, as TCP keeps order); loss, which on a TCP stream is a broken
//! connection (a chunk is dropped by resetting the connection, with a given
//! probability, and new connections are refused with another); and a stall
//! (bytes are held, connections stay open, until the stall ends, then flow
//! at once). The proxies are only set up when the run's faults include a
//! link fault.

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rand::rngs::StdRng;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The proxy of node `j` listens on this port plus `j`, on 127.0.0.1 of each
/// other node's namespace.
pub const PORT_BASE: u16 = 17380;

/// The mark of the proxy's own connections, which the redirect rules skip.
pub const MARK: u32 = 0x5243;

/// What a link does to the bytes crossing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LinkFault {
    /// Added to every chunk's passage.
    pub delay: Duration,
    /// The delay varies by up to this much either way.
    pub jitter: Duration,
    /// Chance (per thousand) that a chunk is lost, which resets its connection.
    pub loss_per_mille: u16,
    /// Chance (per thousand) that a new connection is refused (reset at once).
    pub refuse_per_mille: u16,
    /// Hold every byte (connections stay open) until this is cleared.
    pub stall: bool,
}

impl std::fmt::Display for LinkFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.delay.is_zero() || !self.jitter.is_zero() {
            parts.push(format!(
                "delay {} ms ± {} ms",
                self.delay.as_millis(),
                self.jitter.as_millis()
            ));
        }
        if self.loss_per_mille > 0 {
            parts.push(format!(
                "{:.1}% of chunks lost (reset)",
                f64::from(self.loss_per_mille) / 10.0
            ));
        }
        if self.refuse_per_mille > 0 {
            parts.push(format!(
                "{:.1}% of connections refused",
                f64::from(self.refuse_per_mille) / 10.0
            ));
        }
        if self.stall {
            parts.push("stalled (bytes held)".into());
        }
        if parts.is_empty() {
            parts.push("clear".into());
        }
        f.write_str(&parts.join(", "))
    }
}

/// The state of every directed link, shared by the proxies and the nemesis.
#[derive(Debug, Default)]
pub struct Links {
    faults: Mutex<HashMap<(u32, u32), LinkFault>>,
    /// Connections relayed, and bytes passed on, by every proxy.
    connections: AtomicU64,
    bytes: AtomicU64,
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u32), LinkFault>> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the fault of the link from `from` to `to`.
    pub fn set(&self, from: u32, to: u32, fault: LinkFault) {
        self.lock().insert((from, to), fault);
    }

    pub fn get(&self, from: u32, to: u32) -> LinkFault {
        self.lock().get(&(from, to)).copied().unwrap_or_default()
    }

    /// Clears every link.
    pub fn heal(&self) {
        self.lock().clear();
    }

    /// Connections relayed and bytes passed on so far.
    pub fn carried(&self) -> (u64, u64) {
        (self.connections.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// A thread that has entered a network namespace and makes sockets there.
struct NsThread {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl NsThread {
    fn spawn(ns: &str) -> Result<NsThread> {
        let path = format!("/run/netns/{ns}");
        let (jobs, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name(format!("netns {ns}"))
            .spawn(move || {
                let entered = File::open(&path).and_then(|f| {
                    // SAFETY: setns(2) on a file descriptor that stays open for
                    // the call; it moves this thread alone into the namespace.
                    match unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })
            .context("starting a namespace thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the thread for namespace {ns} died"))?
            .with_context(|| format!("entering namespace {ns}"))?;
        Ok(NsThread { jobs })
    }

    /// Runs `f` in the namespace (it must be quick: the caller waits).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| anyhow!("the namespace thread is gone"))?;
        rx.recv().map_err(|_| anyhow!("the namespace thread is gone"))
    }
}

/// A TCP socket whose packets carry [`MARK`].
fn marked_socket() -> std::io::Result<std::net::TcpStream> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a socket just made and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mark: libc::c_uint = MARK;
    // SAFETY: setsockopt(2) reading a c_uint that lives for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(std::net::TcpStream::from(fd))
}

/// How a proxied connection reaches its destination.
#[derive(Clone)]
enum Dial {
    /// From a marked socket made in the source node's namespace.
    Ns(Arc<NsThread>),
    /// From the harness's own namespace (the tests).
    Here,
}

impl Dial {
    async fn connect(&self, to: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = match self {
            Dial::Ns(t) => {
                let std = t.run(marked_socket).map_err(std::io::Error::other)??;
                TcpSocket::from_std_stream(std)
            }
            Dial::Here => TcpSocket::new_v4()?,
        };
        tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }
}

/// Resets a connection (RST rather than FIN, as a lost link would leave it).
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Carries bytes one way through the link `(from, to)` of `links`. Returns
/// when the reading side closes (after passing on what was in flight), or
/// with `ConnectionReset` when a chunk is lost.
async fn pump<R, W>(
    mut rd: R,
    mut wr: W,
    links: &Links,
    (from, to): (u32, u32),
    mut rng: StdRng,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(64);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let f = links.get(from, to);
            if rng.gen_range(0..1000) < f.loss_per_mille {
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "lost"));
            }
            let mut delay = f.delay;
            if !f.jitter.is_zero() {
                let j = rng.gen_range(0..=2 * f.jitter.as_micros() as u64);
                delay = (delay + Duration::from_micros(j)).saturating_sub(f.jitter);
            }
            // Never before the chunk ahead of it: TCP keeps order.
            let at = (Instant::now() + delay).max(last);
            last = at;
            if tx.send((at, buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let writer = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            while links.get(from, to).stall {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            wr.write_all(&data).await?;
            links.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        wr.shutdown().await
    };
    // A loss ends the reader with an error: stop at once (the caller resets
    // the connection). A close lets the writer pass on what is in flight.
    tokio::pin!(writer);
    tokio::select! {
        r = reader => match r {
            Err(e) => Err(e),
            Ok(()) => writer.await,
        },
        w = &mut writer => w,
    }
}

/// One proxied connection: `a` from the source node, `b` to the destination.
/// A lost chunk in either direction resets both sides (RST, as when a
/// broken link makes a peer give up); otherwise each side's close is passed
/// on.
async fn relay(
    mut a: TcpStream,
    mut b: TcpStream,
    links: &Links,
    (from, to): (u32, u32),
    seed: u64,
) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    links.connections.fetch_add(1, Ordering::Relaxed);
    let lost = {
        let (ar, aw) = a.split();
        let (br, bw) = b.split();
        let forward = pump(ar, bw, links, (from, to), rand::SeedableRng::seed_from_u64(seed));
        let back = pump(br, aw, links, (to, from), rand::SeedableRng::seed_from_u64(!seed));
        tokio::pin!(forward, back);
        let is_loss = |r: &std::io::Result<()>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        tokio::select! {
            r = &mut forward => is_loss(&r) || is_loss(&back.await),
            r = &mut back => is_loss(&r) || is_loss(&forward.await),
        }
    };
    if lost {
        reset(a);
        reset(b);
    }
}

/// The proxies of a run: one listener per directed link.
pub struct Proxies {
    pub links: Arc<Links>,
    tasks: JoinSet<()>,
    /// The namespace threads (they end when this is dropped).
    _threads: Vec<Arc<NsThread>>,
}

impl Proxies {
    /// Starts the proxies of every link between `nodes` (id, address),
    /// listening in each node's namespace `ns(id)`, and forwarding to the
    /// nodes' `raft_port`. The redirect rules are [`super::netns::Net`]'s.
    pub fn start(
        nodes: &[(u32, Ipv4Addr)],
        ns: impl Fn(u32) -> String,
        raft_port: u16,
        seed: u64,
    ) -> Result<Proxies> {
        let links = Arc::new(Links::default());
        let mut tasks = JoinSet::new();
        let mut threads = Vec::new();
        for &(from, _) in nodes {
            let thread = Arc::new(NsThread::spawn(&ns(from))?);
            for &(to, ip) in nodes.iter().filter(|(to, _)| *to != from) {
                let port = port_of(to);
                let listener = thread
                    .run(move || {
                        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
                        l.set_nonblocking(true)?;
                        Ok::<_, std::io::Error>(l)
                    })?
                    .with_context(|| format!("proxy {from}->{to}: listening on port {port}"))?;
                let listener = TcpListener::from_std(listener)?;
                tasks.spawn(serve(
                    listener,
                    Dial::Ns(thread.clone()),
                    SocketAddr::from((ip, raft_port)),
                    links.clone(),
                    (from, to),
                    seed ^ (u64::from(from) << 32 | u64::from(to)),
                ));
            }
            threads.push(thread);
        }
        Ok(Proxies { links, tasks, _threads: threads })
    }

    /// Stops every proxy and closes its connections.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The port the proxy of destination `to` listens on.
pub fn port_of(to: u32) -> u16 {
    PORT_BASE + u16::try_from(to).expect("node ids are below 254")
}

/// Accepts the connections of the link `(from, to)` and relays each.
async fn serve(
    listener: TcpListener,
    dial: Dial,
    dest: SocketAddr,
    links: Arc<Links>,
    link: (u32, u32),
    seed: u64,
) {
    let mut conns = JoinSet::new();
    let mut rng: StdRng = rand::SeedableRng::seed_from_u64(seed);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((a, _)) = accepted else { continue };
                let f = links.get(link.0, link.1);
                if rng.gen_range(0..1000) < f.refuse_per_mille {
                    reset(a);
                    continue;
                }
                let (dial, links, conn_seed) = (dial.clone(), links.clone(), rng.gen::<u64>());
                conns.spawn(async move {
                    match dial.connect(dest).await {
                        Ok(b) => relay(a, b, &links, link, conn_seed).await,
                        Err(_) => reset(a),
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// A proxy for one link in the harness's own namespace (for the tests):
/// listens on an ephemeral port of 127.0.0.1 and forwards to `dest`.
pub async fn local(
    dest: SocketAddr,
    links: Arc<Links>,
    link: (u32, u32),
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    Ok((addr, tokio::spawn(serve(listener, Dial::Here, dest, links, link, 1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server: what it reads it writes back.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Duration> {
        let t = std::time::Instant::now();
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await?;
        assert_eq!(got, msg);
        Ok(t.elapsed())
    }

    #[tokio::test]
    async fn bytes_pass_unchanged_and_delay_applies_both_ways() {
        let links = Arc::new(Links::default());
        let (addr, task) = local(echo().await, links.clone(), (1, 2)).await.unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let fast = round_trip(&mut s, b"hello").await.unwrap();
        assert!(fast < Duration::from_millis(100), "{fast:?}");
        links.set(1, 2, LinkFault { delay: Duration::from_millis(80), ..Default::default() });
        links.set(2, 1, LinkFault { delay: Duration::from_millis(40), ..Default::default() });
        let slow = round_trip(&mut s, b"world").await.unwrap();
        assert_eq!(links.carried(), (1, 20), "one connection, 10 bytes each way");
        assert!(slow >= Duration::from_millis(120), "80 ms there, 40 back: {slow:?}");
        assert!(slow < Duration::from_millis(600), "{slow:?}");
        links.heal();
        // Order is kept under jitter: many small writes come back in order.
        links.set(
            1,
            2,
            LinkFault {
                delay: Duration::from_millis(20),
                jitter: Duration::from_millis(15),
                ..Default::default()
            },
        );
        let msg: Vec<u8> = (0..200u8).collect();
        for chunk in msg.chunks(10) {
            s.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
        task.abort();
    }

    #[tokio::test]
    async fn a_stall_holds_bytes_until_it_ends() {
        let links = Arc::new(Links::default());
        let (addr, task) = local(echo().await, links.clone(), (1, 2)).await.unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut s, b"a").await.unwrap();
        links.set(1, 2, LinkFault { stall: true, ..Default::default() });
        s.write_all(b"held").await.unwrap();
        let mut buf = [0u8; 4];
        let r = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await;
        assert!(r.is_err(), "nothing passes a stalled link");
        links.heal();
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
            .await
            .expect("released when the stall ends")
            .unwrap();
        assert_eq!(&buf, b"held");
        task.abort();
    }

    #[tokio::test]
    async fn loss_resets_connections_and_refuses_new_ones() {
        let links = Arc::new(Links::default());
        let (addr, task) = local(echo().await, links.clone(), (1, 2)).await.unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut s, b"a").await.unwrap();
        links.set(1, 2, LinkFault { loss_per_mille: 1000, ..Default::default() });
        let r = tokio::time::timeout(Duration::from_secs(2), round_trip(&mut s, b"b"))
            .await
            .expect("a lost chunk breaks the connection at once");
        assert!(r.is_err(), "the connection was reset: {r:?}");
        links.set(1, 2, LinkFault { refuse_per_mille: 1000, ..Default::default() });
        let mut s = TcpStream::connect(addr).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), round_trip(&mut s, b"c"))
            .await
            .expect("a refused connection is reset at once");
        assert!(r.is_err(), "{r:?}");
        links.heal();
        let mut s = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut s, b"d").await.expect("healed");
        task.abort();
    }
}
