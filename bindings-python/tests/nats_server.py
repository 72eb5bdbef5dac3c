"""A private nats-server for tests and benchmarks: JetStream on, an ephemeral loopback
port, a temporary store; stopped by its PID. Never the shared server on port 4222."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from nats.aio.client import Client


async def flush_nats_py(nc: Client) -> None:
    """Returns when the server has processed everything nats-py client `nc` sent before,
    which one `nc.flush()` does not promise in nats-py 2.16.0: its PING is written straight
    to the socket (`Client._send_ping`), while SUB, UNSUB and PUB wait in the client's
    pending buffer for its flusher task. A subscription made just before a flush could
    reach the server after a message published to it (seen in 2-3% of runs of
    tests/test_interop.py, with the SUB after the HPUBs in the server's trace). The
    flusher runs while the first PONG is awaited, so the second PING follows them."""
    await nc.flush()
    await nc.flush()


def _nats_server_binary() -> str:
    explicit = os.environ.get("NATS_SERVER_BIN")
    if explicit:
        return explicit
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None
    )
    if found is None:
        raise RuntimeError(
            "nats-server not found: install it (apt-get install nats-server) or set "
            "NATS_SERVER_BIN; the NATS tests do not skip themselves"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _says_info(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            return s.recv(5) == b"INFO "
    except OSError:
        return False


class NatsServer:
    """One nats-server child process with JetStream on and a temporary store."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="busbar-py-nats-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        last = ""
        for _ in range(5):
            self.port = _free_port()
            last = self._spawn()
            if not last:
                return
        shutil.rmtree(self.dir, ignore_errors=True)
        raise RuntimeError(f"nats-server did not start: {last}")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _spawn(self) -> str:
        log = self.dir / "nats-server.log"
        log.unlink(missing_ok=True)
        args = [_nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        args += ["-sd", str(self.dir / "store"), "-l", str(log)]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return f"exited; log:\n{log.read_text(errors='replace') if log.exists() else ''}"
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Server is ready" in text and _says_info(self.port):
                return ""
            time.sleep(0.02)
        self.stop()
        return "not ready within 10 s"

    def stop(self) -> None:
        """Kills the server by its PID and waits for it."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        """Starts the server again on the same port (after `stop`)."""
        problem = self._spawn()
        if problem:
            raise RuntimeError(f"nats-server did not restart: {problem}")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
