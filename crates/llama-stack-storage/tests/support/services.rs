//! The database servers tests talk to: the machine's shared PostgreSQL (127.0.0.1:5432,
//! database `test`, user `postgres`, trust auth) and Redis (127.0.0.1:6379), and private
//! throw-away instances for tests that stop and restart a server.
//!
//! A test that needs a server calls [`postgres_available`] / [`redis_available`] first:
//! when the server is absent it prints that it skipped and returns — unless `CI=true`,
//! where a missing server fails the test instead of silently skipping it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Host of the shared servers.
pub const HOST: &str = "127.0.0.1";
/// Port of the shared PostgreSQL.
pub const PG_PORT: u16 = 5432;
/// Database of the shared PostgreSQL.
pub const PG_DB: &str = "test";
/// User of the shared PostgreSQL (trust auth).
pub const PG_USER: &str = "postgres";
/// Port of the shared Redis.
pub const REDIS_PORT: u16 = 6379;
/// Where PostgreSQL 15's server binaries live on Debian.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Whether this is a CI run (`CI=true`), where missing servers are failures.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn reachable(port: u16) -> bool {
    let addr: SocketAddr = format!("{HOST}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Skips (prints and returns false) or, under CI, fails when `what` is missing.
pub fn require(test: &str, what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("{test}: {what} is required when CI=true (.ci/run starts it)");
    }
    eprintln!("SKIPPED {test}: {what} is not available on this machine");
    false
}

/// Whether the shared PostgreSQL is up (see the module doc for skipping).
pub fn postgres_available(test: &str) -> bool {
    require(
        test,
        &format!("PostgreSQL at {HOST}:{PG_PORT}"),
        reachable(PG_PORT),
    )
}

/// Whether the shared Redis is up (see the module doc for skipping).
pub fn redis_available(test: &str) -> bool {
    require(
        test,
        &format!("Redis at {HOST}:{REDIS_PORT}"),
        reachable(REDIS_PORT),
    )
}

/// Whether private PostgreSQL instances can be started (initdb and pg_ctl present).
pub fn private_postgres_available(test: &str) -> bool {
    require(
        test,
        &format!("PostgreSQL server binaries in {PG_BIN}"),
        Path::new(PG_BIN).join("initdb").exists() && Path::new(PG_BIN).join("pg_ctl").exists(),
    )
}

/// Whether private Redis instances can be started (`redis-server` on the PATH).
pub fn private_redis_available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(test, "redis-server", found)
}

/// A suffix unique to this process and call: `<pid>_<nanos>_<n>`, safe in identifiers.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}_{nanos}_{n}", std::process::id())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `program args…`, as the `postgres` user when we are root (initdb refuses root).
fn run_pg(program: &str, args: &[&str]) -> std::process::Output {
    let path = format!("{PG_BIN}/{program}");
    let output = if is_root() {
        let quoted: Vec<String> = std::iter::once(path.clone())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", &quoted.join(" ")])
            .stdin(Stdio::null())
            .output()
    } else {
        Command::new(&path).args(args).stdin(Stdio::null()).output()
    };
    output.unwrap_or_else(|e| panic!("cannot run {path}: {e}"))
}

/// A private PostgreSQL server in a temporary directory, on its own port, that a test may
/// stop and start at will. Dropped → stopped and deleted.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    data: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PrivatePostgres {
    /// Initialises a cluster (user `postgres`, trust auth) and starts it.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("llama-stack-pg-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of {}", dir.path().display());
        }
        let out = run_pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PrivatePostgres {
            dir,
            data,
            port: free_port(),
        };
        pg.start_server();
        let port = pg.port.to_string();
        let out = run_pg(
            "createdb",
            &["-h", HOST, "-p", &port, "-U", "postgres", PG_DB],
        );
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let out = run_pg(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: no clean shutdown).
    pub fn stop(&self) {
        let out = run_pg(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the stopped server again on the same port, with the same data.
    pub fn restart(&self) {
        self.start_server();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = run_pg(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}

/// A private Redis server without persistence on its own port. Dropped → killed.
pub struct PrivateRedis {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free port and waits until it answers.
    pub fn start() -> Self {
        let mut redis = PrivateRedis {
            child: None,
            port: free_port(),
        };
        redis.restart();
        redis
    }

    /// Kills the server (SIGKILL); its data is gone, as after a crash without persistence.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if reachable(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
