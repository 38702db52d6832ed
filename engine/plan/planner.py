"""Planner: a schema-valid spec + kernel BTF -> a `Plan`, or every problem found.

Semantic validation and planning are one pass: resolving `sk.__sk_common.skc_dport` against
BTF *is* checking it, and yields the offsets the generated C reads. Every problem is collected
with its file:line:col (the column inside an expression included) before anything is raised.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from engine import aggs
from engine.attach import KINDS, Target, kind_of
from engine.errors import (
    EngineError,
    Location,
    NameIndex,
    Problem,
    SpecError,
    UsageError,
    did_you_mean,
)
from engine.kernel.btf import VMLINUX, Btf, BtfError, Kind, Param
from engine.plan import model as M
from engine.plan import tracepoints
from engine.plan.arith import fields_only, inline
from engine.plan.bind import bind
from engine.plan.resolve import (
    COMM_LEN,
    VT,
    PlanError,
    Provenance,
    Resolver,
    Scope,
    Val,
    VKind,
    int_vt,
    name_index,
)
from engine.plan.shapes import modes, option_shapes
from engine.plan.state import (
    StateResolver,
    StoreValueError,
    plan_states,
    user_pointer_message,
    uses_state,
)
from engine.runtime.decoders import REGISTRY
from engine.spec import expr as E

DEFAULT_STR = 64
MAX_STASH = 6  # a return probe keeps at most the register-passed arguments
# output.aggregations: the spec key -> the model's kind, how errors name it, its header
AGG_KEYS = aggs.SPEC_KEYS
AGG_KINDS = {key: k.name for key, k in aggs.BY_SPEC_KEY.items()}
AGG_WORDS = {key: k.words for key, k in aggs.BY_SPEC_KEY.items()}
AGG_HEADERS = {key: k.header for key, k in aggs.BY_SPEC_KEY.items() if k.header}
# `print:` of a sum/min/max/avg and the `unit:` it converts from: nanoseconds in one of each
# (the spellings `metrics.unit` takes)
TIME_NS = {"ns": 1, "nsecs": 1, "us": 10**3, "usecs": 10**3, "ms": 10**6, "msecs": 10**6,
           "s": 10**9, "secs": 10**9, "seconds": 10**9}  # fmt: skip
PRINTED = tuple(key for key, k in aggs.BY_SPEC_KEY.items() if k.printable)
NOT_NUMBERS = ("str", "inet", "hex", "ksym", "elapsed", "bool", "enum", "errno", "ip_version",
               "ms", "secs", "syscall", "devt")  # fmt: skip
# Flags of `engine run` / `engine render` themselves; spec options may not take them
# (tests/unit/test_planner.py checks this set against the CLI's parsers).
ENGINE_FLAGS = {
    "-h",
    "--help",
    "-o",
    "--output",
    "-c",
    "--count",
    "--envelope",
    "-v",
    "--verbose",
    "--duration",
    "--interval",
    "--clear",
    "--ebpf",
    "--btf",
    "--wakeup",
    "--buffer-pages",
    "--perf-buffer",
    "--decoder",
    "--alternative",
}


class Planner:
    """Walks a document, collecting problems, and builds the Plan."""

    def __init__(self, document: Any, btf: Btf, tracefs_ok: bool) -> None:
        self.doc = document
        self.data: dict[str, Any] = document.data
        self.btf = btf
        self.tracefs_ok = tracefs_ok
        self.problems: list[Problem] = []
        self.options: dict[str, M.Option] = {}
        self.mentioned: set[str] = set()  # options named by an expression, `if` or `unless`
        self.warnings: list[Problem] = []
        self.states: dict[str, M.StateMap] = {}
        self.broken: set[str] = set()  # fields whose expression did not parse
        self.stashes: set[str] = set()  # state maps the engine made for return probes
        self.function_owner: dict[str, int] = {}  # generated BPF function -> probe index
        self.provenance = Provenance()  # what state members hold (user-space pointers)
        # id(cast) -> (the cast, kept so that no other node takes its id; its let/field path)
        self.cast_paths: dict[int, tuple[E.Node, tuple[Any, ...]]] = {}

    # -- locations ---------------------------------------------------------------------------
    def where(self, path: Sequence[str | int], col: int = 0, key: bool = False) -> Location:
        loc: Location = self.doc.locate(list(path), key=key)
        if loc.line and (col or not key):
            line = self.source_line(loc.line)
            start = loc.col - 1
            quoted = 1 if line[start : start + 1] in ("'", '"') else 0
            loc = Location(loc.file, loc.line, loc.col + col + quoted, loc.path)
        return loc

    def source_line(self, line: int) -> str:
        """A line of the loaded text: the spec file is never opened a second time."""
        return str(self.doc.line(line))

    def problem(
        self, message: str, path: Sequence[str | int], col: int = 0, key: bool = False
    ) -> None:
        if message:  # an AlreadyReported error has none: it was said where its `let` is
            self.problems.append(Problem(message, self.where(path, col, key)))

    def parse(self, text: str, path: Sequence[str | int], cast: bool = False) -> E.Node | None:
        try:
            node = E.parse(text, allow_cast=cast)
        except E.ExprError as exc:
            self.problem(exc.message, path, exc.col)
            return None
        self.mentioned.update(_options_in(node))
        return node

    def enum_lookup(self, name: str) -> int | None:
        found = self.btf.enum_constant(name)
        return found[1] if found else None

    # -- whole spec --------------------------------------------------------------------------
    def plan(self) -> M.Plan:
        self.plan_options()
        self.states = plan_states(self.data.get("state") or {}, self.problem)
        self.check_probe_names()
        fields: dict[str, M.Field] = {}
        probes = [self.plan_probe(i, p, fields) for i, p in enumerate(self.data["probes"])]
        columns = self.plan_columns(
            self.data["output"].get("columns", []), ("output", "columns"), fields, probes
        )
        count = self.data["output"].get("count") or {}
        count_by = self.plan_columns(count.get("by", []), ("output", "count", "by"), fields, probes)
        aggregations = self.plan_aggregations(fields, probes)
        self.check_state_use()
        self.check_user_casts()
        if count_by:
            header, C = count.get("header", "COUNT"), aggs.COUNT.name
            aggregations.insert(
                0, M.Aggregation(C, C, "", count_by, header, "", 10240, by_count=True)
            )
        self.check_printed_fields(fields, columns, aggregations)
        self.warn_unused_options()
        if self.problems:
            # Fields are planned once per alternative: say each mistake once.
            self.problems = list(dict.fromkeys(self.problems))
            raise SpecError(sorted(self.problems, key=lambda p: (p.location.line, p.location.col)))
        field_list = tuple(fields.values())
        event = layout("event_t", [(M.slot_name(f.name), f.ctype, f.count) for f in field_list])
        plan = M.Plan(
            name=self.data["name"],
            description=self.data.get("description", ""),
            options=tuple(self.options.values()),
            probes=tuple(p for p in probes if p is not None),
            fields=field_list,
            event=event,
            columns=columns,
            states=tuple(self.states.values()),
            aggregations=tuple(aggregations),
        )
        self.check_stack(plan)
        if self.problems:
            raise SpecError(self.problems)
        return plan

    def check_printed_fields(
        self,
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
        for i, spec in enumerate(self.data["probes"]):
            own = spec.get("fields") or {}
            if not own:
                continue  # it only stores state: it sends nothing
            missing = [n for n in printed if n in fields and n not in own]
            if missing:
                said = "; ".join(f"'{n}' ({printed[n]})" for n in missing)
                self.problem(
                    f"probe '{spec['name']}' does not set {said}: every probe with fields must "
                    "set each field the output prints (left out, it would read 0 for this "
                    "probe's events, like a real 0); set it in this probe too, or do not print it",
                    ("probes", i, "fields"),
                    key=True,
                )

    def check_state_use(self) -> None:
        """A state map nothing stores into can never be read: a mistake, said at its name."""
        stored = {
            name
            for spec in self.data["probes"]
            for verb in ("store",)
            for name in (spec.get(verb) or {})
        }
        for name in self.states:
            if name not in stored and name not in self.stashes:
                self.problem(
                    f"state '{name}' is never stored into: add `store: {{{name}: "
                    "{key: ..., value: ...}}` to the probe that starts the pairing",
                    ("state", name),
                    key=True,
                )

    def check_user_casts(self) -> None:
        """A value read from state and cast to a kernel struct, where some store (in any
        probe, before or after) puts a user-space pointer into that state member."""
        for node, origins in self.provenance.casts:
            found = self.provenance.user_pointer(origins)
            entry = self.cast_paths.get(id(node))
            if found is not None and entry is not None:
                self.problem(user_pointer_message(*found), entry[1], int(node.expr.col))

    def plan_aggregations(
        self, fields: dict[str, M.Field], probes: list[M.Probe | None]
    ) -> list[M.Aggregation]:
        """`output.aggregations`: each a kind over a field, keyed by columns."""
        out: list[M.Aggregation] = []
        seen: set[str] = set()
        for i, spec in enumerate(self.data["output"].get("aggregations") or []):
            path = ("output", "aggregations", i)
            kind = next(k for k in AGG_KEYS if k in spec)
            name = spec.get("name", kind)
            if name in seen:
                self.problem(f"aggregation '{name}' is declared twice; name one", (*path, "name"))
            seen.add(name)
            value, low, high, step = "", 0, 0, 0
            if kind == aggs.LINEAR.spec_key:
                lin = spec[kind]
                value, low, high, step = lin["value"], lin["min"], lin["max"], lin["step"]
                if high <= low or (high - low) % step or (high - low) // step > 1000:
                    self.problem(
                        f"lhist needs min < max with (max - min) a multiple of step and at "
                        f"most 1000 buckets; got min {low}, max {high}, step {step}",
                        (*path, kind),
                    )
            elif aggs.BY_SPEC_KEY[kind].takes_value:
                value = spec[kind]
            signed = False
            if value:
                f = fields.get(value)
                vpath = (*path, kind, "value") if kind == aggs.LINEAR.spec_key else (*path, kind)
                if f is None:
                    if all(p is not None for p in probes) and value not in self.broken:
                        self.problem(
                            f"no field '{value}'; fields: {', '.join(fields)}"
                            f"{did_you_mean(value, fields)}",
                            vpath,
                        )
                elif f.count or f.ctype.startswith("struct") or f.decoder in NOT_NUMBERS:
                    self.problem(
                        f"{AGG_WORDS[kind]} needs a number; '{value}' is a {f.decoder} field",
                        vpath,
                    )
                else:
                    signed = f.ctype.startswith("s")
            by = self.plan_columns(spec.get("by", []), (*path, "by"), fields, probes)
            raw_when = spec.get("if", [])
            when = [raw_when] if isinstance(raw_when, str) else list(raw_when)
            for key, names in (("if", when), ("unless", [spec.get("unless", "")])):
                for j, option in enumerate(names):
                    if option and (
                        option not in self.options or self.options[option].ctype != "bool"
                    ):
                        bools = [o for o, v in self.options.items() if v.ctype == "bool"]
                        at = (*path, key, j) if isinstance(spec.get(key), list) else (*path, key)
                        self.problem(
                            f"`{key}` needs a bool option; '{option}' is not one"
                            f"{did_you_mean(option, bools)}",
                            at,
                        )
            header = spec.get("header", AGG_HEADERS.get(kind, value.upper() or "COUNT"))
            unit = spec.get("unit", value)
            divisor = self.print_divisor(kind, spec, unit, path) if "print" in spec else 1
            out.append(
                M.Aggregation(
                    name, AGG_KINDS[kind], value, by, header, unit,
                    spec.get("size", 10240), tuple(when), spec.get("unless", ""),
                    low, high, step, signed, divisor=divisor,
                )
            )  # fmt: skip
        return out

    def print_divisor(self, kind: str, spec: dict, unit: str, path: tuple) -> int:
        """`print: us` on a sum, min, max or avg kept in `unit: ns`: what the kernel's value is
        divided by when it prints. The kernel sums exact nanoseconds and the total is divided
        once (as bcc's tools do); dividing each event's value first would drop up to a unit
        per event. Histograms bucket each value as it comes, so they convert the field."""
        shown = spec["print"]
        if kind not in PRINTED:
            what = "a count has no unit" if kind == aggs.COUNT.spec_key else (
                f"{AGG_WORDS[kind]} buckets each value as it comes: divide the field instead, "
                "e.g. `(ktime_ns - t0) / 1000`"
            )  # fmt: skip
            self.problem(f"`print` converts a sum, min, max or avg; {what}", (*path, "print"))
            return 1
        if unit not in TIME_NS:
            said = (
                f"'{unit}' is not one" if "unit" in spec
                else f"without `unit:` it is the field's name, '{unit}'"
            )  # fmt: skip
            self.problem(
                f"`print: {shown}` converts from the time unit the kernel keeps the value in "
                f"({', '.join(TIME_NS)}); {said}: give `unit: ns`"
                f"{did_you_mean(unit, TIME_NS) if 'unit' in spec else ''}",
                (*path, "unit") if "unit" in spec else (*path, "print"),
            )
            return 1
        if TIME_NS[shown] < TIME_NS[unit]:
            self.problem(
                f"`print: {shown}` is finer than `unit: {unit}`: the kernel's value has no "
                f"finer digits; keep the field in {shown} (`unit: {shown}`) or print {unit}",
                (*path, "print"),
            )
            return 1
        return TIME_NS[shown] // TIME_NS[unit]

    def warn_unused_options(self) -> None:
        """An option no expression, column or aggregation names does nothing: say so."""
        self.mentioned.update(_switches_in(self.data.get("output") or {}))
        for name, opt in self.options.items():
            if name not in self.mentioned:
                flags = "/".join(f for f in (opt.short, opt.long) if f)
                self.warnings.append(
                    Problem(
                        f"option '{name}' ({flags}) is used by no filter, `where`, column or "
                        f"aggregation, so it does nothing; use it (${name}) or remove it",
                        self.where(("options", name), key=True),
                        "warning",
                    )
                )

    def check_probe_names(self) -> None:
        """Probe names key alternative choices and name maps: each must be used once."""
        first: dict[str, int] = {}
        for i, probe in enumerate(self.data["probes"]):
            name = probe["name"]
            if name in first:
                self.problem(
                    f"probe name '{name}' is already used by probe {first[name] + 1}",
                    ("probes", i, "name"),
                )
            first.setdefault(name, i)

    def check_stack(self, plan: M.Plan) -> None:
        """Refuse a probe whose program would pass the BPF stack limit, in any shape.

        clang does not report a too-large stack as an error: its BPF backend ends the process.
        So the planner adds up what each function keeps on the stack (`stack_use`), for every
        alternative, output mode and option shape (engine.plan.shapes: aggregation keys and
        their `by` columns come and go with switches), and says what is large instead.
        """
        worst: dict[str, tuple[int, StackUse, str]] = {}
        most = max((len(p.alternatives) for p in plan.probes), default=1)
        for shape in option_shapes(plan):
            for mode in modes(plan):
                label = " ".join(x for x in ("-c" * (mode == "count"), shape.flags) if x)
                for index in range(most):
                    choices = {p.name: min(index, len(p.alternatives) - 1) for p in plan.probes}
                    try:
                        program = bind(
                            plan, count=mode == "count", options=shape.values, choices=choices
                        )
                    except UsageError:
                        continue  # a value this shape cannot take (a 1-byte string field)
                    for bound in program.probes:
                        use = stack_use(bound, program)
                        if use.total > worst.get(bound.name, (0,))[0]:
                            worst[bound.name] = (use.total, use, label)
        for probe in plan.probes:
            need, use, label = worst.get(probe.name, (0, StackUse(), ""))
            if need <= STACK_LIMIT:
                continue
            spec = self.data["probes"][probe.index]
            part = next((k for k in ("fields", "store") if spec.get(k)), "name")
            self.problem(
                f"probe '{probe.name}' needs {need} bytes of BPF stack"
                f"{f' with {label}' if label else ''}, over the kernel's {STACK_LIMIT}: "
                f"{use.explain(plan.event)}; make string fields smaller with `size:`, or keys "
                "and state values fewer",
                ("probes", probe.index, part),
            )

    def plan_options(self) -> None:
        seen: dict[str, str] = {}
        for name, spec in (self.data.get("options") or {}).items():
            flag = spec.get("flag") or f"--{name.replace('_', '-')}"
            short, _, long = (
                flag.partition("/")
                if flag.startswith("-") and not flag.startswith("--")
                else ("", "", flag)
            )
            for f in (short, long):
                if not f:
                    continue
                if f in ENGINE_FLAGS:
                    self.problem(
                        f"option flag {f} is the engine's own; pick another",
                        ("options", name, "flag"),
                    )
                elif f in seen:
                    self.problem(
                        f"option flag {f} is already used by option '{seen[f]}'",
                        ("options", name, "flag"),
                    )
                seen[f] = name
            typ = spec["type"]
            is_list = typ.startswith("list[")
            ctype = typ[5:-1] if is_list else typ
            metavar = spec.get("metavar") or name.upper()
            self.options[name] = M.Option(
                name, short, long, ctype, is_list, spec.get("help", ""), metavar
            )

    def plan_columns(
        self,
        items: list[Any],
        path: tuple[str | int, ...],
        fields: dict[str, M.Field],
        probes: list[M.Probe | None],
    ) -> tuple[M.Column, ...]:
        columns = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            spec: dict[str, Any] = {"field": item} if isinstance(item, str) else item
            where: tuple[str | int, ...] = (
                (*path, i) if isinstance(item, str) else (*path, i, "field")
            )
            name = spec["field"]
            if path[-1] == "by" and name in seen:  # a key struct cannot hold a member twice
                self.problem(f"field '{name}' is already in this `by` list", where)
                continue
            seen.add(name)
            f = fields.get(name)
            if f is None:
                if all(p is not None for p in probes) and name not in self.broken:
                    self.problem(
                        f"no field '{name}'; fields: {', '.join(fields)}"
                        f"{did_you_mean(name, fields)}",
                        where,
                    )
                continue
            option = spec.get("if", "")
            if option and (option not in self.options or self.options[option].ctype != "bool"):
                bools = [o for o, v in self.options.items() if v.ctype == "bool"]
                self.problem(
                    f"`if` needs a bool option; '{option}' is not one{did_you_mean(option, bools)}",
                    (*path, i, "if"),
                )
            header = spec.get("header", f.header)
            width = spec.get("width", f.width if header == f.header else len(header))
            columns.append(M.Column(name, header, width, option))
        return tuple(columns)

    # -- probes ------------------------------------------------------------------------------
    def plan_probe(
        self, index: int, spec: dict[str, Any], fields: dict[str, M.Field]
    ) -> M.Probe | None:
        base = ("probes", index)
        name = spec["name"]
        lets = {
            k: self.parse(v, (*base, "let", k), cast=True)
            for k, v in (spec.get("let") or {}).items()
        }
        field_specs = {}
        for fname, raw in (spec.get("fields") or {}).items():
            fpath = (*base, "fields", fname)
            fspec: dict[str, Any] = {"value": raw} if isinstance(raw, str) else raw
            vpath = fpath if isinstance(raw, str) else (*fpath, "value")
            field_specs[fname] = (fspec, fpath, vpath, self.parse(fspec["value"], vpath, True))
            if field_specs[fname][3] is None:
                self.broken.add(fname)  # said once where it is; columns naming it stay quiet
        filter_node = None
        if "filter" in spec:
            filter_node = self.parse(spec["filter"], (*base, "filter"))
        alternatives = []
        before = len(self.problems)
        for ai, alt in enumerate(spec["attach"]):
            a = self.plan_alternative(
                index,
                name,
                ai,
                alt,
                lets,
                field_specs,
                fields,
                filter_node,
                (*base, "attach", ai),
                base,
            )
            if a is not None:
                alternatives.append(a)
        if len(self.problems) > before or not alternatives:
            return None
        filt: M.CExpr = M.CTrue()
        if filter_node is not None:
            filt = self.plan_filter(filter_node, fields, (*base, "filter"))
        return M.Probe(name, index, tuple(alternatives), filt, emits=bool(field_specs))

    def plan_filter(
        self, node: E.Node, fields: dict[str, M.Field], path: tuple[Any, ...]
    ) -> M.CExpr:
        def operand(n: E.Node) -> Val:
            if isinstance(n, E.Name) and n.name in fields:
                f = fields[n.name]
                if f.count or f.ctype.startswith("struct"):
                    kind = {"str": VKind.STR, "inet": VKind.INET}.get(f.decoder, VKind.ARRAY)
                    vt = VT(kind, f.count, count=f.count, label=f"{f.decoder} field '{f.name}'")
                    return Val(vt, var=f"ev.{M.slot_name(n.name)}")
                return Val(int_vt(f.ctype), var=f"ev.{M.slot_name(n.name)}")
            if isinstance(n, E.Name) and self.enum_lookup(n.name) is None:
                raise PlanError(
                    f"the filter can use this probe's fields ({', '.join(fields)}) "
                    f"and $options; put other conditions in an alternative's `where`"
                    f"{did_you_mean(n.name, fields)}",
                    n.col,
                )
            return resolver.value(n)

        scope = Scope(self.btf, "filter", {}, None, None)
        resolver = Resolver(scope, self.enum_lookup)
        leaf = fields_only(operand)
        resolver.leaf = leaf  # arithmetic on fields: `filter: usecs / 1000 > 5`
        try:
            return inline(resolver.condition(node, leaf, self.options), scope.steps)
        except PlanError as exc:
            self.problem(exc.message, path, exc.col)
            return M.CTrue()

    def attach_target(
        self, alt: dict[str, Any], path: tuple[Any, ...]
    ) -> tuple[str, tuple[str, ...], Scope] | None:
        ak = kind_of(alt)
        kind = ak.name
        raw = alt[kind]
        targets = tuple(raw) if isinstance(raw, list) else (raw,)
        tpath = (*path, kind)
        btf = self.btf
        if ak.target is Target.FUNCTION:
            found: list[tuple[str, tuple[Param, ...], int]] = []
            for i, t in enumerate(targets):
                if t in targets[:i]:
                    self.problem(f"'{t}' is already in this {kind} list", (*tpath, i))
                    return None
                fn = btf.function(t)
                if fn is None:
                    self.problem(
                        f"no kernel function '{t}' in {btf.path}"
                        f"{did_you_mean(t, self.function_names())}",
                        (*tpath, i) if isinstance(raw, list) else tpath,
                    )
                    continue
                found.append((t, fn[1], fn[2]))
            if len(found) != len(targets):
                return None
            params = {p.name: (i, p.type_id) for i, p in enumerate(found[0][1]) if p.name}
            for _, ps, _ in found[1:]:
                other = {p.name: (i, btf.type_str(p.type_id)) for i, p in enumerate(ps)}
                for pname, (i, tid) in list(params.items()):
                    if other.get(pname) != (i, btf.type_str(tid)):
                        del params[pname]  # differs between targets: not usable
            ret = found[0][2] if ak.returns else None
            if ak.returns and ret == 0:
                ret = None
            return kind, targets, Scope(btf, kind, params, ret, None, nargs=len(found[0][1]))
        if ak.target is Target.RAW_TRACEPOINT:
            rparams = btf.raw_tracepoint(targets[0])
            if rparams is None:
                self.problem(
                    f"no raw tracepoint '{targets[0]}' in {btf.path}"
                    f"{did_you_mean(targets[0], self.raw_tp_names())}",
                    tpath,
                )
                return None
            params = {(p.name or f"arg{i}"): (i, p.type_id) for i, p in enumerate(rparams)}
            return kind, targets, Scope(btf, kind, params, None, None)
        category, _, event = targets[0].partition("/")
        record = self.tracepoint_record(category, event, tpath)
        if record is None:
            return None
        note = ""
        if record.candidates:
            note = (
                f" (BTF does not say which of {', '.join(record.candidates)} it uses: these "
                "are the fields they agree on; on the running kernel, as root without --btf, "
                "tracefs settles it)"
            )
        scope = Scope(
            btf, kind, {}, None, dict(record.fields), record_label=targets[0], record_note=note
        )
        return kind, targets, scope

    def function_names(self) -> NameIndex:
        return name_index(self.btf, "functions", lambda: self.btf.names(Kind.FUNC))

    def raw_tp_names(self) -> NameIndex:
        def names() -> list[str]:
            typedefs = self.btf.names(Kind.TYPEDEF)
            return [n[len("btf_trace_") :] for n in typedefs if n.startswith("btf_trace_")]

        return name_index(self.btf, "raw tracepoints", names)

    def tracepoint_record(
        self, category: str, event: str, path: tuple[Any, ...]
    ) -> tracepoints.Record | None:
        """A tracepoint's record (engine.plan.tracepoints: tracefs on the live kernel, else BTF)."""
        try:
            return tracepoints.tracepoint_record(self.btf, category, event, self.tracefs_ok)
        except tracepoints.RecordError as exc:
            self.problem(str(exc), path)
            return None

    def plan_alternative(
        self,
        pindex: int,
        pname: str,
        aindex: int,
        alt: dict[str, Any],
        lets: dict[str, E.Node | None],
        field_specs: dict[str, Any],
        fields: dict[str, M.Field],
        filter_node: E.Node | None,
        path: tuple[Any, ...],
        probe_path: tuple[Any, ...],
    ) -> M.Alternative | None:
        target = self.attach_target(alt, path)
        if target is None:
            return None
        kind, targets, scope = target
        scope.states = self.states
        scope.provenance = self.provenance
        resolver = Resolver(scope, self.enum_lookup)
        before = len(self.problems)
        own_lets = {
            k: (self.parse(v, (*path, "let", k), cast=True), (*path, "let", k))
            for k, v in (alt.get("let") or {}).items()
        }
        all_lets = list(own_lets.items()) + [
            (k, (n, (*probe_path, "let", k))) for k, n in lets.items()
        ]
        where_node = self.parse(alt["where"], (*path, "where")) if "where" in alt else None
        # a cast is a whole `let` or field value: where to say what is wrong with it
        for node, npath in [n for _, n in all_lets] + [
            (node, vpath) for _, _, vpath, node in field_specs.values()
        ]:
            if isinstance(node, E.Cast):
                self.cast_paths[id(node)] = (node, npath)
        # Check every `let` once (so unused ones still report errors), then forget the
        # steps: a `let` is computed where first used, so unused ones cost nothing.
        scope.lazy = {k: n for k, (n, _) in all_lets if n is not None}
        for lname, (node, lpath) in all_lets:
            if node is None:
                scope.failed.add(lname)
                continue
            mark = len(scope.steps)
            try:
                scope.bindings[lname] = resolver.value(node)
            except PlanError as exc:
                self.problem(exc.message, lpath, exc.col)
                scope.failed.add(lname)
            del scope.steps[mark:]
            scope.cache.clear()
            scope.loads.clear()
        scope.bindings.clear()
        scope.lazy = {k: n for k, (n, _) in all_lets if n is not None and k not in scope.failed}
        where: M.CExpr = M.CTrue()
        if where_node is not None:
            try:
                where = resolver.condition(where_node, resolver.value, self.options)
            except PlanError as exc:
                self.problem(exc.message, (*path, "where"), exc.col)
        where_steps = tuple(scope.steps)
        # State reads run right after `where` (which says whether this is the probe's event
        # at all) and before the filter: a `take` deletes its key on every path on which the
        # event is the probe's, reported or not.
        for lname, (node, lpath) in all_lets:
            if lname in scope.lazy and lname not in scope.bindings and uses_state(node):
                try:
                    resolver.name(E.Name(lname, 0))
                except PlanError as exc:
                    self.problem(exc.message, lpath, exc.col)
        state_steps = tuple(scope.steps[len(where_steps) :])
        codes = []
        for fname, (fspec, fpath, vpath, node) in field_specs.items():
            if node is None:
                continue
            mark = len(scope.steps)
            try:
                val = resolver.value(node)
                f, steps = self.field_code(resolver, fname, fspec, val, node)
            except PlanError as exc:
                self.problem(exc.message, vpath, exc.col)
                continue
            codes.append(M.FieldCode(fname, tuple(scope.steps[mark:]) + tuple(steps)))
            self.merge_field(fields, f, fpath)
        mark = len(scope.steps)
        self.plan_stores(resolver, probe_path)
        stores = tuple(scope.steps[mark:])
        if len(self.problems) > before:
            return None
        ak = KINDS[kind]
        entry_steps: tuple[M.Step, ...] = ()
        stash_steps: tuple[M.Step, ...] = ()
        if scope.stash:
            try:
                entry_steps, stash_steps = self.stash_state(pname, scope)
            except PlanError as exc:
                self.problem(exc.message, ("state", f"stash_{pname}"), key=True)
                return None
        fnames = (f"p{pindex}_{pname}_{kind}_{t.replace('/', '_')}" for t in targets)
        functions: list[M.Function] = []
        for t, fn in zip(targets, fnames):
            tgt = t.replace("/", ":") if ak.tracefs_target else t
            if ak.entry and scope.stash:
                functions.append(M.Function(fn + "_entry", ak.entry, t, "entry"))
            if ak.prefix:
                fn = f"{ak.prefix}{t}"
                owner = self.function_owner.setdefault(fn, pindex)
                if owner != pindex:  # the name is the function's: two probes would collide
                    at = (*path, kind, targets.index(t)) if isinstance(alt[kind], list) else None
                    self.problem(
                        f"probe '{self.data['probes'][owner]['name']}' already has a {kind} "
                        f"on '{t}'; bcc names the program after the function, so a spec can "
                        f"attach one {kind} to it",
                        at or (*path, kind),
                    )
                    return None
            functions.append(M.Function(fn, kind, tgt, "main"))
        filter_fields = tuple(
            sorted(
                {n.name for n in E.names_in(filter_node) if n.name in field_specs}
                if filter_node
                else set()
            )
        )
        return M.Alternative(
            aindex,
            kind,
            targets,
            tuple(functions),
            tuple(sorted(scope.stash.items())),
            where_steps,
            where,
            tuple(codes),
            filter_fields,
            stores,
            state_steps,
            entry_steps,
            stash_steps,
        )

    def stash_state(
        self, pname: str, scope: Scope
    ) -> tuple[tuple[M.Step, ...], tuple[M.Step, ...]]:
        """A return probe's entry arguments, kept in a state map like any other: the entry
        function stores them by thread id, the return function takes them first of all (so
        the key is deleted on every path, before `where` or a filter can return)."""
        name = f"stash_{pname}"
        smap = self.states.get(name)
        if smap is not None and name not in self.stashes:
            raise PlanError(
                f"state '{name}' is the name the engine gives this return probe's saved "
                "arguments; rename the state map"
            )
        if smap is None:
            self.stashes.add(name)
            members = [f"a{i}" for i in range(MAX_STASH)]
            smap = self.states[name] = M.StateMap(
                name,
                layout(f"state_{name}_key_t", [("k0", "u32", 0)]),
                layout(f"state_{name}_val_t", [(M.slot_name(m), "u64", 0) for m in members]),
                tuple(members),
                10240,
                True,
                len(self.states),
                stash=True,
            )
        slots = sorted(scope.stash.items(), key=lambda kv: kv[1])
        entry: list[M.Step] = [M.Builtin("tid", "u32", "tid")]
        entry += [M.Arg(f"arg{i}", "u64", i, "regs") for _, i in slots]
        entry.append(M.StateKey("key", name, (("k0", "tid"),)))
        parts = tuple((M.slot_name(slot), f"arg{i}") for slot, i in slots)
        entry.append(M.StatePut("st", name, "key", parts, (), smap.index))
        first: tuple[M.Step, ...] = (
            M.Builtin("tid", "u32", "tid"),
            M.StateKey("key", name, (("k0", "tid"),)),
            M.StateRead("st", name, "key", True, index=smap.index),
        )
        return tuple(entry), first

    def plan_stores(self, resolver: Resolver, probe_path: tuple[Any, ...]) -> None:
        """The probe's `store` and `delete`, resolved in this alternative's scope."""
        spec = self.data["probes"][probe_path[1]]
        sr = StateResolver(resolver, self.states)
        for verb in ("store", "delete"):
            for sname, item in (spec.get(verb) or {}).items():
                path = (*probe_path, verb, sname)
                smap = self.states.get(sname)
                if smap is None:
                    self.problem(
                        f"no state map '{sname}'; state maps: "
                        f"{', '.join(self.states) or 'none declared (top-level `state:`)'}"
                        f"{did_you_mean(sname, self.states)}",
                        path,
                        key=True,
                    )
                    continue
                try:
                    if verb == "delete":
                        key = self.parse_in(item, path)
                        if key is not None:
                            sr.delete(smap, key)
                        continue
                    key = self.parse_in(item["key"], (*path, "key"))
                    raw = item["value"]
                    if isinstance(raw, dict):
                        value: Any = {
                            k: self.parse_in(v, (*path, "value", k)) for k, v in raw.items()
                        }
                        if any(v is None for v in value.values()):
                            continue
                    else:
                        value = self.parse_in(raw, (*path, "value"))
                    if key is None or value is None:
                        continue
                    sr.store(smap, key, value, 0)
                except StoreValueError as exc:
                    where = (*path, "value", exc.member) if exc.member else (*path, "value")
                    self.problem(exc.message, where, exc.col)
                except PlanError as exc:
                    self.problem(exc.message, path if verb == "delete" else (*path, "key"), exc.col)

    def parse_in(self, raw: Any, path: tuple[Any, ...]) -> E.Node | None:
        """An expression, or a list of them (a multi-part key) as one tuple node."""
        if isinstance(raw, list):
            items = [self.parse(str(x), (*path, i)) for i, x in enumerate(raw)]
            if any(i is None for i in items):
                return None
            return E.ListOf(tuple(i for i in items if i is not None), 0)
        return self.parse(str(raw), path)

    def field_code(
        self, r: Resolver, name: str, spec: dict[str, Any], val: Val, node: E.Node
    ) -> tuple[M.Field, list[M.Step]]:
        """How a value lands in its event slot, and how that slot prints."""
        decode = spec.get("decode")
        enum_name = ""
        if isinstance(decode, dict):
            enum_name, decode = decode["enum"], "enum"
        dest = f"ev.{M.slot_name(name)}"
        vt = val.vt
        steps: list[M.Step] = []
        col = getattr(node, "col", 0)
        header = spec.get("header", name.upper())
        enum_values: tuple[tuple[int, str], ...] = ()
        if vt.kind is VKind.COMM:
            if decode not in (None, "str"):
                raise PlanError(f"decoder '{decode}' does not fit comm (a string)", col)
            steps.append(M.Comm(dest, COMM_LEN))
            ctype, count, decoder = "char", COMM_LEN, "str"
        elif vt.kind is VKind.INET or decode == "inet":
            if vt.kind is VKind.INET:
                family, v4, v6 = val.parts
                steps.append(M.Inet(dest, family.var, v4.base, v4.offset, v6.base, v6.offset))
            elif val.is_lvalue and vt.size in (4, 16) and vt.kind in (VKind.INT, VKind.ARRAY):
                fam = "2" if vt.size == 4 else "10"
                steps.append(M.Inet(dest, fam, val.base, val.offset, val.base, val.offset))
            else:
                raise PlanError(
                    f"decoder 'inet' needs an address (4 or 16 bytes in kernel "
                    f"memory, or sock_saddr(sk)); got a '{vt.label}'",
                    col,
                )
            ctype, count, decoder = "struct inet_addr", 0, "inet"
        elif (
            vt.kind is VKind.STR
            or (vt.char and vt.kind in (VKind.ARRAY, VKind.PTR))
            or decode == "str"
        ):
            size = spec.get("size", vt.count if vt.kind is VKind.ARRAY else DEFAULT_STR)
            if vt.data_loc:
                steps.append(M.DataLocStr(dest, val.base, val.offset, size))
            elif val.var and vt.count:  # a comm kept in a state map
                size = vt.count
                steps.append(M.CopyLocal(dest, val.var, size))
            elif vt.kind is VKind.ARRAY and val.is_lvalue:
                steps.append(M.CopyStr(dest, r.address(val), 0, min(size, vt.size)))
                size = min(size, vt.size)
            elif vt.kind is VKind.PTR:
                ptr = r.rvalue(val)
                steps.append(M.CopyStr(dest, ptr.var, 0, size, user=vt.user))
            else:
                raise PlanError(f"decoder 'str' needs characters; got a '{vt.label}'", col)
            if decode not in (None, "str"):
                raise PlanError(f"decoder '{decode}' does not fit a string", col)
            ctype, count, decoder = "char", size, "str"
        elif vt.kind is VKind.ARRAY:
            if decode not in (None, "hex"):
                raise PlanError(f"decoder '{decode}' does not fit an array ('{vt.label}')", col)
            steps.append(M.Copy(dest, val.base, val.offset, vt.size))
            ctype, count, decoder = "u8", vt.size, "hex"
        elif vt.kind in (VKind.INT, VKind.PTR):
            rv = r.rvalue(val)
            if rv.is_const:
                raise PlanError("a field needs a kernel value, not a constant", col)
            ctype, count = rv.vt.ctype, 0
            swap = 0
            decoder = decode or ("hex" if vt.kind is VKind.PTR else "int")
            if decode in ("be16", "be32", "be64"):
                bits = int(decode[2:])
                if rv.vt.size * 8 != bits:
                    raise PlanError(
                        f"decoder '{decode}' needs a {bits // 8}-byte integer; "
                        f"this is a '{vt.label}' ({rv.vt.size} bytes)",
                        col,
                    )
                swap, decoder = bits, "int"
            if decoder == "enum" or (decode is None and vt.btf and vt.kind is VKind.INT):
                enum_values = self.enum_values(enum_name, vt, col)
                decoder = "enum"
            if decoder == "ksym" and rv.vt.size != 8:
                raise PlanError("decoder 'ksym' needs a kernel address (8 bytes)", col)
            if decoder in ("elapsed", "ms", "secs") and rv.vt.size != 8:
                raise PlanError(
                    f"decoder '{decoder}' needs nanoseconds (a u64 such as ktime_ns)", col
                )
            steps.append(M.Store(dest, rv.var, swap))
        elif vt.kind is VKind.STRUCT:
            raise PlanError(
                f"a field can't hold a whole '{vt.label}'; pick a member, e.g. "
                f"'{_first_member(self.btf, vt)}'",
                col,
            )
        else:
            raise PlanError(f"a '{vt.label}' can't be a field", col)
        if decoder not in REGISTRY:
            raise PlanError(f"unknown decoder '{decoder}'", col)
        natural = REGISTRY[decoder].width or count
        width = spec.get("width", max(len(header), natural))
        return (M.Field(name, ctype, count, decoder, header, width, enum_values), steps)

    def enum_values(self, enum_name: str, vt: VT, col: int) -> tuple[tuple[int, str], ...]:
        if enum_name:
            t = self.btf.find(enum_name, Kind.ENUM, Kind.ENUM64)
            if t is None:
                hit = self.btf.enum_constant(enum_name)
                if hit is None:
                    btf = self.btf
                    names = name_index(btf, "enums", lambda: btf.names(Kind.ENUM, Kind.ENUM64))
                    raise PlanError(
                        f"no enum '{enum_name}' (nor an enum constant of that name)"
                        f"{did_you_mean(enum_name, names)}",
                        col,
                    )
                t = hit[0]
        elif vt.btf:
            t = self.btf.type(vt.btf)
        else:
            raise PlanError("decoder 'enum' needs an enum: `decode: {enum: NAME}`", col)
        return tuple((e.value, e.name) for e in t.enumerators)

    def merge_field(self, fields: dict[str, M.Field], f: M.Field, path: tuple[Any, ...]) -> None:
        old = fields.get(f.name)
        if old is None:
            fields[f.name] = f
        elif (old.ctype, old.count, old.decoder) != (f.ctype, f.count, f.decoder):
            self.problem(
                f"field '{f.name}' is a {f.ctype}{f'[{f.count}]' if f.count else ''} "
                f"({f.decoder}) here but a {old.ctype}"
                f"{f'[{old.count}]' if old.count else ''} ({old.decoder}) elsewhere; "
                "every alternative and probe must give it the same type",
                path,
            )


def _first_member(btf: Btf, vt: VT) -> str:
    names = btf.member_names(vt.btf)
    return names[0] if names else "a member"


# --- the BPF stack -----------------------------------------------------------------------------

STACK_LIMIT = 512  # bytes of stack a BPF program may use
STACK_RESERVE = 8  # what every function keeps besides: the lost counter's key, spills
SLOT = 8  # clang gives each stack object a multiple of 8 bytes
ADDRESSED = (M.Load, M.LoadBits, M.DataLocStr)  # steps whose local is read into by address


def _slot(size: int) -> int:
    return (size + SLOT - 1) // SLOT * SLOT


@dataclass
class StackUse:
    """What one BPF function keeps on the stack, by part (bytes)."""

    event: int = 0
    reads: int = 0  # the temporary a bpf_probe_read_* writes a number into
    states: dict[str, int] = dataclasses.field(default_factory=dict)  # state map -> structs
    sink: tuple[str, int] = ("", 0)  # the largest aggregation block: (what it is, bytes)
    sets: int = 0  # a list option's hash set lookup key
    reserve: int = STACK_RESERVE

    @property
    def total(self) -> int:
        parts = (self.event, self.reads, self.sink[1], self.sets, self.reserve)
        return sum(parts) + sum(self.states.values())

    def explain(self, event: M.Layout) -> str:
        big = sorted((s for s in event.slots if s.size >= 16), key=lambda s: -s.size)
        named = ", ".join(f"{s.name[len('f_') :]} {s.size}" for s in big) or "none over 16 bytes"
        said = [f"the event is {event.size} bytes (fields: {named})"]
        if self.sink[1]:
            said.append(self.sink[0])
        said += [f"state '{name}' {size} bytes" for name, size in self.states.items()]
        return ", ".join(said)


def stack_use(probe: M.ProgramProbe, program: M.Program) -> StackUse:
    """Bytes of BPF stack one bound probe's function needs, as clang lays it out.

    On the stack: the event; the temporary a bpf_probe_read_* writes a number into (one
    8-byte slot, each read in its own block); every state key and stored value, and a value
    read whose task name is copied out (a value read only by its numbers is kept in
    registers, one 8-byte spill slot per member read: a return probe's stashed arguments are
    such a value); the key of an aggregation,
    with its block's locals (each aggregation is its own block, so the largest counts, not
    their sum); a hash set lookup's key. Registers hold the rest. Measured against clang by
    tests/kernel/test_stack_limit.py: the largest programs it accepts compile.
    """
    alt = probe.alternative
    steps = [*alt.stash_steps, *alt.steps, *alt.state_steps, *probe.pre, *probe.post]
    states = {st.name: st for st in program.states}
    use = StackUse(event=_slot(program.event.size))
    use.reads = SLOT if any(isinstance(s, ADDRESSED) for s in steps) else 0
    copied = {s.src.partition(".")[0] for s in steps if isinstance(s, M.CopyLocal)}
    members = _members_read(steps)
    for step in steps:
        if isinstance(step, M.StateKey):
            size = states[step.map].key.size
        elif isinstance(step, M.StatePut) or (
            isinstance(step, M.StateRead) and step.dest in copied
        ):
            size = states[step.map].value.size
        elif isinstance(step, M.StateRead):  # in registers, each spilled around helper calls
            size = SLOT * len(members.get(step.dest, ()))
        else:
            continue
        use.states[step.map] = use.states.get(step.map, 0) + _slot(size)
    if probe.emits:
        for sink in program.sinks:
            if isinstance(sink, M.AggSink):
                # the key, `first` (the index of `other` and of a histogram's zero), and a
                # plain value's zero start (emit_agg.c.j2; a histogram starts from a map's)
                start = 0 if sink.buckets else _slot(M.leaf_size(sink))
                block = _slot(sink.key.size) + SLOT + start
                if block > use.sink[1]:
                    owner = "the count key" if sink.agg.by_count else (
                        f"the key of aggregation '{sink.agg.name}'"
                    )  # fmt: skip
                    use.sink = (f"{owner} {sink.key.size} bytes", block)
    if program.sets:
        use.sets = SLOT
    return use


def _members_read(steps: list[M.Step]) -> dict[str, set[str]]:
    """Local -> the members of it the steps read (`v3.f_ts`; a stash's through `Stashed`)."""
    found: dict[str, set[str]] = {}
    for step in steps:
        if isinstance(step, M.Stashed):
            found.setdefault("st", set()).add(step.slot)
            continue
        for attr in step.reads_from:
            value = getattr(step, attr)
            for text in [value] if isinstance(value, str) else [v for _, v in value]:
                local, dot, member = text.partition(".")
                if dot:
                    found.setdefault(local, set()).add(member)
    return found


# --- layouts ----------------------------------------------------------------------------------

INET_SIZE = 18  # struct inet_addr { u16 family; u8 addr[16]; }
STATE_VALUE_ALIGN = 8  # a state value is copied out of its map: 8 bytes at a time (`layout`)


def layout(struct: str, members: list[tuple[str, str, int]], at_least: int = 1) -> M.Layout:
    """C struct layout with natural alignment, the way clang lays it out for BPF.

    `at_least` raises the struct's alignment (declared with `aligned`, and the size rounded to
    it) where the members' own is less. A state value copied out of its map is one: clang
    copies a byte-aligned struct a byte at a time, through spilled registers, so a 128-byte
    value of task names passed the 512-byte stack where an 8-aligned one costs its size.
    """
    offset, align_max, slots = 0, 1, []
    for name, ctype, count in members:
        if ctype == "struct inet_addr":
            size, align = INET_SIZE, 2
        elif ctype == "char":
            size, align = count, 1
        else:
            unit = int(ctype[1:]) // 8
            size, align = unit * max(count, 1), unit
        offset = (offset + align - 1) // align * align
        slots.append(M.Slot(name, ctype, count, offset, size))
        offset += size
        align_max = max(align_max, align)
    declared = at_least if at_least > align_max else 0
    align_max = max(align_max, at_least)
    total = (offset + align_max - 1) // align_max * align_max
    return M.Layout(struct, tuple(slots), max(total, 1), declared)


# --- entry points ------------------------------------------------------------------------------

_BTF_CACHE: dict[str, Btf] = {}
EMPTY_BTF = "--btf: an empty path; name a BTF file, or leave --btf out for the running kernel's"


def load_btf(path: str | None) -> Btf:
    """Kernel BTF, once per process; a missing or bad file is a one-line EngineError.

    `path` None is the running kernel's; an empty one is a mistake (`--btf ''`, `--btf
    "$UNSET"`), not a quiet way to say the running kernel."""
    if path is not None and not path.strip():
        raise UsageError(EMPTY_BTF)
    key = path or VMLINUX
    if key not in _BTF_CACHE:
        try:
            _BTF_CACHE[key] = Btf.load(key)
        except BtfError as exc:
            if path:  # the user's --btf: a flag mistake
                raise UsageError(f"--btf: {exc}") from None
            raise EngineError(
                f"{exc}; pass --btf FILE (a vmlinux BTF of the target kernel)"
            ) from None
    return _BTF_CACHE[key]


def plan(document: Any, btf_path: str | None = None) -> M.Plan:
    """Plan a schema-valid document; raises SpecError with every problem found."""
    return plan_with_warnings(document, btf_path)[0]


def plan_with_warnings(document: Any, btf_path: str | None = None) -> tuple[M.Plan, list[Problem]]:
    """`plan`, and what is valid but probably not meant (an option nothing uses)."""
    btf = load_btf(btf_path)
    live = btf_path is None or os.path.realpath(btf_path) == os.path.realpath(VMLINUX)
    planner = Planner(document, btf, tracefs_ok=live and _tracefs_readable())
    return planner.plan(), planner.warnings


def _options_in(node: Any) -> Iterator[str]:
    """Names of the `$options` anywhere in an expression tree."""
    if isinstance(node, E.Option):
        yield node.name
    elif isinstance(node, tuple):
        for item in node:
            yield from _options_in(item)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from _options_in(getattr(node, f.name))


def _switches_in(data: Any) -> Iterator[str]:
    """Bool options named by `if:` / `unless:` anywhere under `output` (a name or a list)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("if", "unless"):
                names = [value] if isinstance(value, str) else value
                yield from (n for n in names if isinstance(n, str))
            else:
                yield from _switches_in(value)
    elif isinstance(data, list):
        for item in data:
            yield from _switches_in(item)


def _tracefs_readable() -> bool:
    from engine.kernel import tracefs

    try:
        tracefs.events_dir()
    except tracefs.TracefsError:
        return False
    return True


def iter_steps(alt: M.Alternative) -> Iterator[M.Step]:
    yield from alt.steps
    for f in alt.fields:
        yield from f.steps
