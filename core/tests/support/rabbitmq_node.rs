//! A private RabbitMQ node for fault tests: Debian's `rabbitmq-server` with its own node
//! name, AMQP and distribution ports (free loopback ports) and its own data and log
//! directories in a temporary folder (owned by the `rabbitmq` user, whom the Debian
//! script switches to), no plugins. Killed (SIGKILL) and stopped by the PID of its Erlang
//! VM, never by name; restarted on the same folder and ports.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct RabbitNode {
    dir: PathBuf,
    name: String,
    port: u16,
    dist_port: u16,
    tls_port: u16,
    /// The Erlang VM (beam.smp) of the running node.
    pid: Option<u32>,
    /// The launcher script, which exits with the VM; waited for so it leaves no zombie.
    launcher: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RabbitNode {
    /// Starts a node and waits until it accepts AMQP connections (at most 90 s).
    pub(crate) fn start() -> RabbitNode {
        Self::start_with(|_, _| String::new())
    }

    /// Starts a node that also listens for AMQP over TLS on [`RabbitNode::tls_port`], with a
    /// certificate for `localhost` signed by a CA of its own (`ca.pem` in [`RabbitNode::dir`],
    /// beside a client certificate `client.pem` and key `client.key` the node requires).
    pub(crate) fn start_tls() -> RabbitNode {
        Self::start_with(|dir, port| {
            let openssl = |args: &[&str]| {
                let done = Command::new("openssl")
                    .args(args)
                    .current_dir(dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("openssl");
                assert!(done.success(), "openssl {args:?} failed");
            };
            // Version 3 certificates (extensions), the only ones rustls accepts.
            std::fs::write(
                dir.join("server.ext"),
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
            )
            .unwrap();
            std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=busbar test CA",
            ]);
            for name in ["server", "client"] {
                let [key, csr, pem, ext] = ["key", "csr", "pem", "ext"].map(|e| format!("{name}.{e}"));
                openssl(&[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    "/CN=localhost",
                ]);
                openssl(&[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ]);
            }
            let d = |f: &str| dir.join(f).display().to_string();
            format!(
                "listeners.ssl.default = {port}\nssl_options.cacertfile = {}\nssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\nssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                d("ca.pem"),
                d("server.pem"),
                d("server.key")
            )
        })
    }

    /// The folder of the node's store, logs and (with TLS) certificates.
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The AMQP-over-TLS port of a node from [`RabbitNode::start_tls`].
    pub(crate) fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// Starts a node whose `rabbitmq.conf` is what `conf` returns, given the node's folder
    /// and a free port for TLS.
    fn start_with(conf: impl FnOnce(&std::path::Path, u16) -> String) -> RabbitNode {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("busbar-rabbit-{}", &token[..12]));
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let tls_port = free_port();
        let conf = conf(&dir, tls_port);
        std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
        let owned = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(owned.success(), "chown of {dir:?} to the rabbitmq user failed");
        let mut node = RabbitNode {
            name: format!("busbar-{}@localhost", &token[..12]),
            dir,
            port: free_port(),
            dist_port: free_port(),
            tls_port,
            pid: None,
            launcher: None,
        };
        node.launch();
        node
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn launch(&mut self) {
        let d = |p: &str| self.dir.join(p);
        let pid_file = d("pid");
        let _ = std::fs::remove_file(&pid_file);
        let binary =
            std::env::var("RABBITMQ_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/rabbitmq-server".into());
        let launcher = Command::new(&binary)
            .current_dir(&self.dir)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", d("feature_flags"))
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq"))
            .env("RABBITMQ_PID_FILE", &pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e} (Debian package rabbitmq-server)"));
        self.launcher = Some(launcher);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let (Some(pid), Ok(_)) = (pid, TcpStream::connect(("127.0.0.1", self.port))) {
                self.pid = Some(pid);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private RabbitMQ node {} did not start in 90 s; see {:?}",
                self.name,
                d("log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILLs the node's VM and waits until its port is closed.
    pub(crate) fn kill(&mut self) {
        self.signal("-KILL");
    }

    /// Stops the node cleanly (SIGTERM: the Erlang VM shuts down in order, writing what it
    /// keeps in memory to disk) and starts it again on the same folder and ports.
    ///
    /// RabbitMQ 3.10 keeps the registry of its Raft servers (the stream coordinator's
    /// among them) in a file it saves every 3 minutes and on a clean stop: a node killed
    /// sooner after its first stream was declared comes back without the coordinator, and
    /// every stream stays `down`. A fault test that kills a node with streams restarts it
    /// cleanly once after declaring them, as a node that has run for a while would be.
    pub(crate) fn restart_cleanly(&mut self) {
        self.signal("-TERM");
        self.launch();
    }

    /// Sends `signal` to the node's VM and waits until the VM has exited and its launcher
    /// too. Every wait is bounded: a VM still running 60 s after the signal (a clean stop
    /// that hangs) is SIGKILLed, and a launcher still running 10 s after its VM is ended,
    /// so a test never hangs on its broker (a CI run once sat here until its time ran out).
    fn signal(&mut self, signal: &str) {
        let vm = self.pid.take();
        if let Some(pid) = vm {
            let kill = |signal: &str| {
                let _ = Command::new("kill").args([signal, &pid.to_string()]).status();
            };
            kill("-CONT"); // a paused VM handles SIGTERM only once it runs
            kill(signal);
            // Running unless gone or a zombie (state `Z`, after the name in parentheses).
            let running = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
                    .unwrap_or(false)
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if running() {
                eprintln!("the RabbitMQ VM {pid} ignored {signal} for 60 s: SIGKILL");
                kill("-KILL");
            }
        }
        if let Some(mut launcher) = self.launcher.take() {
            // The launcher scripts exit with the VM; one whose VM never came up is ended.
            if vm.is_none() {
                let _ = launcher.kill();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(launcher.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if matches!(launcher.try_wait(), Ok(None)) {
                eprintln!("the RabbitMQ launcher outlived its VM by 10 s: ending it");
                let _ = launcher.kill();
            }
            let _ = launcher.wait();
        }
        // Its port is closed once the VM is gone; wait for the kernel to agree.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Freezes the node's VM (SIGSTOP): its sockets stay open and the kernel still accepts
    /// connections and takes bytes, but nothing answers: a hung broker.
    pub(crate) fn pause(&self) {
        self.send("-STOP");
    }

    /// Lets a paused node run again (SIGCONT).
    pub(crate) fn resume(&self) {
        self.send("-CONT");
    }

    fn send(&self, signal: &str) {
        let pid = self.pid.expect("the node is running").to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(sent.success(), "kill {signal} {pid} failed");
    }

    /// Starts the node again on the same folder and ports.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
