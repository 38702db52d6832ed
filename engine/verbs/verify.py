"""`engine validate --compile`: compile every attach alternative with bcc, verifier-load it.

Each (spec, probe, alternative, mode) is bound with that alternative chosen (the other probes
at their first) in every shape the options can produce (engine.plan.shapes: no option, all,
each switch alone, ...: switches turn aggregations, their key columns and filter terms on and
off), so each distinct program is rendered and compiled by bcc, as `run` compiles it, and every
BPF function of the alternative is loaded through the kernel's verifier (nothing is
attached). The report says which shape failed. So a kprobe alternative is checked on a kernel
that cannot attach kprobes; fentry/fexit loads this kernel refuses are reported, not failed.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any, TextIO

from engine.attach import KINDS
from engine.codegen import render
from engine.errors import EngineError, SpecError, UsageError
from engine.kernel import capabilities
from engine.pipeline import check
from engine.plan import model as M
from engine.plan.bind import bind
from engine.plan.shapes import Shape, counts, mode_word, option_shapes
from engine.runtime.runner import bcc_contexts, captured_stderr, import_bcc, kfunc_style

# Kinds bcc loads itself at compile time (it must, to resolve their BTF target).
TRACING = tuple(name for name, k in KINDS.items() if k.prog_type == "TRACING")
CLANG = re.compile(r"^/virtual/main\.c:(\d+):\d+: (?:fatal )?error: (.*)$")


def compile_check(paths: list[str], out: TextIO) -> int:
    """Report one line per spec, probe, alternative and mode; 0 when all compiled and loaded."""
    for feature, need in (("root", "root"), ("headers", "kernel headers")):
        found = capabilities.probe(feature)
        if not found.ok:
            raise EngineError(f"--compile needs {need} ({found.detail}): {found.remedy}")
    bcc = import_bcc()
    tracing: dict[str, capabilities.Probe] = {}  # fentry/fexit, measured once
    checked = failed = 0
    for path in paths:
        try:
            plan = check(path).plan
        except SpecError as exc:
            out.writelines(p.format() + "\n" for p in exc.problems)
            failed += 1
            continue
        shapes = option_shapes(plan)
        for probe in plan.probes:
            for index, alt in enumerate(probe.alternatives):
                if alt.kind in TRACING and alt.kind not in tracing:
                    tracing[alt.kind] = capabilities.probe(alt.kind)
                for count in counts(plan):
                    # the whole program, as `run` loads it: every probe, this one's choice
                    choices = {**others(plan, tracing), probe.name: index}
                    ok, what = check_shapes(bcc, plan, count, choices, alt, shapes, tracing)
                    checked, failed = checked + 1, failed + (not ok)
                    targets = ", ".join(alt.targets)
                    out.write(
                        f"{path}: probe '{probe.name}' alternative {index + 1} "
                        f"({alt.kind} {targets}) {mode_word(count)}{what}\n"
                    )
    out.write(f"{checked} checked: {checked - failed} ok, {failed} failed\n")
    return 1 if failed else 0


def check_shapes(
    bcc: Any,
    plan: M.Plan,
    count: bool,
    choices: dict[str, int],
    alt: M.Alternative,
    shapes: list[Shape],
    tracing: dict[str, capabilities.Probe],
) -> tuple[bool, str]:
    """Compile and load each distinct program the option shapes make; the first failure
    names its shape (`with -t -P 1`) when the shapes make more than one program."""
    programs: dict[str, str] = {}  # C text -> the first shape that makes it
    for shape in shapes:
        try:
            program = bind(plan, count=count, options=shape.values, choices=choices,
                           kfunc_style=kfunc_style())  # fmt: skip
            readers = usdt_readers(bcc, program)
        except UsageError:
            continue  # a value this shape cannot take (a string option on a 1-byte field)
        except EngineError as exc:  # an is-enabled USDT probe: readers need its process
            return False, f": not compiled: {exc}"
        programs.setdefault(readers + render.render_c(program), shape.label)
    what = "no option shape binds"
    for text, label in programs.items():
        ok, what = check_one(bcc, text, alt, tracing.get(alt.kind))
        if not ok:
            return False, f" with {label}: {what}" if len(programs) > 1 else f": {what}"
    shaped = f" in {len(programs)} option shapes" if len(programs) > 1 else ""
    return bool(programs), f": {what}{shaped}"


def others(plan: M.Plan, tracing: dict[str, capabilities.Probe]) -> dict[str, int]:
    """Each probe's first alternative this kernel can load (bcc loads fentry/fexit when it
    compiles, so one the kernel refuses would fail every other probe's check)."""
    choices = {}
    for probe in plan.probes:
        for index, alt in enumerate(probe.alternatives):
            if alt.kind in TRACING and alt.kind not in tracing:
                tracing[alt.kind] = capabilities.probe(alt.kind)
            if alt.kind not in TRACING or tracing[alt.kind].ok:
                choices[probe.name] = index
                break
    return choices


