"""The names pass: options (their flags against the engine's own and each other), state
maps (their key and value layouts), and probe names (each used once)."""

from __future__ import annotations

import re

from engine.errors import did_you_mean  # noqa: F401
from engine.plan import model as M
from engine.plan.passes.context import Context
from engine.plan.state import plan_states
from engine.plan.values import ctype_range

# Flags of `engine run` / `engine render` themselves; spec options may not take them
# (tests/unit/test_planner.py checks this set against the CLI's parsers).
INT_TYPE = re.compile(r"[us](8|16|32|64)")
ENGINE_FLAGS = {
    "-h",
    "--help",
    "-o",
    "--output",
    "-c",
    "--count",
    "--envelope",
    "--sort",
    "--clock",
    "--top",
    "-v",
    "--verbose",
    "--duration",
    "--interval",
    "--clear",
    "--cgroup",
    "--container",
    "--pod",
    "--selector",
    "--stack-storage-size",
    "--ebpf",
    "--btf",
    "--wakeup",
    "--buffer-pages",
    "--perf-buffer",
    "--decoder",
    "--alternative",
}


def run(ctx: Context) -> None:
    plan_options(ctx)
    ctx.states = plan_states(ctx.spec.states, ctx.problem)
    check_probe_names(ctx)


def plan_options(ctx: Context) -> None:
    seen: dict[str, str] = {}
    for spec in ctx.spec.options:
        name, flag = spec.name, spec.flag
        positional = not flag.startswith("-")
        short, _, long = (
            flag.partition("/")
            if flag.startswith("-") and not flag.startswith("--")
            else ("", "", "" if positional else flag)
        )
        for f in (short, long):
            if not f:
                continue
            if f in ENGINE_FLAGS:
                ctx.problem(
                    f"option flag {f} is the engine's own; pick another",
                    spec.flag_at,
                )
            elif f in seen:
                ctx.problem(
                    f"option flag {f} is already used by option '{seen[f]}'",
                    spec.flag_at,
                )
            seen[f] = name
        typ = spec.type
        is_list = typ.startswith("list[")
        ctype = typ[5:-1] if is_list else typ
        default = spec.default
        if default is not None:
            low, high = ctype_range(ctype) if INT_TYPE.fullmatch(typ) else (0, -1)
            if not low <= default <= high:
                expected = (
                    f"expected {low} to {high}" if low <= high else "only an integer option has one"
                )
                ctx.problem(
                    f"default {default} does not fit option '{name}' ({typ}): {expected}",
                    spec.default_at or spec.at,
                )
                default = None
        if spec.output and typ != "bool":
            ctx.problem(f"`output:` goes with a bool option (a switch); '{name}' is {typ}", spec.at)
        if positional and (typ == "bool" or is_list or typ == "pinned_map"):
            ctx.problem(
                f"a positional option (`flag: {flag}`, no dash) takes one value: an integer or "
                f"a str, not {typ}",
                spec.flag_at,
            )
        ctx.options[name] = M.Option(
            name, short, long, ctype, is_list, spec.help, spec.metavar, default, spec.output,
            positional,
        )  # fmt: skip


def check_probe_names(ctx: Context) -> None:
    """Probe names key alternative choices and name maps: each must be used once."""
    first: dict[str, int] = {}
    for probe in ctx.spec.probes:
        name = probe.name
        if name in first:
            ctx.problem(
                f"probe name '{name}' is already used by probe {first[name] + 1}",
                probe.name_at,
            )
        first.setdefault(name, probe.index)
