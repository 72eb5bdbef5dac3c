//! A private 3-node nats-server cluster on loopback: routes between private ports,
//! JetStream on each node with its own temporary store, a monitoring port per node (to
//! see which node a client is on). Nodes are killed, hung and restarted by PID.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::nats_server::{free_port, NatsServer};

/// One node and its monitoring port.
pub(crate) struct Node {
    pub(crate) server: NatsServer,
    pub(crate) name: String,
    monitor: u16,
}

pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes routed to each other (blocking: call from `spawn_blocking`).
    pub(crate) fn start(n: usize) -> Cluster {
        let cluster_name = format!("busbar-test-{}", std::process::id());
        let routes_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = routes_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..n)
            .map(|i| {
                let name = format!("n{i}");
                let monitor = free_port();
                let args = [
                    "--server_name".to_owned(),
                    name.clone(),
                    "--cluster_name".to_owned(),
                    cluster_name.clone(),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{}", routes_ports[i]),
                    "--routes".to_owned(),
                    routes.clone(),
                    "-m".to_owned(),
                    monitor.to_string(),
                ];
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Node {
                    server: NatsServer::start_with(&args),
                    name,
                    monitor,
                }
            })
            .collect();
        Cluster { nodes }
    }

    /// Every node's client URL, comma-separated: a `nats_url` server list.
    pub(crate) fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.server.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node named `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The index of the running node that has a client connection whose name contains
    /// `needle` (busbar names its connection `busbar (<source>)`).
    pub(crate) fn node_with_client(&mut self, needle: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.nodes[i].server.is_running()
                && http_get(self.nodes[i].monitor, "/connz").is_some_and(|body| body.contains(needle))
        })
    }
}

/// The body of `GET path` on the loopback monitoring port, or `None`.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}
