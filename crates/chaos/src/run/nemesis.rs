//! The nemesis: which faults exist, when each is injected ([`plan`]), and on
//! which nodes ([`resolve`]). Both are pure functions of a seed and what the
//! cluster looks like, so a run's fault schedule replays from its seed; the
//! runner ([`super::Runner`]) carries the actions out on real processes and
//! links.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

pub use super::linkproxy::LinkFault;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// SIGKILL one node, restart it at the end.
    KillOne,
    /// SIGKILL the leader, restart it at the end.
    KillLeader,
    /// SIGKILL a majority of the nodes (the cluster is down for writes).
    KillMajority,
    /// SIGKILL every node.
    KillAll,
    /// SIGKILL one node, restart it with an emptied data directory (it comes
    /// back as a new incarnation and recovers from the others).
    Wipe,
    /// SIGSTOP one node, SIGCONT at the end.
    PauseOne,
    /// SIGSTOP the leader.
    PauseLeader,
    /// Cut the leader off from every other node.
    PartitionLeader,
    /// Split the nodes into a majority and a minority.
    PartitionHalf,
    /// Two halves that cannot reach each other, and one node that reaches
    /// both (a majority on either side goes through it).
    PartitionBridge,
    /// One node's packets to the others are dropped; theirs still reach it.
    PartitionOneWay,
    /// One follower cut off from the leader only: it still reaches the
    /// other nodes, which still reach the leader (a bridge through them).
    PartitionLeaderFollower,
    /// One follower cut off from every other node.
    PartitionFollower,
    /// The leader's peer links (both ways) delayed, with jitter, through
    /// the harness's link proxy ([`super::linkproxy`]).
    SlowLink,
    /// One node's peer links lose chunks (the connection is reset) and
    /// refuse some new connections.
    LossyLink,
    /// One node's peer links stall: bytes are held, connections stay open,
    /// and everything held flows at once when healed.
    StallLink,
}

impl Fault {
    pub const ALL: [Fault; 16] = [
        Fault::KillOne,
        Fault::KillLeader,
        Fault::KillMajority,
        Fault::KillAll,
        Fault::Wipe,
        Fault::PauseOne,
        Fault::PauseLeader,
        Fault::PartitionLeader,
        Fault::PartitionHalf,
        Fault::PartitionBridge,
        Fault::PartitionOneWay,
        Fault::PartitionLeaderFollower,
        Fault::PartitionFollower,
        Fault::SlowLink,
        Fault::LossyLink,
        Fault::StallLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillOne => "kill-one",
            Fault::KillLeader => "kill-leader",
            Fault::KillMajority => "kill-majority",
            Fault::KillAll => "kill-all",
            Fault::Wipe => "wipe",
            Fault::PauseOne => "pause-one",
            Fault::PauseLeader => "pause-leader",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionHalf => "partition-half",
            Fault::PartitionBridge => "partition-bridge",
            Fault::PartitionOneWay => "partition-one-way",
            Fault::PartitionLeaderFollower => "partition-leader-follower",
            Fault::PartitionFollower => "partition-follower",
            Fault::SlowLink => "slow-link",
            Fault::LossyLink => "lossy-link",
            Fault::StallLink => "stall-link",
        }
    }

    /// The faults a name on the command line stands for: a fault's own name,
    /// or a group (`kill`, `pause`, `partition`, `link`, `all`).
    pub fn named(name: &str) -> Option<Vec<Fault>> {
        let group: &[Fault] = match name {
            "kill" => &[Fault::KillOne, Fault::KillLeader, Fault::KillMajority, Fault::KillAll],
            "pause" => &[Fault::PauseOne, Fault::PauseLeader],
            "partition" => &[
                Fault::PartitionLeader,
                Fault::PartitionHalf,
                Fault::PartitionBridge,
                Fault::PartitionOneWay,
            ],
            "link" => &[Fault::SlowLink, Fault::LossyLink, Fault::StallLink],
            "all" => &Fault::ALL,
            "none" => &[],
            _ => return Fault::ALL.iter().find(|f| f.name() == name).map(|&f| vec![f]),
        };
        Some(group.to_vec())
    }

    /// Parses a comma-separated list of fault and group names (duplicates
    /// removed, order kept).
    pub fn parse_list(list: &str) -> Result<Vec<Fault>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let faults = Fault::named(name).ok_or_else(|| {
                let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown fault {name:?}: use kill, pause, partition, link, all, none or one of {}",
                    known.join(", ")
                )
            })?;
            for f in faults {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
        Ok(out)
    }

    /// Faults that take processes down (the cluster must be whole and ready
    /// before one starts, or it may lose its quorum for good).
    pub fn kills(self) -> bool {
        matches!(
            self,
            Fault::KillOne | Fault::KillLeader | Fault::KillMajority | Fault::KillAll | Fault::Wipe
        )
    }
}

