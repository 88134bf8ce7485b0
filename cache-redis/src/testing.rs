//! Real servers for tests (feature `testing`): [`RedisServer`] and [`RedisCluster`].
//!
//! Each spawns `redis-server` (the binary named by `REDIS_SERVER_BIN`, default `redis-server`;
//! `redis-cli` from `REDIS_CLI_BIN` for the cluster) on free loopback ports, with no
//! persistence and a temporary directory, waits until it answers, and kills it on drop. A test
//! owns its servers, so tests run in parallel and never touch a shared server. Failures panic
//! with the server's log.
//!
//! Outages are played on a real server: [`RedisServer::stop`] and
//! [`start_again`](RedisServer::start_again) on the same port, [`pause`](RedisServer::pause)
//! and [`resume`](RedisServer::resume) (`SIGSTOP`/`SIGCONT`: a hung server), and
//! [`RedisServer::reserve`] for a server that is not up yet. [`RedisServer::command_calls`]
//! counts what reached it (`INFO commandstats`).
//!
//! A server counts as started once its process is alive and the server answering on its port
//! works in its directory (`CONFIG GET dir`): when another process took the port first, ours
//! exits and the other one answers, and the helper tries other ports.
//!
//! A server is started through a small `sh` watchdog that holds a pipe from the test process:
//! when the test process ends in any way (a panic, a timeout, `SIGKILL`), the pipe closes and
//! the watchdog kills the server and removes its directory. No test run leaves a server
//! behind.
//!
//! ```no_run
//! use cache_redis::{RedisStore, testing::RedisServer};
//!
//! # async fn run() {
//! let server = RedisServer::start();
//! let store = RedisStore::builder(server.url()).connect().await.unwrap();
//! # }
//! ```

use std::{
    future::Future,
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::RedisStore;

/// How long a server may take to answer after being spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a cluster may take to reach `cluster_state:ok`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

fn server_bin() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

fn cli_bin() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_owned())
}

/// A loopback port nobody listens on; with `bus`, port + 10000 (the cluster bus) is free too.
fn free_port_for(bus: bool) -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        if !bus {
            return port;
        }
        let Some(bus_port) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus_port)).is_ok() {
            return port;
        }
    }
}

/// Sends one inline command on a fresh connection and reads the first `lines` reply lines
/// (without their line ends).
fn inline_command(port: u16, command: &str, lines: usize) -> std::io::Result<Vec<String>> {
    let mut stream = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut out = Vec::with_capacity(lines);
    for _ in 0..lines {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        out.push(line.trim_end_matches(['\r', '\n']).to_owned());
        // An error reply is one line.
        if line.starts_with('-') {
            break;
        }
    }
    Ok(out)
}

/// The working directory of the server answering on `port` (`CONFIG GET dir`), by which a
/// helper tells its own server from another one that took the port.
fn answering_dir(port: u16) -> Option<PathBuf> {
    // `*2`, `$3`, `dir`, `$<len>`, the directory.
    let reply = inline_command(port, "CONFIG GET dir", 5).ok()?;
    (reply.len() == 5 && reply[0] == "*2" && reply[2] == "dir").then(|| PathBuf::from(&reply[4]))
}

/// Runs `redis-server` (`"$@"`) under a watchdog reading the test process's pipe (fd 3): on
/// end of file it kills the server, and removes its directory unless told `keep` first (a
/// deliberate stop that may start the server again). The shell exits when the server does.
const WATCHDOG: &str = r#"exec 3<&0
"$@" 3<&- </dev/null &
pid=$!
{ read -r how <&3; kill -9 "$pid" 2>/dev/null; [ "$how" = keep ] || rm -rf "$MODEL_CACHE_TEST_DIR"; } &
wait "$pid"
"#;

/// A running server: its watchdog shell and the pipe that keeps it alive.
#[derive(Debug)]
struct Process {
    shell: Child,
    lifeline: ChildStdin,
}

