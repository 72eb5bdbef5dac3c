//! A private Kafka-protocol broker for the Kafka backend's tests: tansu (crates.io's
//! `tansu`, installed by scripts/test.sh into ~/.cache/busbar/tansu when missing) on a
//! free loopback port, with in-memory storage (or PostgreSQL's, for the durable test).
//! Killed by its PID, never by name; restarted on the same port and storage.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Tansu {
    port: u16,
    storage: String,
    log: PathBuf,
    child: Option<Child>,
}

/// The tansu binary: `TANSU_BIN`, else scripts/test.sh's cache, else `tansu` on PATH.
pub(crate) fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return path.into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cached = home.join(".cache/busbar/tansu/bin/tansu");
    if cached.exists() {
        return cached;
    }
    "tansu".into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Tansu {
    /// A broker keeping everything in memory.
    pub(crate) fn start() -> Tansu {
        Self::start_on("memory://tansu/".into())
    }

    /// A broker storing in `storage` (`postgres://…` or `memory://…`). A port taken
    /// between picking and binding is retried on a fresh one.
    pub(crate) fn start_on(storage: String) -> Tansu {
        let log =
            std::env::temp_dir().join(format!("busbar-tansu-{}-{}.log", std::process::id(), free_port()));
        for _ in 0..10 {
            let mut broker = Tansu {
                port: free_port(),
                storage: storage.clone(),
                log: log.clone(),
                child: None,
            };
            if broker.launch() {
                return broker;
            }
        }
        panic!("tansu did not start in 10 tries; its log: {}", log.display());
    }

    /// Starts the broker process and waits until it accepts connections (at most 30 s);
    /// false when it exited first (its port was taken).
    fn launch(&mut self) -> bool {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(&self.log).expect("tansu log file");
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting tansu ({}): {e}; scripts/test.sh installs it (cargo install tansu)",
                    binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!(
                    "tansu exited ({status}) on port {}: {}",
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                self.child = None;
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tansu did not listen on port {} within 30 s", self.port);
    }

    /// `host:port` of the broker (`kafka_brokers`).
    pub(crate) fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL, by PID) and waits for it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): its port still accepts connections and takes bytes,
    /// nothing answers. A hung broker.
    pub(crate) fn pause(&self) {
        self.send("-STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub(crate) fn resume(&self) {
        self.send("-CONT");
    }

    fn send(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("the broker is running")
            .id()
            .to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(sent.success(), "kill {signal} {pid} failed");
    }

    /// Starts the broker again on the same port and storage.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "tansu did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
