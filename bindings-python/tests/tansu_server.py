"""A private Kafka-protocol broker for the Kafka tests: tansu (installed by scripts/test.sh
into ~/.cache/busbar/tansu when missing) on a free loopback port, memory storage; stopped
by its PID. The Python twin of core/tests/support/tansu.rs."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def binary() -> str:
    explicit = os.environ.get("TANSU_BIN")
    if explicit:
        return explicit
    cached = Path.home() / ".cache/busbar/tansu/bin/tansu"
    if cached.exists():
        return str(cached)
    return "tansu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tansu:
    def __init__(self) -> None:
        for _ in range(10):
            self.port = _free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            self.proc = subprocess.Popen(
                [
                    binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": "warn"},
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return
                except OSError:
                    time.sleep(0.02)
            self.close()  # exited (its port was taken) or never listened: a fresh port
        raise RuntimeError("tansu did not start in 10 tries")

    @property
    def brokers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