impl Fault {
    /// Faults that need the link proxy on the peer links.
    pub fn needs_proxy(self) -> bool {
        matches!(self, Fault::SlowLink | Fault::LossyLink | Fault::StallLink)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// When to inject it, from the start of the workload.
    pub at: Duration,
    pub fault: Fault,
    /// How long it lasts before it is healed.
    pub duration: Duration,
}

/// The fault schedule of a run of `total`: quiet for `interval`, then a fault
/// for `duration`, healed, quiet for `interval` again, and so on; the last
/// fault is healed at least `interval` before the end, so the run closes
/// with a quiet period. Faults are taken from `faults` in rounds, each round
/// in a seeded random order, so that a short run still sees every kind.
pub fn plan(
    faults: &[Fault],
    seed: u64,
    total: Duration,
    interval: Duration,
    duration: Duration,
) -> Vec<Planned> {
    let mut out = Vec::new();
    if faults.is_empty() || duration.is_zero() {
        return out;
    }
    let mut rng: StdRng = rand::SeedableRng::seed_from_u64(seed);
    let mut round: Vec<Fault> = Vec::new();
    let mut at = interval;
    while at + duration + interval <= total {
        if round.is_empty() {
            round = faults.to_vec();
            round.shuffle(&mut rng);
        }
        let fault = round.pop().expect("refilled above");
        out.push(Planned { at, fault, duration });
        at += duration + interval;
    }
    out
}

/// A fault made concrete: what to do to which nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL these nodes; at the end, restart them (with emptied data
    /// directories if `wipe`).
    Kill { nodes: Vec<u32>, wipe: bool },
    /// SIGSTOP these nodes; SIGCONT at the end.
    Pause { nodes: Vec<u32> },
    /// Drop the packets of each (from, to) pair: `to` no longer hears `from`.
    Partition { drops: BTreeSet<(u32, u32)> },
    /// Give each directed link (from, to) this fault in the link proxy.
    Link { links: BTreeSet<(u32, u32)>, fault: LinkFault },
}

/// The delay of `slow-link`: more than a heartbeat, less than an election
/// timeout each way, so commits slow down and elections may or may not come.
pub const SLOW_LINK: LinkFault = LinkFault {
    delay: Duration::from_millis(100),
    jitter: Duration::from_millis(50),
    loss_per_mille: 0,
    refuse_per_mille: 0,
    stall: false,
};

/// `lossy-link`: 5% of chunks lost (each resets its connection), a quarter
/// of new connections refused.
pub const LOSSY_LINK: LinkFault = LinkFault {
    delay: Duration::ZERO,
    jitter: Duration::ZERO,
    loss_per_mille: 50,
    refuse_per_mille: 250,
    stall: false,
};

/// `stall-link`: every byte held until the heal.
pub const STALL_LINK: LinkFault = LinkFault {
    delay: Duration::ZERO,
    jitter: Duration::ZERO,
    loss_per_mille: 0,
    refuse_per_mille: 0,
    stall: true,
};

impl Action {
    /// The nodes the action acts on (for a partition: those that lose a link).
    pub fn nodes(&self) -> Vec<u32> {
        match self {
            Action::Kill { nodes, .. } | Action::Pause { nodes } => nodes.clone(),
            Action::Partition { drops: links } | Action::Link { links, .. } => {
                let set: BTreeSet<u32> = links.iter().flat_map(|&(a, b)| [a, b]).collect();
                set.into_iter().collect()
            }
        }
    }
}

/// Both directions between every node of `a` and every node of `b`.
fn cut(a: &[u32], b: &[u32], drops: &mut BTreeSet<(u32, u32)>) {
    for &x in a {
        for &y in b {
            drops.insert((x, y));
            drops.insert((y, x));
        }
    }
}

fn list(nodes: &[u32]) -> String {
    let v: Vec<String> = nodes.iter().map(u32::to_string).collect();
    v.join(",")
}

