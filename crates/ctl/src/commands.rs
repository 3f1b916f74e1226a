//! The subcommands: each makes its calls, prints a table (or JSON) and
//! says how the process ends.

use std::future::Future;

use futures::future::join_all;
use raftcache_proto::admin::{
    AddMemberRequest, DigestRequest, ForceNewClusterRequest, MembersReply, MembersRequest,
    PromoteMemberRequest, RemoveMemberRequest, ReplaceMemberRequest, SnapshotRequest,
    StatusRequest, TransferLeaderRequest, WatchStatusRequest,
};
use tokio::signal::unix::{signal, SignalKind};
use tonic::{Response, Status};

use crate::cli::{
    Command, DigestArgs, ForceArgs, HealthArgs, LeaderCommand, MemberCommand, Target,
};
use crate::client::{self, first_answering, none_answered, Admin, Settings};
use crate::digest::{judge, Report, Verdict};
use crate::output::{print, print_json, print_json_line, Failure};
use crate::render;
use crate::view::{
    DigestView, EventView, HealthView, Membership, NodeStatus, Row, SnapshotView, Transfer,
};

/// What every command needs.
pub struct Ctx {
    pub targets: Vec<Target>,
    pub settings: Settings,
    pub json: bool,
}

/// Runs one command. `Ok` is exit code 0.
pub async fn run(ctx: &Ctx, command: &Command) -> Result<(), Failure> {
    let what = command.describe();
    match command {
        Command::Status => status(ctx).await,
        Command::Members | Command::Member(MemberCommand::List) => members(ctx).await,
        Command::Member(change) => member(ctx, &what, change).await,
        Command::Leader(LeaderCommand::Transfer { id }) => transfer(ctx, &what, *id).await,
        Command::Snapshot => snapshot(ctx).await,
        Command::Digest(args) => digest(ctx, args).await,
        Command::Watch => watch(ctx).await,
        Command::Health(args) => health(ctx, args).await,
        Command::ForceNewCluster(args) => force_new_cluster(ctx, args).await,
    }
}

/// `force-new-cluster --yes`: on exactly one endpoint.
async fn force_new_cluster(ctx: &Ctx, args: &ForceArgs) -> Result<(), Failure> {
    if ctx.targets.len() != 1 {
        return Err(Failure::new(
            "force-new-cluster re-forms the cluster from one node: give exactly one --endpoints",
        ));
    }
    if !args.yes {
        return Err(Failure::new(
            "force-new-cluster may lose writes committed without reaching this node; \
             check `status` (wedged, last index) and run it again with --yes",
        ));
    }
    let target = &ctx.targets[0];
    let reply = client::call(target, &ctx.settings, "ForceNewCluster", |mut c| async move {
        c.force_new_cluster(ForceNewClusterRequest {}).await
    })
    .await
    .map_err(|e| Failure::new(format!("{}: {}", target.shown, e.message)))?;
    if ctx.json {
        print_json(&serde_json::json!({
            "endpoint": target.shown,
            "term": reply.term,
            "index": reply.index,
            "voters": reply.voters,
            "warning": reply.warning,
        }))
    } else {
        print(format!(
            "re-formed the cluster from {}: term {}, membership entry at index {}, voters {}\n{}",
            target.shown,
            reply.term,
            reply.index,
            reply.voters.join(", "),
            reply.warning
        ))
    }
}

/// Makes one call on every endpoint at once; a row per endpoint, in order.
async fn ask_all<T, V, F, Fut>(ctx: &Ctx, rpc: &str, op: F) -> Vec<Row<V>>
where
    F: Fn(Admin) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
    T: Into<V>,
{
    let calls = ctx.targets.iter().map(|t| client::call(t, &ctx.settings, rpc, &op));
    let outcomes = join_all(calls).await;
    ctx.targets
        .iter()
        .zip(outcomes)
        .map(|(t, outcome)| Row::new(&t.shown, outcome.map_err(|e| e.message)))
        .collect()
}

/// Exit code 1 and one line naming every endpoint that failed, if any did.
fn fail_if_any<T>(rows: &[Row<T>]) -> Result<(), Failure> {
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.endpoint)))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(failed.join("; ")))
    }
}

/// `status`
async fn status(ctx: &Ctx) -> Result<(), Failure> {
    let rows: Vec<Row<NodeStatus>> =
        ask_all(ctx, "Status", |mut c| async move { c.status(StatusRequest {}).await }).await;
    if ctx.json {
        print_json(&rows)?;
    } else {
        print(render::status_table(&rows))?;
    }
    fail_if_any(&rows)
}

