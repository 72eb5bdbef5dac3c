//! A private `nats-server` (JetStream on, temporary store) for one test, stopped by PID.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One nats-server child process.
pub(crate) struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
    extra_args: Vec<String>,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    let fallback = PathBuf::from("/usr/sbin/nats-server");
    on_path
        .or_else(|| fallback.is_file().then_some(fallback))
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found: install it with `apt-get install -y nats-server` (Debian) \
             or set NATS_SERVER_BIN; the NATS tests do not skip themselves"
            )
        })
}

/// A loopback port free at the time of the call.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// Starts a server on a free loopback port with a fresh store directory.
    pub(crate) fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// [`NatsServer::start`] with extra command-line arguments (e.g. `--user`, `--pass`).
    pub(crate) fn start_with(extra_args: &[&str]) -> NatsServer {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "busbar-nats-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("store")).unwrap();
        let mut server = NatsServer {
            child: None,
            port: 0,
            dir,
            binary: binary(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("nats-server did not start: {last_error}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(self.log_path());
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(self.log_path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning {:?}: {e}", self.binary))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log_tail()));
            }
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.contains("Server is ready") && self.says_info() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!("not ready within 10 s; log:\n{}", self.log_tail()))
    }

    fn says_info(&self) -> bool {
        let Ok(stream) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(500))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO {")
    }

    /// `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// [`NatsServer::start`] from async code (it blocks until the server is ready).
    pub(crate) async fn start_async() -> NatsServer {
        tokio::task::spawn_blocking(NatsServer::start).await.unwrap()
    }

    /// The default configuration on this server's NATS backend.
    pub(crate) fn config(&self) -> busbar::Config {
        busbar::Config::default()
            .with_backend(busbar::Backend::Nats)
            .with_nats_url(self.url())
    }

    /// The loopback port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The PID of the running server (0 when stopped).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The JetStream store directory, kept across restarts.
    pub(crate) fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Kills the server (SIGKILL, by its PID) and waits for it; does nothing when stopped.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("nats-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Starts the server again on the same port with an empty store, as after a lost
    /// disk: every stream and consumer is gone.
    pub(crate) fn restart_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(self.store_dir());
        std::fs::create_dir_all(self.store_dir()).unwrap();
        self.restart();
    }

    /// Hangs the server as a broker that stops answering (SIGSTOP, by its PID) and returns
    /// once the kernel reports it stopped, so nothing it was doing can still arrive after
    /// this returns. It runs again (SIGCONT) when the guard is dropped, however the test ends.
    pub(crate) fn hang(&self) -> Hung<'_> {
        send_signal(self.pid(), "STOP");
        let stat = format!("/proc/{}/stat", self.pid());
        let stopped = wait_until(Duration::from_secs(5), || {
            // The state is the field after the parenthesised command name.
            std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('T'))
                })
                .unwrap_or(false)
        });
        assert!(stopped, "nats-server {} did not stop on SIGSTOP", self.pid());
        Hung(self)
    }

    /// Whether the child is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server hung by [`NatsServer::hang`]; dropping it lets the server run again.
pub(crate) struct Hung<'a>(&'a NatsServer);

impl Drop for Hung<'_> {
    fn drop(&mut self) {
        send_signal(self.0.pid(), "CONT");
    }
}

fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
