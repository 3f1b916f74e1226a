//! The registry of connected clients, for CLIENT LIST/INFO and INFO clients.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

/// What CLIENT LIST shows about a connection; updated by its handler.
#[derive(Debug, Clone)]
pub struct ClientView {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub db: usize,
    pub resp: i64,
    pub last_cmd: String,
    pub last_active: Instant,
    pub qbuf: usize,
    pub no_evict: bool,
    /// Waiting in BLPOP and friends (flag `b`).
    pub blocked: bool,
    /// Subscriptions: channels, patterns, shard channels.
    pub subs: [usize; 3],
    /// Commands queued in MULTI, or -1 outside a transaction.
    pub multi: i64,
    pub tracking: bool,
    pub bcast: bool,
}

impl ClientView {
    /// The `flags=` letters, in Redis's order (`N` for none).
    fn flags(&self) -> String {
        let mut f = String::new();
        let marks = [
            (self.subs.iter().sum::<usize>() > 0, 'P'),
            (self.multi >= 0, 'x'),
            (self.blocked, 'b'),
            (self.tracking, 't'),
            (self.bcast, 'B'),
            (self.no_evict, 'e'),
        ];
        f.extend(marks.iter().filter(|(on, _)| *on).map(|(_, c)| c));
        if f.is_empty() {
            f.push('N');
        }
        f
    }
}

/// One connected client.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub fd: i32,
    pub created: Instant,
    pub view: Mutex<ClientView>,
}

impl ClientEntry {
    /// The CLIENT LIST line of this client (without the trailing newline).
    pub fn describe(&self) -> String {
        let v = self.view.lock().expect("client view lock").clone();
        let text = |b: &Option<Bytes>| {
            b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
        };
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} \
             multi={} qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            text(&v.name),
            self.created.elapsed().as_secs(),
            v.last_active.elapsed().as_secs(),
            v.flags(),
            v.db,
            v.subs[0],
            v.subs[1],
            v.subs[2],
            v.multi,
            v.qbuf,
            if v.last_cmd.is_empty() { "NULL" } else { &v.last_cmd },
            v.resp,
            text(&v.lib_name),
            text(&v.lib_ver),
        );
        s
    }
}

/// All connected clients and the connection counters.
#[derive(Debug, Default)]
pub struct Clients {
    next_id: AtomicU64,
    table: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
}

impl Clients {
    /// Registers a new connection and returns its entry (ids start at 1 and
    /// are never reused, like Redis's).
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr, fd: i32) -> Arc<ClientEntry> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let entry = Arc::new(ClientEntry {
            id,
            addr,
            laddr,
            fd,
            created: now,
            view: Mutex::new(ClientView {
                name: None,
                lib_name: None,
                lib_ver: None,
                db: 0,
                resp: 2,
                last_cmd: String::new(),
                last_active: now,
                qbuf: 0,
                no_evict: false,
                blocked: false,
                subs: [0; 3],
                multi: -1,
                tracking: false,
                bcast: false,
            }),
        });
        self.table.lock().expect("clients lock").insert(id, entry.clone());
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        entry
    }

    pub fn unregister(&self, id: u64) {
        self.table.lock().expect("clients lock").remove(&id);
    }

    pub fn count(&self) -> usize {
        self.table.lock().expect("clients lock").len()
    }

    /// Entries in id order.
    pub fn list(&self) -> Vec<Arc<ClientEntry>> {
        self.table.lock().expect("clients lock").values().cloned().collect()
    }
}
