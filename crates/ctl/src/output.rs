//! Writing to stdout and the error that ends the process.

use std::io::{self, Write};

use serde::Serialize;

/// Why the process ends with a non-zero exit code: the one line printed on
/// stderr (after `raftcachectl: `), if any, and the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: Option<String>,
    pub code: u8,
}

impl Failure {
    /// An error line and exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: Some(message.into()), code: 1 }
    }

    /// Exit with `code` without a line on stderr (what went wrong is in the
    /// output already).
    pub fn quiet(code: u8) -> Self {
        Failure { message: None, code }
    }
}

/// Prints one line (or a block of lines) on stdout. A closed pipe (`| head`)
/// ends the process quietly.
pub fn print(text: impl std::fmt::Display) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::quiet(1)
        } else {
            Failure::new(format!("writing the output: {e}"))
        }
    })
}

/// Prints a value as indented JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    print(to_json(value, true)?)
}

/// Prints a value as JSON on one line (one event of a stream).
pub fn print_json_line<T: Serialize>(value: &T) -> Result<(), Failure> {
    print(to_json(value, false)?)
}

/// A value as JSON text.
fn to_json<T: Serialize>(value: &T, pretty: bool) -> Result<String, Failure> {
    let text =
        if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    text.map_err(|e| Failure::new(format!("encoding JSON: {e}")))
}
