//! What a checker concludes.

use std::fmt;

use serde::Serialize;

use crate::history::Op;

/// At most this many violations are kept per checker: the first ones explain
/// the problem, the rest are noise.
pub const MAX_VIOLATIONS: usize = 20;

/// One problem found in a history, with the smallest set of operations that
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// A short name for the anomaly, e.g. `stale-read`, `lost-increment`.
    pub anomaly: &'static str,
    pub key: String,
    /// A sentence or two a human can act on.
    pub explanation: String,
    /// The ids of the operations in the failing window, ascending.
    pub ops: Vec<usize>,
    /// The same operations, rendered.
    pub window: Vec<String>,
}

impl Violation {
    pub fn new(anomaly: &'static str, key: &str, explanation: String, ops: &[&Op]) -> Self {
        let mut ops: Vec<&Op> = ops.to_vec();
        ops.sort_by_key(|op| op.id);
        ops.dedup_by_key(|op| op.id);
        Violation {
            anomaly,
            key: key.to_string(),
            explanation,
            ops: ops.iter().map(|op| op.id).collect(),
            window: ops.iter().map(|op| op.to_string()).collect(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} on key {:?}: {}", self.anomaly, self.key, self.explanation)?;
        for line in &self.window {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// A checker's conclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Valid,
    Invalid {
        violations: Vec<Violation>,
    },
    /// The search budget ran out (or the history could not be judged) before
    /// a conclusion: neither a pass nor a violation.
    Unknown {
        reason: String,
    },
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid)
    }

    pub fn is_invalid(&self) -> bool {
        matches!(self, Verdict::Invalid { .. })
    }

    /// Builds a verdict from violations (capped at [`MAX_VIOLATIONS`]) and the
    /// reasons some keys could not be judged: any violation makes it invalid.
    pub fn from_findings(mut violations: Vec<Violation>, unknown: Vec<String>) -> Self {
        if !violations.is_empty() {
            violations.truncate(MAX_VIOLATIONS);
            Verdict::Invalid { violations }
        } else if !unknown.is_empty() {
            Verdict::Unknown { reason: unknown.join("; ") }
        } else {
            Verdict::Valid
        }
    }
}

/// Collects findings key by key.
#[derive(Debug, Default)]
pub struct Findings {
    pub violations: Vec<Violation>,
    pub unknown: Vec<String>,
}

impl Findings {
    pub fn violation(&mut self, v: Violation) {
        self.violations.push(v);
    }

    pub fn unknown(&mut self, reason: String) {
        self.unknown.push(reason);
    }

    pub fn verdict(self) -> Verdict {
        Verdict::from_findings(self.violations, self.unknown)
    }
}

/// One checker's verdict on a history.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checker: &'static str,
    /// How many keys this checker judged.
    pub keys: usize,
    pub verdict: Verdict,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Valid => writeln!(f, "{}: valid ({} keys)", self.checker, self.keys),
            Verdict::Unknown { reason } => {
                writeln!(f, "{}: UNKNOWN ({} keys): {reason}", self.checker, self.keys)
            }
            Verdict::Invalid { violations } => {
                writeln!(
                    f,
                    "{}: INVALID ({} keys, {} violation(s){})",
                    self.checker,
                    self.keys,
                    violations.len(),
                    if violations.len() >= MAX_VIOLATIONS { " shown" } else { "" }
                )?;
                for v in violations {
                    write!(f, "  {v}")?;
                }
                Ok(())
            }
        }
    }
}
