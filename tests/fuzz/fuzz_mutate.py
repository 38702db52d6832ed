"""Hypothesis strategies: specs made by mutating the ones the project ships.

Seeds are every spec in specs/ and tests/specs/good/. A mutated spec is a seed's data with a
few edits (a value replaced by an interesting one, a key dropped or added, a list item
repeated, a subtree copied from elsewhere, an expression recombined), dumped back to YAML;
or a seed's text with a few characters changed, which reaches the loader's corners. Expressions
include arithmetic with the integers that reach the constant folder's corners (negative and
huge shift counts, products past 64 bits). `built_specs` composes specs from parts instead:
bool switches on aggregations, their `by` columns and filter terms, wide string fields in keys,
state values of task names and numbers, so the stack check and every option shape are reached.
"""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Any, Callable

import yaml
from hypothesis import strategies as st

from engine.spec.loader import load_document

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED_PATHS = sorted((ROOT / "specs").glob("*.yaml")) + sorted(
    (ROOT / "tests" / "specs" / "good").glob("*.yaml")
)
SEEDS: list[tuple[str, Any]] = [(p.name, load_document(str(p)).data) for p in SEED_PATHS]
SEED_TEXTS: list[str] = [p.read_text(encoding="utf-8") for p in SEED_PATHS]

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *_strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


# Names the seeds use (members, arguments, enum constants, fields), and some they don't.
WORDS = sorted({w for _, data in SEEDS for s in _strings(data) for w in _WORD.findall(s)})
NAMES = [
    *WORDS,
    "task",
    "comm",
    "args",
    "ret",
    "pid",
    "tid",
    "cpu",
    "real_parent",
    "tgid",
    "__sk_common",
    "skc_dport",
    "skc_family",
    "head",
    "len",
    "sock",
    "sk_buff",
    "task_struct",
    "TCP_CLOSE",
    "IPPROTO_TCP",
    "tcp_v4_connect",
    "nosuch",
    "x",
    "X",
]
INTS = [
    0,
    1,
    -1,
    7,
    255,
    256,
    65535,
    65536,
    2**31 - 1,
    2**31,
    2**32,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    99999999999999999999,
]
ODD_TEXT = [
    "",
    " ",
    "%",
    "50% of %(prog)s %s %o",
    "\\udc80",
    '"\\udc80"',
    "é",
    "\u2028",
    "$",
    "$pid",
    "a" * 300,
    "-p",
    "--help",
    "list[u8]",
    "list[list[u8]]",
    "u128",
    "struct sock",
    "x" * 33,
]
KEYS = [
    "let",
    "where",
    "filter",
    "size",
    "decode",
    "header",
    "width",
    "if",
    "count",
    "by",
    "metavar",
    "help",
    "flag",
    "type",
    "value",
    "enum",
    "kprobe",
    "kretprobe",
    "fentry",
    "fexit",
    "tracepoint",
    "raw_tracepoint",
    "name",
    "description",
]
TYPES = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "bool", "str", "list[u16]"]
DECODERS = ["str", "inet", "be16", "be32", "hex", "enum", "errno", "elapsed", "ksym", "int"]
OPS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
# Arithmetic and bit operators, and integers that reach the constant folder's corners (a
# shift count past 63, a negative one, a product past 64 bits, an int64's ends).
ARITH = ["+", "-", "*", "/", "//", "%", "<<", ">>", "&", "|", "^"]
ARITH_INTS = [*INTS, 3, 8, 31, 32, 63, 64, 65, -3, -64, 8589934592, 2**40, -(2**40), 10**30]
HELPERS = ["sock_saddr", "sock_daddr", "transport_header", "network_header", "inet"]


