#!/usr/bin/env python3
"""The cross-language discovery test: a busbar service (NATS services protocol), run in
turn from Rust, C, Python and Node, is found with `$SRV.PING` and `$SRV.INFO` from every
language's `discover` (Rust, C, Python, Node) on one private nats-server, with its name,
id, version and endpoint (docs/design.md §5): 16 pairs. async-nats's own service client reading busbar's
answers is core/tests/service.rs.

    python3 tests/cross/discover.py --rust BIN --c BIN --python PYTHON --node NODE

scripts/test-cross.sh calls it. Standard library only.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import LANGUAGES, lines_of, participant_commands, private_nats  # noqa: E402

NAME = "crosssvc"


def problems_in(found, service_id, name):
    """What is wrong with one language's answers about the service `service_id`."""
    problems = []
    pings = [p for p in found["ping"] if p.get("id") == service_id]
    infos = [i for i in found["info"] if i.get("id") == service_id]
    if len(pings) != 1:
        problems.append(f"PING: {len(pings)} answers from the service, not 1 ({found['ping']})")
    elif (pings[0].get("name"), pings[0].get("version"), pings[0].get("type")) != (
        name,
        "1.2.3",
        "io.nats.micro.v1.ping_response",
    ):
        problems.append(f"PING answer {pings[0]}")
    if len(infos) != 1:
        problems.append(f"INFO: {len(infos)} answers from the service, not 1")
    else:
        endpoints = [(e.get("name"), e.get("subject")) for e in infos[0].get("endpoints", [])]
        if ("echo", f"svc.{name}.echo") not in endpoints:
            problems.append(f"INFO endpoints {endpoints}")
        if infos[0].get("description") != "the cross-language service":
            problems.append(f"INFO description {infos[0].get('description')!r}")
    return problems


SERVING = LANGUAGES


def main():
    commands = participant_commands(__doc__.splitlines()[0])
    pairs, failures = 0, []
    with private_nats("busbar-cross-discover-") as url:
        for server in SERVING:
            name = f"{NAME}{server}"
            service = subprocess.Popen(
                commands[server] + ["serve", url, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            try:
                ready = lines_of(service).get(timeout=60)
                if not ready or not ready.startswith("ready "):
                    sys.exit(f"the {server} service did not start: {ready!r}")
                service_id = ready.split()[1]
                print(f"a {server} busbar service {name} 1.2.3 (id {service_id}), discovered from:")
                for lang in LANGUAGES:
                    pairs += 1
                    done = subprocess.run(
                        commands[lang] + ["discover", url, name], stdout=subprocess.PIPE, text=True, timeout=60
                    )
                    if done.returncode != 0:
                        problems = [f"exited with {done.returncode}"]
                    else:
                        found = json.loads(done.stdout.strip().splitlines()[-1])
                        problems = problems_in(found, service_id, name)
                    print(f"  {lang:<6} {'PING and INFO as served' if not problems else '; '.join(problems)}")
                    if problems:
                        failures.append(f"{server} service, {lang} discover")
            finally:
                service.stdin.close()
                try:
                    service.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    service.kill()
                    service.wait()
            if service.returncode != 0:
                failures.append(f"the {server} service exited with {service.returncode}")
    print(f"cross-language discovery: {pairs - len(failures)}/{pairs} service × discover pairs as served")
    if failures:
        sys.exit("failed: " + "; ".join(failures))


if __name__ == "__main__":
    main()