/// Chooses the nodes for `fault` among `nodes` (sorted ids, at least 3),
/// given the current leader if one is known (a leader fault falls back to a
/// random node without one). Returns the action and a sentence saying what
/// it does.
pub fn resolve(
    fault: Fault,
    nodes: &[u32],
    leader: Option<u32>,
    rng: &mut StdRng,
) -> (Action, String) {
    assert!(nodes.len() >= 3, "faults need at least 3 nodes");
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let leader_or_any = |what: &str| match leader.filter(|l| nodes.contains(l)) {
        Some(l) => (l, format!("node {l} ({what} the leader)")),
        None => {
            (shuffled[0], format!("node {} (no leader known: {what} a random node)", shuffled[0]))
        }
    };
    let majority = nodes.len() / 2 + 1;
    match fault {
        Fault::KillOne | Fault::Wipe => {
            let n = shuffled[0];
            let wipe = fault == Fault::Wipe;
            let how = if wipe { ", restart with an empty data dir" } else { "" };
            (Action::Kill { nodes: vec![n], wipe }, format!("SIGKILL node {n}{how}"))
        }
        Fault::KillLeader => {
            let (n, who) = leader_or_any("kill");
            (Action::Kill { nodes: vec![n], wipe: false }, format!("SIGKILL {who}"))
        }
        Fault::KillMajority => {
            let mut chosen = shuffled[..majority].to_vec();
            chosen.sort_unstable();
            let what = format!("SIGKILL nodes {} (a majority)", list(&chosen));
            (Action::Kill { nodes: chosen, wipe: false }, what)
        }
        Fault::KillAll => {
            (Action::Kill { nodes: nodes.to_vec(), wipe: false }, "SIGKILL every node".into())
        }
        Fault::PauseOne => {
            let n = shuffled[0];
            (Action::Pause { nodes: vec![n] }, format!("SIGSTOP node {n}"))
        }
        Fault::PauseLeader => {
            let (n, who) = leader_or_any("pause");
            (Action::Pause { nodes: vec![n] }, format!("SIGSTOP {who}"))
        }
        Fault::PartitionLeader => {
            let (n, who) = leader_or_any("isolate");
            let rest: Vec<u32> = nodes.iter().copied().filter(|&m| m != n).collect();
            let mut drops = BTreeSet::new();
            cut(&[n], &rest, &mut drops);
            (Action::Partition { drops }, format!("isolate {who} from {}", list(&rest)))
        }
        Fault::PartitionHalf => {
            let mut big = shuffled[..majority].to_vec();
            let mut small = shuffled[majority..].to_vec();
            big.sort_unstable();
            small.sort_unstable();
            let mut drops = BTreeSet::new();
            cut(&big, &small, &mut drops);
            let what = format!("split majority {} | minority {}", list(&big), list(&small));
            (Action::Partition { drops }, what)
        }
        Fault::PartitionBridge => {
            let bridge = shuffled[0];
            let rest = &shuffled[1..];
            let half = rest.len() / 2;
            let mut a = rest[..half].to_vec();
            let mut b = rest[half..].to_vec();
            a.sort_unstable();
            b.sort_unstable();
            let mut drops = BTreeSet::new();
            cut(&a, &b, &mut drops);
            let what = format!("{} | {} cut apart, node {bridge} reaches both", list(&a), list(&b));
            (Action::Partition { drops }, what)
        }
        Fault::PartitionLeaderFollower => {
            let (l, _) = leader_or_any("cut off from");
            let follower =
                *shuffled.iter().find(|&&m| m != l).expect("at least 3 nodes, one not the leader");
            let rest: Vec<u32> =
                nodes.iter().copied().filter(|&m| m != l && m != follower).collect();
            let mut drops = BTreeSet::new();
            cut(&[follower], &[l], &mut drops);
            let who =
                if leader == Some(l) { "the leader" } else { "no leader known: a random node" };
            let what = format!(
                "cut node {follower} off from node {l} ({who}) only; both still reach {}",
                list(&rest)
            );
            (Action::Partition { drops }, what)
        }
        Fault::PartitionFollower => {
            let n = *shuffled
                .iter()
                .find(|&&m| Some(m) != leader)
                .expect("at least 3 nodes, one not the leader");
            let rest: Vec<u32> = nodes.iter().copied().filter(|&m| m != n).collect();
            let mut drops = BTreeSet::new();
            cut(&[n], &rest, &mut drops);
            let who = match leader {
                Some(l) => format!("a follower; node {l} leads"),
                None => "no leader known: a random node".to_string(),
            };
            let what = format!("isolate node {n} ({who}) from {}", list(&rest));
            (Action::Partition { drops }, what)
        }
        Fault::PartitionOneWay => {
            let from = shuffled[0];
            let drops: BTreeSet<(u32, u32)> =
                nodes.iter().filter(|&&m| m != from).map(|&m| (from, m)).collect();
            let what = format!("drop node {from}'s packets to the others (it still hears them)");
            (Action::Partition { drops }, what)
        }
        Fault::SlowLink | Fault::LossyLink | Fault::StallLink => {
            let (n, who) = match fault {
                Fault::SlowLink => leader_or_any("slow down"),
                _ => (shuffled[0], format!("node {}", shuffled[0])),
            };
            let rest: Vec<u32> = nodes.iter().copied().filter(|&m| m != n).collect();
            let mut links = BTreeSet::new();
            cut(&[n], &rest, &mut links);
            let fault = match fault {
                Fault::SlowLink => SLOW_LINK,
                Fault::LossyLink => LOSSY_LINK,
                _ => STALL_LINK,
            };
            let what = format!("peer links of {who} to and from {}: {fault}", list(&rest));
            (Action::Link { links, fault }, what)
        }
    }
}