def expressions() -> st.SearchStrategy[str]:
    """Expression text: names, members, indexes, casts, comparisons, helpers, options."""
    leaves = st.one_of(
        st.sampled_from(NAMES),
        st.sampled_from(ARITH_INTS).map(str),
        st.integers(-(2**70), 2**70).map(str),
        st.sampled_from(['"curl"', '"\\udc80"', '"\\xff"', '""', "$pid", "$port", "$nosuch"]),
    )

    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(NAMES)).map(lambda t: f"{t[0]}.{t[1]}"),
            st.tuples(inner, st.sampled_from(INTS)).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(inner, st.sampled_from(NAMES)).map(lambda t: f"{t[0]} as {t[1]}"),
            st.tuples(inner, st.sampled_from(OPS), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
                lambda t: f"{t[0]} {t[1]} {t[2]}"
            ),
            st.tuples(inner, st.sampled_from(ARITH), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(st.sampled_from(["-", "~", "- ", "-(", "~("]), inner).map(
                lambda t: f"{t[0]}{t[1]}{')' if t[0].endswith('(') else ''}"
            ),
            inner.map(lambda e: f"not {e}"),
            inner.map(lambda e: f"({e})"),
            st.tuples(st.sampled_from(HELPERS), st.lists(inner, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"
            ),
            st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
        )

    return st.recursive(leaves, grow, max_leaves=6)


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        expressions(),
        st.sampled_from(INTS),
        st.sampled_from(ODD_TEXT),
        st.sampled_from(TYPES),
        st.sampled_from(DECODERS),
        st.sampled_from(NAMES),
        st.text(max_size=12),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
    )


