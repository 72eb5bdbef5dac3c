#!/usr/bin/env python3
"""Cross-check the `matches` vectors in tests/vectors/subjects.json against a real nats-server.

Python 3.11+, standard library only. Starts its own nats-server on 127.0.0.1 at a
free ephemeral port (never the one on 4222), speaks the raw text protocol over one
TCP connection, and stops the server by its PID when done.

    python3 tests/vectors/tools/check_against_nats_server.py [--server /usr/sbin/nats-server]

Eligible cases: pattern is a valid pattern and subject a valid publish subject (per
the vector file's own validate_* lists or, if absent there, the local rule below),
neither contains whitespace or control characters, and both are under 3,000 bytes
(the server's default max control line is 4,096 bytes).

Method: one SUB per distinct eligible pattern (distinct sids), then one PUB per
eligible case with the case index as payload, then PING and read until PONG. Case i
agrees when a MSG for (sid of pattern i, payload i) arrived iff the vector says
matches=true. As a bonus, every other (subscription, publication) pair is compared
with the local rule too ("cross-product"), which is reported separately.

Exit status 0 when the server agrees with every eligible case.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

VECTORS = Path(__file__).resolve().parent.parent / "subjects.json"
HOST = "127.0.0.1"
MAX_BYTES = 3000

# Cases deliberately excluded from the cross-check because the busbar rules decide
# differently from nats-server on purpose. Key: (pattern, subject) -> reason.
# (Currently none: every eligible case agrees with nats-server 2.9.10.)
EXCLUDED: dict[tuple[str, str], str] = {}


def forbidden(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Cc"


def tokens(s: str) -> list[str] | None:
    if not s or any(forbidden(c) for c in s):
        return None
    t = s.split(".")
    return None if "" in t else t


def valid_subject(s: str) -> bool:
    t = tokens(s)
    return t is not None and "*" not in t and ">" not in t


def valid_pattern(p: str) -> bool:
    t = tokens(p)
    return t is not None and ">" not in t[:-1]


def local_matches(p: str, s: str) -> bool:
    if not (valid_pattern(p) and valid_subject(s)):
        return False
    pt, st = p.split("."), s.split(".")
    if pt[-1] == ">":
        return len(st) >= len(pt) and all(a in ("*", b) for a, b in zip(pt[:-1], st))
    return len(st) == len(pt) and all(a in ("*", b) for a, b in zip(pt, st))


def eligible(p: str, s: str) -> bool:
    return (
        valid_pattern(p)
        and valid_subject(s)
        and len(p.encode()) < MAX_BYTES
        and len(s.encode()) < MAX_BYTES
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Conn:
    """One client connection; a reader thread parses everything the server sends."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.settimeout(None)
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.pongs = 0
        self.msgs: list[tuple[bytes, int, bytes]] = []  # (subject, sid, payload)
        self.errors: list[str] = []
        self.info: bytes | None = None
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
                buf = self._parse(buf)
        except OSError as e:
            with self.cond:
                self.errors.append(f"socket: {e}")
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _parse(self, buf: bytes) -> bytes:
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                return buf
            line = buf[:eol]
            op = line.split(b" ", 1)[0].upper()
            if op == b"MSG":
                args = line.split(b" ")
                # MSG <subject> <sid> [reply-to] <#bytes>
                size = int(args[-1])
                end = eol + 2 + size
                if len(buf) < end + 2:
                    return buf
                payload = buf[eol + 2 : end]
                with self.cond:
                    self.msgs.append((args[1], int(args[2]), payload))
                buf = buf[end + 2 :]
                continue
            buf = buf[eol + 2 :]
            if op == b"PING":
                self.send(b"PONG\r\n")
                continue
            with self.cond:
                if op == b"PONG":
                    self.pongs += 1
                    self.cond.notify_all()
                elif op == b"INFO":
                    self.info = line
                    self.cond.notify_all()
                elif op == b"-ERR":
                    self.errors.append(line.decode("utf-8", "replace"))
                elif op == b"+OK":
                    pass
                else:
                    self.errors.append(f"unexpected line: {line[:200]!r}")

    def ping(self, timeout: float = 60) -> None:
        with self.cond:
            want = self.pongs + 1
        self.send(b"PING\r\n")
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pongs < want:
                if self.closed:
                    raise RuntimeError(f"connection closed; errors: {self.errors}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("timed out waiting for PONG")
                self.cond.wait(left)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.reader.join(5)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited early with status {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nats-server did not listen on {HOST}:{port}")


def run(server: str, vectors: Path) -> int:
    doc = json.loads(vectors.read_text(encoding="utf-8"))
    cases = doc["matches"]

    # Validity per the vector file where it says, else the local rule.
    vs = {c["input"]: c["valid"] for c in doc["validate_subject"]}
    vp = {c["input"]: c["valid"] for c in doc["validate_pattern"]}
    for s, v in vs.items():
        assert v == valid_subject(s), f"validate_subject disagrees with local rule: {s!r}"
    for p, v in vp.items():
        assert v == valid_pattern(p), f"validate_pattern disagrees with local rule: {p!r}"
    for c in cases:
        assert c["matches"] == local_matches(c["pattern"], c["subject"]), f"local rule disagrees: {c!r}"

    chosen = [
        i for i, c in enumerate(cases)
        if eligible(c["pattern"], c["subject"]) and (c["pattern"], c["subject"]) not in EXCLUDED
    ]
    skipped = len(cases) - len(chosen)
    patterns = sorted({cases[i]["pattern"] for i in chosen})
    sid_of = {p: n + 1 for n, p in enumerate(patterns)}

    port = free_port()
    assert port != 4222
    log = tempfile.NamedTemporaryFile(prefix="nats-xcheck-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [server, "-a", HOST, "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    conn = None
    try:
        wait_for_port(port, proc)
        conn = Conn(port)
        conn.send(b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n')
        conn.ping()
        subs = b"".join(f"SUB {p} {sid_of[p]}\r\n".encode() for p in patterns)
        conn.send(subs)
        conn.ping()
        pubs = []
        for i in chosen:
            payload = str(i).encode()
            pubs.append(b"PUB %s %d\r\n%s\r\n" % (cases[i]["subject"].encode(), len(payload), payload))
        conn.send(b"".join(pubs))
        conn.ping()
        with conn.cond:
            msgs = list(conn.msgs)
            errors = list(conn.errors)
    finally:
        if conn is not None:
            conn.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    got: dict[tuple[int, int], int] = {}
    bad_subject = []
    for subj, sid, payload in msgs:
        i = int(payload)
        if subj != cases[i]["subject"].encode():
            bad_subject.append((i, subj))
        got[(sid, i)] = got.get((sid, i), 0) + 1

    disagreements = []
    for i in chosen:
        c = cases[i]
        delivered = got.get((sid_of[c["pattern"]], i), 0)
        if delivered != int(c["matches"]):
            disagreements.append((i, c, delivered))

    # Bonus: every subscription against every publication, judged by the local rule.
    cross_checked = cross_bad = 0
    cross_examples = []
    for i in chosen:
        s = cases[i]["subject"]
        for p in patterns:
            cross_checked += 1
            delivered = got.get((sid_of[p], i), 0)
            if delivered != int(local_matches(p, s)):
                cross_bad += 1
                if len(cross_examples) < 10:
                    cross_examples.append((p, s, delivered))

    print(f"nats-server: {server} on {HOST}:{port} (pid {proc.pid}, log {log.name})")
    print(f"matches cases: {len(cases)} total, {len(chosen)} checked, {skipped} not eligible"
          f" ({len(EXCLUDED)} deliberately excluded)")
    print(f"subscriptions: {len(patterns)}, publications: {len(chosen)}, messages received: {len(msgs)}")
    print(f"cross-product pairs checked: {cross_checked}, disagreements: {cross_bad}")
    for p, s, d in cross_examples:
        print(f"  cross-product: SUB {p!r} PUB {s!r}: server delivered {d}, rule says {local_matches(p, s)}")
    for e in errors:
        print(f"server error: {e}")
    for i, subj in bad_subject[:10]:
        print(f"case {i}: MSG subject {subj!r} != published {cases[i]['subject']!r}")
    for i, c, d in disagreements:
        print(f"DISAGREE case {i}: pattern {c['pattern']!r} subject {c['subject']!r}: vector says "
              f"{c['matches']}, server delivered {d} message(s); note: {c['note']}")
    ok = not disagreements and not errors and not bad_subject and not cross_bad
    print("result: " + ("OK, the server agrees with every checked case" if ok else "FAILED"))
    if ok:
        os.unlink(log.name)
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="/usr/sbin/nats-server")
    ap.add_argument("--vectors", type=Path, default=VECTORS)
    args = ap.parse_args()
    return run(args.server, args.vectors)


if __name__ == "__main__":
    sys.exit(main())
