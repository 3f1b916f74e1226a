//! The command line: global flags, subcommands and the parsers of their
//! values. A value that does not parse is a usage error (clap's message,
//! exit code 2).

use std::fmt;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tonic::codegen::http::Uri;
use tonic::metadata::AsciiMetadataValue;

/// raftcachectl: operate a raftcache cluster through its admin gRPC service.
///
/// Exit codes: 0 success, 1 an error (an endpoint that does not answer, a
/// refused change, replicas that disagree, a node that is not SERVING), 2 a
/// usage error (and `digest`
/// when the replicas' applied indexes never line up).
#[derive(Parser, Debug)]
#[command(name = "raftcachectl", version, about, long_about)]
pub struct Cli {
    /// Admin endpoints, comma-separated: host:port (http:// is implied) or a URL.
    #[arg(
        long,
        global = true,
        env = "RAFTCACHE_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7379",
        value_parser = parse_target
    )]
    pub endpoints: Vec<Target>,
    /// Admin token, sent on every request as `authorization: Bearer <token>`.
    #[arg(long, global = true, env = "RAFTCACHE_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub token: Option<Token>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Connect timeout and per-request timeout (e.g. 500ms, 5s, 1m). Default:
    /// 5s for questions; 10m for membership changes, leadership transfer and
    /// snapshots, which wait for a new node to catch up or a snapshot to be
    /// written.
    #[arg(long, global = true, value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Status of every endpoint: role, term, leader, log and apply positions.
    Status,
    /// The committed membership (same as `member list`).
    Members,
    /// List and change the membership.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Leadership.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Take a snapshot on every endpoint now.
    Snapshot,
    /// Compare every endpoint's engine digest at one applied index.
    Digest(DigestArgs),
    /// Follow one node's status changes (leader, term, membership,
    /// reachability) until interrupted.
    Watch,
    /// Ask every endpoint's standard gRPC health service
    /// (`grpc.health.v1.Health/Check`): exit 0 if all are SERVING, else 1.
    /// For container health checks (the image has no shell or curl).
    Health(HealthArgs),
    /// Re-form a cluster that lost its quorum for good (status says
    /// "wedged") from the one endpoint given, as etcd's
    /// --force-new-cluster: that node and the voters that still answer
    /// become the only voters, over that node's log and data. Writes
    /// committed without reaching that node are lost: run it on the node
    /// with the longest log (status: last index). Nodes that restarted join
    /// it by themselves.
    ForceNewCluster(ForceArgs),
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ForceArgs {
    /// Confirms that writes committed without reaching this node may be lost.
    #[arg(long)]
    pub yes: bool,
}

impl Command {
    /// The timeout when `--timeout` is not given.
    pub fn default_timeout(&self) -> Duration {
        match self {
            Command::Member(MemberCommand::List) => Duration::from_secs(5),
            Command::Member(_)
            | Command::Leader(_)
            | Command::Snapshot
            | Command::ForceNewCluster(_) => Duration::from_secs(600),
            _ => Duration::from_secs(5),
        }
    }
}

/// `member …`
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum MemberCommand {
    /// The committed membership.
    List,
    /// Admit a node started with --join: as a voter once it has caught up
    /// (the default), or as a learner.
    Add {
        /// Its member id.
        id: u32,
        /// Its Raft peer address (host:port).
        #[arg(value_parser = parse_raft_addr)]
        raft_addr: String,
        /// Keep it a learner (do not promote it to voter).
        #[arg(long)]
        learner: bool,
    },
    /// Make a learner a voter (once it has caught up).
    Promote {
        /// The learner's member id.
        id: u32,
    },
    /// Remove a member (voter or learner).
    Remove {
        /// Its member id.
        id: u32,
        /// Remove it even if fewer live voters than a quorum would be left.
        #[arg(long)]
        force: bool,
    },
    /// Add a new node, wait for it to catch up, then swap it for an old member.
    Replace {
        /// The member that leaves.
        old_id: u32,
        /// The member id of the node that takes its place.
        new_id: u32,
        /// The new node's Raft peer address (host:port).
        #[arg(value_parser = parse_raft_addr)]
        new_raft_addr: String,
    },
}

/// `leader …`
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum LeaderCommand {
    /// Make the named voter the leader.
    Transfer {
        /// The voter's member id.
        id: u32,
    },
}

/// `digest` options.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DigestArgs {
    /// How many times to ask every endpoint before giving up on their
    /// applied indexes lining up.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Pause between rounds.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub interval: Duration,
}

