//! PUBLISH and SPUBLISH: messages travel through the log.
//!
//! Publishing is a write: the message becomes part of a log entry and every
//! node, when it applies the entry, delivers it to its own subscribers
//! ([`Event::Message`]). So a message published through any node reaches the
//! subscribers of every node once, and all of them see the messages of a
//! channel in the log's order. Subscriptions are per connection, on the node
//! it is connected to, and are not replicated: the engine cannot count
//! receivers, so it replies 0 and the node that took the PUBLISH replaces
//! that with the number of its own clients that received the message (what
//! Redis Cluster replies too).

use bytes::Bytes;

use crate::args::Res;
use crate::command::Spec;
use crate::event::Event;
use crate::reply::Reply;
use crate::state::Exec;

pub const COMMANDS: &[Spec] = &[
    Spec::write("publish", 3, (0, 0, 0), publish),
    Spec::write("spublish", 3, (1, 1, 1), spublish),
];

/// PUBLISH channel message
fn publish(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    x.events.push(Event::Message {
        channel: argv[1].clone(),
        message: argv[2].clone(),
        shard: false,
    });
    Ok(Reply::Int(0))
}

/// SPUBLISH shardchannel message (one group holds every shard here)
fn spublish(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    x.events.push(Event::Message {
        channel: argv[1].clone(),
        message: argv[2].clone(),
        shard: true,
    });
    Ok(Reply::Int(0))
}