def usdt_readers(bcc: Any, program: M.Program) -> str:
    """The C that bcc puts before a program with USDT probes (their argument readers, as
    `BPF(usdt_contexts=...)` does), made without attaching anything."""
    contexts = bcc_contexts(program)
    if not contexts:
        return ""
    array = (ctypes.c_void_p * len(contexts))(*(c.get_context() for c in contexts))
    text = bcc.libbcc.lib.bcc_usdt_genargs(array, len(contexts))
    if text is None:
        raise EngineError("bcc could not generate the USDT argument readers")
    return str(text.decode())


def check_one(
    bcc: Any, text: str, alt: M.Alternative, tracing: capabilities.Probe | None
) -> tuple[bool, str]:
    """Compile one rendered program and verifier-load the alternative's functions."""
    with captured_stderr() as log:
        try:
            b = bcc.BPF(text=text.encode())
        except Exception as exc:
            said = _read(log, 0)
            if "compile" in str(exc).lower() or alt.kind not in TRACING:
                return False, f"compile failed: {meaningful(said, str(exc), text)}"
            reason = meaningful(said, str(exc), text)
            if tracing is not None and not tracing.ok:  # bcc loads kfunc__ programs itself
                return True, (
                    f"compiled; load refused by this kernel "
                    f"({alt.kind} unsupported: {tracing.detail}; bcc: {reason})"
                )
            return False, f"compiled; verifier rejected it: {reason}"
        try:
            for fn in alt.functions:
                start = log.seek(0, 2)
                try:
                    b.load_func(fn.name.encode(), getattr(bcc.BPF, KINDS[fn.kind].prog_type))
                except Exception as exc:
                    reason = meaningful(_read(log, start), str(exc), text)
                    return False, f"compiled; verifier rejected {fn.name}: {reason}"
        finally:
            b.cleanup()
    count = len(alt.functions)
    return True, f"compiled, verifier ok ({count} program{'s' if count != 1 else ''})"


def _read(log: TextIO, start: int) -> str:
    log.flush()
    log.seek(start)
    return log.read()


def meaningful(said: str, fallback: str, text: str) -> str:
    """The line of a compiler or verifier log that says what is wrong."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    for line in lines:
        hit = CLANG.match(line)
        if hit:
            where = _function_at(text, int(hit.group(1)))
            return f"{hit.group(2)} (generated C line {hit.group(1)}{where})"
    for i, line in enumerate(lines):
        if line.startswith("processed ") and i > 0:
            return lines[i - 1]
    rest = [x for x in lines if not x[0].isdigit() and not x.startswith((";", "bpf: Failed"))]
    return rest[-1] if rest else (fallback.splitlines() or [""])[0][:200]


def _function_at(text: str, line: int) -> str:
    """`, in FUNCTION` for the generated function holding a C line, if any."""
    for source in reversed(text.splitlines()[:line]):
        hit = re.match(r"int (\w+)\(", source)
        if hit:
            return f", in {hit.group(1)}"
    return ""
