//! Tables and text lines for people (comfy-table, in the shape of
//! `etcdctl -w table`). `--json` bypasses this module.

use comfy_table::presets::ASCII_FULL_CONDENSED;
use comfy_table::{LineStyle, Table};

use crate::view::{
    DigestView, EventView, HealthView, MemberView, Membership, NodeStatus, Row, SnapshotView,
    Transfer,
};

/// A table with a header, ASCII borders and a rule under the header only.
fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(ASCII_FULL_CONDENSED.header_separator(LineStyle::new('+', '-', '+', '+')));
    t.set_header(header.to_vec());
    t
}

/// `-` for an empty text (an address not known yet).
fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.into()
    }
}

/// The error cell of a row (empty when it has none).
fn error_cell<T>(row: &Row<T>) -> String {
    row.error.clone().unwrap_or_default()
}

/// `status`: one row per endpoint.
pub fn status_table(rows: &[Row<NodeStatus>]) -> Table {
    let mut t = table(&[
        "ENDPOINT",
        "ID",
        "ROLE",
        "TERM",
        "LEADER",
        "RAFT INDEX",
        "APPLIED",
        "COMMIT",
        "KEYS",
        "READY",
        "ERRORS",
    ]);
    for row in rows {
        let mut cells = vec![row.endpoint.clone()];
        match &row.reply {
            Some(s) => cells.extend([
                s.id.clone(),
                s.role.clone(),
                s.term.to_string(),
                s.leader.clone().unwrap_or_else(|| "-".into()),
                s.last_log_index.to_string(),
                s.applied_index.to_string(),
                s.commit_index.to_string(),
                s.keys.to_string(),
                s.ready.to_string(),
                if s.wedged {
                    "wedged: see force-new-cluster".into()
                } else if s.quorum_lost {
                    "quorum lost".into()
                } else {
                    error_cell(row)
                },
            ]),
            None => cells.extend(std::iter::repeat_n(String::new(), 9).chain([error_cell(row)])),
        }
        t.add_row(cells);
    }
    t
}

/// The members of a membership, one row each.
pub fn members_table(members: &[MemberView]) -> Table {
    let mut t = table(&[
        "ID",
        "MEMBER",
        "RAFT ADDR",
        "RESP ADDR",
        "ADMIN ADDR",
        "TYPE",
        "LEADER",
        "REACHABLE",
        "MATCHED",
        "LAG",
    ]);
    for m in members {
        t.add_row(vec![
            m.id.clone(),
            m.member_id.to_string(),
            or_dash(&m.raft_addr),
            or_dash(&m.resp_addr),
            or_dash(&m.admin_addr),
            if m.voter { "voter" } else { "learner" }.into(),
            m.leader.to_string(),
            m.reachable.to_string(),
            m.matched_index.to_string(),
            m.lag.to_string(),
        ]);
    }
    t
}

/// The members table and, under it, who answered and where the membership is.
pub fn membership(m: &Membership) -> String {
    let leader = m.leader.as_deref().unwrap_or("unknown");
    format!(
        "{}\nleader {leader}, membership at log index {} (from {})",
        members_table(&m.members),
        m.log_index,
        m.endpoint
    )
}

/// `leader transfer`: the new leader and its term.
pub fn transfer(t: &Transfer) -> String {
    format!("leader {} in term {}", t.leader.as_deref().unwrap_or("unknown"), t.term)
}

/// `snapshot`: the index each endpoint's snapshot covers.
pub fn snapshot_table(rows: &[Row<SnapshotView>]) -> Table {
    let mut t = table(&["ENDPOINT", "SNAPSHOT INDEX", "ERRORS"]);
    for row in rows {
        let index = row.reply.as_ref().map(|s| s.index.to_string()).unwrap_or_default();
        t.add_row(vec![row.endpoint.clone(), index, error_cell(row)]);
    }
    t
}

/// `health`: each endpoint's serving status.
pub fn health_table(rows: &[Row<HealthView>]) -> Table {
    let mut t = table(&["ENDPOINT", "STATUS", "ERRORS"]);
    for row in rows {
        let status = row.reply.as_ref().map(|h| h.status.clone()).unwrap_or_default();
        t.add_row(vec![row.endpoint.clone(), status, error_cell(row)]);
    }
    t
}

/// `digest`: each endpoint's digest and the index it was taken at.
pub fn digest_table(rows: &[Row<DigestView>]) -> Table {
    let mut t = table(&["ENDPOINT", "MEMBER", "APPLIED", "DIGEST", "KEYS", "ERRORS"]);
    for row in rows {
        let mut cells = vec![row.endpoint.clone()];
        match &row.reply {
            Some(d) => cells.extend([
                d.member_id.to_string(),
                d.applied_index.to_string(),
                d.digest.clone(),
                d.keys.to_string(),
                String::new(),
            ]),
            None => cells.extend(std::iter::repeat_n(String::new(), 4).chain([error_cell(row)])),
        }
        t.add_row(cells);
    }
    t
}