/// `health` options.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct HealthArgs {
    /// The service to check: empty for the whole node (SERVING while it is a
    /// member with a usable leader and has applied its log), or a service
    /// name such as `raftcache.admin.v1.Admin`.
    #[arg(long, default_value = "", value_name = "NAME")]
    pub service: String,
}

impl Command {
    /// The command as typed, for error messages: `member remove 9`.
    pub fn describe(&self) -> String {
        match self {
            Command::Status => "status".into(),
            Command::Members | Command::Member(MemberCommand::List) => "members".into(),
            Command::Member(MemberCommand::Add { id, raft_addr, .. }) => {
                format!("member add {id} {raft_addr}")
            }
            Command::Member(MemberCommand::Promote { id }) => format!("member promote {id}"),
            Command::Member(MemberCommand::Remove { id, .. }) => format!("member remove {id}"),
            Command::Member(MemberCommand::Replace { old_id, new_id, .. }) => {
                format!("member replace {old_id} {new_id}")
            }
            Command::Leader(LeaderCommand::Transfer { id }) => format!("leader transfer {id}"),
            Command::Snapshot => "snapshot".into(),
            Command::Digest(_) => "digest".into(),
            Command::Watch => "watch".into(),
            Command::Health(_) => "health".into(),
            Command::ForceNewCluster(_) => "force-new-cluster".into(),
        }
    }
}

/// An admin endpoint: as the user wrote it (shown in tables and errors) and
/// the URI to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As given: `127.0.0.1:7379`.
    pub shown: String,
    /// With a scheme: `http://127.0.0.1:7379`.
    pub uri: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The admin token as the metadata value it is sent as (`Bearer <token>`).
/// Its Debug form does not show it.
#[derive(Clone)]
pub struct Token(pub AsciiMetadataValue);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// `host:port` (http:// prepended) or a URL with a scheme.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let shown = s.trim();
    if shown.is_empty() {
        return Err("empty endpoint".into());
    }
    let uri = if shown.contains("://") {
        shown.to_string()
    } else {
        parse_host_port(shown)?;
        format!("http://{shown}")
    };
    let parsed: Uri = uri.parse().map_err(|e| format!("{shown}: {e}"))?;
    if parsed.host().is_none() {
        return Err(format!("{shown}: no host"));
    }
    Ok(Target { shown: shown.to_string(), uri })
}

/// A Raft peer address: `host:port`, port 1–65535.
pub fn parse_raft_addr(s: &str) -> Result<String, String> {
    parse_host_port(s)?;
    Ok(s.to_string())
}

/// Checks `host:port` (an IPv6 host in brackets: `[::1]:7380`).
fn parse_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s}: expected host:port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(format!("{s}: expected host:port"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{s}: the port must be a number from 1 to 65535")),
    }
}

/// A token for `authorization: Bearer <token>`: non-empty, visible ASCII.
pub fn parse_token(s: &str) -> Result<Token, String> {
    if s.is_empty() {
        return Err("the token is empty".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII characters (no spaces)".into());
    }
    format!("Bearer {s}")
        .parse::<AsciiMetadataValue>()
        .map(Token)
        .map_err(|_| "the token cannot be sent as gRPC metadata".into())
}

/// A duration as humantime reads it: `100ms`, `5s`, `1m 30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 500ms, 5s, 1m)"))
}

