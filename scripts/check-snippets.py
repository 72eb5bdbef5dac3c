#!/usr/bin/env python3
"""Compile and run every code block of busbar's Markdown docs, so none can go stale.

    python3 scripts/check-snippets.py            # after the C, Python and Node suites built
    python3 scripts/check-snippets.py --list     # what would run, nothing run
    python3 scripts/check-snippets.py --only c   # the C blocks only (also python, js)

Reads every Markdown file git knows (tracked or new, not ignored) outside vendor/.
A fenced block's info string names its language, then optional words:

  rust               a doc test of core: the file must be included in core/src/lib.rs
                     (`cargo test --doc` runs it); this script checks the inclusion
  c                  compiled with -Wall -Werror against include/busbar.h and the static
                     libbusbar.a, then run; a block without `main` runs inside one
  python             run by the Python that has busbar installed (.venv-python)
  js                 run by node from examples/node/, where require('busbar') resolves
  json              parsed (shown documents must be valid JSON)
  sh, text           shown, not run (commands and layouts)
  <lang> no-run      shown, not run: a fragment that cannot run alone; keep these rare

A block without a language, or in another one, fails the check: rustdoc would compile an
unlabelled block as Rust, and nothing else would check it. Every block runs on the
in-memory bus (BUSBAR_* variables are cleared) with a time limit. The front page's two
commands are checked too: README.md's first sh block holds exactly the quickstart and
the test command, scripts/test.sh runs the quickstart, and .ci/run runs the test command.
So are the relative links: each must name a file of the repository, and a `#fragment`
one of its headings (GitHub's slugs).
Exit status 1 names every block that failed, with its file and line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_LANGS = {"c", "python", "js"}
SHOWN_LANGS = {"sh", "text"}
TIMEOUT_S = 60
QUICKSTART = "cargo run -p busbar-sdk --example quickstart"
TEST_COMMAND = "bash scripts/test.sh"
FENCE = re.compile(r"^( {0,3})(`{3,})(.*)$")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    words: list[str]
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.md"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    files = []
    for name in sorted(set(out.split())):
        if name.startswith("vendor/") or "/node_modules/" in name or not (ROOT / name).is_file():
            continue
        files.append(ROOT / name)
    return files


def blocks_of(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^ {0,3}" + fence + r"`*\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise SystemExit(f"{path.relative_to(ROOT)}:{start}: code block never closed")
        words = info.replace(",", " ").split()
        blocks.append(Block(path, start, words[0] if words else "", words[1:], "\n".join(body) + "\n"))
        i += 1
    return blocks


def doctested_files() -> set[Path]:
    lib = ROOT / "core" / "src" / "lib.rs"
    found = re.findall(r'include_str!\("([^"]+\.md)"\)', lib.read_text(encoding="utf-8"))
    return {(lib.parent / rel).resolve() for rel in found}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BUSBAR_")}


def run(cmd: list[str], cwd: Path) -> tuple[bool, str]:
    try:
        p = subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {TIMEOUT_S} s: {' '.join(cmd)}"
    return p.returncode == 0, (p.stdout + p.stderr).strip()


class Runners:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.n = 0
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        self.libbusbar = (ROOT / target / "debug" / "libbusbar.a").resolve()
        venv_py = ROOT / ".venv-python" / "bin" / "python"
        self.python = os.environ.get("BUSBAR_SNIPPET_PYTHON") or str(venv_py)
        self.node_dir = ROOT / "examples" / "node"

    def name(self, ext: str) -> str:
        self.n += 1
        return f"snippet{self.n}.{ext}"

    def c(self, b: Block) -> tuple[bool, str]:
        if not self.libbusbar.is_file():
            return False, f"{self.libbusbar} is missing: run scripts/test-c.sh (cargo build -p busbar-ffi) first"
        code = b.code
        if not re.search(r"\bmain\s*\(", code):
            body = "\n".join("    " + ln for ln in code.splitlines())
            code = (
                "#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n#include \"busbar.h\"\n\n"
                f"int main(void) {{\n{body}\n    return 0;\n}}\n"
            )
        src = self.tmp / self.name("c")
        src.write_text(code, encoding="utf-8")
        exe = src.with_suffix("")
        cc = os.environ.get("CC", "cc")
        ok, out = run(
            [cc, "-std=c11", "-Wall", "-Werror", "-Wno-unused-variable", f"-I{ROOT / 'include'}", str(src),
             str(self.libbusbar), "-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lz", "-o", str(exe)],
            self.tmp,
        )
        if not ok:
            return False, "does not compile:\n" + out
        return run([str(exe)], self.tmp)

    def python_(self, b: Block) -> tuple[bool, str]:
        if not Path(self.python).exists() and shutil.which(self.python) is None:
            return False, f"{self.python} not found: run scripts/test-python.sh first"
        src = self.tmp / self.name("py")
        src.write_text(b.code, encoding="utf-8")
        return run([self.python, str(src)], self.tmp)

    def js(self, b: Block) -> tuple[bool, str]:
        if not (self.node_dir / "node_modules" / "busbar").exists():
            return False, "examples/node/node_modules/busbar is missing: run scripts/test-node.sh first"
        # Inside examples/node so that require('busbar') and import resolve to the built package.
        where = self.node_dir / ".snippets"
        where.mkdir(exist_ok=True)
        esm = re.search(r"^\s*import\s", b.code, re.M) is not None
        src = where / self.name("mjs" if esm else "cjs")
        src.write_text(b.code, encoding="utf-8")
        try:
            return run(["node", str(src)], self.node_dir)
        finally:
            src.unlink()


def check_front_page_commands(readme: list[Block]) -> list[str]:
    problems = []
    sh = [b for b in readme if b.lang == "sh"]
    commands = [ln.strip() for ln in sh[0].code.splitlines() if ln.strip() and not ln.strip().startswith("#")] if sh else []
    if commands != [QUICKSTART, TEST_COMMAND]:
        problems.append(f"README.md: the first sh block must hold exactly {QUICKSTART!r} and {TEST_COMMAND!r}, has {commands}")
    if TEST_COMMAND not in (ROOT / ".ci" / "run").read_text(encoding="utf-8"):
        problems.append(f".ci/run does not run the README's test command {TEST_COMMAND!r}")
    if not re.search(r"cargo run .*-p busbar-sdk --example quickstart", (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")):
        problems.append("scripts/test.sh does not run the README's quickstart")
    return problems


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def check_links(files: list[Path]) -> list[str]:
    problems = []
    for f in files:
        text = re.sub(r"(?ms)^ {0,3}```.*?^ {0,3}```", "", f.read_text(encoding="utf-8"))
        for m in re.finditer(r"\]\(([^)\s]+)\)", text):
            url = m.group(1)
            if re.match(r"[a-z]+:", url):
                continue
            path, _, fragment = url.partition("#")
            target = (f.parent / path).resolve() if path else f
            if not target.exists():
                problems.append(f"{f.relative_to(ROOT)}: link to {url}: no such file")
            elif fragment and target.suffix == ".md":
                headings = re.findall(r"(?m)^#+\s+(.*)$", target.read_text(encoding="utf-8"))
                if fragment not in {slug(h) for h in headings}:
                    problems.append(f"{f.relative_to(ROOT)}: link to {url}: no such heading")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the blocks and what happens to each; run nothing")
    ap.add_argument("--only", choices=sorted(RUN_LANGS), help="run the blocks of this language only")
    args = ap.parse_args()

    files = markdown_files()
    doctested = doctested_files()
    failures: list[str] = []
    counts: dict[str, int] = {}
    def count(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    all_blocks = [b for f in files for b in blocks_of(f)]
    failures += check_links(files)
    failures += check_front_page_commands([b for b in all_blocks if b.path == ROOT / "README.md"])

    with tempfile.TemporaryDirectory(prefix="busbar-snippets-") as tmp:
        runners = Runners(Path(tmp))
        for b in all_blocks:
            if b.lang == "rust":
                if b.path.resolve() in doctested:
                    count("rust: doc test")
                else:
                    failures.append(f"{b.where}: a rust block in a file core/src/lib.rs does not include as a doc test")
                continue
            if b.lang == "json":
                # Shown documents (configuration files, frames): each must at least parse.
                try:
                    json.loads(b.code)
                    count("json: parsed")
                except ValueError as e:
                    failures.append(f"{b.where}: json block does not parse: {e}")
                continue
            if b.lang not in RUN_LANGS | SHOWN_LANGS:
                failures.append(f"{b.where}: block language {b.lang or '(none)'!r} is not one this check knows "
                                f"({', '.join(sorted(RUN_LANGS | SHOWN_LANGS | {'rust', 'json'}))})")
                continue
            if b.lang in SHOWN_LANGS:
                count(f"{b.lang}: shown, not run")
                continue
            if "no-run" in b.words:
                count(f"{b.lang}: skipped (no-run)")
                print(f"skipped  {b.where} ({b.lang} no-run)")
                continue
            if args.only and b.lang != args.only:
                count(f"{b.lang}: not run (--only {args.only})")
                continue
            if args.list:
                count(f"{b.lang}: would run")
                print(f"would run {b.where} ({b.lang})")
                continue
            ok, out = {"c": runners.c, "python": runners.python_, "js": runners.js}[b.lang](b)
            count(f"{b.lang}: {'ran' if ok else 'FAILED'}")
            print(f"{'ok    ' if ok else 'FAILED'}   {b.where} ({b.lang})")
            if not ok:
                failures.append(f"{b.where} ({b.lang}) failed:\n{out}")
        shutil.rmtree(runners.node_dir / ".snippets", ignore_errors=True)

    print(f"\n{len(all_blocks)} code blocks in {len(files)} Markdown files:")
    for key in sorted(counts):
        print(f"  {key}: {counts[key]}")
    if failures:
        print("\n" + "\n\n".join(failures), file=sys.stderr)
        print(f"\n{len(failures)} problem(s) in the docs (code blocks, links, commands)", file=sys.stderr)
        return 1
    print("listed only, nothing ran" if args.list else "every block that runs, ran; every link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
