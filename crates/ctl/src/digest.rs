//! Judging a round of digests: replicas are comparable only at the same
//! applied index.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::view::{DigestView, Row};

/// What one round of digests says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every endpoint has the same digest at this applied index.
    Agree(u64),
    /// Different digests at the same applied index.
    Disagree(u64),
    /// The applied indexes differ (these ones): ask again.
    Unaligned(Vec<u64>),
    /// These endpoints did not answer.
    Failed(Vec<String>),
}

impl Verdict {
    /// The process exit code: 0 agree, 1 disagree or an endpoint that did
    /// not answer, 2 indexes that never lined up.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Agree(_) => 0,
            Verdict::Disagree(_) | Verdict::Failed(_) => 1,
            Verdict::Unaligned(_) => 2,
        }
    }

    /// The name in `--json` output.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Agree(_) => "agree",
            Verdict::Disagree(_) => "disagree",
            Verdict::Unaligned(_) => "unaligned",
            Verdict::Failed(_) => "error",
        }
    }

    /// The applied index the digests were compared at.
    pub fn applied_index(&self) -> Option<u64> {
        match self {
            Verdict::Agree(i) | Verdict::Disagree(i) => Some(*i),
            Verdict::Unaligned(_) | Verdict::Failed(_) => None,
        }
    }

    /// The final line of the table output: `count` endpoints asked, `rounds`
    /// rounds `interval` apart.
    pub fn line(&self, count: usize, rounds: u32, interval: &str) -> String {
        match self {
            Verdict::Agree(i) => {
                let plural = if count == 1 { "" } else { "s" };
                format!("agree: {count} endpoint{plural}, one digest at applied index {i}")
            }
            Verdict::Disagree(i) => {
                format!("DISAGREE: different digests at the same applied index {i}")
            }
            Verdict::Unaligned(indexes) => {
                let indexes: Vec<String> = indexes.iter().map(u64::to_string).collect();
                format!(
                    "not compared: the applied indexes still differed after {rounds} rounds \
                     {interval} apart ({})",
                    indexes.join(", ")
                )
            }
            Verdict::Failed(endpoints) => {
                format!("not compared: no digest from {}", endpoints.join(", "))
            }
        }
    }
}

/// Judges one round.
pub fn judge(rows: &[Row<DigestView>]) -> Verdict {
    let failed: Vec<String> =
        rows.iter().filter(|r| r.reply.is_none()).map(|r| r.endpoint.clone()).collect();
    if !failed.is_empty() {
        return Verdict::Failed(failed);
    }
    let digests: Vec<&DigestView> = rows.iter().filter_map(|r| r.reply.as_ref()).collect();
    let indexes: BTreeSet<u64> = digests.iter().map(|d| d.applied_index).collect();
    match indexes.iter().copied().collect::<Vec<_>>()[..] {
        [index] => {
            let distinct: BTreeSet<&str> = digests.iter().map(|d| d.digest.as_str()).collect();
            if distinct.len() == 1 {
                Verdict::Agree(index)
            } else {
                Verdict::Disagree(index)
            }
        }
        [] => Verdict::Failed(vec![]),
        _ => Verdict::Unaligned(indexes.into_iter().collect()),
    }
}

/// `digest --json`.
#[derive(Serialize, Debug)]
pub struct Report<'a> {
    pub endpoints: &'a [Row<DigestView>],
    /// agree, disagree, unaligned or error.
    pub result: &'static str,
    /// The index the digests were compared at (null when not compared).
    pub applied_index: Option<u64>,
    /// How many rounds were asked.
    pub rounds: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(endpoint: &str, applied_index: u64, digest: &str) -> Row<DigestView> {
        let d = DigestView { member_id: 1, applied_index, digest: digest.into(), keys: 0 };
        Row::new(endpoint, Ok(d))
    }

    #[test]
    fn agree_disagree_unaligned_failed() {
        let agree = judge(&[row("a", 5, "x"), row("b", 5, "x"), row("c", 5, "x")]);
        assert_eq!(agree, Verdict::Agree(5));
        assert_eq!(agree.exit_code(), 0);
        let disagree = judge(&[row("a", 5, "x"), row("b", 5, "y")]);
        assert_eq!(disagree, Verdict::Disagree(5));
        assert_eq!(disagree.exit_code(), 1);
        // Different digests at different indexes say nothing.
        let unaligned = judge(&[row("a", 5, "x"), row("b", 6, "y"), row("c", 5, "x")]);
        assert_eq!(unaligned, Verdict::Unaligned(vec![5, 6]));
        assert_eq!(unaligned.exit_code(), 2);
        let failed = judge(&[row("a", 5, "x"), Row::new::<DigestView>("b", Err("down".into()))]);
        assert_eq!(failed, Verdict::Failed(vec!["b".into()]));
        assert_eq!(failed.exit_code(), 1);
    }

    #[test]
    fn lines_and_json() {
        assert_eq!(
            Verdict::Agree(7).line(3, 1, "100ms"),
            "agree: 3 endpoints, one digest at applied index 7"
        );
        assert!(Verdict::Disagree(7).line(3, 1, "100ms").starts_with("DISAGREE"));
        assert_eq!(
            Verdict::Unaligned(vec![5, 6]).line(2, 20, "100ms"),
            "not compared: the applied indexes still differed after 20 rounds 100ms apart (5, 6)"
        );
        let rows = [row("a", 5, "x")];
        let v = Verdict::Agree(5);
        let report = Report {
            endpoints: &rows,
            result: v.name(),
            applied_index: v.applied_index(),
            rounds: 1,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["result"], "agree");
        assert_eq!(json["applied_index"], 5);
        assert_eq!(json["endpoints"][0]["digest"], "x");
    }
}
