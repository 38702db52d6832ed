"""The outputs pass: columns, output.count's key, and output.aggregations planned over
the probes' fields; and every probe that sends events sets each field the output prints."""

from __future__ import annotations

from typing import Sequence

from engine import aggs
from engine.errors import did_you_mean
from engine.plan import model as M
from engine.plan.passes.context import Context
from engine.plan.values import PlanError
from engine.spec import expr as E
from engine.spec import model as S

# `print:` of a sum/min/max/avg and the `unit:` it converts from: nanoseconds in one of each
# (the spellings `metrics.unit` takes)
TIME_NS = {"ns": 1, "nsecs": 1, "us": 10**3, "usecs": 10**3, "ms": 10**6, "msecs": 10**6,
           "s": 10**9, "secs": 10**9, "seconds": 10**9}  # fmt: skip
PRINTED = tuple(key for key, k in aggs.BY_SPEC_KEY.items() if k.printable)
NOT_NUMBERS = ("str", "inet", "hex", "ksym", "elapsed", "bool", "enum", "errno", "ip_version",
               "ms", "secs", "syscall", "devt", "kstack", "ustack")  # fmt: skip


def run(ctx: Context) -> None:
    output = ctx.spec.output
    ctx.columns = plan_columns(ctx, output.columns, ctx.fields, ctx.probes)
    count = output.count
    ctx.count_header = count.header if count and count.header is not None else "COUNT"
    ctx.count_by = plan_columns(ctx, count.by if count else (), ctx.fields, ctx.probes, by=True)
    ctx.aggregations = plan_aggregations(ctx, ctx.fields, ctx.probes)
    ctx.derived = plan_derived(ctx, ctx.aggregations)


DERIVABLE = tuple(k.name for k in (aggs.COUNT, aggs.SUM, aggs.MIN, aggs.MAX))  # one integer a key


def plan_derived(ctx: Context, aggregations: list[M.Aggregation]) -> list[M.Derived]:
    """`output.derived`: expressions over aggregations of one table (the same `by`)."""
    out: list[M.Derived] = []
    by_name = {a.name: a for a in aggregations}
    for d in ctx.spec.output.derived:
        if d.value.node is None:
            continue  # its parse error is said
        refs: list[str] = []
        try:
            check_derived(d.value.node, by_name, refs)
        except PlanError as exc:
            ctx.problem(exc.message, d.value.at, exc.col)
            continue
        tables = {tuple(c.field for c in by_name[r].by) for r in refs}
        if len(tables) > 1:
            ctx.problem(
                f"derived column '{d.name}' reads aggregations keyed differently "
                f"({', '.join(dict.fromkeys(refs))}); they must share one table (the same `by`)",
                d.value.at,
            )
            continue
        header = d.header if d.header is not None else d.name.upper()
        width = d.width if d.width is not None else max(len(header), 8)
        out.append(M.Derived(d.name, header, width, d.value.node, tuple(dict.fromkeys(refs))))
    if any(a.hide for a in aggregations) and not out:
        hidden = next(a for a in aggregations if a.hide)
        ctx.problem(
            f"aggregation '{hidden.name}' is hidden (hide: true) but no output.derived "
            "column reads it",
            ctx.spec.output.at,
        )
    return out


def check_derived(node: E.Node, aggs_by_name: dict[str, M.Aggregation], refs: list[str]) -> None:
    """Integers, aggregation names, + - * / % and unary -, nothing else."""
    if isinstance(node, E.Num):
        return
    if isinstance(node, E.Name):
        agg = aggs_by_name.get(node.name)
        if agg is None or agg.kind not in DERIVABLE:
            names = [n for n, a in aggs_by_name.items() if a.kind in DERIVABLE]
            raise PlanError(
                f"'{node.name}' is not an aggregation a derived column can read "
                f"(count, sum, min or max); these are: {', '.join(names) or 'none'}"
                f"{did_you_mean(node.name, names)}",
                node.col,
            )
        refs.append(node.name)
        return
    if isinstance(node, E.BinOp) and node.op in ("+", "-", "*", "/", "%"):
        check_derived(node.left, aggs_by_name, refs)
        check_derived(node.right, aggs_by_name, refs)
        return
    if isinstance(node, E.Unary) and node.op == "-":
        check_derived(node.operand, aggs_by_name, refs)
        return
    raise PlanError(
        "a derived column is integers and aggregation names with + - * / % only",
        getattr(node, "col", 0),
    )