/// `health`: every endpoint's gRPC health check, at once. Exit code 1 and
/// one line naming each endpoint that is not SERVING (or did not answer).
async fn health(ctx: &Ctx, args: &HealthArgs) -> Result<(), Failure> {
    let checks = ctx.targets.iter().map(|t| client::check_health(t, &ctx.settings, &args.service));
    let outcomes = join_all(checks).await;
    let rows: Vec<Row<HealthView>> = ctx
        .targets
        .iter()
        .zip(outcomes)
        .map(|(t, outcome)| {
            Row::new(&t.shown, outcome.map(HealthView::from_status).map_err(|e| e.message))
        })
        .collect();
    if ctx.json {
        print_json(&rows)?;
    } else {
        print(render::health_table(&rows))?;
    }
    fail_unless_serving(&rows)
}

/// Exit code 1 and one line naming every endpoint that failed or does not
/// serve, if any, in the order they were given.
fn fail_unless_serving(rows: &[Row<HealthView>]) -> Result<(), Failure> {
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|r| match (&r.reply, &r.error) {
            (_, Some(e)) => Some(format!("{}: {e}", r.endpoint)),
            (Some(h), None) if !h.serving => Some(format!("{}: {}", r.endpoint, h.status)),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(failed.join("; ")))
    }
}

/// `snapshot`
async fn snapshot(ctx: &Ctx) -> Result<(), Failure> {
    let rows: Vec<Row<SnapshotView>> = ask_all(ctx, "Snapshot", |mut c| async move {
        c.snapshot(SnapshotRequest {}).await.map(|r| r.map(|s| SnapshotView { index: s.index }))
    })
    .await;
    if ctx.json {
        print_json(&rows)?;
    } else {
        print(render::snapshot_table(&rows))?;
    }
    fail_if_any(&rows)
}

/// `members` / `member list`: from the first endpoint that answers.
async fn members(ctx: &Ctx) -> Result<(), Failure> {
    let (target, reply) =
        first_answering(&ctx.targets, &ctx.settings, "Members", true, |mut c| async move {
            c.members(MembersRequest {}).await
        })
        .await
        .map_err(|errors| Failure::new(format!("members: {}", none_answered(&errors))))?;
    show_membership(ctx, &target, &reply)
}

/// Prints a membership (as a table, or JSON).
fn show_membership(ctx: &Ctx, target: &Target, reply: &MembersReply) -> Result<(), Failure> {
    let view = Membership::new(&target.shown, reply);
    if ctx.json {
        print_json(&view)
    } else {
        print(render::membership(&view))
    }
}

/// Sends a change to the first endpoint that can be connected to (a node
/// that does not lead passes it on) and returns the answer. A change is not
/// sent again to another endpoint once it may have been sent.
async fn change<T, F, Fut>(ctx: &Ctx, what: &str, rpc: &str, op: F) -> Result<(Target, T), Failure>
where
    F: Fn(Admin) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    first_answering(&ctx.targets, &ctx.settings, rpc, false, op)
        .await
        .map_err(|errors| Failure::new(format!("{what}: {}", none_answered(&errors))))
}

/// `member add|promote|remove|replace`: prints the resulting membership.
async fn member(ctx: &Ctx, what: &str, command: &MemberCommand) -> Result<(), Failure> {
    let (target, reply) = match command.clone() {
        MemberCommand::List => return members(ctx).await,
        MemberCommand::Add { id, raft_addr, learner } => {
            let request = AddMemberRequest { member_id: id, raft_addr, voter: !learner };
            change(ctx, what, "AddMember", |mut c| {
                let request = request.clone();
                async move { c.add_member(request).await }
            })
            .await?
        }
        MemberCommand::Promote { id } => {
            let request = PromoteMemberRequest { member_id: id };
            // (A message of numbers only: prost makes it Copy.)
            change(
                ctx,
                what,
                "PromoteMember",
                |mut c| async move { c.promote_member(request).await },
            )
            .await?
        }
        MemberCommand::Remove { id, force } => {
            let request = RemoveMemberRequest { member_id: id, force };
            // (A message of numbers only: prost makes it Copy.)
            change(ctx, what, "RemoveMember", |mut c| async move { c.remove_member(request).await })
                .await?
        }
        MemberCommand::Replace { old_id, new_id, new_raft_addr } => {
            let request = ReplaceMemberRequest {
                old_member_id: old_id,
                new_member_id: new_id,
                new_raft_addr,
            };
            change(ctx, what, "ReplaceMember", |mut c| {
                let request = request.clone();
                async move { c.replace_member(request).await }
            })
            .await?
        }
    };
    show_membership(ctx, &target, &reply)
}

