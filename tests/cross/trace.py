#!/usr/bin/env python3
"""The cross-language trace test: a trace a producer starts in one language is continued
by a consumer in another (docs/design.md §10). For every producer x consumer pair of
Python and Node, on one private nats-server: the consumer subscribes, the producer
publishes inside a span with busbar's OpenTelemetry instrumentation on, and the
consumer's `process` span must be in the producer's trace, with the producer's span as
its parent. Each participant exports its spans with its SDK's in-memory exporter and
prints their ids.

    python3 tests/cross/trace.py --python PYTHON --node NODE

scripts/test-cross.sh calls it. Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import HERE, lines_of, private_nats  # noqa: E402

LANGUAGES = ["python", "node"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True)
    parser.add_argument("--node", required=True)
    opts = parser.parse_args()
    commands = {
        "python": [opts.python, os.path.join(HERE, "python", "trace.py")],
        "node": [opts.node, os.path.join(HERE, "node", "trace.js")],
    }
    failures = []
    with private_nats("busbar-cross-trace-") as url:
        print("producer -> consumer: the consumer's process span continues the producer's trace")
        for producer in LANGUAGES:
            for consumer in LANGUAGES:
                subject = f"trace.{producer}.{consumer}"
                proc = subprocess.Popen(
                    commands[consumer] + ["consume", url, subject], stdout=subprocess.PIPE, text=True
                )
                lines = lines_of(proc)
                try:
                    first = lines.get(timeout=60)
                    if first != "ready":
                        sys.exit(f"the {consumer} consumer did not start: {first!r}")
                    produced = subprocess.run(
                        commands[producer] + ["produce", url, subject],
                        check=True,
                        timeout=60,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    sent = json.loads(produced.stdout.strip().splitlines()[-1])
                    line = lines.get(timeout=60)
                    if line is None or proc.wait(timeout=60) != 0:
                        sys.exit(f"the {consumer} consumer failed")
                    got = json.loads(line)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                problems = []
                if got["name"] != f"process {subject}":
                    problems.append(f"span name {got['name']!r}")
                if got["trace_id"] != sent["trace_id"]:
                    problems.append(f"trace {got['trace_id']}, the producer's is {sent['trace_id']}")
                if got["parent_span_id"] != sent["span_id"]:
                    problems.append(f"parent {got['parent_span_id']}, the producer's span is {sent['span_id']}")
                status = "continued" if not problems else "; ".join(problems)
                print(f"  {producer:>6} -> {consumer:<6} {status} (trace {sent['trace_id']})")
                if problems:
                    failures.append((producer, consumer))
    total = len(LANGUAGES) ** 2
    print(f"cross-language traces: {total - len(failures)}/{total} pairs continued")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
