"""The locals oracle: reads generated C and reports every generated local (`vN`) used before
its declaration in an enclosing block of the same function, or declared twice. The unit tests
(tests/unit/test_bind.py) run it on every spec's programs and the fuzz suite on every program
it generates: a walker that misses a node kind leaves such a local behind (a switch's
arithmetic once rendered `if (!(v1 > 5))` with no `v1`)."""

from __future__ import annotations

import re

LOCAL = re.compile(r"\bv\d+\b")
DECL = re.compile(
    r"^\s*(?:const\s+)?(?:[us](?:8|16|32|64)|char|int|void|struct\s+\w+)\s*\**\s*(v\d+)\b"
)
FUNCTION = re.compile(r"^int (\w+)\(.*\)\n\{\n(.*?)^\}", re.S | re.M)


def local_problems(c: str) -> list[str]:
    """Uses of a generated local (vN) in the C that are not declared before, in an enclosing
    block of the same function; and locals declared twice. Empty when the C is sound."""
    problems = []
    functions = FUNCTION.findall(c)
    assert functions, "no BPF function found in the C"
    for name, body in functions:
        scopes: list[set[str]] = [set()]
        for number, raw in enumerate(body.splitlines(), 1):
            line = raw.split("//", 1)[0]
            decl = DECL.match(line)
            used = LOCAL.findall(line)
            if decl:
                if any(decl.group(1) in scope for scope in scopes):
                    problems.append(f"{name}:{number}: {decl.group(1)} declared again: {raw}")
                used = used[1:]  # the declared name itself
            for var in used:
                if not any(var in scope for scope in scopes):
                    problems.append(f"{name}:{number}: {var} used before its declaration: {raw}")
            if decl:
                scopes[-1].add(decl.group(1))
            for ch in line:
                if ch == "{":
                    scopes.append(set())
                elif ch == "}":
                    scopes.pop()
    return problems
