"""The typed spec: what a schema-valid YAML document says, as frozen dataclasses.

`build(document)` runs once, right after the JSON Schema check, and is the only code that
reads the document's raw data: short forms are normalized here (a field given as a bare
expression, a column as a bare field name, an `if:` as one name or a list, a state key as
one type or a list, a store value as one expression or members), every expression is parsed
here once, and each value keeps where it was written (`At`), so everything downstream (the
planner, validate, serve) says a problem at the right file:line:col without ever walking
the YAML again. Parse errors are collected in `Spec.problems`; the node is then None.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from engine import aggs
from engine.attach import kind_of
from engine.errors import Location, Problem
from engine.spec import expr as E

PathItem = str | int
Path = tuple[PathItem, ...]

# output.aggregations: the key that names an entry's kind (the schema's oneOf)
AGG_KEYS = aggs.SPEC_KEYS
DEFAULT_SIZE = 10240


class Source(Protocol):
    """What `build` reads: a loaded document (engine.spec.loader.Document)."""

    file: str
    data: Any

    def line(self, number: int) -> str: ...

    def locate(self, path: Sequence[PathItem], *, key: bool = False) -> Location: ...


@dataclass(frozen=True)
class At:
    """Where a value was written: the value itself, its mapping key, and whether the value
    opens with a quote (so that a column inside an expression lands on its character)."""

    value: Location
    key: Location
    quoted: int = 0

    def col(self, col: int = 0) -> Location:
        """The location `col` characters into the value's text (past an opening quote)."""
        v = self.value
        if not v.line:
            return v
        return Location(v.file, v.line, v.col + col + self.quoted, v.path)


NOWHERE = At(Location(""), Location(""))  # where a default (no such key) is


@dataclass(frozen=True)
class Expr:
    """An expression as written and as parsed (None: it did not parse; said in problems)."""

    text: str
    node: E.Node | None
    at: At
    options: frozenset[str] = frozenset()  # the $options it names


@dataclass(frozen=True)
class Option:
    name: str
    type: str  # "u16", "bool", "list[u16]", "pinned_map", ...
    flag: str  # as written, or the default --<name>
    help: str
    metavar: str  # as written, or NAME
    at: At
    flag_at: At
    default: int | None = None  # an integer option's value when the flag is not given
    default_at: At | None = None
    output: str = ""  # a switch choosing the output format (profile's -f: folded)


@dataclass(frozen=True)
class Typed:
    """One part of a state key, or one member of a state value: its type as written."""

    name: str
    type: str
    at: At


@dataclass(frozen=True)
class State:
    name: str
    key: tuple[Typed, ...]  # one part per key type (a bare type is one part)
    value: tuple[Typed, ...]  # one member per name (a bare type is the member `value`)
    size: int
    lru: bool
    at: At


@dataclass(frozen=True)
class Let:
    name: str
    expr: Expr


@dataclass(frozen=True)
class Alternative:
    index: int
    kind: str  # an engine.attach.KINDS name
    targets: tuple[str, ...]
    listed: bool  # the targets were written as a list
    target_ats: tuple[At, ...]  # each target's own place (a bare target: the kind's value)
    kind_at: At  # the kind's key and its value
    lets: tuple[Let, ...]
    where: Expr | None
    at: At
    # user-space probes (uprobe, uretprobe, usdt): declared C arguments, return type, pid
    args: tuple[str, ...] = ()
    args_ats: tuple[At, ...] = ()  # each declaration's place
    args_key_at: At | None = None  # the `args` key and its list (None: not written)
    ret: str = ""  # "" = not written
    ret_at: At | None = None
    pid: int | str | None = None  # a number, or an option's name (written `$name`)
    pid_at: At | None = None

    @property
    def user_keys(self) -> tuple[tuple[str, At], ...]:
        """The user-space keys this alternative wrote, with where (other kinds refuse them)."""
        keys = (("args", self.args_key_at), ("ret", self.ret_at), ("pid", self.pid_at))
        return tuple((k, at) for k, at in keys if at is not None)


