#!/usr/bin/env python3
"""Reports import cycles between the modules of a crate.

Usage: scripts/module-cycles.py CRATE_SRC_DIR...

A module's edges are the `crate::NAME` paths its code mentions (a
directory module counts as one module with its submodules; `#[cfg(test)]`
modules and `tests.rs` files are left out, as tests may reach anywhere).
Exits 1 and prints each cycle when there is one.
"""
import os
import re
import sys


def top_module(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_tests(text):
    # Drop `#[cfg(test)] mod tests { ... }` blocks (they end at a `}` in
    # column 0, the house layout).
    return re.sub(r"#\[cfg\(test\)\]\s*\nmod \w+ \{.*?\n\}\n", "", text, flags=re.S)


def edges(src):
    graph = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs") or f == "tests.rs":
                continue
            path = os.path.join(root, f)
            module = top_module(src, path)
            if module in ("lib", "main"):
                continue
            text = strip_tests(open(path, encoding="utf-8").read())
            # Comments (doc links included) are not dependencies.
            text = re.sub(r"//[^\n]*", "", text)
            deps = set(re.findall(r"\bcrate::(\w+)", text))
            for m in re.findall(r"\buse crate::\{([^}]*)\}", text):
                deps.update(re.findall(r"\b(\w+)", m))
            deps.discard(module)
            graph.setdefault(module, set()).update(d for d in deps if d != "self")
    return graph


def cycles(graph):
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if d not in graph:
                continue
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


status = 0
for src in sys.argv[1:]:
    for c in cycles(edges(src)):
        print(f"{src}: import cycle: {' -> '.join(c)}")
        status = 1
sys.exit(status)
