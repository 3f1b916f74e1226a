//! The history model: what the clients did, when, and what they were told.
//!
//! # On-disk format: one line per operation
//!
//! A history is a JSON-lines file with **one line per operation**, holding both
//! its invoke and its completion time (rather than Jepsen's and Porcupine's
//! separate invoke and complete events). A recorder writes the line when the
//! operation completes; operations still in flight when the run stops are
//! written at the end with `"outcome":"unknown"` and no `complete`. One line per
//! operation keeps the files readable by hand and spares the checkers the
//! pairing of events; the price is that a recorder killed mid-run loses its
//! in-flight operations, which the harness avoids by flushing pending ones on
//! shutdown (see [`crate::record::Recorder::finish`]).
//!
//! ```text
//! {"process":1,"key":"x","f":"write","value":"a","invoke":0,"complete":10,"outcome":"ok"}
//! {"process":2,"key":"x","f":"read","invoke":5,"complete":12,"outcome":"ok","result":"a"}
//! {"process":3,"key":"x","f":"read","invoke":6,"complete":9,"outcome":"ok","result":null}
//! {"process":3,"key":"c","f":"incr","invoke":20,"complete":25,"outcome":"ok","result":3}
//! {"process":4,"key":"l","f":"append","value":"e1","invoke":5,"outcome":"unknown"}
//! {"process":4,"key":"l","f":"read","invoke":30,"complete":31,"outcome":"ok","result":["e1"]}
//! {"process":5,"key":"m","f":"lock_acquire","owner":"p5","invoke":0,"complete":3,"outcome":"ok","result":{"token":7,"lease_ns":1000000}}
//! {"process":5,"key":"m","f":"lock_release","owner":"p5","token":7,"invoke":9,"complete":12,"outcome":"ok","result":true}
//! {"process":6,"key":"s","f":"add","value":"e2","invoke":40,"complete":44,"outcome":"ok","result":1}
//! {"process":6,"key":"s","f":"read","invoke":45,"complete":47,"outcome":"ok","result":["e1","e2"]}
//! {"process":7,"key":"t","f":"write_ttl","value":"v3","ttl_ms":500,"invoke":50,"complete":53,"outcome":"ok"}
//! ```
//!
//! * `process`: the client (one client never has two operations in flight).
//! * `key`: the Redis key (for locks: the lock's name).
//! * `f` and its arguments: see [`Call`].
//! * `invoke`, `complete`: nanoseconds since the run started, as read by the
//!   harness's monotonic clock just before the request is written and just after
//!   the reply is parsed. `complete` is absent (or null) for unknown outcomes
//!   that never got an answer; it may be present on an unknown outcome (the time
//!   the client gave up), which the checkers ignore: such an operation may take
//!   effect at any time after its invoke, or never.
//! * `outcome`: `ok` (the server acknowledged; `result` holds the reply),
//!   `fail` (the operation surely did not take effect: a definite error reply
//!   such as `-ERR`, `-MOVED` before execution, or a refused connection), or
//!   `unknown` (timeout, connection lost after the request was written,
//!   `-UNCERTAIN`): Jepsen's `:info`.
//!
//! Blank lines and lines starting with `#` are skipped, so hand-written
//! histories can carry comments.
//!
//! # Nemesis events
//!
//! Lines with a `nemesis` field are not operations but the start or end of a
//! fault, as `raftcache-chaos run` injected it (see [`NemesisEvent`]):
//!
//! ```text
//! {"nemesis":"kill-leader","phase":"start","time":5000000000,"nodes":[2],"detail":"SIGKILL node 2 (the leader)"}
//! {"nemesis":"kill-leader","phase":"end","time":9000000000,"nodes":[2],"detail":"restarted node 2"}
//! ```
//!
//! The checkers ignore them; they place each operation relative to the faults
//! in the run's summary and for a person reading the history. Histories
//! without such lines read as before.

