//! Hooks through which the binary observes the cluster layer (its metrics),
//! so that this crate does not depend on a metrics library.

use std::sync::OnceLock;
use std::time::Duration;

/// What the cluster layer reports as it works. Every method has a no-op
/// default.
pub trait Observer: Send + Sync {
    /// A log entry of `ops` operations was proposed by this node.
    fn entry_proposed(&self, _ops: usize) {}
    /// A write forwarded to the leader was answered after `took`.
    fn forward_done(&self, _took: Duration) {}
    /// A read-index round (leadership confirmation) took `took`.
    fn read_round(&self, _took: Duration) {}
    /// This node stood for election.
    fn election(&self) {}
    /// The leader this node knows changed.
    fn leader_changed(&self) {}
    /// This node stepped down as leader: no majority acknowledged it within
    /// the longest election timeout (see [`crate::check_quorum`]).
    fn stepped_down(&self) {}
}

static OBSERVER: OnceLock<Box<dyn Observer>> = OnceLock::new();

/// Installs the process's observer (once; later calls are ignored).
pub fn set(observer: Box<dyn Observer>) {
    let _ = OBSERVER.set(observer);
}

struct Nothing;
impl Observer for Nothing {}

/// The installed observer, or one that ignores everything.
pub fn get() -> &'static dyn Observer {
    match OBSERVER.get() {
        Some(o) => o.as_ref(),
        None => &Nothing,
    }
}
