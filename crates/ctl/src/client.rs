//! Connecting to an admin endpoint, the token interceptor, and turning
//! transport errors and gRPC statuses into one readable line.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use raftcache_proto::admin::admin_client::AdminClient;
use tonic::codegen::InterceptedService;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::cli::Target;

/// An admin client with the token interceptor.
pub type Admin = AdminClient<InterceptedService<Channel, Auth>>;

/// Adds `authorization: Bearer <token>` to every request when a token is set.
#[derive(Clone, Debug, Default)]
pub struct Auth(pub Option<AsciiMetadataValue>);

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The longest wait for a connection, whatever `--timeout` says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection shares: the token and the timeout.
#[derive(Clone, Debug)]
pub struct Settings {
    pub auth: Auth,
    pub timeout: Duration,
}

/// How a call to one endpoint failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// No connection could be made: nothing was sent.
    Connect,
    /// The request may have been sent but the node could not be reached
    /// (UNAVAILABLE) or did not answer in time.
    Unreachable,
    /// The node answered with an error.
    Answered,
}

/// A failed call to one endpoint, as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub endpoint: String,
    pub failed: Failed,
    /// One line, without the endpoint.
    pub message: String,
}

impl CallError {
    /// `endpoint: message`.
    pub fn with_endpoint(&self) -> String {
        format!("{}: {}", self.endpoint, self.message)
    }

    /// The line for a command sent to one node: a connection problem names
    /// the endpoint; a node's answer is shown as it is.
    pub fn for_command(&self) -> String {
        match self.failed {
            Failed::Answered => self.message.clone(),
            Failed::Connect | Failed::Unreachable => self.with_endpoint(),
        }
    }
}

/// Connects to one endpoint. Connecting, and every call, must answer within
/// the timeout (a stream is not cut once it has started: tonic's timeout
/// covers a call until its response headers).
pub async fn connect(target: &Target, settings: &Settings) -> Result<Admin, CallError> {
    let channel = open_channel(target, settings).await?;
    Ok(AdminClient::with_interceptor(channel, settings.auth.clone()))
}

/// A connection to one endpoint, with the timeouts of [`connect`].
async fn open_channel(target: &Target, settings: &Settings) -> Result<Channel, CallError> {
    let failed = |message: String| CallError {
        endpoint: target.shown.clone(),
        failed: Failed::Connect,
        message,
    };
    // A long call (a membership change) still gives up soon on an endpoint
    // that does not even connect.
    let connect_timeout = settings.timeout.min(CONNECT_TIMEOUT);
    let endpoint = Endpoint::from_shared(target.uri.clone())
        .map_err(|e| failed(most_specific(&e)))?
        .connect_timeout(connect_timeout)
        .timeout(settings.timeout);
    match tokio::time::timeout(connect_timeout, endpoint.connect()).await {
        Err(_) => Err(failed(no_answer_within(connect_timeout, "connection"))),
        Ok(Err(e)) => Err(failed(with_port_hint(most_specific(&e)))),
        Ok(Ok(channel)) => Ok(channel),
    }
}

/// The standard gRPC health check (`grpc.health.v1.Health/Check`) of one
/// endpoint for `service` ("" is the whole server): the serving status it
/// answers. The token is sent as on every call (the node does not ask for
/// it on this service, a proxy in front of it might).
pub async fn check_health(
    target: &Target,
    settings: &Settings,
    service: &str,
) -> Result<i32, CallError> {
    let channel = open_channel(target, settings).await?;
    let mut client = HealthClient::with_interceptor(channel, settings.auth.clone());
    let request = HealthCheckRequest { service: service.to_string() };
    match client.check(request).await {
        Ok(reply) => Ok(reply.into_inner().status),
        Err(status) => {
            let (failed, message) = describe_status(&status, HEALTH_CHECK, settings.timeout);
            Err(CallError { endpoint: target.shown.clone(), failed, message })
        }
    }
}

/// The health check's name in messages.
const HEALTH_CHECK: &str = "grpc.health.v1.Health/Check";

