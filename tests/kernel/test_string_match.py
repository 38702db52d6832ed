"""String matching in filters computed in the kernel (engine.plan.strmatch), against Python's
own `str.startswith`/`endswith`/`in`/`==` and `fnmatch.fnmatchcase` on the same strings.

One spec holds a probe per condition, all on syscalls/sys_enter_openat, each filtering this
test's child by pid and one condition on the path it opens (a 32-byte field: at most 31
characters, so the reference truncates too), and says which it is in a field `which` (probes
on one tracepoint share one BPF program, so a row's envelope names them all); a marker probe
says the child is done. The child opens ~200 relative paths that do not exist (fixed edge
cases, then seeded random strings over a small alphabet so the patterns hit often). The rows
each probe prints, in order, must be exactly the paths its condition holds for."""

from __future__ import annotations

import fnmatch
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Callable

import procs
import pytest
from conftest import CHILD_TIMEOUT, EVENT_TIMEOUT, STOP_TIMEOUT

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SIZE = 32
MARK = "zz-the-end"
CONDITIONS: list[tuple[str, Callable[[str], bool]]] = [
    ('file == "abc"', lambda s: s == "abc"),
    ('startswith(file, "ab")', lambda s: s.startswith("ab")),
    ('not startswith(file, "a")', lambda s: not s.startswith("a")),
    ('endswith(file, ".so")', lambda s: s.endswith(".so")),
    ('"lib" in file', lambda s: "lib" in s),
    ('"lib" not in file', lambda s: "lib" not in s),
    ('glob(file, "a*b")', lambda s: fnmatch.fnmatchcase(s, "a*b")),
    ('glob(file, "*x?z*")', lambda s: fnmatch.fnmatchcase(s, "*x?z*")),
    ('glob(file, "a?c")', lambda s: fnmatch.fnmatchcase(s, "a?c")),
    ('glob(file, "*.so.*")', lambda s: fnmatch.fnmatchcase(s, "*.so.*")),
    ('glob(file, "*aa*aa*")', lambda s: fnmatch.fnmatchcase(s, "*aa*aa*")),
    ('glob(file, "l*i*b")', lambda s: fnmatch.fnmatchcase(s, "l*i*b")),
    ('glob(file, "*")', lambda s: True),
]
FIXED = [
    "abc", "ab", "a", "abcd", "xabc", "lib", "libc.so", "libc.so.6", ".so", "so", "a.so.b",
    "axb", "ab", "aab", "ba", "xyz", "axyzb", "xz", "aaaa", "aaa", "aa.aa", "lxixb", "lib",
    "lb", "l" + "i" * 40 + "b",  # longer than the field: both sides see its first 31
    "a" * 31, "a" * 30 + "b", "x" * 29 + ".so", "abc" + "." * 40,
]  # fmt: skip
CHILD = (
    "import json, os, sys\n"
    "print(os.getpid(), flush=True)\n"
    "paths = json.loads(sys.stdin.readline())\n"
    "for p in paths + [sys.argv[1]]:\n"
    "    try:\n"
    "        open(p)\n"
    "    except OSError:\n"
    "        pass\n"
    "print('done', flush=True)\n"
)


def spec_text() -> str:
    probes = "".join(
        f"  - name: p{i}\n"
        "    attach: [{tracepoint: syscalls/sys_enter_openat}]\n"
        f"    fields: {{<<: *f, which: (tgid & 0) + {i}}}\n"
        f"    filter: pid == $pid and {cond}\n"
        for i, (cond, _) in enumerate(CONDITIONS)
    )
    return (
        "name: strmatch\n"
        "options:\n  pid: {flag: -p, type: u32}\n"
        f"x-fields: &f {{pid: tgid, file: {{value: args.filename, decode: str, size: {SIZE}}}}}\n"
        "probes:\n" + probes + "  - name: mark\n"
        "    attach: [{tracepoint: syscalls/sys_enter_openat}]\n"
        f"    fields: {{<<: *f, which: (tgid & 0) + {len(CONDITIONS)}}}\n"
        f'    filter: pid == $pid and file == "{MARK}"\n'
        "output:\n  columns: [pid, which, file]\n"
    )


def paths() -> list[str]:
    rng = random.Random(21)
    extra = [
        "".join(rng.choice("ab.lisoxz") for _ in range(rng.randint(1, 36))) for _ in range(170)
    ]
    return FIXED + extra


def test_matches_agree_with_python(engine, tmp_path: Path) -> None:
    spec = tmp_path / "strmatch.yaml"
    spec.write_text(spec_text())
    child = procs.spawn(
        [sys.executable, "-I", "-c", CHILD, MARK], cwd=tmp_path, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    pid = int(child.stdout.readline())
    e = engine(str(spec), "-p", str(pid), "-o", "json")
    sent = paths()
    child.stdin.write(json.dumps(sent) + "\n")
    child.stdin.flush()
    assert child.stdout.readline() == "done\n"
    assert child.wait(CHILD_TIMEOUT) == 0
    done = len(CONDITIONS)
    e.wait_rows(lambda rows: any(r["which"] == done for r in rows), EVENT_TIMEOUT)
    result = e.stop(timeout=STOP_TIMEOUT)
    assert result.code == 0, result.stderr
    got: dict[int, list[str]] = {}
    for row in result.json_rows():
        assert row["pid"] == pid
        got.setdefault(row["which"], []).append(row["file"])
    seen = [p[: SIZE - 1] for p in [*sent, MARK]]  # the marker is opened last
    for i, (cond, holds) in enumerate(CONDITIONS):
        want = [s for s in seen if holds(s)]
        assert got.get(i, []) == want, cond
        assert 0 < len(want) < len(seen) or cond == 'glob(file, "*")', cond  # can fail both ways
