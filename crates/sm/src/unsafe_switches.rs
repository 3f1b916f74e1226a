//! Test-only switches that break the engine on purpose.
//!
//! The chaos harness must be able to fail: each switch here removes one
//! safety check, so that a test can show the harness's checkers catch what
//! goes wrong (issue 17, "It must be able to fail"). None is a setting: the
//! node turns them on only with the hidden `--unsafe-test-switch NAME` flag,
//! warns loudly at startup and lists them in INFO (`unsafe_test_switches`).
//!
//! Switches are *not* replicated state (neither in the snapshot nor in the
//! digest): every node of a cluster must be started with the same ones, or
//! replicas apply the same log differently and diverge, which the digests
//! then show. The state machine store hands them to every engine it makes
//! (at start, from a snapshot, on a snapshot install), so they hold on every
//! replica at every index.

/// The engine's unsafe switches; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineSwitches {
    /// `lock-grant-unchecked`: LOCK.ACQUIRE grants a lock that another owner
    /// holds (a new token; the holder is forgotten without being told), so
    /// two clients hold one lock at once.
    pub lock_grant_unchecked: bool,
}

impl EngineSwitches {
    /// True if any switch is on.
    pub fn any(&self) -> bool {
        self.lock_grant_unchecked
    }
}