/// An HTTP/2 protocol error while connecting usually means the port is not
/// an admin port (a RESP port answers the HTTP/2 preface with a Redis error).
fn with_port_hint(message: String) -> String {
    if message.starts_with("connection error detected") {
        format!("{message} (not a gRPC admin port?)")
    } else {
        message
    }
}

/// Connects to `target` and makes one call (`rpc` names it in messages).
pub async fn call<T, F, Fut>(
    target: &Target,
    settings: &Settings,
    rpc: &str,
    op: F,
) -> Result<T, CallError>
where
    F: FnOnce(Admin) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let client = connect(target, settings).await?;
    op(client).await.map(tonic::Response::into_inner).map_err(|status| {
        let (failed, message) = describe_status(&status, rpc, settings.timeout);
        CallError { endpoint: target.shown.clone(), failed, message }
    })
}

/// Makes the call on the first endpoint that answers: an endpoint that
/// cannot be connected to is skipped, and so, when `retry_unreachable` (the
/// call changes nothing), is one that is unreachable once connected. When
/// none answers, all their errors are returned.
pub async fn first_answering<T, F, Fut>(
    targets: &[Target],
    settings: &Settings,
    rpc: &str,
    retry_unreachable: bool,
    op: F,
) -> Result<(Target, T), Vec<CallError>>
where
    F: Fn(Admin) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut errors = Vec::new();
    for target in targets {
        match call(target, settings, rpc, &op).await {
            Ok(reply) => return Ok((target.clone(), reply)),
            Err(e) if skip_to_next(&e, retry_unreachable) => errors.push(e),
            Err(e) => return Err(vec![e]),
        }
    }
    Err(errors)
}

/// Whether a failed call may be tried on the next endpoint.
fn skip_to_next(e: &CallError, retry_unreachable: bool) -> bool {
    match e.failed {
        Failed::Connect => true,
        Failed::Unreachable => retry_unreachable,
        Failed::Answered => false,
    }
}

/// One line for the errors of [`first_answering`].
pub fn none_answered(errors: &[CallError]) -> String {
    match errors {
        [] => "no endpoint given".into(),
        [one] => one.for_command(),
        many => {
            let each: Vec<_> = many.iter().map(CallError::with_endpoint).collect();
            format!("no endpoint answered: {}", each.join("; "))
        }
    }
}

/// A gRPC status as one line, and whether the node answered it.
pub fn describe_status(status: &Status, rpc: &str, timeout: Duration) -> (Failed, String) {
    let message = one_line(status.message());
    match status.code() {
        Code::Unimplemented => (
            Failed::Answered,
            format!("the node does not implement {rpc} (UNIMPLEMENTED: an older raftcache?)"),
        ),
        Code::Unauthenticated => (
            Failed::Answered,
            format!("{} (set --token or RAFTCACHE_ADMIN_TOKEN)", or_code(message, status.code())),
        ),
        Code::Cancelled if is_timeout(status) => {
            (Failed::Unreachable, no_answer_within(timeout, "answer"))
        }
        Code::Unavailable | Code::Unknown if status.source().is_some() => {
            (Failed::Unreachable, most_specific(status))
        }
        Code::Unavailable => (Failed::Unreachable, or_code(message, status.code())),
        code => (Failed::Answered, or_code(message, code)),
    }
}

/// Whether tonic's client-side request timeout ended the call.
fn is_timeout(status: &Status) -> bool {
    let expired = tonic::TimeoutExpired(()).to_string();
    status.message() == expired
        || chain(status).any(|e| e.downcast_ref::<tonic::TimeoutExpired>().is_some())
}

/// `no answer within 5s` (`what`: what did not come).
fn no_answer_within(timeout: Duration, what: &str) -> String {
    format!("no {what} within {} (--timeout)", humantime::format_duration(timeout))
}

/// A status message, or the code's description when the message is empty.
fn or_code(message: String, code: Code) -> String {
    if message.is_empty() {
        code.description().to_string()
    } else {
        message
    }
}