use std::fmt;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Nanoseconds since the start of the run.
pub type Nanos = u64;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// GET (registers, counters) or LRANGE 0 -1 (lists). The reply is in the
    /// outcome: a string or nil for a register, an integer (or nil, meaning 0)
    /// for a counter, a list of strings for a list.
    Read,
    /// SET key value.
    Write { value: String },
    /// DEL key; the reply is the number of keys removed, when recorded.
    Delete,
    /// Compare-and-set (e.g. a Lua script): if the register holds `expected`
    /// (nil for absent), set it to `value`. The reply is a boolean (or 0/1).
    Cas { expected: Option<String>, value: String },
    /// INCRBY key by (INCR when `by` is 1); the reply is the new value.
    Incr {
        #[serde(default = "one", skip_serializing_if = "is_one")]
        by: i64,
    },
    /// RPUSH key value; the reply is the list's new length.
    Append { value: String },
    /// SADD key value; the reply is the number of members added (1 for a
    /// new member). A set is read with [`Call::Read`] (SMEMBERS), whose
    /// reply is a list of its members in any order.
    Add { value: String },
    /// SET key value PX ttl_ms: a register value that expires `ttl_ms`
    /// after the leader applies it. Read with [`Call::Read`] (GET).
    WriteTtl { value: String, ttl_ms: u64 },
    /// Acquire the lock named by the key for `owner`; the reply is a
    /// [`LockGrant`], or nil when the lock is held by someone else (record a
    /// refusal as `ok` with a nil result, or as `fail`).
    LockAcquire { owner: String },
    /// Release the lock held by `owner` under `token`; the reply is a boolean.
    LockRelease {
        owner: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<u64>,
    },
}

fn one() -> i64 {
    1
}

fn is_one(by: &i64) -> bool {
    *by == 1
}

impl Call {
    /// The name used in the `f` field.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Read => "read",
            Call::Write { .. } => "write",
            Call::Delete => "delete",
            Call::Cas { .. } => "cas",
            Call::Incr { .. } => "incr",
            Call::Append { .. } => "append",
            Call::Add { .. } => "add",
            Call::WriteTtl { .. } => "write_ttl",
            Call::LockAcquire { .. } => "lock_acquire",
            Call::LockRelease { .. } => "lock_release",
        }
    }
}

/// A granted lock: its fencing token and lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockGrant {
    /// The fencing token: grants of one lock must carry increasing tokens.
    /// Absent for locks that have none (the `SET key owner NX PX ms` idiom):
    /// only mutual exclusion is checked for those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// How long the lease lasts, counted (by a careful client) from the
    /// acquire's invoke. Absent: until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ns: Option<u64>,
}

