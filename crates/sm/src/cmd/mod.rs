//! Command handlers, one file per family, each exporting its part of the
//! command table as `COMMANDS`.
//!
//! Every handler mirrors the flow of the Redis 7.0 command it implements (which
//! argument is checked first decides which error a client sees), uses only what
//! [`Exec`](crate::state::Exec) or [`Query`](crate::state::Query) gives it, and
//! returns `Res<Reply>` so that parse failures read as `?`.

use crate::command::Spec;

pub mod bitmaps;
pub mod blocking;
pub mod conditional;
pub mod connection;
pub mod dump;
pub mod hashes;
pub mod hyperloglog;
pub mod keys;
pub mod lcs;
pub mod lists;
pub mod locks;
pub mod pubsub;
pub mod rdb;
pub mod scripting;
pub mod server;
pub mod sets;
pub mod sort;
pub mod strings;
pub mod zsets;

/// The whole command table, family by family.
pub const FAMILIES: &[&[Spec]] = &[
    connection::COMMANDS,
    server::COMMANDS,
    keys::COMMANDS,
    strings::COMMANDS,
    hashes::COMMANDS,
    lists::COMMANDS,
    sets::COMMANDS,
    zsets::COMMANDS,
    scripting::COMMANDS,
    bitmaps::COMMANDS,
    hyperloglog::COMMANDS,
    lcs::COMMANDS,
    pubsub::COMMANDS,
    blocking::COMMANDS,
    locks::COMMANDS,
    sort::COMMANDS,
    dump::COMMANDS,
    conditional::COMMANDS,
];
