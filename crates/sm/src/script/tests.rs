//! Unit tests for the script VM. Expected error texts were produced by a real
//! redis-server 7.0.15 (`redis-cli -p 16500 eval "<script>" 0`), as noted.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;
use crate::reply::Reply;

/// A host that records every argv and serves a tiny keyspace.
#[derive(Default)]
struct Mock {
    calls: Vec<Vec<Bytes>>,
    kv: BTreeMap<Bytes, Bytes>,
    /// Returned for the next call instead of executing it.
    canned: Option<Reply>,
}

impl Host for Mock {
    fn call(&mut self, argv: &[Bytes]) -> Reply {
        self.calls.push(argv.to_vec());
        if let Some(reply) = self.canned.take() {
            return reply;
        }
        let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
        match name.as_str() {
            "set" => {
                self.kv.insert(argv[1].clone(), argv[2].clone());
                Reply::Ok
            }
            "get" => self.kv.get(&argv[1]).cloned().map_or(Reply::Nil, Reply::Bulk),
            "incr" => {
                let v = self
                    .kv
                    .get(&argv[1])
                    .map_or(0, |v| String::from_utf8_lossy(v).parse::<i64>().unwrap_or(0))
                    + 1;
                self.kv.insert(argv[1].clone(), Bytes::from(v.to_string()));
                Reply::Int(v)
            }
            "lpush" => Reply::err(crate::reply::errors::WRONGTYPE),
            "ping" => Reply::status("PONG"),
            _ => Reply::Ok,
        }
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn eval_with(
    vm: &mut ScriptVm,
    host: &mut Mock,
    body: &str,
    keys: &[&str],
    args: &[&str],
    opts: &RunOptions,
) -> Reply {
    let keys: Vec<Bytes> = keys.iter().map(|k| b(k)).collect();
    let args: Vec<Bytes> = args.iter().map(|a| b(a)).collect();
    vm.run(body.as_bytes(), &keys, &args, opts, host)
}

fn eval(body: &str) -> Reply {
    let mut vm = ScriptVm::new();
    eval_with(&mut vm, &mut Mock::default(), body, &[], &[], &RunOptions::default())
}

fn err_with_sha(body: &str, text: &str) -> Reply {
    Reply::error(text.replace("<sha>", &sha1_hex(body.as_bytes())))
}

#[test]
fn smoke() {
    assert_eq!(eval("return 1"), Reply::Int(1));
    assert_eq!(eval("return 'x'"), Reply::Bulk(b("x")));
    let body = "return x";
    assert_eq!(eval(body), err_with_sha(body, "ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: <sha>, on @user_script:1."));
    let body = "return redis.call('nosuch')";
    assert_eq!(
        eval(body),
        err_with_sha(
            body,
            "ERR Unknown Redis command called from script script: <sha>, on @user_script:1."
        )
    );
}