def values() -> st.SearchStrategy[Any]:
    return st.one_of(
        scalars(),
        st.lists(scalars(), max_size=3),
        st.dictionaries(st.sampled_from(KEYS), scalars(), max_size=3),
    )


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in the tree, for picking an edit site."""
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((node, k))
            _slots(v, out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((node, i))
            _slots(v, out)
    return out


def _containers(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, (dict, list)):
        out.append(node)
        for v in node.values() if isinstance(node, dict) else node:
            _containers(v, out)
    return out


def _small_edits(old: Any) -> st.SearchStrategy[str]:
    """Edits that keep an expression mostly sensible, so more specs get past the planner."""
    text = old if isinstance(old, str) else "pid"
    words = list(_WORD.finditer(text))
    ints = st.sampled_from(INTS).map(str)
    arith_ints = st.sampled_from(ARITH_INTS).map(str)
    choices = [
        st.tuples(st.sampled_from(OPS[:6]), ints).map(lambda t: f"{text} {t[0]} {t[1]}"),
        st.tuples(ints, st.sampled_from(OPS[:6])).map(lambda t: f"{t[0]} {t[1]} {text}"),
        st.tuples(st.sampled_from(["and", "or"]), expressions()).map(
            lambda t: f"{text} {t[0]} {t[1]}"
        ),
        ints.map(lambda n: f"{text}[{n}]"),
        st.sampled_from(["sock", "sk_buff", "task_struct", "nosuch", "union x"]).map(
            lambda t: f"{text} as {t}"
        ),
        st.sampled_from(NAMES).map(lambda m: f"{text}.{m}"),
        st.just(f"not ({text})"),
        st.tuples(st.sampled_from(ARITH), arith_ints).map(lambda t: f"({text}) {t[0]} {t[1]}"),
        st.tuples(arith_ints, st.sampled_from(ARITH), arith_ints, st.sampled_from(OPS[:6])).map(
            lambda t: f"{text} {t[3]} {t[0]} {t[1]} {t[2]}"
        ),
    ]
    if words:

        def swap(t: tuple[int, str]) -> str:
            w = words[t[0] % len(words)]
            return text[: w.start()] + t[1] + text[w.end() :]

        choices.append(st.tuples(st.integers(0, 99), st.sampled_from(NAMES)).map(swap))
    return st.one_of(choices)


def _expression_slots(data: Any) -> list[tuple[Any, Any]]:
    """Where the schema wants an expression: where, filter, let values, field values."""
    out = []
    for container, key in _slots(data, []):
        value = container[key]
        if not isinstance(value, str):
            continue
        if key in ("where", "filter", "value") or _is_in(data, container, ("let", "fields")):
            out.append((container, key))
    return out


def _is_in(data: Any, container: Any, keys: tuple[str, ...]) -> bool:
    """Whether `container` is the value of one of `keys` somewhere in `data`."""
    return any(c[k] is container for c, k in _slots(data, []) if k in keys)


def _edit(draw: Callable[[st.SearchStrategy[Any]], Any], data: Any, sites_only: bool) -> None:
    """One edit somewhere in `data` (in place); most edits keep the shape the schema wants."""
    ops = ["site"] if sites_only else ["replace", "delete", "repeat", "graft", "add", "tweak"]
    ops += ["site"] * 6
    op = draw(st.sampled_from(ops))
    slots = _expression_slots(data) if op == "site" else _slots(data, [])
    if op == "site":
        op = "expr"
    if not slots:
        return
    container, key = draw(st.sampled_from(slots))
    if op == "replace":
        container[key] = draw(values())
    elif op == "expr":
        old = container[key]
        container[key] = draw(st.one_of(_small_edits(old), _small_edits(old), expressions()))
    elif op == "delete":
        del container[key]
    elif op == "repeat" and isinstance(container, list):
        container.append(copy.deepcopy(container[key]))
    elif op == "graft":  # a subtree from any seed, in place of this one
        _, other = draw(st.sampled_from(SEEDS))
        donor_slots = _slots(other, [])
        donor, dkey = draw(st.sampled_from(donor_slots))
        container[key] = copy.deepcopy(donor[dkey])
    elif op == "add":
        target = draw(st.sampled_from(_containers(data, [])))
        if isinstance(target, dict):
            target[draw(st.sampled_from(KEYS + NAMES))] = draw(values())
        else:
            target.append(draw(values()))
    else:  # tweak a string or number slightly
        old = container[key]
        if isinstance(old, str) and old:
            i = draw(st.integers(0, len(old) - 1))
            container[key] = (
                old[:i] + draw(st.sampled_from(["", "x", "_", ".", "0", "%"])) + old[i + 1 :]
            )
        elif isinstance(old, int) and not isinstance(old, bool):
            container[key] = old + draw(st.sampled_from([-1, 1, 256, 2**32, 2**64]))


@st.composite
def mutated_specs(
    draw: Callable[[st.SearchStrategy[Any]], Any], edits: int = 3, sites_only: bool = False
) -> str:
    """A seed with 1..edits edits of its data, as YAML text (`sites_only`: expressions only)."""
    _, seed = draw(st.sampled_from(SEEDS))
    data = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, edits))):
        _edit(draw, data, sites_only)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000)


TEXT_PIECES = [
    ":", "-", " ", "  ", "\t", "\n", "[", "]", "{", "}", '"', "'", "%", "\\", "#", "&a", "*a",
    "!!int", "? ", "|", ">", ",", "0", "9", "x", "é", "\u2028", "\x85", "\x00", "\x7f", "~",
    "---\n", "...\n", "<<: ", "on", "no", "0x1f", "1e9", ".inf", "\ufeff",
]  # fmt: skip


@st.composite
def mutated_texts(draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """A seed's text with a few characters or pieces inserted, deleted or replaced."""
    text = draw(st.sampled_from(SEED_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 3)))
        piece = draw(st.one_of(st.sampled_from(TEXT_PIECES), st.text(max_size=3)))
        text = text[:i] + piece + text[j:]
    return text


# --- specs built from parts: switches, stack-heavy keys, state values --------------------------

# (attach, field name -> value) the fixture and the running kernel both have
TRACEPOINTS = [
    ("sched/sched_process_exec", {"file": "args.filename", "opid": "args.old_pid"}),
    ("sock/inet_sock_set_state", {"sport": "args.sport", "newstate": "args.newstate"}),
]
NUMBERS = {"pid": "tgid", "tid": "tid", "uid": "uid", "ts": "ktime_ns", "cpu": "cpu"}
AGG_KINDS = ["count", "sum", "min", "max", "avg", "hist", "lhist"]
STATE_TYPES = ["u8", "u16", "u32", "u64", "s32", "comm"]