@dataclass(frozen=True)
class Field:
    name: str
    value: Expr
    decode: str | None  # a decoder name; `{enum: NAME}` is "enum" with `enum` set
    enum: str
    header: str | None
    width: int | None
    size: int | None
    at: At  # the field's entry under `fields`


@dataclass(frozen=True)
class StoreValue:
    """A store's value: one expression, or named members (`value: {ts: ktime_ns}`)."""

    expr: Expr | None
    members: tuple[tuple[str, Expr], ...]
    at: At


@dataclass(frozen=True)
class Store:
    map: str
    key: Expr  # a list key is one E.ListOf node
    value: StoreValue
    at: At


@dataclass(frozen=True)
class Delete:
    map: str
    key: Expr
    at: At


@dataclass(frozen=True)
class Probe:
    index: int
    name: str
    attach: tuple[Alternative, ...]
    lets: tuple[Let, ...]
    fields: tuple[Field, ...]
    filter: Expr | None
    stores: tuple[Store, ...]
    deletes: tuple[Delete, ...]
    at: At
    name_at: At
    fields_at: At
    store_at: At

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class Column:
    field: str
    when: str  # the bool option that turns it on ("" = always)
    header: str | None
    width: int | None
    at: At  # the field name
    when_at: At
    entry: At  # the list entry (a name, or the mapping)
    unless: str = ""  # the bool option that turns it off ("" = none)
    unless_at: At | None = None


@dataclass(frozen=True)
class Count:
    """output.count: what -c aggregates."""

    by: tuple[Column, ...]
    header: str | None
    at: At


@dataclass(frozen=True)
class Switch:
    """An `if:` or `unless:` option name and where it is."""

    name: str
    at: At


@dataclass(frozen=True)
class Aggregation:
    index: int
    kind: str  # the spec key: count, sum, min, max, avg, hist, lhist
    name: str  # as written, or the kind
    value: str  # the field aggregated ("" for count)
    value_at: At
    low: int  # lhist only
    high: int
    step: int
    by: tuple[Column, ...]
    when: tuple[Switch, ...]  # `if:` (one name or a list: all of them)
    unless: tuple[Switch, ...]  # `unless:` (one name or a list: any of them turns it off)
    header: str | None
    unit: str | None
    print: str | None
    size: int
    at: At
    kind_at: At
    name_at: At
    unit_at: At
    print_at: At
    hide: bool = False  # read, not printed: an operand of output.derived only


@dataclass(frozen=True)
class Derived:
    """A column computed at print time from one table's aggregations (`output.derived`)."""

    name: str
    value: Expr
    header: str | None
    width: int | None
    at: At


@dataclass(frozen=True)
class Output:
    columns: tuple[Column, ...]
    count: Count | None
    aggregations: tuple[Aggregation, ...]
    at: At
    derived: tuple[Derived, ...] = ()

    def switches(self) -> Iterator[str]:
        """Bool options named by `if:` / `unless:` anywhere in the output."""
        for column in (*self.columns, *(self.count.by if self.count else ())):
            yield from (s for s in (column.when, column.unless) if s)
        for agg in self.aggregations:
            yield from (s.name for s in agg.when)
            yield from (s.name for s in agg.unless)
            yield from (s for c in agg.by for s in (c.when, c.unless) if s)


@dataclass(frozen=True)
class Metric:
    """A `metrics:` entry: how `engine serve` exposes one aggregation."""

    aggregation: str
    name: str | None
    help: str | None
    type: str | None
    unit: str | None
    max_series: int | None
    at: At
    name_at: At
    type_at: At


