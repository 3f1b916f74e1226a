//! Lists commands.

use crate::command::Spec;

pub const COMMANDS: &[Spec] = &[];