@st.composite
def built_specs(draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """A spec made of the parts whose combinations reach the stack limit and the option
    shapes: bool switches on aggregations, their `by` columns and filter terms; wide string
    fields in count and aggregation keys; state values of task names and numbers."""
    switches = [f"sw{i}" for i in range(draw(st.integers(0, 3)))]
    options: dict[str, Any] = {s: {"flag": f"--{s}", "type": "bool"} for s in switches}
    if draw(st.booleans()):
        options["ports"] = {"flag": "-P", "type": "list[u16]"}
    if draw(st.booleans()):
        options["who"] = {"flag": "-p", "type": "u32"}
    tracepoint, args = draw(st.sampled_from(TRACEPOINTS))
    fields: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(sorted(NUMBERS)), min_size=1, max_size=4)):
        fields[name] = NUMBERS[name]
    for name, value in args.items():
        if draw(st.booleans()):
            size = draw(st.sampled_from([1, 8, 16, 64, 120, 128, 200, 240, 248, 255, 256]))
            fields[name] = {"value": value, "size": size} if name == "file" else value
    numbers = [f for f in fields if f in NUMBERS or f in ("opid", "sport", "newstate")]
    switch = st.sampled_from(switches) if switches else st.nothing()

    def column(name: str) -> Any:
        if switches and draw(st.booleans()):
            return {"field": name, "if": draw(switch)}
        return name

    terms = []
    if "ports" in options and "sport" in fields:
        terms.append("sport in $ports")
    if "who" in options:
        terms.append("pid == $who" if "pid" in fields else f"{numbers[0]} == $who")
    if switches and draw(st.booleans()):  # a switch guards its `and`, in parentheses
        bound = draw(st.sampled_from([0, 1, 7, 255]))
        value = draw(st.sampled_from(numbers))
        if draw(st.booleans()):  # arithmetic under the switch: inlined into the filter's C
            op = draw(st.sampled_from(["+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^"]))
            operand = draw(st.sampled_from([*(str(n) for n in (1, 2, 3, 7)), *numbers]))
            value = f"{value} {op} {operand}"
        off = "not " if draw(st.booleans()) else ""  # the term applies with the switch off
        terms.append(f"({off}${draw(switch)} and {value} > {bound})")
    probe: dict[str, Any] = {"name": "p", "attach": [{"tracepoint": tracepoint}], "fields": fields}
    probes = [probe]
    data: dict[str, Any] = {"name": "built", "options": options, "probes": probes}
    if terms:
        probe["filter"] = " and ".join(terms)
    if draw(st.booleans()):  # state: stored by one probe, taken by this one
        members = draw(st.lists(st.sampled_from(STATE_TYPES), min_size=1, max_size=8))
        value = {f"m{i}": t for i, t in enumerate(members)}
        data["state"] = {"st": {"key": "u32", "value": value}}
        stored = {m: ("comm" if t == "comm" else "ktime_ns") for m, t in value.items()}
        probes.insert(0, {
            "name": "begin", "attach": [{"tracepoint": "sched/sched_process_fork"}],
            "store": {"st": {"key": "tid", "value": stored}},
        })  # fmt: skip
        probe["let"] = {"s": f"{draw(st.sampled_from(['take', 'get']))}(st, tid)"}
        for m in value:
            if draw(st.booleans()):
                fields[f"s_{m}"] = f"s.{m}"
    output: dict[str, Any] = {"columns": [column(f) for f in fields]}
    data["output"] = output
    if draw(st.booleans()):
        output["count"] = {
            "by": [
                column(f)
                for f in draw(
                    st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True)
                )
            ]
        }
    aggs = []
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(AGG_KINDS))
        agg: dict[str, Any] = {"name": f"a{i}"}
        if kind == "count":
            agg["count"] = True
        elif kind == "lhist":
            agg["lhist"] = {
                "value": draw(st.sampled_from(numbers)),
                "min": 0,
                "max": 100,
                "step": 10,
            }
        else:
            agg[kind] = draw(st.sampled_from(numbers))
        by = draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))
        if by:
            agg["by"] = [column(f) for f in by]
        if switches and draw(st.booleans()):
            agg["if"] = draw(switch)
        if switches and draw(st.booleans()):
            agg["unless"] = draw(switch)
        aggs.append(agg)
    if aggs:
        output["aggregations"] = aggs
    if not options:
        del data["options"]
    return yaml.safe_dump(data, sort_keys=False, width=10_000)