/// Random decisions of the workload and nemesis, from the run's seed.
pub fn rng(seed: u64, stream: u64) -> StdRng {
    rand::SeedableRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A fault duration that is longer than an election timeout, so that a pause
/// or a partition of the leader really makes the others elect a new one.
pub fn check_duration(fault_duration: Duration, election_timeout: Duration) -> Result<(), String> {
    if fault_duration <= 2 * election_timeout {
        return Err(format!(
            "--fault-duration {:?} must be longer than twice the election timeout ({:?}), or \
             pauses and partitions never make the cluster elect a new leader",
            fault_duration, election_timeout
        ));
    }
    Ok(())
}

/// A random element of a non-empty slice.
pub fn pick<T: Copy>(items: &[T], rng: &mut StdRng) -> T {
    items[rng.gen_range(0..items.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn names_and_groups_parse() {
        assert_eq!(
            Fault::parse_list("kill,pause").unwrap(),
            vec![
                Fault::KillOne,
                Fault::KillLeader,
                Fault::KillMajority,
                Fault::KillAll,
                Fault::PauseOne,
                Fault::PauseLeader
            ]
        );
        assert_eq!(
            Fault::parse_list("wipe, kill-one,wipe").unwrap(),
            vec![Fault::Wipe, Fault::KillOne]
        );
        assert_eq!(Fault::parse_list("all").unwrap().len(), Fault::ALL.len());
        assert!(Fault::parse_list("none").unwrap().is_empty());
        let err = Fault::parse_list("kill,explode").unwrap_err();
        assert!(err.contains("explode") && err.contains("partition-bridge"), "{err}");
        for f in Fault::ALL {
            assert_eq!(Fault::named(f.name()), Some(vec![f]));
        }
    }

    #[test]
    fn schedule_alternates_faults_and_quiet_periods_within_the_run() {
        let faults = Fault::parse_list("all").unwrap();
        let p = plan(&faults, 7, S(100), S(4), S(3));
        // 4 quiet, then (3 fault + 4 quiet) repeated: the last must end by 96.
        assert_eq!(p.len(), 13);
        assert_eq!(p[0].at, S(4));
        for w in p.windows(2) {
            assert_eq!(w[1].at, w[0].at + w[0].duration + S(4), "{w:?}");
        }
        let last = p.last().unwrap();
        assert!(last.at + last.duration + S(4) <= S(100));
    }

    #[test]
    fn every_fault_kind_comes_once_per_round() {
        let faults = Fault::parse_list("kill,pause,partition").unwrap();
        let p = plan(&faults, 1, S(1000), S(1), S(1));
        for round in p.chunks(faults.len()).filter(|c| c.len() == faults.len()) {
            let mut seen: Vec<Fault> = round.iter().map(|x| x.fault).collect();
            seen.sort();
            let mut want = faults.clone();
            want.sort();
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn schedule_replays_from_its_seed() {
        let faults = Fault::parse_list("all").unwrap();
        let a = plan(&faults, 42, S(300), S(5), S(5));
        assert_eq!(a, plan(&faults, 42, S(300), S(5), S(5)));
        let orders: BTreeSet<Vec<Fault>> = (0..20)
            .map(|seed| plan(&faults, seed, S(300), S(5), S(5)).iter().map(|p| p.fault).collect())
            .collect();
        assert!(orders.len() > 1, "the seed changes the order");
    }

    #[test]
    fn a_follower_is_cut_off_from_the_leader_only() {
        let mut rng = rng(3, 7);
        for leader in [1, 2, 3] {
            let (action, what) =
                resolve(Fault::PartitionLeaderFollower, &[1, 2, 3], Some(leader), &mut rng);
            let Action::Partition { drops } = action else { panic!("{action:?}") };
            assert_eq!(drops.len(), 2, "{drops:?}");
            let follower = drops.iter().map(|&(a, _)| a).find(|&a| a != leader).unwrap();
            assert!(drops.contains(&(leader, follower)) && drops.contains(&(follower, leader)));
            assert!(
                what.starts_with(&format!(
                    "cut node {follower} off from node {leader} (the leader)"
                )),
                "{what}"
            );
        }
    }

    #[test]
    fn a_follower_is_isolated() {
        let mut rng = rng(5, 7);
        for leader in [1, 2, 3] {
            let (action, what) =
                resolve(Fault::PartitionFollower, &[1, 2, 3], Some(leader), &mut rng);
            let Action::Partition { drops } = action else { panic!("{action:?}") };
            assert_eq!(drops.len(), 4, "{drops:?}");
            let cut = (1..=3).find(|&n| drops.iter().all(|&(a, b)| a == n || b == n)).unwrap();
            assert_ne!(cut, leader, "{drops:?}");
            assert!(what.contains(&format!("node {leader} leads")), "{what}");
        }
    }

    #[test]
    fn no_faults_or_too_short_a_run_plans_nothing() {
        assert!(plan(&[], 1, S(100), S(1), S(1)).is_empty());
        assert!(plan(&[Fault::KillOne], 1, S(8), S(4), S(3)).is_empty());
        assert_eq!(plan(&[Fault::KillOne], 1, S(11), S(4), S(3)).len(), 1);
    }

    fn resolved(fault: Fault, n: u32, leader: Option<u32>, seed: u64) -> Action {
        let nodes: Vec<u32> = (1..=n).collect();
        resolve(fault, &nodes, leader, &mut rng(seed, 0)).0
    }

    #[test]
    fn link_faults_act_on_every_peer_link_of_one_node() {
        assert_eq!(
            Fault::parse_list("link").unwrap(),
            vec![Fault::SlowLink, Fault::LossyLink, Fault::StallLink]
        );
        assert!(Fault::parse_list("kill,pause,partition,wipe")
            .unwrap()
            .iter()
            .all(|f| !f.needs_proxy()));
        for seed in 0..10 {
            let Action::Link { links, fault } = resolved(Fault::SlowLink, 3, Some(2), seed) else {
                panic!("a link fault")
            };
            let want: BTreeSet<(u32, u32)> = [(2, 1), (1, 2), (2, 3), (3, 2)].into_iter().collect();
            assert_eq!((links, fault), (want, SLOW_LINK));
            let Action::Link { links, fault } = resolved(Fault::LossyLink, 5, None, seed) else {
                panic!("a link fault")
            };
            assert_eq!(fault, LOSSY_LINK);
            assert_eq!(links.len(), 8, "one node's links to 4 others, both ways");
            let hub = links
                .iter()
                .map(|&(a, _)| a)
                .find(|a| links.iter().all(|&(x, y)| x == *a || y == *a));
            assert!(hub.is_some(), "{links:?}");
        }
        assert!(STALL_LINK.stall && SLOW_LINK.delay > SLOW_LINK.jitter);
    }

    #[test]
    fn leader_faults_hit_the_leader() {
        for seed in 0..20 {
            assert_eq!(
                resolved(Fault::KillLeader, 3, Some(2), seed),
                Action::Kill { nodes: vec![2], wipe: false }
            );
            assert_eq!(
                resolved(Fault::PauseLeader, 5, Some(4), seed),
                Action::Pause { nodes: vec![4] }
            );
            let Action::Partition { drops } = resolved(Fault::PartitionLeader, 3, Some(3), seed)
            else {
                panic!("a partition")
            };
            let want: BTreeSet<(u32, u32)> = [(3, 1), (1, 3), (3, 2), (2, 3)].into_iter().collect();
            assert_eq!(drops, want);
        }
        // Without a known leader: some node all the same.
        let Action::Pause { nodes } = resolved(Fault::PauseLeader, 3, None, 1) else { panic!() };
        assert_eq!(nodes.len(), 1);
    }

    #[test]
    fn partition_follower_isolates_a_node_that_does_not_lead() {
        assert!(!Fault::parse_list("kill,pause,partition,link")
            .unwrap()
            .contains(&Fault::PartitionFollower));
        assert_eq!(
            Fault::parse_list("partition-follower").unwrap(),
            vec![Fault::PartitionFollower]
        );
        let mut isolated = BTreeSet::new();
        for seed in 0..20 {
            let Action::Partition { drops } = resolved(Fault::PartitionFollower, 3, Some(2), seed)
            else {
                panic!("a partition")
            };
            let node = (1..=3)
                .find(|&n| drops.iter().all(|&(a, b)| a == n || b == n))
                .expect("one node in every dropped link");
            let want: BTreeSet<(u32, u32)> = [1, 2, 3]
                .into_iter()
                .filter(|&m| m != node)
                .flat_map(|m| [(node, m), (m, node)])
                .collect();
            assert_eq!(drops, want);
            isolated.insert(node);
        }
        assert_eq!(isolated, [1, 3].into_iter().collect(), "either follower, never the leader");
    }

    #[test]
    fn majority_faults_take_a_majority() {
        for n in [3u32, 5] {
            for seed in 0..20 {
                let Action::Kill { nodes, wipe: false } =
                    resolved(Fault::KillMajority, n, None, seed)
                else {
                    panic!("a kill")
                };
                assert_eq!(nodes.len() as u32, n / 2 + 1);
                let Action::Partition { drops } = resolved(Fault::PartitionHalf, n, None, seed)
                else {
                    panic!("a partition")
                };
                // Every drop is symmetric, and exactly minority × majority pairs are cut.
                assert!(drops.iter().all(|&(a, b)| drops.contains(&(b, a))));
                let minority = n / 2;
                assert_eq!(drops.len() as u32, 2 * minority * (n - minority));
            }
        }
        assert_eq!(
            resolved(Fault::KillAll, 3, Some(1), 0),
            Action::Kill { nodes: vec![1, 2, 3], wipe: false }
        );
        let Action::Kill { nodes, wipe: true } = resolved(Fault::Wipe, 5, None, 3) else {
            panic!("a wipe")
        };
        assert_eq!(nodes.len(), 1, "wipe one node at a time");
    }

    #[test]
    fn a_bridge_node_reaches_both_halves() {
        for n in [3u32, 5] {
            for seed in 0..20 {
                let Action::Partition { drops } = resolved(Fault::PartitionBridge, n, None, seed)
                else {
                    panic!("a partition")
                };
                let cut_off: BTreeSet<u32> = drops.iter().map(|&(a, _)| a).collect();
                let bridges: Vec<u32> = (1..=n).filter(|m| !cut_off.contains(m)).collect();
                assert_eq!(bridges.len(), 1, "one bridge node: {drops:?}");
                // Each other node can still reach a majority through the bridge.
                for m in cut_off {
                    let reachable = (1..=n).filter(|&o| o != m && !drops.contains(&(m, o))).count();
                    assert!(reachable + 1 > (n / 2) as usize, "{m}: {drops:?}");
                }
            }
        }
    }

    #[test]
    fn one_way_partition_drops_only_one_direction() {
        let Action::Partition { drops } = resolved(Fault::PartitionOneWay, 3, None, 5) else {
            panic!("a partition")
        };
        assert_eq!(drops.len(), 2);
        let from: BTreeSet<u32> = drops.iter().map(|&(a, _)| a).collect();
        assert_eq!(from.len(), 1);
        assert!(drops.iter().all(|&(a, b)| !drops.contains(&(b, a))));
    }

    #[test]
    fn fault_duration_must_outlast_an_election() {
        assert!(check_duration(Duration::from_millis(500), Duration::from_millis(300)).is_err());
        assert!(check_duration(Duration::from_secs(2), Duration::from_millis(300)).is_ok());
    }
}
