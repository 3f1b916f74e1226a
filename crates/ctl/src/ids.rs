//! Raft node ids: `member << 32 | incarnation`, shown as `member.incarnation`.
//!
//! The same two shifts as `raftcache_raft::types` (`member_of`,
//! `incarnation_of`, `ShowId`), copied so this client does not depend on the
//! Raft crate.

/// The member id of a Raft node id.
pub fn member_of(id: u64) -> u32 {
    (id >> 32) as u32
}

/// The incarnation of a Raft node id.
pub fn incarnation_of(id: u64) -> u32 {
    id as u32
}

/// A Raft node id as `member.incarnation` (`2.7`).
pub fn show_id(id: u64) -> String {
    format!("{}.{}", member_of(id), incarnation_of(id))
}

/// A leader's Raft node id as `member.incarnation`, or `None` for 0 (the
/// admin API's "no leader known").
pub fn show_leader(id: u64) -> Option<String> {
    (id != 0).then(|| show_id(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_member_and_incarnation() {
        let id = (3u64 << 32) | 0xdead_beef;
        assert_eq!(member_of(id), 3);
        assert_eq!(incarnation_of(id), 0xdead_beef);
        assert_eq!(show_id((2u64 << 32) | 7), "2.7");
        assert_eq!(show_id(1u64 << 32), "1.0");
        assert_eq!(show_id(u64::MAX), "4294967295.4294967295");
    }

    #[test]
    fn no_leader_is_none() {
        assert_eq!(show_leader(0), None);
        assert_eq!(show_leader((1u64 << 32) | 1).as_deref(), Some("1.1"));
    }
}