/// A reply value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Val {
    /// Redis nil (absent key, refused lock).
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<String>),
    Lock(LockGrant),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Nil => f.write_str("nil"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Str(s) => write!(f, "{s:?}"),
            Val::List(l) => write!(f, "{l:?}"),
            Val::Lock(g) => {
                match g.token {
                    Some(t) => write!(f, "token {t}")?,
                    None => f.write_str("granted")?,
                }
                match g.lease_ns {
                    Some(lease) => write!(f, " lease {lease}ns"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged, with the reply.
    Ok(Val),
    /// Surely not applied.
    Fail,
    /// May take effect at any point after its invoke, or never.
    Unknown,
}

/// The `outcome` field on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Ok,
    Fail,
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Position in the history (0-based), used to name the operation in
    /// verdicts. Not stored on disk.
    pub id: usize,
    pub process: u64,
    pub key: String,
    pub call: Call,
    pub invoke: Nanos,
    /// Completion time; `None` when it never completed. Checkers treat the
    /// completion of an [`Outcome::Unknown`] operation as +infinity whatever
    /// this holds.
    pub complete: Option<Nanos>,
    pub outcome: Outcome,
}

impl Op {
    /// The completion time that bounds when the operation took effect:
    /// `None` (+infinity) for unknown outcomes.
    pub fn effective_complete(&self) -> Option<Nanos> {
        match self.outcome {
            Outcome::Unknown => None,
            _ => self.complete,
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    /// The reply of an acknowledged operation.
    pub fn result(&self) -> Option<&Val> {
        match &self.outcome {
            Outcome::Ok(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} p{} {} {:?}", self.id, self.process, self.call.name(), self.key)?;
        match &self.call {
            Call::Write { value } | Call::Append { value } | Call::Add { value } => {
                write!(f, " {value:?}")?
            }
            Call::WriteTtl { value, ttl_ms } => write!(f, " {value:?} px {ttl_ms}")?,
            Call::Cas { expected, value } => match expected {
                Some(e) => write!(f, " {e:?}->{value:?}")?,
                None => write!(f, " nil->{value:?}")?,
            },
            Call::Incr { by } if *by != 1 => write!(f, " by {by}")?,
            Call::LockAcquire { owner } => write!(f, " owner {owner:?}")?,
            Call::LockRelease { owner, token } => {
                write!(f, " owner {owner:?}")?;
                if let Some(t) = token {
                    write!(f, " token {t}")?;
                }
            }
            _ => {}
        }
        match self.effective_complete() {
            Some(c) => write!(f, " [{}..{}]", self.invoke, c)?,
            None => write!(f, " [{}..)", self.invoke)?,
        }
        match &self.outcome {
            Outcome::Ok(Val::Nil) if !matches!(self.call, Call::Read) => f.write_str(" ok"),
            Outcome::Ok(v) => write!(f, " ok {v}"),
            Outcome::Fail => f.write_str(" fail"),
            Outcome::Unknown => f.write_str(" unknown"),
        }
    }
}

/// Where a fault is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The fault was injected.
    Start,
    /// The fault was healed (processes restarted or resumed, links restored).
    End,
    /// A note that is neither, e.g. the final heal of everything.
    Info,
}

/// The start or end of a fault, as the nemesis recorded it: one line of a
/// history file with a `nemesis` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NemesisEvent {
    /// The fault's name, e.g. `kill-leader`, `pause-one`, `partition-half`.
    pub nemesis: String,
    pub phase: Phase,
    /// Nanoseconds since the run started, on the operations' clock: for a
    /// start, taken just before the fault was injected; for an end, just after
    /// it was healed.
    pub time: Nanos,
    /// The node ids the fault acted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<u32>,
    /// What was done, for a person (e.g. "isolated 2 from 1,3").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One line of a history file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpRecord {
    pub process: u64,
    pub key: String,
    #[serde(flatten)]
    pub call: Call,
    pub invoke: Nanos,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<Nanos>,
    pub outcome: OutcomeKind,
    /// The reply of an `ok` operation; absent or null means nil.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Val>,
}

impl From<&Op> for OpRecord {
    fn from(op: &Op) -> Self {
        let (outcome, result) = match &op.outcome {
            Outcome::Ok(Val::Nil) => (OutcomeKind::Ok, None),
            Outcome::Ok(v) => (OutcomeKind::Ok, Some(v.clone())),
            Outcome::Fail => (OutcomeKind::Fail, None),
            Outcome::Unknown => (OutcomeKind::Unknown, None),
        };
        OpRecord {
            process: op.process,
            key: op.key.clone(),
            call: op.call.clone(),
            invoke: op.invoke,
            complete: op.complete,
            outcome,
            result,
        }
    }
}

fn write_line(w: &mut impl Write, item: &impl Serialize) -> std::io::Result<()> {
    let line = serde_json::to_string(item).map_err(std::io::Error::other)?;
    w.write_all(line.as_bytes())?;
    w.write_all(b"\n")
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

impl OpRecord {
    /// Validates the record and turns it into an [`Op`] with the given id.
    pub fn into_op(self, id: usize) -> Result<Op, String> {
        let outcome = match self.outcome {
            OutcomeKind::Fail => Outcome::Fail,
            OutcomeKind::Unknown => Outcome::Unknown,
            OutcomeKind::Ok => Outcome::Ok(self.result.unwrap_or(Val::Nil)),
        };
        if let Some(c) = self.complete {
            if c < self.invoke {
                return Err(format!("complete {c} is before invoke {}", self.invoke));
            }
        } else if outcome != Outcome::Unknown {
            return Err("only an unknown outcome may lack a complete time".to_string());
        }
        if let Outcome::Ok(v) = &outcome {
            let fits = match (&self.call, v) {
                (Call::Read, Val::Nil | Val::Str(_) | Val::Int(_) | Val::List(_)) => true,
                (Call::Write { .. }, _) => true,
                (Call::Delete, Val::Nil | Val::Int(_)) => true,
                (Call::Cas { .. }, Val::Bool(_)) => true,
                (Call::Cas { .. }, Val::Int(i)) => *i == 0 || *i == 1,
                (Call::Incr { .. }, Val::Int(_)) => true,
                (Call::Append { .. }, Val::Nil | Val::Int(_)) => true,
                (Call::Add { .. }, Val::Nil | Val::Int(_)) => true,
                (Call::WriteTtl { .. }, _) => true,
                (Call::LockAcquire { .. }, Val::Nil | Val::Lock(_)) => true,
                (Call::LockRelease { .. }, Val::Nil | Val::Bool(_) | Val::Int(_)) => true,
                _ => false,
            };
            if !fits {
                return Err(format!("a {} cannot reply {v}", self.call.name()));
            }
        }
        if let Call::Incr { by } = self.call {
            if by <= 0 {
                return Err(format!("incr by {by}: only positive increments are supported"));
            }
        }
        Ok(Op {
            id,
            process: self.process,
            key: self.key,
            call: self.call,
            invoke: self.invoke,
            complete: self.complete,
            outcome,
        })
    }
}

/// A whole history, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub ops: Vec<Op>,
    /// The faults' starts and ends, by time.
    pub nemesis: Vec<NemesisEvent>,
}

/// True if a history line is a nemesis event rather than an operation: a
/// JSON object with a `nemesis` field. Only lines that mention the word are
/// parsed twice.
fn nemesis_line(line: &str) -> Result<Option<NemesisEvent>, String> {
    if !line.contains("nemesis") {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if value.get("nemesis").is_none() {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some).map_err(|e| e.to_string())
}

impl History {
    /// Builds a history from operations, renumbering their ids by position.
    pub fn new(mut ops: Vec<Op>) -> Self {
        for (i, op) in ops.iter_mut().enumerate() {
            op.id = i;
        }
        History { ops, nemesis: Vec::new() }
    }

    /// Adds nemesis events (kept sorted by time).
    pub fn with_nemesis(mut self, mut events: Vec<NemesisEvent>) -> Self {
        events.sort_by_key(|e| e.time);
        self.nemesis = events;
        self
    }

    /// Parses JSON lines.
    pub fn from_reader(reader: impl BufRead) -> Result<Self, HistoryError> {
        let mut ops = Vec::new();
        let mut nemesis = Vec::new();
        for (n, line) in reader.lines().enumerate() {
            let line_no = n + 1;
            let line =
                line.map_err(|e| HistoryError::Line { line: line_no, message: e.to_string() })?;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match nemesis_line(trimmed) {
                Ok(Some(event)) => {
                    nemesis.push(event);
                    continue;
                }
                Ok(None) => {}
                Err(message) => return Err(HistoryError::Line { line: line_no, message }),
            }
            let record: OpRecord = serde_json::from_str(trimmed)
                .map_err(|e| HistoryError::Line { line: line_no, message: e.to_string() })?;
            let op = record
                .into_op(ops.len())
                .map_err(|message| HistoryError::Line { line: line_no, message })?;
            ops.push(op);
        }
        nemesis.sort_by_key(|e: &NemesisEvent| e.time);
        Ok(History { ops, nemesis })
    }

    /// Parses a JSON-lines string.
    pub fn parse(text: &str) -> Result<Self, HistoryError> {
        Self::from_reader(text.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, HistoryError> {
        let file = std::fs::File::open(path)
            .map_err(|source| HistoryError::Io { path: path.display().to_string(), source })?;
        Self::from_reader(std::io::BufReader::new(file))
    }

    /// Writes JSON lines: the operations in order, each nemesis event just
    /// before the first operation invoked after it.
    pub fn write_to(&self, mut w: impl Write) -> std::io::Result<()> {
        let mut events = self.nemesis.iter().peekable();
        for op in &self.ops {
            while let Some(e) = events.next_if(|e| e.time <= op.invoke) {
                write_line(&mut w, e)?;
            }
            write_line(&mut w, &OpRecord::from(op))?;
        }
        for e in events {
            write_line(&mut w, e)?;
        }
        w.flush()
    }

    pub fn to_jsonl(&self) -> String {
        let mut buf = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        self.write_to(std::io::BufWriter::new(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# a comment
{"process":1,"key":"x","f":"write","value":"a","invoke":0,"complete":10,"outcome":"ok"}
{"process":2,"key":"x","f":"read","invoke":5,"complete":12,"outcome":"ok","result":"a"}
{"process":3,"key":"x","f":"read","invoke":6,"complete":9,"outcome":"ok","result":null}
{"process":3,"key":"c","f":"incr","invoke":20,"complete":25,"outcome":"ok","result":3}
{"process":3,"key":"c","f":"incr","by":2,"invoke":26,"complete":27,"outcome":"fail"}
{"process":4,"key":"l","f":"append","value":"e1","invoke":5,"outcome":"unknown"}
{"process":4,"key":"l","f":"read","invoke":30,"complete":31,"outcome":"ok","result":["e1"]}
{"process":1,"key":"x","f":"cas","expected":null,"value":"b","invoke":40,"complete":41,"outcome":"ok","result":false}
{"process":5,"key":"m","f":"lock_acquire","owner":"p5","invoke":0,"complete":3,"outcome":"ok","result":{"token":7,"lease_ns":1000000}}
{"process":5,"key":"m","f":"lock_release","owner":"p5","token":7,"invoke":9,"complete":12,"outcome":"ok","result":true}
{"process":1,"key":"x","f":"delete","invoke":50,"complete":51,"outcome":"ok","result":1}
{"process":6,"key":"s","f":"add","value":"e2","invoke":40,"complete":44,"outcome":"ok","result":1}
{"process":7,"key":"t","f":"write_ttl","value":"v3","ttl_ms":500,"invoke":50,"complete":53,"outcome":"ok"}
"#;

    #[test]
    fn parses_and_round_trips() {
        let h = History::parse(SAMPLE).expect("parses");
        assert_eq!(h.ops.len(), 13);
        assert_eq!(h.ops[11].call, Call::Add { value: "e2".into() });
        assert_eq!(h.ops[12].call, Call::WriteTtl { value: "v3".into(), ttl_ms: 500 });
        assert_eq!(h.ops[1].outcome, Outcome::Ok(Val::Str("a".into())));
        assert_eq!(h.ops[2].outcome, Outcome::Ok(Val::Nil));
        assert_eq!(h.ops[4].call, Call::Incr { by: 2 });
        assert_eq!(h.ops[5].outcome, Outcome::Unknown);
        assert_eq!(h.ops[6].outcome, Outcome::Ok(Val::List(vec!["e1".into()])));
        assert_eq!(h.ops[7].outcome, Outcome::Ok(Val::Bool(false)));
        assert_eq!(
            h.ops[8].outcome,
            Outcome::Ok(Val::Lock(LockGrant { token: Some(7), lease_ns: Some(1_000_000) }))
        );
        let again = History::parse(&h.to_jsonl()).expect("re-parses");
        assert_eq!(again, h);
    }

    #[test]
    fn nemesis_events_round_trip_between_operations() {
        let text = format!(
            "{}\n{}\n{}\n",
            r#"{"nemesis":"pause-one","phase":"start","time":3,"nodes":[2],"detail":"SIGSTOP node 2"}"#,
            SAMPLE.trim(),
            r#"{"nemesis":"pause-one","phase":"end","time":45,"nodes":[2]}"#
        );
        let h = History::parse(&text).expect("parses");
        assert_eq!(h.ops.len(), 13, "events are not operations");
        assert_eq!(h.nemesis.len(), 2);
        assert_eq!(h.nemesis[0].phase, Phase::Start);
        assert_eq!(h.nemesis[0].nodes, vec![2]);
        assert_eq!(h.nemesis[1].detail, "");
        let jsonl = h.to_jsonl();
        let again = History::parse(&jsonl).expect("re-parses");
        assert_eq!(again, h);
        // Each event sits before the first operation invoked after it.
        let lines: Vec<&str> = jsonl.lines().collect();
        let end = lines.iter().position(|l| l.contains(r#""phase":"end""#)).expect("end line");
        let next = History::parse(lines[end + 1]).expect("an op");
        assert!(next.ops[0].invoke >= 45, "{}", lines[end + 1]);
        // An operation on a key named "nemesis" is still an operation.
        let op =
            r#"{"process":1,"key":"nemesis","f":"read","invoke":1,"complete":2,"outcome":"ok"}"#;
        assert_eq!(History::parse(op).expect("parses").ops.len(), 1);
        // A nemesis line that does not fit is reported with its number.
        let bad = r#"{"nemesis":"kill","phase":"sideways","time":1}"#;
        let err = History::parse(&format!("\n{bad}")).expect_err("bad phase");
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }

    #[test]
    fn lock_grants_may_lack_a_token() {
        let line = r#"{"process":1,"key":"l","f":"lock_acquire","owner":"o","invoke":1,"complete":2,"outcome":"ok","result":{"lease_ns":5}}"#;
        let h = History::parse(line).expect("parses");
        assert_eq!(
            h.ops[0].outcome,
            Outcome::Ok(Val::Lock(LockGrant { token: None, lease_ns: Some(5) }))
        );
        assert_eq!(History::parse(&h.to_jsonl()).expect("re-parses"), h);
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        let bad = "{\"process\":1,\"key\":\"x\",\"f\":\"write\",\"value\":\"a\",\"invoke\":10,\"complete\":5,\"outcome\":\"ok\"}";
        let err = History::parse(&format!("\n{bad}")).expect_err("complete before invoke");
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = History::parse("{\"process\":1}").expect_err("missing fields");
        assert!(err.to_string().starts_with("line 1:"), "{err}");
        let incr_str = r#"{"process":1,"key":"c","f":"incr","invoke":1,"complete":2,"outcome":"ok","result":"x"}"#;
        assert!(History::parse(incr_str).is_err());
        let ok_no_complete = r#"{"process":1,"key":"c","f":"read","invoke":1,"outcome":"ok"}"#;
        assert!(History::parse(ok_no_complete).is_err());
    }
}
