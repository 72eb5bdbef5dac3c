//! A private Prometheus (Debian's `prometheus` package) for one test: a loopback port, a
//! temporary storage directory, a scrape config naming one target; stopped by PID. Also a
//! small HTTP GET, for the endpoint and the query API.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, read, released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `127.0.0.1:port`: the status code and the body.
pub(crate) fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    let chunked = response
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(&body) } else { body }))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "prometheus not found: install it with `apt-get install -y prometheus` (Debian; \
             scripts/test.sh does) or set PROMETHEUS_BIN; this test does not skip itself"
        )
    })
}

/// One Prometheus child process scraping one target every second.
pub(crate) struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `127.0.0.1:target` as job `busbar`.
    /// A port found free can be taken before Prometheus binds it; when Prometheus exits
    /// saying so, it is started again on a fresh port (a bounded number of times).
    pub(crate) fn start(target: u16) -> Prometheus {
        for _ in 0..10 {
            if let Some(server) = Self::try_start(target) {
                return server;
            }
        }
        panic!("10 free ports in a row were taken before prometheus could bind them");
    }

    /// One try, its directory made afresh: `None` when Prometheus exited because its listen
    /// address was in use (dropped, that try's directory is removed).
    fn try_start(target: u16) -> Option<Prometheus> {
        let dir = std::env::temp_dir().join(format!("busbar-prometheus-{}-{target}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: busbar\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary())
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning prometheus");
        let mut server = Prometheus { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(port, "/-/ready") {
                return Some(server);
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                let log = server.log();
                if log.contains("address already in use") {
                    return None;
                }
                panic!("prometheus exited with {status}; log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60 s; log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The value of instant query `query`'s single series, if it has one now.
    pub(crate) fn value(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        let (status, body) = http_get(self.port, &path).ok()?;
        assert_eq!(status, 200, "query {query}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = json["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "query {query} gave several series: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits (up to a minute: scrapes come every second) until `query` has the value
    /// `expected`; fails with what it had and the log otherwise.
    pub(crate) fn wait_for(&self, query: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(query);
            if last == Some(expected) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{query}: expected {expected}, last saw {last:?}; log:\n{}",
            self.log()
        );
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
