//! Commands the node serves from connection or server state. They are listed
//! here only so the table is complete (arity checks, COMMAND); they never run in
//! the engine and never enter the log.

use crate::command::Spec;

pub const COMMANDS: &[Spec] = &[
    Spec::connection("ping", -1),
    Spec::connection("echo", 2),
    Spec::connection("quit", -1),
    Spec::connection("hello", -1),
    Spec::connection("auth", -2),
    Spec::connection("select", 2),
    Spec::connection("client", -2),
    Spec::connection("command", -1),
    Spec::connection("config", -2),
    Spec::connection("info", -1),
    Spec::connection("time", 1),
    Spec::connection("reset", 1),
    Spec::connection("save", 1),
    Spec::connection("bgsave", -1),
    Spec::connection("multi", 1),
    Spec::connection("exec", 1),
    Spec::connection("discard", 1),
    Spec::connection_keys("watch", -2, (1, -1, 1)),
    Spec::connection("unwatch", 1),
    Spec::connection("subscribe", -2),
    Spec::connection("unsubscribe", -1),
    Spec::connection("psubscribe", -2),
    Spec::connection("punsubscribe", -1),
    Spec::connection_keys("ssubscribe", -2, (1, -1, 1)),
    Spec::connection_keys("sunsubscribe", -1, (1, -1, 1)),
    Spec::connection("pubsub", -2),
    Spec::connection("wait", 3),
];
