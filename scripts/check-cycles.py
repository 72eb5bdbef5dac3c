#!/usr/bin/env python3
"""Fails when the files of a crate import each other in a cycle.

Reads every .rs file under the crate's src/ (default: core/src), maps it to its module
path, and collects the edges file -> file that its code (comments, doc comments and
`#[cfg(test)]` modules left out) makes through `crate::…`, `super::…`, `self::…` and
child-module paths, `use` groups included. A name re-exported by a module (`pub use`) is
an edge to the module that re-exports it, so `crate::Error` reaching lib.rs counts as an
edge to lib.rs and everything lib.rs re-exports. A `mod x;` declaration alone is not an
edge. Prints the edges with --edges, each cycle found, and exits 1 when there is one.

Usage: scripts/check-cycles.py [SRC_DIR] [--edges] | --self-test
(--self-test: checks that the checker finds the cycles it must find, on small trees.)
"""
import os
import re
import sys

def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel == ["lib"]:
        return ()
    if rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)

def strip(text):
    # Drop #[cfg(test)] modules (brace-matched), then comments and string literals.
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    text = "".join(out)
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"', '""', text)
    return text

def expand_use(body):
    """Flattens a use tree `a::{b, c::{d, e}}` into paths."""
    body = re.sub(r"\s+as\s+\w+", "", body)  # `a::B as C` names module a all the same
    body = re.sub(r"\s+", "", body)
    def rec(prefix, s):
        res, depth, cur = [], 0, ""
        parts = []
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        for p in parts:
            if "{" in p:
                head, inner = p.split("{", 1)
                res += rec(prefix + head, inner[:-1])
            else:
                res.append(prefix + p)
        return res
    return rec("", body)

def self_test():
    """The checker must flag each of these trees and pass the last one."""
    import tempfile
    trees = {
        "use cycle": {"lib.rs": "mod a; mod b;", "a.rs": "use crate::b::B; pub struct A;",
                      "b.rs": "pub struct B(crate::a::A);"},
        "re-export of a child that uses its parent": {
            "lib.rs": "mod d;", "d/mod.rs": "mod m; pub use m::M; pub struct C;",
            "d/m.rs": "use super::C; pub struct M(C);"},
        "use group and self path": {
            "lib.rs": "mod a; mod b;", "a.rs": "use crate::{b::{self, B}}; pub struct A;",
            "b.rs": "pub struct B; fn f() { let _ = crate::a::A; }"},
        "root re-export": {"lib.rs": "mod a; pub use a::A;", "a.rs": "pub struct A(crate::A2); pub struct A2;"},
    }
    clean = {"lib.rs": "mod a; mod b; pub use a::A;", "a.rs": "use crate::b::B; pub struct A(B);",
             "b.rs": "// crate::a::A in a comment\npub struct B;\n#[cfg(test)]\nmod tests { use crate::a::A; }"}
    failures = 0
    for name, tree in list(trees.items()) + [("clean tree", clean)]:
        with tempfile.TemporaryDirectory() as d:
            for path, text in tree.items():
                os.makedirs(os.path.dirname(os.path.join(d, path)), exist_ok=True)
                open(os.path.join(d, path), "w").write(text)
            found = check(d, False, quiet=True)
        want = name != "clean tree"
        if found != want:
            failures += 1
            print(f"self-test {name!r}: cycle found {found}, expected {want}")
    print("self-test " + ("failed" if failures else "passed"))
    return 1 if failures else 0

def main():
    if "--self-test" in sys.argv:
        return self_test()
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show = "--edges" in sys.argv
    src = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "core", "src")
    return 1 if check(os.path.normpath(src), show) else 0

def check(src, show, quiet=False):
    """Whether the files under src import each other in a cycle (printed unless quiet)."""
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(src, p)] = p
    texts = {m: strip(open(p, encoding="utf-8").read()) for m, p in files.items()}
    children = {m: set(re.findall(r"\bmod\s+(\w+)\s*;", t)) for m, t in texts.items()}
    # Names each module re-exports: name -> target path (absolute module path + name).
    def absolute(mod, path):
        segs = [s for s in path.split("::") if s]
        if not segs:
            return None
        if segs[0] == "crate":
            base, segs = (), segs[1:]
        elif segs[0] in ("super", "self"):
            base = mod
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
        elif segs[0] in children.get(mod, ()):
            base = mod
        else:
            return None
        return base + tuple(segs)
    def resolve(path):
        """The longest prefix of `path` that is a file's module."""
        for k in range(len(path), -1, -1):
            if path[:k] in files:
                return path[:k]
        return None
    edges = {m: set() for m in files}
    for mod, t in texts.items():
        paths = []
        for body in re.findall(r"\buse\s+([^;]+);", t):
            paths += expand_use(body)
        paths += re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", t)
        for child in children.get(mod, ()):
            paths += re.findall(r"(?<![:\w])(%s(?:::\w+)+)" % re.escape(child), t)
        for p in paths:
            a = absolute(mod, p.rstrip(":*").rstrip(":"))
            if a is None:
                continue
            target = resolve(a)
            if target is not None and target != mod:
                edges[mod].add(target)
    name = lambda m: os.path.relpath(files[m], src)
    if show:
        for m in sorted(edges, key=name):
            print(f"{name(m)} -> {', '.join(sorted(name(t) for t in edges[m])) or '-'}")
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    n_edges = sum(len(e) for e in edges.values())
    if quiet:
        return bool(sccs)
    if sccs:
        for comp in sccs:
            print("cycle among: " + ", ".join(sorted(name(m) for m in comp)))
        print(f"{len(sccs)} import cycle(s) in {src} ({len(files)} files, {n_edges} edges)")
        return True
    print(f"no import cycle in {src} ({len(files)} files, {n_edges} edges)")
    return False

if __name__ == "__main__":
    sys.exit(main())