def counted(ctx: Context) -> None:
    """output.count (what -c counts) as the first aggregation, and the printed fields."""
    if ctx.count_by:
        c = aggs.COUNT.name
        count = M.Aggregation(c, c, "", ctx.count_by, ctx.count_header, "", 10240, by_count=True)
        ctx.aggregations.insert(0, count)
    check_printed_fields(ctx, ctx.fields, ctx.columns, ctx.aggregations)


def plan_columns(
    ctx: Context,
    items: Sequence[S.Column],
    fields: dict[str, M.Field],
    probes: list[M.Probe | None],
    by: bool = False,
) -> tuple[M.Column, ...]:
    """Columns (or `by` keys: each field once) of planned fields."""
    columns = []
    seen: set[str] = set()
    for spec in items:
        where = spec.at
        name = spec.field
        if by and name in seen:  # a key struct cannot hold a member twice
            ctx.problem(f"field '{name}' is already in this `by` list", where)
            continue
        seen.add(name)
        f = fields.get(name)
        if f is None:
            if all(p is not None for p in probes) and name not in ctx.broken:
                ctx.problem(
                    f"no field '{name}'; fields: {', '.join(fields)}{did_you_mean(name, fields)}",
                    where,
                )
            continue
        option = spec.when
        for key, switch, at in (
            ("if", option, spec.when_at),
            ("unless", spec.unless, spec.unless_at),
        ):
            if switch and (switch not in ctx.options or ctx.options[switch].ctype != "bool"):
                bools = [o for o, v in ctx.options.items() if v.ctype == "bool"]
                ctx.problem(
                    f"`{key}` needs a bool option; '{switch}' is not one"
                    f"{did_you_mean(switch, bools)}",
                    at or spec.entry,
                )
        header = spec.header if spec.header is not None else f.header
        width = spec.width
        if width is None:
            width = f.width if header == f.header else len(header)
        label = spec.header or ""
        columns.append(M.Column(name, header, width, option, spec.unless, label))
    return tuple(columns)


# -- probes ------------------------------------------------------------------------------


