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
        let token = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("busbar-rabbit-{}", &token[..12]));
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
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
        let vm = self.pid.take();
        if let Some(pid) = vm {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(mut launcher) = self.launcher.take() {
            // The launcher scripts exit with the VM; one whose VM never came up is ended.
            if vm.is_none() {
                let _ = launcher.kill();
            }
            let _ = launcher.wait();
        }
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
