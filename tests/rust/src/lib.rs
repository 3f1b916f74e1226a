//! Test harness for the real-client tests in `tests/redis_rs.rs`.
//!
//! [`Server::start`] runs the binary named by the environment variable
//! `RAFTCACHE_BIN` (`--port N --bind 127.0.0.1`) on a free loopback port,
//! waits until it answers `PING`, and stops it by pid at drop (SIGTERM, then
//! SIGKILL after a timeout). Its stdout/stderr go to a temporary log file that
//! is printed when the test that owns the server panics.
//!
//! `RAFTCACHE_BIN` unset or pointing to a missing file is a test failure
//! (panic), never a skip. Pointing it at a real `redis-server` runs the same
//! tests against Redis (the harness adds `--save "" --appendonly no`), which
//! is how the expectations were checked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The server binary from `RAFTCACHE_BIN`; panics with a clear message if it
/// is unset or missing.
pub fn server_bin() -> PathBuf {
    let bin = std::env::var_os("RAFTCACHE_BIN").unwrap_or_else(|| {
        panic!(
            "RAFTCACHE_BIN is not set: set it to the raftcache server binary, e.g. \
             RAFTCACHE_BIN=$PWD/target/debug/raftcache (these tests are never skipped)"
        )
    });
    let path = PathBuf::from(bin);
    assert!(
        path.is_file(),
        "RAFTCACHE_BIN={} does not exist or is not a file (build it with \
         `cargo build -p raftcache-node`)",
        path.display()
    );
    path
}

fn is_redis_server(bin: &Path) -> bool {
    bin.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("redis-server"))
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    l.local_addr().unwrap().port()
}

/// A running server process owned by one test.
pub struct Server {
    child: Option<Child>,
    port: u16,
    log_path: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Server {
    /// Starts a fresh server without a password.
    pub fn start() -> Server {
        Server::start_with_args(&[])
    }

    /// Starts a fresh server with extra command-line arguments.
    pub fn start_with_args(extra: &[&str]) -> Server {
        let bin = server_bin();
        let mut last_err = String::new();
        // A free port can be taken between probing and binding: retry a few times.
        for _attempt in 0..3 {
            let port = free_port();
            let log_path = std::env::temp_dir().join(format!(
                "raftcache-client-tests-{}-{}-{}.log",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed),
                port
            ));
            let log = std::fs::File::create(&log_path).expect("create server log file");
            let mut cmd = Command::new(&bin);
            cmd.arg("--port").arg(port.to_string()).arg("--bind").arg("127.0.0.1");
            if is_redis_server(&bin) {
                cmd.args(["--save", "", "--appendonly", "no"]);
            } else {
                // A one-node cluster; its Raft, admin and metrics ports are
                // picked by the OS.
                cmd.args(["--raft-port", "0", "--admin-port", "0", "--metrics-port", "0"]);
            }
            cmd.args(extra)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let child =
                cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = Server { child: Some(child), port, log_path };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => {
                    last_err = format!("{e}\n--- server log ---\n{}", server.log());
                    server.stop();
                }
            }
        }
        panic!("server {} did not become ready: {last_err}", bin.display());
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("server exited early with {status}"));
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() {
                    let mut line = String::new();
                    let mut r = BufReader::new(s);
                    // A password-protected server answers -NOAUTH: it is up too.
                    if r.read_line(&mut line).is_ok()
                        && (line == "+PONG\r\n" || line.starts_with("-NOAUTH"))
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no PING reply on port {} within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> (&'static str, u16) {
        ("127.0.0.1", self.port)
    }

    /// Is the server process still running?
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// SIGTERM by pid, then SIGKILL after [`STOP_TIMEOUT`]; idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if child.try_wait().unwrap().is_none() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    eprintln!(
                        "server pid {} ignored SIGTERM for {STOP_TIMEOUT:?}: SIGKILL",
                        child.id()
                    );
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- raftcache server log (port {}, {}) ---\n{}\n--- end of server log ---",
                self.port,
                self.log_path.display(),
                self.log()
            );
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}