impl Process {
    /// Kills the server and waits until it is gone; its directory stays.
    fn stop(mut self) {
        let _ = self.lifeline.write_all(b"keep\n");
        drop(self.lifeline);
        let _ = self.shell.wait();
    }
}

/// A `redis-server` process owned by a test.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// The second, TLS, port of a server from [`RedisServer::start_with_tls`].
    tls_port: Option<u16>,
    dir: TempDir,
    args: Vec<String>,
    process: Option<Process>,
    /// The process id of a server stopped by [`RedisServer::pause`].
    paused: Option<u32>,
}

impl RedisServer {
    /// A server that is not running yet, on a free port: clients given its
    /// [`url`](Self::url) find nothing there until [`start_again`](Self::start_again)
    /// starts it (for tests of what happens while Redis is down at start-up).
    pub fn reserve() -> Self {
        Self {
            port: free_port_for(false),
            tls_port: None,
            dir: tempfile::tempdir().expect("create a temporary directory"),
            args: Vec::new(),
            process: None,
            paused: None,
        }
    }

    /// Starts a server on a free loopback port.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`["--maxmemory", "10mb"]`).
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_inner(args, false, false)
    }

    /// Starts a server that also accepts TLS connections on a second free port
    /// ([`RedisServer::tls_port`]); `args` name its certificates (`--tls-cert-file`,
    /// `--tls-key-file`, `--tls-ca-cert-file`, ...).
    pub fn start_with_tls(args: &[&str]) -> Self {
        Self::start_inner(args, false, true)
    }

    fn start_inner(args: &[&str], bus: bool, tls: bool) -> Self {
        let mut last_log = String::new();
        // Another process may take a port between choosing and binding it: try a few.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port_for(bus),
                tls_port: tls.then(|| free_port_for(false)),
                dir: tempfile::tempdir().expect("create a temporary directory"),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                process: None,
                paused: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start on a free port; last log:\n{last_log}");
    }

    /// Spawns the process and waits until it answers `PING`. `Err` carries the log when a
    /// port was taken; other failures panic.
    fn spawn(&mut self) -> Result<(), String> {
        let bin = server_bin();
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("redis-server-watchdog")
            .arg(&bin)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(
                self.tls_port
                    .map(|port| ["--tls-port".to_owned(), port.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.args)
            .env("MODEL_CACHE_TEST_DIR", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(self.output_file())
            .stderr(self.output_file())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh to start {bin:?}: {e}"));
        let lifeline = shell.stdin.take().expect("the watchdog's stdin is piped");
        self.process = Some(Process { shell, lifeline });
        let ours = std::fs::canonicalize(self.dir.path()).unwrap_or_else(|_| self.dir.path().to_owned());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            // Our process first: once it has exited (a port was taken), whatever answers on the
            // port is someone else's.
            let exited = self
                .process
                .as_mut()
                .and_then(|p| p.shell.try_wait().ok().flatten())
                .is_some();
            if exited {
                if let Some(process) = self.process.take() {
                    process.stop();
                }
                let log = self.log();
                if log.contains("Address already in use") {
                    return Err(log);
                }
                panic!("{} on port {} exited at startup; log:\n{log}", server_bin(), self.port);
            }
            let pong = inline_command(self.port, "PING", 1).is_ok_and(|reply| reply == ["+PONG"]);
            // A server that answers may still be another one that had the port first (ours
            // then fails to bind it and exits): ours works in our directory.
            match pong.then(|| answering_dir(self.port)).flatten() {
                Some(dir) if dir == ours => return Ok(()),
                Some(dir) => {
                    if let Some(process) = self.process.take() {
                        process.stop();
                    }
                    return Err(format!(
                        "another server (in {}) answers on port {}\n{}",
                        dir.display(),
                        self.port,
                        self.log()
                    ));
                }
                None => {}
            }
            if Instant::now() > deadline {
                self.fail("did not answer PING in time");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Panics with `what` and the server's log.
    pub fn fail(&self, what: &str) -> ! {
        panic!("redis-server on port {}: {what}; log:\n{}", self.port, self.log())
    }

    /// Where the server's own output goes: errors it reports before it opens its log file (an
    /// unknown option, a binary built without TLS).
    fn output_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("output.log"))
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    /// The server's log so far (and what it printed before opening it).
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let (output, log) = (read("output.log"), read("redis.log"));
        if output.trim().is_empty() {
            log
        } else {
            format!("{output}{log}")
        }
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port of a server from [`RedisServer::start_with_tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The server's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Freezes the server with `SIGSTOP`: it keeps its port and its connections (the kernel
    /// still accepts new ones) but answers nothing until [`resume`](Self::resume), as a hung
    /// server does.
    pub fn pause(&mut self) {
        assert!(self.paused.is_none(), "the server is already paused");
        assert!(self.is_running(), "the server is not running");
        let info: String = self.query(redis::cmd("INFO").arg("server"));
        let pid: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| self.fail("INFO server named no process_id"));
        self.signal(pid, "-STOP");
        self.paused = Some(pid);
    }

    /// Lets a [paused](Self::pause) server run again (`SIGCONT`); it then answers everything
    /// sent to it meanwhile.
    pub fn resume(&mut self) {
        let pid = self.paused.take().expect("the server is not paused");
        self.signal(pid, "-CONT");
    }

    /// Whether the server is [paused](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    fn signal(&self, pid: u32, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| self.fail(&format!("cannot run kill: {e}")));
        if !status.success() {
            self.fail(&format!("kill {signal} {pid} failed: {status}"));
        }
    }

    /// How many times clients (and scripts) ran `command` since the server started or its
    /// statistics were reset (`CONFIG RESETSTAT`): `INFO commandstats`.
    pub fn command_calls(&self, command: &str) -> u64 {
        let info: String = self.query(redis::cmd("INFO").arg("commandstats"));
        let field = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
        info.lines()
            .find_map(|l| l.strip_prefix(&field))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// A cluster node's view of who serves which slots: `port slots...` per master, sorted.
    fn slot_table(&self) -> Vec<String> {
        let table: String = self.query(redis::cmd("CLUSTER").arg("NODES"));
        let mut masters: Vec<String> = table
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let address = fields.get(1)?.split('@').next()?;
                (fields.len() > 8).then(|| format!("{address} {}", fields[8..].join(" ")))
            })
            .collect();
        masters.sort();
        masters
    }

    /// Kills the server (the port is kept for [`RedisServer::start_again`]); a paused server
    /// too.
    pub fn stop(&mut self) {
        self.paused = None;
        if let Some(process) = self.process.take() {
            process.stop();
        }
    }

    /// Starts a stopped server again on the same ports (with an empty dataset): clients find
    /// it where it was. A port taken while the server was down is tried again a few times,
    /// never traded for another.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "the server is running");
        let mut last_log = String::new();
        for _ in 0..5 {
            match self.spawn() {
                Ok(()) => return,
                Err(log) => last_log = log,
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "port {} was taken while the server was down; log:\n{last_log}",
            self.port
        );
    }

    /// Kills the server and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// A redis-rs client for the server, for test set-up and inspection.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap_or_else(|e| self.fail(&format!("client: {e}")))
    }

    /// Runs one command on a fresh blocking connection; panics (with the log) on error.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut conn = self
            .client()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| self.fail(&format!("connect: {e}")));
        cmd.query(&mut conn)
            .unwrap_or_else(|e| self.fail(&format!("command failed: {e}")))
    }

    /// Runs `work` and answers the commands clients sent the server meanwhile (lower-case
    /// names, in order; commands run by scripts are not counted). Uses `MONITOR`, and an `ECHO`
    /// sent afterwards to know that every earlier command was seen.
    ///
    /// Only meaningful when nothing else talks to the server during `work`.
    pub async fn count_commands<F: Future>(&self, work: F) -> (F::Output, Vec<String>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

        let addr = (Ipv4Addr::LOCALHOST, self.port);
        let mut monitor = tokio::io::BufReader::new(
            tokio::net::TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| self.fail(&format!("monitor connect: {e}"))),
        );
        monitor
            .get_mut()
            .write_all(b"MONITOR\r\n")
            .await
            .unwrap_or_else(|e| self.fail(&format!("MONITOR: {e}")));
        let mut line = String::new();
        monitor
            .read_line(&mut line)
            .await
            .unwrap_or_else(|e| self.fail(&format!("MONITOR: {e}")));
        assert!(line.starts_with("+OK"), "MONITOR answered {line:?}");

        let output = work.await;

        let marker = format!("count-commands-{:016x}", rand::random::<u64>());
        let mut echo = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| self.fail(&format!("echo connect: {e}")));
        echo.write_all(format!("ECHO {marker}\r\n").as_bytes())
            .await
            .unwrap_or_else(|e| self.fail(&format!("ECHO: {e}")));
        let mut reply = [0u8; 64];
        let _ = echo.read(&mut reply).await;

        let mut commands = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            line.clear();
            match tokio::time::timeout_at(deadline, monitor.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => self.fail("MONITOR did not show the end marker"),
            }
            if line.contains(&marker) {
                break;
            }
            if let Some(name) = monitored_command(&line) {
                commands.push(name);
            }
        }
        (output, commands)
    }
}

/// The command of a `MONITOR` line sent by a client (`None` for one run by a script):
/// `+1700000000.123456 [0 127.0.0.1:5555] "mget" "a"`.
fn monitored_command(line: &str) -> Option<String> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    if line[open + 1..close].ends_with(" lua") {
        return None;
    }
    let rest = line[close + 1..].trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_ascii_lowercase())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of masters (no replicas) owned by a test.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts a cluster of three masters.
    pub fn start() -> Self {
        Self::start_with_masters(3)
    }

    /// Starts a cluster of `masters` masters (at least 3, as `redis-cli --cluster create`
    /// requires), joins them and waits until every node reports `cluster_state:ok`.
    pub fn start_with_masters(masters: usize) -> Self {
        Self::start_with_args(masters, &[])
    }

    /// [`start_with_masters`](Self::start_with_masters) with extra `redis-server` arguments
    /// for every node (`["--cluster-require-full-coverage", "no"]`).
    pub fn start_with_args(masters: usize, args: &[&str]) -> Self {
        assert!(masters >= 3, "redis-cli creates clusters of 3 masters or more");
        let mut node_args = vec!["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"];
        node_args.extend_from_slice(args);
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_inner(&node_args, true, false))
            .collect();
        let cluster = Self { nodes };
        let output = Command::new(cli_bin())
            .arg("--cluster")
            .arg("create")
            .args(cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli (set REDIS_CLI_BIN): {e}"));
        if !output.status.success() {
            cluster.fail(&format!(
                "redis-cli --cluster create failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        for node in &cluster.nodes {
            loop {
                let info: String = node.query(redis::cmd("CLUSTER").arg("INFO"));
                if info.contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    cluster.fail(&format!("node {} never reached cluster_state:ok:\n{info}", node.port));
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        // `cluster_state:ok` comes before every node knows every other's slots: a client that
        // read a stale map would be sent MOVED past its retries.
        loop {
            let views: Vec<Vec<String>> = cluster.nodes.iter().map(RedisServer::slot_table).collect();
            if views.windows(2).all(|w| w[0] == w[1]) && views[0].len() == masters {
                break;
            }
            if Instant::now() > deadline {
                cluster.fail(&format!("the nodes never agreed on the slots: {views:?}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        cluster
    }

    /// Panics with `what` and every node's log.
    pub fn fail(&self, what: &str) -> ! {
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port, n.log()))
            .collect();
        panic!("redis cluster: {what}\n{}", logs.join("\n"))
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, to stop, pause or restart it.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    /// The index of the node serving `key`'s hash slot, as the first running node's
    /// `CLUSTER NODES` says.
    pub fn owner_of(&self, key: &str) -> usize {
        let asking = self
            .nodes
            .iter()
            .find(|n| n.is_running() && !n.is_paused())
            .unwrap_or_else(|| self.fail("no node is running"));
        let slot: u16 = asking.query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key));
        let table: String = asking.query(redis::cmd("CLUSTER").arg("NODES"));
        for line in table.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(port) = fields
                .get(1)
                .and_then(|a| a.split('@').next())
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
            else {
                continue;
            };
            let serves = fields.iter().skip(8).any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves && let Some(index) = self.nodes.iter().position(|n| n.port == port) {
                return index;
            }
        }
        self.fail(&format!("no node serves slot {slot}:\n{table}"))
    }
}

/// A namespace no other test uses: `t-` and 16 random hex digits.
pub fn unique_namespace() -> String {
    format!("t-{:016x}", rand::random::<u64>())
}

static SHARED_SERVER: OnceLock<RedisServer> = OnceLock::new();
static SHARED_CLUSTER: OnceLock<RedisCluster> = OnceLock::new();

/// A server shared by every test of the process that asks for one, each under its own
/// namespace. Started by the first; it lives until the process ends (its watchdog then stops
/// it).
pub fn shared_server() -> &'static RedisServer {
    SHARED_SERVER.get_or_init(RedisServer::start)
}

/// A three-master cluster shared like [`shared_server`].
pub fn shared_cluster() -> &'static RedisCluster {
    SHARED_CLUSTER.get_or_init(RedisCluster::start)
}

/// A store under a fresh namespace on the [`shared_server`], spreading entities over
/// `buckets`: a conformance-suite factory.
pub async fn store_on_shared_server(buckets: u32) -> RedisStore {
    let server = shared_server();
    RedisStore::builder(server.url())
        .namespace(unique_namespace())
        .buckets(buckets)
        .connect()
        .await
        .unwrap_or_else(|e| server.fail(&format!("connect: {e}")))
}

/// [`store_on_shared_server`] on the [`shared_cluster`].
pub async fn store_on_shared_cluster(buckets: u32) -> RedisStore {
    let cluster = shared_cluster();
    RedisStore::cluster(cluster.urls())
        .namespace(unique_namespace())
        .buckets(buckets)
        .connect()
        .await
        .unwrap_or_else(|e| cluster.fail(&format!("connect: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_monitor_lines() {
        assert_eq!(
            monitored_command(r#"+1700000000.123456 [0 127.0.0.1:5555] "MGET" "a" "b""#).as_deref(),
            Some("mget")
        );
        assert_eq!(monitored_command(r#"+1700000000.123456 [0 lua] "GET" "a""#), None);
    }

    /// A stopped server whose port `other` now holds.
    fn on_the_port_of(other: &RedisServer) -> RedisServer {
        RedisServer {
            port: other.port,
            tls_port: None,
            dir: tempfile::tempdir().expect("create a temporary directory"),
            args: Vec::new(),
            process: None,
            paused: None,
        }
    }

    #[test]
    fn another_server_on_the_port_is_never_taken_for_ours() {
        let other = RedisServer::start();
        let mut server = on_the_port_of(&other);
        let err = server.spawn().expect_err("the port is taken");
        assert!(!server.is_running(), "{err}");
        assert_eq!(answering_dir(other.port), std::fs::canonicalize(other.dir()).ok());
    }

    #[test]
    #[should_panic(expected = "was taken while the server was down")]
    fn start_again_refuses_a_port_taken_meanwhile() {
        let other = RedisServer::start();
        on_the_port_of(&other).start_again();
    }
}