/// `watch`: one line per event (time, kind, term, leader, message).
pub fn event_line(e: &EventView) -> String {
    let leader = e.leader.as_deref().unwrap_or("-");
    let line = format!("{} {:<18} term={} leader={leader}", e.time, e.kind, e.term);
    if e.message.is_empty() {
        line
    } else {
        format!("{line} {}", e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, role: &str, leader: Option<&str>) -> NodeStatus {
        NodeStatus {
            id: id.into(),
            member_id: 1,
            raft_node_id: 1 << 32,
            role: role.into(),
            term: 3,
            leader: leader.map(Into::into),
            leader_raft_node_id: 1 << 32,
            first_log_index: 0,
            last_log_index: 12,
            applied_index: 11,
            commit_index: 12,
            ready: true,
            quorum_lost: false,
            wedged: false,
            keys: 5,
            memory_bytes: 0,
            snapshot_index: 0,
            snapshot_bytes: 0,
            snapshot_age_ms: 0,
            log_bytes: 0,
            uptime_seconds: 0,
            read_consistency: "linearizable".into(),
            appendfsync: "none".into(),
            version: String::new(),
            redis_version: String::new(),
            cluster_id: String::new(),
            resp_addr: String::new(),
            admin_addr: String::new(),
            raft_addr: String::new(),
            members: vec![],
        }
    }

    #[test]
    fn status_rows_and_errors() {
        let rows = vec![
            Row::new("127.0.0.1:7379", Ok(node("1.0", "leader", Some("1.0")))),
            Row::new::<NodeStatus>("127.0.0.1:1", Err("connection refused".into())),
        ];
        let text = status_table(&rows).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].starts_with("+-") && lines[2].starts_with("+-"), "{text}");
        for h in ["ENDPOINT", "ID", "ROLE", "RAFT INDEX", "APPLIED", "COMMIT", "READY", "ERRORS"] {
            assert!(lines[1].contains(h), "{h} missing: {text}");
        }
        let cells: Vec<&str> = lines[3].split('|').map(str::trim).collect();
        assert_eq!(
            cells,
            [
                "",
                "127.0.0.1:7379",
                "1.0",
                "leader",
                "3",
                "1.0",
                "12",
                "11",
                "12",
                "5",
                "true",
                "",
                ""
            ]
        );
        assert!(lines[4].contains("127.0.0.1:1") && lines[4].ends_with("connection refused |"));
    }

    #[test]
    fn quorum_lost_shows_in_errors() {
        let mut s = node("1.0", "leader", Some("1.0"));
        s.quorum_lost = true;
        let text = status_table(&[Row::new("a:1", Ok(s))]).to_string();
        assert!(text.contains("quorum lost"), "{text}");
    }

    #[test]
    fn members_and_transfer() {
        let m = Membership {
            endpoint: "a:1".into(),
            leader: Some("2.0".into()),
            leader_raft_node_id: 2 << 32,
            log_index: 9,
            members: vec![MemberView {
                id: "2.0".into(),
                member_id: 2,
                raft_node_id: 2 << 32,
                raft_addr: "h:7380".into(),
                resp_addr: String::new(),
                admin_addr: "h:7379".into(),
                voter: false,
                leader: true,
                reachable: true,
                matched_index: 8,
                lag: 1,
            }],
        };
        let text = membership(&m);
        let row = text.lines().nth(3).unwrap();
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(
            cells,
            ["", "2.0", "2", "h:7380", "-", "h:7379", "learner", "true", "true", "8", "1", ""]
        );
        assert!(text.ends_with("leader 2.0, membership at log index 9 (from a:1)"), "{text}");
        let t = Transfer { leader: Some("3.1".into()), leader_raft_node_id: 0, term: 8 };
        assert_eq!(transfer(&t), "leader 3.1 in term 8");
    }

    #[test]
    fn digest_and_snapshot_tables() {
        let d = DigestView { member_id: 2, applied_index: 40, digest: "ab12".into(), keys: 7 };
        let text = digest_table(&[Row::new("a:1", Ok(d))]).to_string();
        let cells: Vec<&str> = text.lines().nth(3).unwrap().split('|').map(str::trim).collect();
        assert_eq!(cells, ["", "a:1", "2", "40", "ab12", "7", "", ""]);
        let s = snapshot_table(&[
            Row::new("a:1", Ok(SnapshotView { index: 99 })),
            Row::new::<SnapshotView>("b:2", Err("no answer".into())),
        ])
        .to_string();
        assert!(s.lines().nth(3).unwrap().contains("| 99 "), "{s}");
        assert!(s.lines().nth(4).unwrap().contains("no answer"), "{s}");
    }

    #[test]
    fn event_lines() {
        let e = EventView {
            time: "2023-11-14T22:13:20.123Z".into(),
            time_ms: 0,
            kind: "LEADER_CHANGED".into(),
            term: 7,
            leader: None,
            leader_raft_node_id: 0,
            role: "follower".into(),
            member_id: 0,
            message: "no leader".into(),
            members: vec![],
        };
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20.123Z LEADER_CHANGED     term=7 leader=- no leader"
        );
    }
}