/// `leader transfer ID`
async fn transfer(ctx: &Ctx, what: &str, id: u32) -> Result<(), Failure> {
    let request = TransferLeaderRequest { member_id: id };
    let (_, reply) =
        change(
            ctx,
            what,
            "TransferLeader",
            |mut c| async move { c.transfer_leader(request).await },
        )
        .await?;
    let view = Transfer::from(reply);
    if ctx.json {
        print_json(&view)
    } else {
        print(render::transfer(&view))
    }
}

/// `digest`: asks every endpoint, again while their applied indexes differ.
async fn digest(ctx: &Ctx, args: &DigestArgs) -> Result<(), Failure> {
    let mut round = 1;
    let (rows, verdict) = loop {
        let rows: Vec<Row<DigestView>> =
            ask_all(ctx, "Digest", |mut c| async move { c.digest(DigestRequest {}).await }).await;
        let verdict = judge(&rows);
        if !matches!(verdict, Verdict::Unaligned(_)) || round >= args.rounds {
            break (rows, verdict);
        }
        round += 1;
        tokio::time::sleep(args.interval).await;
    };
    if ctx.json {
        let report = Report {
            endpoints: &rows,
            result: verdict.name(),
            applied_index: verdict.applied_index(),
            rounds: round,
        };
        print_json(&report)?;
    } else {
        let interval = humantime::format_duration(args.interval).to_string();
        print(render::digest_table(&rows))?;
        print(verdict.line(rows.len(), round, &interval))?;
    }
    match verdict {
        Verdict::Failed(_) => fail_if_any(&rows),
        v => ok_or_code(v.exit_code()),
    }
}

/// `Ok` for 0, else a quiet failure with that code.
fn ok_or_code(code: u8) -> Result<(), Failure> {
    if code == 0 {
        Ok(())
    } else {
        Err(Failure::quiet(code))
    }
}

/// `watch`: prints the events of the first endpoint that answers until
/// interrupted (exit 0) or the stream ends (exit 1).
async fn watch(ctx: &Ctx) -> Result<(), Failure> {
    // Listening from now on: an interrupt right after the first event ends
    // the watch, not the process.
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Failure::new(format!("watch: cannot listen for interrupts: {e}")))?;
    let (target, mut stream) =
        first_answering(&ctx.targets, &ctx.settings, "WatchStatus", true, |mut c| async move {
            c.watch_status(WatchStatusRequest {}).await
        })
        .await
        .map_err(|errors| Failure::new(format!("watch: {}", none_answered(&errors))))?;
    loop {
        let event = tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            event = stream.message() => event,
        };
        match event {
            Ok(Some(event)) => print_event(ctx, EventView::from(event))?,
            Ok(None) => {
                return Err(Failure::new(format!("watch: {target}: the node ended the stream")))
            }
            Err(status) => {
                let (_, message) =
                    client::describe_status(&status, "WatchStatus", ctx.settings.timeout);
                return Err(Failure::new(format!("watch: {target}: {message}")));
            }
        }
    }
}

/// One event: a line of text, or a JSON object on one line.
fn print_event(ctx: &Ctx, event: EventView) -> Result<(), Failure> {
    if ctx.json {
        print_json_line(&event)
    } else {
        print(render::event_line(&event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_every_failed_endpoint() {
        let rows: Vec<Row<SnapshotView>> = vec![
            Row::new("a:1", Ok(SnapshotView { index: 1 })),
            Row::new::<SnapshotView>("b:2", Err("connection refused".into())),
            Row::new::<SnapshotView>("c:3", Err("no answer within 5s (--timeout)".into())),
        ];
        assert_eq!(
            fail_if_any(&rows),
            Err(Failure::new("b:2: connection refused; c:3: no answer within 5s (--timeout)"))
        );
        assert_eq!(fail_if_any(&rows[..1]), Ok(()));
        assert_eq!(ok_or_code(0), Ok(()));
        assert_eq!(ok_or_code(2), Err(Failure::quiet(2)));
    }

    #[test]
    fn health_fails_unless_every_endpoint_serves() {
        let serving = || Row::new("a:1", Ok(HealthView::from_status(1)));
        assert_eq!(fail_unless_serving(&[serving(), serving()]), Ok(()));
        let rows = vec![
            serving(),
            Row::new("b:2", Ok(HealthView::from_status(2))),
            Row::new::<HealthView>("c:3", Err("connection refused".into())),
            Row::new("d:4", Ok(HealthView::from_status(0))),
        ];
        assert_eq!(
            fail_unless_serving(&rows),
            Err(Failure::new("b:2: NOT_SERVING; c:3: connection refused; d:4: UNKNOWN"))
        );
        assert_eq!(fail_unless_serving(&[]), Ok(()));
    }
}
