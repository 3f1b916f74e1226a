//! Per-connection state and the commands that only touch it or the server:
//! PING ECHO QUIT HELLO AUTH SELECT CLIENT COMMAND CONFIG INFO TIME RESET.

use bytes::Bytes;
use raftcache_resp::Protocol;
use raftcache_sm::args::parse_i64;
use raftcache_sm::reply::errors;
use raftcache_sm::state::DATABASES;
use raftcache_sm::{Reply, Watch};

use crate::clients::ClientEntry;
use crate::command_docs;
use crate::config_cmd::config;
use crate::events::Tracking;
use crate::info::{info, REDIS_VERSION};
use crate::server::Shared;
use crate::subcommand::{subcommand, Sub};
use crate::transaction::Transaction;

/// What CLIENT REPLY asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// CLIENT REPLY SKIP was just run (it has no reply of its own).
    Skip,
    /// The reply of the command after CLIENT REPLY SKIP is dropped.
    SkipNext,
}

/// A connection's state.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub db: usize,
    pub proto: Protocol,
    pub authenticated: bool,
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub reply_mode: ReplyMode,
    pub no_evict: bool,
    pub no_touch: bool,
    pub close_after_reply: bool,
    /// The transaction being queued, between MULTI and EXEC/DISCARD.
    pub multi: Option<Transaction>,
    /// WATCHed keys and their marks, until EXEC, DISCARD or UNWATCH.
    pub watches: Vec<Watch>,
    /// Pub/sub subscriptions, in the order they were made.
    pub subs: Subscriptions,
    /// CLIENT TRACKING settings while tracking is on.
    pub tracking: Option<Tracking>,
    /// CLIENT CACHING yes/no for the next command (OPTIN/OPTOUT).
    pub caching: Option<bool>,
}

/// A connection's pub/sub subscriptions (the node's registry is
/// [`crate::events::Hub`]).
#[derive(Debug, Default)]
pub struct Subscriptions {
    pub channels: Vec<Bytes>,
    pub patterns: Vec<Bytes>,
    pub shard: Vec<Bytes>,
}

impl Subscriptions {
    /// The list for `kind`.
    pub fn of(&mut self, kind: crate::events::Kind) -> &mut Vec<Bytes> {
        match kind {
            crate::events::Kind::Channel => &mut self.channels,
            crate::events::Kind::Pattern => &mut self.patterns,
            crate::events::Kind::Shard => &mut self.shard,
        }
    }

    /// The count SUBSCRIBE-family replies carry: channels and patterns, or
    /// shard channels for the S- commands.
    pub fn count(&self, kind: crate::events::Kind) -> usize {
        match kind {
            crate::events::Kind::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// True while the connection has any subscription (RESP2's subscribed
    /// mode).
    pub fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty())
    }
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::status(l)).collect())
}

/// Redis's rule for client names and library info: printable, no spaces.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn on_off(arg: &[u8]) -> Option<bool> {
    if arg.eq_ignore_ascii_case(b"on") {
        Some(true)
    } else if arg.eq_ignore_ascii_case(b"off") {
        Some(false)
    } else {
        None
    }
}

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients of specified IDs only.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "HELP",
    "    Print this help.",
];

impl Session {
    pub fn new(id: u64, authenticated: bool) -> Session {
        Session {
            id,
            db: 0,
            proto: Protocol::Resp2,
            authenticated,
            name: None,
            lib_name: None,
            lib_ver: None,
            reply_mode: ReplyMode::On,
            no_evict: false,
            no_touch: false,
            close_after_reply: false,
            multi: None,
            watches: Vec::new(),
            subs: Subscriptions::default(),
            tracking: None,
            caching: None,
        }
    }