/// An error and its sources, outermost first.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// The most specific message of an error: the innermost source that says
/// something (`connection refused` rather than `transport error`), without
/// the OS error number and starting in lowercase.
pub fn most_specific(error: &(dyn StdError + 'static)) -> String {
    let messages: Vec<String> = chain(error).map(|e| one_line(&e.to_string())).collect();
    let innermost = messages.iter().rev().find(|m| !m.is_empty());
    innermost.map_or_else(|| "unknown error".into(), |m| tidy(m))
}

/// `Connection refused (os error 111)` → `connection refused`.
fn tidy(message: &str) -> String {
    let trimmed = match message.rfind(" (os error ") {
        Some(at) if message.ends_with(')') => &message[..at],
        _ => message,
    };
    let mut chars = trimmed.chars();
    match (chars.next(), chars.next()) {
        // "Connection refused" but not "HTTP/2" or "IO error".
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(trimmed[first.len_utf8()..].chars()).collect()
        }
        _ => trimmed.to_string(),
    }
}

/// Newlines and runs of whitespace become one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::io;

    use super::*;

    /// An error with a source, like tonic's transport error.
    #[derive(Debug)]
    struct Outer(&'static str, Box<dyn StdError + Send + Sync>);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.1)
        }
    }

    fn refused() -> Outer {
        let os = io::Error::from_raw_os_error(111);
        Outer("transport error", Box::new(Outer("tcp connect error", Box::new(os))))
    }

    #[test]
    fn innermost_message_without_os_error_number() {
        assert_eq!(most_specific(&refused()), "connection refused");
        let dns =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(
            most_specific(&Outer("transport error", Box::new(dns))),
            "failed to lookup address information: Name or service not known"
        );
        assert_eq!(tidy("HTTP/2 error"), "HTTP/2 error");
        assert_eq!(tidy("IO error"), "IO error");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }

    #[test]
    fn statuses_become_one_line() {
        let t = Duration::from_secs(5);
        let refused = Status::failed_precondition("would leave 1 of 3 voters");
        assert_eq!(
            describe_status(&refused, "RemoveMember", t),
            (Failed::Answered, "would leave 1 of 3 voters".into())
        );
        let (failed, msg) = describe_status(&Status::unimplemented("members"), "Members", t);
        assert_eq!(failed, Failed::Answered);
        assert!(msg.starts_with("the node does not implement Members"), "{msg}");
        let (_, msg) = describe_status(&Status::unauthenticated(""), "Status", t);
        assert_eq!(msg, "The request does not have valid authentication credentials (set --token or RAFTCACHE_ADMIN_TOKEN)");
        let timeout = Status::cancelled(tonic::TimeoutExpired(()).to_string());
        assert_eq!(
            describe_status(&timeout, "Status", Duration::from_millis(500)),
            (Failed::Unreachable, "no answer within 500ms (--timeout)".into())
        );
        let gone = Status::from_error(Box::new(refused_error()));
        assert_eq!(describe_status(&gone, "Status", t).0, Failed::Unreachable);
        let (failed, msg) =
            describe_status(&Status::not_found("no member 9\nin the cluster"), "X", t);
        assert_eq!((failed, msg.as_str()), (Failed::Answered, "no member 9 in the cluster"));
    }

    fn refused_error() -> Outer {
        refused()
    }

    #[test]
    fn failover_only_when_nothing_was_done() {
        let e = |failed| CallError { endpoint: "a:1".into(), failed, message: "m".into() };
        assert!(skip_to_next(&e(Failed::Connect), false));
        assert!(!skip_to_next(&e(Failed::Unreachable), false));
        assert!(skip_to_next(&e(Failed::Unreachable), true));
        assert!(!skip_to_next(&e(Failed::Answered), true));
        assert_eq!(none_answered(&[e(Failed::Connect)]), "a:1: m");
        assert_eq!(none_answered(&[e(Failed::Answered)]), "m");
        assert_eq!(
            none_answered(&[e(Failed::Connect), e(Failed::Connect)]),
            "no endpoint answered: a:1: m; a:1: m"
        );
    }

    #[test]
    fn interceptor_adds_the_token() {
        let value: AsciiMetadataValue = "Bearer t0k".parse().unwrap();
        let request = Auth(Some(value)).call(Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer t0k");
        let request = Auth(None).call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }
}
