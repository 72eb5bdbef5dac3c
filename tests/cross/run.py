#!/usr/bin/env python3
"""The cross-language test: every language publishes one message with every envelope
attribute set, and every language reads all of them back (docs/design.md §9).

Starts a private nats-server on a free loopback port, starts the four readers (Rust, C,
Python, Node: each subscribes to `cross.>` and prints one JSON line per message), runs the
four publishers (each publishes to `cross.<language>`), then compares what each reader
got from each publisher with what was sent: 16 pairs, each on the eight fields a publish
sets (id, type, content type, correlation id, classification, headers, traceparent,
tracestate), plus subject, payload, a `time` within a minute and no `keyid`.

    python3 tests/cross/run.py --rust BIN --c BIN --python PYTHON --node NODE

scripts/test-cross.sh builds the participants and calls it. Standard library only.
"""

import argparse
import contextlib
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LANGUAGES = ["rust", "c", "python", "node"]
FIELDS = [
    "id",
    "type",
    "content_type",
    "correlation_id",
    "classification",
    "headers",
    "traceparent",
    "tracestate",
]


def sent_by(lang):
    """What `lang` publishes: distinct per publisher, with spaces, commas and non-ASCII."""
    return {
        "subject": f"cross.{lang}",
        "data": f"payload from {lang} \u2713",
        "id": f"cross-{lang}-0001",
        "type": f"com.example.cross.{lang}",
        "content_type": "text/plain; charset=utf-8",
        "correlation_id": f"corr-{lang}",
        "classification": "internal,pii",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": f"busbar={lang},other=1",
        "headers": {"x-lang": lang, "x-text": "na\u00efve caf\u00e9 \u2713"},
    }


def publish_args(spec):
    args = [spec[k] for k in ["subject", "data", "id", "type", "content_type", "correlation_id"]]
    args += [spec["classification"], spec["traceparent"], spec["tracestate"]]
    for name, value in spec["headers"].items():
        args += [name, value]
    return args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nats(store):
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [server, "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc, f"nats://127.0.0.1:{port}"
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        proc.kill()
        proc.wait()
    sys.exit("could not start nats-server")


@contextlib.contextmanager
def private_nats(prefix):
    """A private nats-server for the `with` block (its URL), stopped and its store removed after."""
    store = tempfile.mkdtemp(prefix=prefix)
    nats, url = start_nats(store)
    try:
        yield url
    finally:
        nats.terminate()
        nats.wait()
        shutil.rmtree(store, ignore_errors=True)


def lines_of(proc):
    """A queue receiving the process's stdout lines (None at its end)."""
    q = queue.Queue()

    def pump():
        for line in proc.stdout:
            q.put(line.rstrip("\n"))
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def participant_commands(description):
    """Each language's participant command, from `--rust BIN --c BIN --python PYTHON --node NODE`."""
    parser = argparse.ArgumentParser(description=description)
    for lang in LANGUAGES:
        parser.add_argument(f"--{lang}", required=True, help=f"the {lang} participant's command")
    opts = parser.parse_args()
    return {
        "rust": [opts.rust],
        "c": [opts.c],
        "python": [opts.python, os.path.join(HERE, "python", "cross.py")],
        "node": [opts.node, os.path.join(HERE, "node", "cross.js")],
    }


def main():
    commands = participant_commands(__doc__.splitlines()[0])
    store = tempfile.mkdtemp(prefix="busbar-cross-")
    nats, url = start_nats(store)
    readers = {}
    try:
        for lang in LANGUAGES:
            proc = subprocess.Popen(
                commands[lang] + ["read", url, str(len(LANGUAGES))],
                stdout=subprocess.PIPE,
                text=True,
                encoding="utf-8",
            )
            readers[lang] = (proc, lines_of(proc))
        for lang, (proc, lines) in readers.items():
            first = lines.get(timeout=60)
            if first != "ready":
                sys.exit(f"the {lang} reader did not start: {first!r}")
        for lang in LANGUAGES:
            subprocess.run(commands[lang] + ["publish", url] + publish_args(sent_by(lang)), check=True, timeout=60)
        got = {}
        for lang, (proc, lines) in readers.items():
            records = []
            while len(records) < len(LANGUAGES):
                line = lines.get(timeout=60)
                if line is None:
                    break
                records.append(json.loads(line))
            if proc.wait(timeout=60) != 0:
                sys.exit(f"the {lang} reader failed")
            got[lang] = {r["subject"]: r for r in records}
    finally:
        for proc, _ in readers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        nats.terminate()
        nats.wait()
        shutil.rmtree(store, ignore_errors=True)

    now_ms = time.time() * 1000
    identical = 0
    failures = []
    print("publisher -> reader: " + ", ".join(FIELDS))
    for pub in LANGUAGES:
        spec = sent_by(pub)
        for reader in LANGUAGES:
            record = got[reader].get(spec["subject"])
            problems = []
            if record is None:
                problems.append("not received")
            else:
                for key in ["subject", "data"] + FIELDS:
                    if record.get(key) != spec[key]:
                        problems.append(f"{key}: sent {spec[key]!r}, read {record.get(key)!r}")
                if record.get("keyid") is not None:
                    problems.append(f"keyid: read {record['keyid']!r}, none was set")
                if abs(record.get("time_ms", 0) - now_ms) > 60_000:
                    problems.append(f"time: {record.get('time_ms')} ms is not within a minute of now")
            status = "identical" if not problems else "; ".join(problems)
            print(f"  {pub:>6} -> {reader:<6} {status}")
            if problems:
                failures.append((pub, reader))
            else:
                identical += 1
    total = len(LANGUAGES) ** 2
    print(f"cross-language: {identical}/{total} pairs identical on all {len(FIELDS)} fields")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