@dataclass(frozen=True)
class Spec:
    file: str
    name: str
    description: str
    options: tuple[Option, ...]
    states: tuple[State, ...]
    probes: tuple[Probe, ...]
    output: Output
    metrics: tuple[Metric, ...]
    has_metrics: bool  # a `metrics:` key is there (even empty)
    problems: tuple[Problem, ...]  # expressions that did not parse
    # where any path is, present or not (the planner names maps the spec did not write)
    locate: Callable[..., At] = dataclasses.field(repr=False, compare=False)

    def probe(self, name: str) -> Probe | None:
        return next((p for p in self.probes if p.name == name), None)

    def expressions(self) -> Iterator[Expr]:
        """Every expression of the spec, in document order."""
        for probe in self.probes:
            yield from (let.expr for let in probe.lets)
            yield from (f.value for f in probe.fields)
            if probe.filter is not None:
                yield probe.filter
            for alt in probe.attach:
                yield from (let.expr for let in alt.lets)
                if alt.where is not None:
                    yield alt.where
            for store in probe.stores:
                yield store.key
                if store.value.expr is not None:
                    yield store.value.expr
                yield from (e for _, e in store.value.members)
            yield from (d.key for d in probe.deletes)


# --- building ---------------------------------------------------------------------------------


class _Builder:
    """Reads a document once: locations from its marks, expressions parsed once."""

    def __init__(self, document: Source) -> None:
        self.doc = document
        self.problems: list[Problem] = []

    def at(self, *path: PathItem) -> At:
        """Where the value at `path` (or its nearest ancestor) and its key are."""
        loc = self.doc.locate(list(path))
        quoted = 0
        if loc.line:
            line = str(self.doc.line(loc.line))
            quoted = 1 if line[loc.col - 1 : loc.col] in ("'", '"') else 0
        return At(loc, self.doc.locate(list(path), key=True), quoted)

    def expr(self, text: Any, path: Path, cast: bool = False) -> Expr:
        at = self.at(*path)
        try:
            node = E.parse(str(text), allow_cast=cast)
        except E.ExprError as exc:
            self.problems.append(Problem(exc.message, at.col(exc.col)))
            return Expr(str(text), None, at)
        return Expr(str(text), node, at, frozenset(options_in(node)))

    def exprs(self, raw: Any, path: Path) -> Expr:
        """An expression, or a list of them (a multi-part key) as one E.ListOf node."""
        if not isinstance(raw, list):
            return self.expr(raw, path)
        items = [self.expr(x, (*path, i)) for i, x in enumerate(raw)]
        text = ", ".join(i.text for i in items)
        if any(i.node is None for i in items):
            return Expr(text, None, self.at(*path))
        nodes = tuple(i.node for i in items if i.node is not None)
        names = frozenset(n for i in items for n in i.options)
        return Expr(text, E.ListOf(nodes, 0), self.at(*path), names)

    def lets(self, raw: Any, path: Path) -> tuple[Let, ...]:
        return tuple(
            Let(k, self.expr(v, (*path, "let", k), cast=True)) for k, v in (raw or {}).items()
        )

    # -- parts ---------------------------------------------------------------------------------
    def option(self, name: str, raw: dict[str, Any]) -> Option:
        path = ("options", name)
        return Option(
            name,
            str(raw["type"]),
            raw.get("flag") or f"--{name.replace('_', '-')}",
            raw.get("help", ""),
            raw.get("metavar") or name.upper(),
            self.at(*path),
            self.at(*path, "flag"),
            raw.get("default"),
            self.at(*path, "default"),
            raw.get("output", ""),
        )

    def state(self, name: str, raw: dict[str, Any]) -> State:
        path = ("state", name)
        rk, rv = raw["key"], raw["value"]
        key = (
            tuple(Typed("", str(t), self.at(*path, "key", i)) for i, t in enumerate(rk))
            if isinstance(rk, list)
            else (Typed("", str(rk), self.at(*path, "key")),)
        )
        value = (
            tuple(Typed(n, str(t), self.at(*path, "value", n)) for n, t in rv.items())
            if isinstance(rv, dict)
            else (Typed("value", str(rv), self.at(*path, "value")),)
        )
        size = int(raw.get("size", DEFAULT_SIZE))
        return State(name, key, value, size, bool(raw.get("lru", True)), self.at(*path))

    def alternative(self, path: Path, index: int, raw: dict[str, Any]) -> Alternative:
        attach = kind_of(raw)  # the attach key the schema let through names the kind
        kind, targets = attach.name, raw[attach.name]
        listed = isinstance(targets, list)
        names = attach.targets_of(targets)
        kind_at = self.at(*path, kind)
        ats = tuple(self.at(*path, kind, i) for i in range(len(names))) if listed else (kind_at,)
        where = self.expr(raw["where"], (*path, "where")) if "where" in raw else None
        lets = self.lets(raw.get("let"), path)
        alt = Alternative(index, kind, names, listed, ats, kind_at, lets, where, self.at(*path))
        return self.user_parts(alt, path, raw)

    def user_parts(self, alt: Alternative, path: Path, raw: dict[str, Any]) -> Alternative:
        """A user-space alternative's `args`, `ret` and `pid`, each with where it is."""
        changes: dict[str, Any] = {}
        if "args" in raw:
            decls = tuple(str(a) for a in raw["args"])
            changes["args"] = decls
            changes["args_ats"] = tuple(self.at(*path, "args", i) for i in range(len(decls)))
            changes["args_key_at"] = self.at(*path, "args")
        if "ret" in raw:
            changes["ret"], changes["ret_at"] = str(raw["ret"]), self.at(*path, "ret")
        if "pid" in raw:
            pid = raw["pid"]
            changes["pid"] = pid if isinstance(pid, int) else str(pid)[1:]
            changes["pid_at"] = self.at(*path, "pid")
        return dataclasses.replace(alt, **changes) if changes else alt

    def field(self, path: Path, name: str, raw: Any) -> Field:
        fpath = (*path, "fields", name)
        spec: dict[str, Any] = {"value": raw} if isinstance(raw, str) else raw
        value = self.expr(spec["value"], fpath if isinstance(raw, str) else (*fpath, "value"), True)
        raw_decode: Any = spec.get("decode")
        decode, enum = raw_decode, ""
        if isinstance(raw_decode, dict):
            decode, enum = "enum", str(raw_decode["enum"])
        return Field(
            name, value, decode, enum, spec.get("header"), spec.get("width"), spec.get("size"),
            self.at(*fpath),
        )  # fmt: skip

    def store(self, path: Path, name: str, raw: dict[str, Any]) -> Store:
        spath = (*path, "store", name)
        key = self.exprs(raw["key"], (*spath, "key"))
        rv = raw["value"]
        vat = self.at(*spath, "value")
        if isinstance(rv, dict):
            members = tuple((k, self.expr(v, (*spath, "value", k))) for k, v in rv.items())
            value = StoreValue(None, members, vat)
        else:
            value = StoreValue(self.expr(rv, (*spath, "value")), (), vat)
        return Store(name, key, value, self.at(*spath))

    def probe(self, index: int, raw: dict[str, Any]) -> Probe:
        path = ("probes", index)
        return Probe(
            index,
            str(raw["name"]),
            tuple(
                self.alternative((*path, "attach", i), i, alt)
                for i, alt in enumerate(raw["attach"])
            ),
            self.lets(raw.get("let"), path),
            tuple(self.field(path, n, v) for n, v in (raw.get("fields") or {}).items()),
            self.expr(raw["filter"], (*path, "filter")) if "filter" in raw else None,
            tuple(self.store(path, n, v) for n, v in (raw.get("store") or {}).items()),
            tuple(
                Delete(n, self.exprs(v, (*path, "delete", n)), self.at(*path, "delete", n))
                for n, v in (raw.get("delete") or {}).items()
            ),
            self.at(*path),
            self.at(*path, "name"),
            self.at(*path, "fields"),
            self.at(*path, "store"),
        )

    def column(self, path: Path, raw: Any) -> Column:
        if isinstance(raw, str):
            return Column(raw, "", None, None, self.at(*path), self.at(*path, "if"), self.at(*path))
        return Column(
            str(raw["field"]), raw.get("if", ""), raw.get("header"), raw.get("width"),
            self.at(*path, "field"), self.at(*path, "if"), self.at(*path),
            raw.get("unless", ""), self.at(*path, "unless"),
        )  # fmt: skip

    def columns(self, raw: Any, path: Path) -> tuple[Column, ...]:
        return tuple(self.column((*path, i), item) for i, item in enumerate(raw or []))

    def aggregation(self, index: int, raw: dict[str, Any]) -> Aggregation:
        path = ("output", "aggregations", index)
        kind = next(k for k in AGG_KEYS if k in raw)
        value, low, high, step = "", 0, 0, 0
        value_at = self.at(*path, kind)
        if kind == aggs.LINEAR.spec_key:
            lin = raw[kind]
            value, low, high, step = (lin[p] for p in aggs.LINEAR.params)
            value_at = self.at(*path, kind, "value")
        elif aggs.BY_SPEC_KEY[kind].takes_value:
            value = raw[kind]
        rw = raw.get("if", [])
        when = (
            tuple(Switch(n, self.at(*path, "if", j)) for j, n in enumerate(rw))
            if isinstance(rw, list)
            else (Switch(rw, self.at(*path, "if")),)
        )
        ru = raw.get("unless", [])
        unless = (
            tuple(Switch(n, self.at(*path, "unless", j)) for j, n in enumerate(ru))
            if isinstance(ru, list)
            else (Switch(ru, self.at(*path, "unless")),)
        )
        return Aggregation(
            index, kind, raw.get("name", kind), value, value_at, low, high, step,
            self.columns(raw.get("by"), (*path, "by")), when, unless, raw.get("header"),
            raw.get("unit"), raw.get("print"), int(raw.get("size", DEFAULT_SIZE)),
            self.at(*path), self.at(*path, kind), self.at(*path, "name"), self.at(*path, "unit"),
            self.at(*path, "print"), bool(raw.get("hide", False)),
        )  # fmt: skip

    def output(self, raw: dict[str, Any]) -> Output:
        count, key = None, aggs.COUNT.spec_key  # output.count: what -c counts
        if raw.get(key):
            c = raw[key]
            by = self.columns(c.get("by"), ("output", key, "by"))
            count = Count(by, c.get("header"), self.at("output", key))
        entries = tuple(self.aggregation(i, a) for i, a in enumerate(raw.get("aggregations") or []))
        derived = tuple(
            Derived(
                d["name"],
                self.expr(d["value"], ("output", "derived", i, "value")),
                d.get("header"),
                d.get("width"),
                self.at("output", "derived", i),
            )
            for i, d in enumerate(raw.get("derived") or [])
        )
        return Output(self.columns(raw.get("columns"), ("output", "columns")), count, entries,
                      self.at("output"), derived)  # fmt: skip

    def metric(self, name: str, raw: dict[str, Any]) -> Metric:
        path = ("metrics", name)
        mr = raw.get("max_series")
        return Metric(
            name, raw.get("name"), raw.get("help"), raw.get("type"), raw.get("unit"),
            None if mr is None else int(mr), self.at(*path), self.at(*path, "name"),
            self.at(*path, "type"),
        )  # fmt: skip

    def spec(self) -> Spec:
        data = self.doc.data
        options = tuple(self.option(n, o) for n, o in (data.get("options") or {}).items())
        states = tuple(self.state(n, s) for n, s in (data.get("state") or {}).items())
        probes = tuple(self.probe(i, p) for i, p in enumerate(data["probes"]))
        output = self.output(data["output"])
        metrics = tuple(self.metric(n, m or {}) for n, m in (data.get("metrics") or {}).items())
        return Spec(
            self.doc.file, str(data["name"]), data.get("description", ""), options, states,
            probes, output, metrics, "metrics" in data, tuple(self.problems),
            locate=self.locate,
        )  # fmt: skip

    def locate(self, *path: PathItem) -> At:
        return self.at(*path)


def build(document: Source) -> Spec:
    """The typed spec of a schema-valid document (check_schema found nothing)."""
    return _Builder(document).spec()


def options_in(node: Any) -> Iterator[str]:
    """Names of the `$options` anywhere in an expression tree."""
    if isinstance(node, E.Option):
        yield node.name
    elif isinstance(node, tuple):
        for item in node:
            yield from options_in(item)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from options_in(getattr(node, f.name))