    /// Runs a connection-level command (its arity is already checked).
    pub fn execute(
        &mut self,
        shared: &Shared,
        entry: &ClientEntry,
        name: &str,
        argv: &[Bytes],
    ) -> Reply {
        match name {
            "ping" => match argv.len() {
                1 => Reply::status("PONG"),
                2 => Reply::Bulk(argv[1].clone()),
                _ => raftcache_sm::command::arity_error("ping"),
            },
            "echo" => Reply::Bulk(argv[1].clone()),
            "quit" => {
                self.close_after_reply = true;
                Reply::Ok
            }
            "hello" => self.hello(shared, argv),
            "auth" => self.auth(shared, argv),
            "select" => self.select(argv),
            "client" => self.client(shared, entry, argv),
            "command" => command_docs::command(argv),
            "config" => config(shared, argv),
            "info" => info(shared, argv),
            "time" => {
                let micros = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as i64);
                Reply::Array(vec![
                    Reply::bulk_int(micros / 1_000_000),
                    Reply::bulk_int(micros % 1_000_000),
                ])
            }
            "bgsave" => {
                if argv.len() > 2 || (argv.len() == 2 && !argv[1].eq_ignore_ascii_case(b"schedule"))
                {
                    return Reply::err(errors::SYNTAX);
                }
                let cluster = shared.cluster.clone();
                tokio::spawn(async move { cluster.bgsave().await });
                Reply::status("Background saving started")
            }
            // Queued inside MULTI, run at EXEC: the watches end with EXEC anyway.
            "unwatch" => {
                self.watches.clear();
                Reply::Ok
            }
            "pubsub" => pubsub(shared, argv),
            "reset" => {
                let open = shared.config.settings().requirepass.is_none();
                shared.hub.detach(self.id);
                shared.set_tracking(shared.hub.tracking());
                *self = Session::new(self.id, open);
                Reply::status("RESET")
            }
            other => Reply::error(format!("ERR command '{other}' is not served by the node")),
        }
    }

    /// Checks a password for the default user, the only user there is.
    fn check_password(shared: &Shared, user: &[u8], pass: &[u8]) -> bool {
        user == b"default"
            && shared.config.settings().requirepass.is_none_or(|p| p.as_bytes() == pass)
    }

    /// AUTH [username] password
    fn auth(&mut self, shared: &Shared, argv: &[Bytes]) -> Reply {
        if argv.len() > 3 {
            return Reply::err(errors::SYNTAX);
        }
        let (user, pass) = if argv.len() == 2 {
            if shared.config.settings().requirepass.is_none() {
                return Reply::err(
                    "ERR AUTH <password> called without any password configured for the default user. \
                     Are you sure your configuration is correct?",
                );
            }
            (&b"default"[..], &argv[1][..])
        } else {
            (&argv[1][..], &argv[2][..])
        };
        if Self::check_password(shared, user, pass) {
            self.authenticated = true;
            Reply::Ok
        } else {
            Reply::err(WRONGPASS)
        }
    }

    /// HELLO [protover [AUTH username password] [SETNAME clientname]]
    fn hello(&mut self, shared: &Shared, argv: &[Bytes]) -> Reply {
        let mut version = None;
        if argv.len() >= 2 {
            let Some(v) = parse_i64(&argv[1]) else {
                return Reply::err("ERR Protocol version is not an integer or out of range");
            };
            if !(2..=3).contains(&v) {
                return Reply::err("NOPROTO unsupported protocol version");
            }
            version = Some(v);
        }
        let (mut credentials, mut setname) = (None, None);
        let mut j = 2;
        while j < argv.len() {
            let more = argv.len() - 1 - j;
            if argv[j].eq_ignore_ascii_case(b"auth") && more >= 2 {
                credentials = Some((&argv[j + 1], &argv[j + 2]));
                j += 2;
            } else if argv[j].eq_ignore_ascii_case(b"setname") && more >= 1 {
                setname = Some(&argv[j + 1]);
                j += 1;
            } else {
                let opt = String::from_utf8_lossy(&argv[j]);
                return Reply::error(format!("ERR Syntax error in HELLO option '{opt}'"));
            }
            j += 1;
        }
        if let Some((user, pass)) = credentials {
            if !Self::check_password(shared, user, pass) {
                return Reply::err(WRONGPASS);
            }
            self.authenticated = true;
        }
        if !self.authenticated {
            return Reply::err(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                 HELLO AUTH <user> <pass> option can be used to authenticate the client and \
                 select the RESP protocol version at the same time",
            );
        }
        if let Some(name) = setname {
            if let Err(e) = self.set_name(name) {
                return e;
            }
        }
        if let Some(v) = version {
            self.proto = if v == 3 { Protocol::Resp3 } else { Protocol::Resp2 };
        }
        Reply::Map(vec![
            (bulk("server"), bulk("redis")),
            (bulk("version"), bulk(REDIS_VERSION)),
            (bulk("proto"), Reply::Int(self.proto.version())),
            (bulk("id"), Reply::Int(self.id as i64)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk("master")),
            (bulk("modules"), Reply::Array(vec![])),
        ])
    }

    /// SELECT index
    fn select(&mut self, argv: &[Bytes]) -> Reply {
        match raftcache_sm::args::int32(&argv[1]) {
            Ok(n) if n < 0 || n as usize >= DATABASES => Reply::err(errors::DB_INDEX),
            Ok(n) => {
                self.db = n as usize;
                Reply::Ok
            }
            Err(e) => e,
        }
    }

    fn set_name(&mut self, name: &Bytes) -> Result<(), Reply> {
        if !valid_name(name) {
            return Err(Reply::err(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        self.name = if name.is_empty() { None } else { Some(name.clone()) };
        Ok(())
    }

    /// CLIENT subcommand …
    fn client(&mut self, shared: &Shared, entry: &ClientEntry, argv: &[Bytes]) -> Reply {
        let sub = match subcommand("client", argv) {
            Ok(sub) => sub,
            Err(e) => return e,
        };
        match sub {
            Sub("id") => Reply::Int(self.id as i64),
            Sub("setname") => self.set_name(&argv[2]).map_or_else(|e| e, |_| Reply::Ok),
            Sub("getname") => self.name.clone().map_or(Reply::Nil, Reply::Bulk),
            Sub("info") => Reply::Verbatim(Bytes::from(entry.describe() + "\n")),
            Sub("list") => client_list(shared, argv),
            Sub("setinfo") => self.set_info(&argv[2], &argv[3]),
            Sub("no-evict") => match on_off(&argv[2]) {
                Some(v) => {
                    self.no_evict = v;
                    Reply::Ok
                }
                None => Reply::err(errors::SYNTAX),
            },
            Sub("no-touch") => match on_off(&argv[2]) {
                Some(v) => {
                    self.no_touch = v;
                    Reply::Ok
                }
                None => Reply::err(errors::SYNTAX),
            },
            Sub("reply") => self.client_reply(&argv[2]),
            Sub("unblock") => client_unblock(shared, argv),
            Sub("tracking") => self.client_tracking(shared, argv),
            Sub("caching") => self.client_caching(argv),
            Sub("getredir") => Reply::Int(self.tracking.as_ref().map_or(-1, |t| t.redirect as i64)),
            Sub("trackinginfo") => self.tracking_info(),
            Sub("help") => help(CLIENT_HELP),
            Sub(_) => Reply::err(errors::SYNTAX),
        }
    }

    /// CLIENT TRACKING ON|OFF [REDIRECT id] [BCAST] [PREFIX p …] [OPTIN]
    /// [OPTOUT] [NOLOOP], with Redis 7.0's checks in its order.
    fn client_tracking(&mut self, shared: &Shared, argv: &[Bytes]) -> Reply {
        let mut t = Tracking::default();
        let mut j = 3;
        while j < argv.len() {
            let more = j + 1 < argv.len();
            let opt = &argv[j];
            if opt.eq_ignore_ascii_case(b"redirect") && more {
                j += 1;
                if t.redirect != 0 {
                    return Reply::err("ERR A client can only redirect to a single other client");
                }
                let Some(id) = parse_i64(&argv[j]) else { return Reply::err(errors::NOT_INTEGER) };
                if id <= 0 || !shared.clients.list().iter().any(|c| c.id == id as u64) {
                    return Reply::err("ERR The client ID you want redirect to does not exist");
                }
                t.redirect = id as u64;
            } else if opt.eq_ignore_ascii_case(b"bcast") {
                t.bcast = true;
            } else if opt.eq_ignore_ascii_case(b"optin") {
                t.optin = true;
            } else if opt.eq_ignore_ascii_case(b"optout") {
                t.optout = true;
            } else if opt.eq_ignore_ascii_case(b"noloop") {
                t.noloop = true;
            } else if opt.eq_ignore_ascii_case(b"prefix") && more {
                j += 1;
                t.prefixes.push(argv[j].clone());
            } else {
                return Reply::err(errors::SYNTAX);
            }
            j += 1;
        }
        if argv[2].eq_ignore_ascii_case(b"off") {
            self.tracking = None;
            self.caching = None;
            let any = shared.hub.untrack(self.id);
            shared.set_tracking(any);
            return Reply::Ok;
        }
        if !argv[2].eq_ignore_ascii_case(b"on") {
            return Reply::err(errors::SYNTAX);
        }
        if !t.bcast && !t.prefixes.is_empty() {
            return Reply::err("ERR PREFIX option requires BCAST mode to be enabled");
        }
        if let Some(old) = &self.tracking {
            if old.bcast != t.bcast {
                return Reply::err(
                    "ERR You can't switch BCAST mode on/off before disabling tracking for this \
                     client, and then re-enabling it with a different mode.",
                );
            }
        }
        if t.bcast && (t.optin || t.optout) {
            return Reply::err("ERR OPTIN and OPTOUT are not compatible with BCAST");
        }
        if t.optin && t.optout {
            return Reply::err("ERR You can't specify both OPTIN mode and OPTOUT mode");
        }
        if let Some(old) = &self.tracking {
            if (t.optin && old.optout) || (t.optout && old.optin) {
                return Reply::err(
                    "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this \
                     client, and then re-enabling it with a different mode.",
                );
            }
        }
        if t.bcast {
            let existing = self.tracking.as_ref().map_or(&[][..], |o| &o.prefixes[..]);
            for (i, p) in t.prefixes.iter().enumerate() {
                let overlaps = |a: &[u8], b: &[u8]| a.starts_with(b) || b.starts_with(a);
                if let Some(old) = existing.iter().find(|o| overlaps(o, p)) {
                    return Reply::error(format!(
                        "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a \
                         single client must not overlap.",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(old)
                    ));
                }
                if let Some(other) = t.prefixes[i + 1..].iter().find(|o| overlaps(o, p)) {
                    return Reply::error(format!(
                        "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes \
                         for a single client must not overlap.",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(other)
                    ));
                }
            }
            // Enabling again adds prefixes (Redis keeps the old ones).
            let mut all = existing.to_vec();
            all.extend(t.prefixes.iter().cloned());
            t.prefixes = all;
        }
        shared.hub.track(self.id, t.clone());
        shared.set_tracking(true);
        self.tracking = Some(t);
        Reply::Ok
    }

    /// CLIENT CACHING YES|NO
    fn client_caching(&mut self, argv: &[Bytes]) -> Reply {
        let Some(t) = &self.tracking else {
            return Reply::err(
                "ERR CLIENT CACHING can be called only when the client is in tracking mode with \
                 OPTIN or OPTOUT mode enabled",
            );
        };
        let opt = &argv[2];
        if opt.eq_ignore_ascii_case(b"yes") {
            if !t.optin {
                return Reply::err(
                    "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
                );
            }
            self.caching = Some(true);
        } else if opt.eq_ignore_ascii_case(b"no") {
            if !t.optout {
                return Reply::err(
                    "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
                );
            }
            self.caching = Some(false);
        } else {
            return Reply::err(errors::SYNTAX);
        }
        Reply::Ok
    }

    /// CLIENT TRACKINGINFO
    fn tracking_info(&self) -> Reply {
        let mut flags = Vec::new();
        let (redirect, prefixes) = match &self.tracking {
            None => {
                flags.push(bulk("off"));
                (-1, Vec::new())
            }
            Some(t) => {
                flags.push(bulk("on"));
                if t.bcast {
                    flags.push(bulk("bcast"));
                }
                if t.optin {
                    flags.push(bulk("optin"));
                    if self.caching == Some(true) {
                        flags.push(bulk("caching-yes"));
                    }
                }
                if t.optout {
                    flags.push(bulk("optout"));
                    if self.caching == Some(false) {
                        flags.push(bulk("caching-no"));
                    }
                }
                if t.noloop {
                    flags.push(bulk("noloop"));
                }
                (t.redirect as i64, t.prefixes.clone())
            }
        };
        Reply::Map(vec![
            (bulk("flags"), Reply::Set(flags)),
            (bulk("redirect"), Reply::Int(redirect)),
            (bulk("prefixes"), Reply::bulks(prefixes)),
        ])
    }

    /// CLIENT SETINFO LIB-NAME|LIB-VER value
    fn set_info(&mut self, attr: &[u8], value: &Bytes) -> Reply {
        let is_name = attr.eq_ignore_ascii_case(b"lib-name");
        if !is_name && !attr.eq_ignore_ascii_case(b"lib-ver") {
            return Reply::error(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(attr)
            ));
        }
        if !valid_name(value) {
            let what = if is_name { "lib-name" } else { "lib-ver" };
            return Reply::error(format!(
                "ERR {what} cannot contain spaces, newlines or special characters."
            ));
        }
        let value = if value.is_empty() { None } else { Some(value.clone()) };
        if is_name {
            self.lib_name = value;
        } else {
            self.lib_ver = value;
        }
        Reply::Ok
    }

    /// CLIENT REPLY ON|OFF|SKIP
    fn client_reply(&mut self, mode: &[u8]) -> Reply {
        if mode.eq_ignore_ascii_case(b"on") {
            self.reply_mode = ReplyMode::On;
            Reply::Ok
        } else if mode.eq_ignore_ascii_case(b"off") {
            self.reply_mode = ReplyMode::Off;
            Reply::NoReply
        } else if mode.eq_ignore_ascii_case(b"skip") {
            if self.reply_mode != ReplyMode::Off {
                self.reply_mode = ReplyMode::Skip;
            }
            Reply::NoReply
        } else {
            Reply::err(errors::SYNTAX)
        }
    }
}

/// CLIENT UNBLOCK client-id [TIMEOUT | ERROR]: a client of this node
/// blocked in BLPOP and friends answers now; 1 if it was blocked.
fn client_unblock(shared: &Shared, argv: &[Bytes]) -> Reply {
    let Some(id) = parse_i64(&argv[2]) else { return Reply::err(errors::NOT_INTEGER) };
    let error = match argv.get(3) {
        None => false,
        Some(r) if r.eq_ignore_ascii_case(b"timeout") => false,
        Some(r) if r.eq_ignore_ascii_case(b"error") => true,
        Some(_) => return Reply::err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
    };
    if argv.len() > 4 {
        return Reply::err(errors::SYNTAX);
    }
    Reply::Int(i64::from(id > 0 && shared.hub.cancel(id as u64, error)))
}

/// CLIENT LIST [TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID id [id ...]]
fn client_list(shared: &Shared, argv: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    let mut only_normal = true;
    let mut i = 2;
    while i < argv.len() {
        if argv[i].eq_ignore_ascii_case(b"type") && i + 1 < argv.len() {
            let t = String::from_utf8_lossy(&argv[i + 1]).to_ascii_lowercase();
            only_normal = match t.as_str() {
                "normal" => true,
                "master" | "replica" | "slave" | "pubsub" => false,
                _ => return Reply::error(format!("ERR Unknown client type '{t}'")),
            };
            i += 2;
        } else if argv[i].eq_ignore_ascii_case(b"id") && i + 1 < argv.len() {
            let mut list = Vec::new();
            for arg in &argv[i + 1..] {
                match parse_i64(arg) {
                    Some(n) if n > 0 => list.push(n as u64),
                    _ => return Reply::err("ERR Invalid client ID"),
                }
            }
            ids = Some(list);
            i = argv.len();
        } else {
            return Reply::err(errors::SYNTAX);
        }
    }
    let mut out = String::new();
    if only_normal {
        for client in shared.clients.list() {
            if ids.as_ref().is_none_or(|ids| ids.contains(&client.id)) {
                out.push_str(&client.describe());
                out.push('\n');
            }
        }
    }
    Reply::Verbatim(Bytes::from(out))
}

const PUBSUB_HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// PUBSUB CHANNELS | NUMSUB | NUMPAT | SHARDCHANNELS | SHARDNUMSUB | HELP:
/// this node's subscriptions (subscriptions are per node, as in Redis
/// Cluster).
fn pubsub(shared: &Shared, argv: &[Bytes]) -> Reply {
    use crate::events::Kind;
    let sub = match subcommand("pubsub", argv) {
        Ok(sub) => sub,
        Err(e) => return e,
    };
    let hub = &shared.hub;
    let channels = |kind| {
        if argv.len() > 3 {
            return Reply::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                String::from_utf8_lossy(&argv[1])
            ));
        }
        Reply::bulks(hub.channels(kind, argv.get(2).map(|p| &p[..])))
    };
    let numsub = |kind| {
        let mut out = Vec::new();
        for name in &argv[2..] {
            out.push(Reply::Bulk(name.clone()));
            out.push(Reply::Int(hub.count(kind, name) as i64));
        }
        Reply::Array(out)
    };
    match sub {
        Sub("channels") => channels(Kind::Channel),
        Sub("shardchannels") => channels(Kind::Shard),
        Sub("numsub") => numsub(Kind::Channel),
        Sub("shardnumsub") => numsub(Kind::Shard),
        Sub("numpat") => Reply::Int(hub.patterns() as i64),
        Sub("help") => help(PUBSUB_HELP),
        Sub(_) => Reply::err(errors::SYNTAX),
    }
}