/// A duration greater than zero.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("the timeout must be more than 0".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("raftcachectl").chain(args.iter().copied()))
    }

    fn parse_ok(args: &[&str]) -> Cli {
        match parse(args) {
            Ok(cli) => cli,
            Err(e) => panic!("{args:?} did not parse: {e}"),
        }
    }

    fn parse_err(args: &[&str]) -> ErrorKind {
        match parse(args) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn defaults() {
        // (--endpoints is given: RAFTCACHE_ENDPOINTS may be set where the
        // tests run.)
        let cli = parse_ok(&["--endpoints", "127.0.0.1:7379", "status"]);
        assert_eq!(cli.endpoints.len(), 1);
        assert_eq!(cli.endpoints[0].shown, "127.0.0.1:7379");
        assert_eq!(cli.endpoints[0].uri, "http://127.0.0.1:7379");
        assert_eq!(cli.timeout, None);
        assert_eq!(cli.command.default_timeout(), Duration::from_secs(5));
        assert!(!cli.json);
        assert_eq!(cli.command, Command::Status);
    }

    #[test]
    fn global_flags_before_or_after_the_command() {
        let cli = parse_ok(&[
            "--endpoints",
            "a:1,b:2,http://c:3",
            "--timeout",
            "250ms",
            "status",
            "--json",
        ]);
        let shown: Vec<_> = cli.endpoints.iter().map(|t| t.shown.as_str()).collect();
        assert_eq!(shown, ["a:1", "b:2", "http://c:3"]);
        assert_eq!(cli.endpoints[2].uri, "http://c:3");
        assert_eq!(cli.timeout, Some(Duration::from_millis(250)));
        assert!(cli.json);
    }

    #[test]
    fn member_commands() {
        let add = parse_ok(&["member", "add", "4", "10.0.0.4:7380"]).command;
        assert_eq!(
            add,
            Command::Member(MemberCommand::Add {
                id: 4,
                raft_addr: "10.0.0.4:7380".into(),
                learner: false
            })
        );
        let learner = parse_ok(&["member", "add", "4", "h:7380", "--learner"]).command;
        assert!(matches!(learner, Command::Member(MemberCommand::Add { learner: true, .. })));
        let remove = parse_ok(&["member", "remove", "9", "--force"]).command;
        assert_eq!(remove, Command::Member(MemberCommand::Remove { id: 9, force: true }));
        assert_eq!(remove.describe(), "member remove 9");
        let replace = parse_ok(&["member", "replace", "2", "5", "h:7380"]).command;
        assert_eq!(
            replace,
            Command::Member(MemberCommand::Replace {
                old_id: 2,
                new_id: 5,
                new_raft_addr: "h:7380".into()
            })
        );
        assert_eq!(parse_ok(&["member", "list"]).command.describe(), "members");
        assert_eq!(parse_ok(&["members"]).command, Command::Members);
        assert_eq!(
            parse_ok(&["leader", "transfer", "3"]).command,
            Command::Leader(LeaderCommand::Transfer { id: 3 })
        );
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        assert_eq!(parse_err(&["member", "remove", "notanumber"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["member", "remove", "-1"]), ErrorKind::UnknownArgument);
        assert_eq!(parse_err(&["member", "add", "4", "nohostport"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["member", "add", "4", "h:0"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["member", "add", "4"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(parse_err(&["frobnicate"]), ErrorKind::InvalidSubcommand);
        assert_eq!(parse_err(&["--timeout", "soon", "status"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["--timeout", "0s", "status"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["--endpoints", "localhost", "status"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["--endpoints", "a:1,,b:2", "status"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["--token", "", "status"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["--token", "a b", "status"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&["digest", "--rounds", "0"]), ErrorKind::ValueValidation);
        assert_eq!(parse_err(&[]), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
    }

    #[test]
    fn token_is_sent_as_bearer_and_hidden_in_debug() {
        let token = parse_token("s3cret").unwrap();
        assert_eq!(token.0.to_str().unwrap(), "Bearer s3cret");
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn digest_options() {
        let Command::Digest(args) = parse_ok(&["digest"]).command else { panic!("not digest") };
        assert_eq!(args, DigestArgs { rounds: 20, interval: Duration::from_millis(100) });
        let Command::Digest(args) =
            parse_ok(&["digest", "--rounds", "3", "--interval", "1s"]).command
        else {
            panic!("not digest")
        };
        assert_eq!(args, DigestArgs { rounds: 3, interval: Duration::from_secs(1) });
    }

    #[test]
    fn health_options() {
        let cli = parse_ok(&["--endpoints", "127.0.0.1:7379", "health"]);
        assert_eq!(cli.command, Command::Health(HealthArgs { service: String::new() }));
        assert_eq!(cli.command.default_timeout(), Duration::from_secs(5));
        assert_eq!(cli.command.describe(), "health");
        let cli = parse_ok(&["health", "--service", "raftcache.admin.v1.Admin"]);
        assert_eq!(
            cli.command,
            Command::Health(HealthArgs { service: "raftcache.admin.v1.Admin".into() })
        );
        assert_eq!(parse_err(&["health", "--service"]), ErrorKind::InvalidValue);
        assert_eq!(parse_err(&["health", "extra"]), ErrorKind::UnknownArgument);
    }

    #[test]
    fn endpoints_forms() {
        assert_eq!(parse_target(" [::1]:7379 ").unwrap().uri, "http://[::1]:7379");
        assert_eq!(parse_target("https://node:443").unwrap().uri, "https://node:443");
        assert!(parse_target("h:99999").is_err());
        assert!(parse_target("http://").is_err());
    }

    #[test]
    fn verify_clap_definition() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