def plan_aggregations(
    ctx: Context, fields: dict[str, M.Field], probes: list[M.Probe | None]
) -> list[M.Aggregation]:
    """`output.aggregations`: each a kind over a field, keyed by columns."""
    out: list[M.Aggregation] = []
    seen: set[str] = set()
    for spec in ctx.spec.output.aggregations:
        kind, name = spec.kind, spec.name
        if name in seen:
            ctx.problem(f"aggregation '{name}' is declared twice; name one", spec.name_at)
        seen.add(name)
        value, low, high, step = spec.value, spec.low, spec.high, spec.step
        linear = kind == aggs.LINEAR.spec_key
        if linear and (high <= low or (high - low) % step or (high - low) // step > 1000):
            ctx.problem(
                f"lhist needs min < max with (max - min) a multiple of step and at "
                f"most 1000 buckets; got min {low}, max {high}, step {step}",
                spec.kind_at,
            )
        signed = False
        if value:
            f = fields.get(value)
            vpath = spec.value_at
            if f is None:
                if all(p is not None for p in probes) and value not in ctx.broken:
                    ctx.problem(
                        f"no field '{value}'; fields: {', '.join(fields)}"
                        f"{did_you_mean(value, fields)}",
                        vpath,
                    )
            elif f.count or f.ctype.startswith("struct") or f.decoder in NOT_NUMBERS:
                ctx.problem(
                    f"{aggs.BY_SPEC_KEY[kind].words} needs a number; "
                    f"'{value}' is a {f.decoder} field",
                    vpath,
                )
            else:
                signed = f.ctype.startswith("s")
        by = plan_columns(ctx, spec.by, fields, probes, by=True)
        for key, switches in (("if", spec.when), ("unless", spec.unless)):
            for switch in switches:
                option = switch.name
                if option and (option not in ctx.options or ctx.options[option].ctype != "bool"):
                    bools = [o for o, v in ctx.options.items() if v.ctype == "bool"]
                    ctx.problem(
                        f"`{key}` needs a bool option; '{option}' is not one"
                        f"{did_you_mean(option, bools)}",
                        switch.at,
                    )
        header = spec.header
        if header is None:
            header = aggs.BY_SPEC_KEY[kind].header or value.upper() or "COUNT"
        unit = spec.unit if spec.unit is not None else value
        divisor = print_divisor(ctx, kind, spec, unit) if spec.print is not None else 1
        when = tuple(s.name for s in spec.when)
        out.append(
            M.Aggregation(
                name, aggs.BY_SPEC_KEY[kind].name, value, by, header, unit,
                spec.size, when, tuple(s.name for s in spec.unless),
                low, high, step, signed, divisor=divisor, hide=spec.hide,
            )
        )  # fmt: skip
    return out


def print_divisor(ctx: Context, kind: str, spec: S.Aggregation, unit: str) -> int:
    """`print: us` on a sum, min, max or avg kept in `unit: ns`: what the kernel's value is
    divided by when it prints. The kernel sums exact nanoseconds and the total is divided
    once (as bcc's tools do); dividing each event's value first would drop up to a unit
    per event. Histograms bucket each value as it comes, so they convert the field."""
    shown = str(spec.print)
    if kind not in PRINTED:
        what = "a count has no unit" if kind == aggs.COUNT.spec_key else (
            f"{aggs.BY_SPEC_KEY[kind].words} buckets each value as it comes: divide the field "
            "instead, "
            "e.g. `(ktime_ns - t0) / 1000`"
        )  # fmt: skip
        ctx.problem(f"`print` converts a sum, min, max or avg; {what}", spec.print_at)
        return 1
    if unit not in TIME_NS:
        said = (
            f"'{unit}' is not one" if spec.unit is not None
            else f"without `unit:` it is the field's name, '{unit}'"
        )  # fmt: skip
        ctx.problem(
            f"`print: {shown}` converts from the time unit the kernel keeps the value in "
            f"({', '.join(TIME_NS)}); {said}: give `unit: ns`"
            f"{did_you_mean(unit, TIME_NS) if spec.unit is not None else ''}",
            spec.unit_at if spec.unit is not None else spec.print_at,
        )
        return 1
    if TIME_NS[shown] < TIME_NS[unit]:
        ctx.problem(
            f"`print: {shown}` is finer than `unit: {unit}`: the kernel's value has no "
            f"finer digits; keep the field in {shown} (`unit: {shown}`) or print {unit}",
            spec.print_at,
        )
        return 1
    return TIME_NS[shown] // TIME_NS[unit]


def check_printed_fields(
    ctx: Context,
    fields: dict[str, M.Field],
    columns: tuple[M.Column, ...],
    aggregations: list[M.Aggregation],
) -> None:
    """Every probe that sends events must set every field the output prints: the event is
    zeroed, so a field one probe leaves out would print 0 (or "") for its events, which no
    reader could tell from a real 0. Said at that probe's `fields`, naming what prints it."""
    printed: dict[str, str] = {}
    for c in columns:
        printed.setdefault(c.field, "output.columns")
    for agg in aggregations:
        where = "output.count" if agg.by_count else f"aggregation '{agg.name}'"
        for name in (*(c.field for c in agg.by), agg.value):
            if name:
                printed.setdefault(name, where)
    for probe in ctx.spec.probes:
        own = probe.field_names()
        if not own:
            continue  # it only stores state: it sends nothing
        missing = [n for n in printed if n in fields and n not in own]
        if missing:
            said = "; ".join(f"'{n}' ({printed[n]})" for n in missing)
            ctx.problem(
                f"probe '{probe.name}' does not set {said}: every probe with fields must "
                "set each field the output prints (left out, it would read 0 for this "
                "probe's events, like a real 0); set it in this probe too, or do not print it",
                probe.fields_at,
                key=True,
            )
