"""The architecture rules of issue 18 as checks over engine/'s source (ast, no import).

Each rule is a function from source trees ({path relative to the repository: text}) to a
sorted list of findings ("path:line: what"); each is first run on small synthetic trees that
break it (so the rule provably can fail), then on the real engine/. Allow-lists are explicit,
short, and say why. docs/architecture.md names the modules; a check here keeps it honest.

Rules:
(a) no import cycle among engine/ modules: module-level, function-level and TYPE_CHECKING
    imports are all edges, and `from engine.pkg import name` is an edge to the package's
    __init__ (so its re-exports count);
(b) no function-level import of an engine module, except in engine/cli.py (start-up time), and
    there only where importing at module level would close no cycle;
(c) engine/plan does not import engine/runtime; engine/spec does not import engine/plan;
(d) no function in engine/ longer than 80 lines (def line to last line);
(e) outside engine/spec/, no code indexes the raw YAML (heuristic, see `raw_yaml_access`);
(f) aggregation kind names are string literals only in engine/aggs/ (and the schema), attach
    kind names only in engine/attach/ (and the schema);
(g) engine/runtime compares nothing to an output-mode string ("events", "count", "aggregate").
"""

from __future__ import annotations

import ast
import json
import pathlib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "engine" / "spec.schema.json").read_text(encoding="utf-8"))
MAX_FUNCTION_LINES = 80

Sources = dict[str, str]  # "engine/plan/planner.py" -> its text


def ordered(findings: Iterable[str]) -> list[str]:
    """Findings "path:line: what" by path, then line number (10 after 9)."""

    def place(finding: str) -> tuple[str, int, str]:
        path, line, rest = finding.split(":", 2)
        return path, int(line) if line.isdigit() else 0, rest

    return sorted(findings, key=place)


def engine_sources() -> Sources:
    """Every Python file of engine/, keyed by its path relative to the repository."""
    return {
        p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "engine").rglob("*.py"))
    }


def module_of(path: str) -> str:
    """engine/plan/planner.py -> engine.plan.planner; engine/plan/__init__.py -> engine.plan."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: str) -> bool:
    return path.endswith("/__init__.py")


# --- imports ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` (both engine modules) at `path:line`."""

    source: str
    target: str
    path: str
    line: int
    in_function: bool


def _function_lines(tree: ast.AST) -> set[int]:
    """Line numbers of the statements that sit inside a function body."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    lines.add(inner.lineno)
    return lines


def import_edges(sources: Sources) -> list[Edge]:
    """Every import of one engine module by another, resolved against the modules in `sources`:
    `from engine.a import b` is an edge to engine.a.b when that is a module, else to engine.a
    (a name its __init__ defines or re-exports); `import engine.a.b` is an edge to engine.a.b."""
    modules = {module_of(p) for p in sources}
    edges: list[Edge] = []
    for path, text in sources.items():
        me = module_of(path)
        tree = ast.parse(text, path)
        nested = _function_lines(tree)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = me if is_package(path) else me.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".rstrip(".")
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in modules else base)
            for target in targets:
                if target in modules and target != me:
                    edges.append(Edge(me, target, path, node.lineno, node.lineno in nested))
    return sorted(set(edges), key=lambda e: (e.path, e.line, e.target))


def import_cycles(sources: Sources) -> list[str]:
    """(a) Each strongly connected set of modules (Tarjan), with the edges that close it."""
    graph: dict[str, set[str]] = {}
    for e in import_edges(sources):
        graph.setdefault(e.source, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    findings = []
    edges = import_edges(sources)
    for component in sorted(components):
        inside = sorted(
            {
                f"{e.path}:{e.line}"
                for e in edges
                if e.source in component and e.target in component
            },
            key=lambda at: (at.split(":")[0], int(at.split(":")[1])),
        )
        findings.append(f"cycle {' <-> '.join(component)} (imports at {', '.join(inside)})")
    return findings


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w == goal:
                return True
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return False


LAZY_IMPORTS_ALLOWED = {"engine/cli.py"}  # each verb imports only what it runs: start-up time


def lazy_imports(sources: Sources) -> list[str]:
    """(b) Function-level imports of engine modules; in the allowed files, those whose target
    imports the importer back (at module level it would close a cycle)."""
    findings = []
    edges = import_edges(sources)
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
    for e in edges:
        if not e.in_function:
            continue
        if e.path not in LAZY_IMPORTS_ALLOWED:
            findings.append(f"{e.path}:{e.line}: function-level import of {e.target}")
        elif _reaches(graph, e.target, e.source):
            findings.append(
                f"{e.path}:{e.line}: function-level import of {e.target} dodges a cycle"
            )
    return findings


FORBIDDEN_LAYERS = [("engine.plan", "engine.runtime"), ("engine.spec", "engine.plan")]


def layer_violations(sources: Sources) -> list[str]:
    """(c) Imports from a layer into one it must not depend on (FORBIDDEN_LAYERS)."""

    def within(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    return [
        f"{e.path}:{e.line}: {e.source} imports {e.target}"
        for e in import_edges(sources)
        for low, high in FORBIDDEN_LAYERS
        if within(e.source, low) and within(e.target, high)
    ]


# --- functions ----------------------------------------------------------------------------


def long_functions(sources: Sources, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """(d) Functions and methods longer than `limit` lines, def line to last line."""
    findings = []
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text, path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    findings.append(f"{path}:{node.lineno}: {node.name} is {length} lines")
    return ordered(findings)


# --- string literals ----------------------------------------------------------------------


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (a literal in a docstring is prose, not code)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and (
            ast.get_docstring(node, clean=False) is not None
        ):
            ids.add(id(node.body[0].value))  # type: ignore[attr-defined]
    return ids


def string_constants(text: str, path: str) -> Iterator[tuple[int, str]]:
    """(line, value) of every str constant that is not a docstring."""
    tree = ast.parse(text, path)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def _one_of_required(definition: str) -> list[str]:
    return [alt["required"][0] for alt in SCHEMA["$defs"][definition]["oneOf"]]


AGG_KINDS = _one_of_required("aggregation")  # count, sum, min, max, avg, hist, lhist
ATTACH_KINDS = _one_of_required("attach")  # kprobe, kretprobe, fentry, fexit, tracepoint, ...


# path -> words that are not kind names there, each with the reason.
KIND_WORDS_ALLOWED: dict[str, set[str]] = {
    # the schema check's hints for a string failing its pattern or length, keyed by the schema's
    # property
    "engine/spec/schema.py": {"tracepoint", "usdt", "profile", "perf_event"},
    # bpftrace's JSON histogram and avg/min/max objects name their parts so (its format)
    "engine/output/json.py": {"count", "sum", "min", "max"},
    "engine/output/csv.py": {"count", "sum", "min", "max"},
}


def kind_literals(sources: Sources, kinds: list[str], home: str) -> list[str]:
    """(f) String literals equal to one of `kinds` in a file outside `home` (the registry)."""
    return ordered(
        f"{path}:{line}: {value!r}"
        for path, text in sources.items()
        if not path.startswith(home)
        for line, value in string_constants(text, path)
        if value in kinds and value not in KIND_WORDS_ALLOWED.get(path, set())
    )


OUTPUT_MODES = {"events", "count", "aggregate"}


def mode_comparisons(sources: Sources, under: str = "engine/runtime/") -> list[str]:
    """(g) Comparisons (==, !=, in, not in) with an output-mode string, in files under `under`."""
    findings = []
    for path, text in sources.items():
        if not path.startswith(under):
            continue
        for node in ast.walk(ast.parse(text, path)):
            operands: list[ast.AST] = []
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, ast.MatchValue):  # match mode: case "events": ...
                operands = [node.value]
            for operand in operands:
                for c in ast.walk(operand):
                    if isinstance(c, ast.Constant) and c.value in OUTPUT_MODES:
                        findings.append(f"{path}:{node.lineno}: compares with {c.value!r}")
    return ordered(set(findings))


# --- raw YAML -----------------------------------------------------------------------------

# The keys a spec's YAML has at the top and in each probe (engine/spec.schema.json), less the
# two every other dict has too ("name" of a row, a map, a field; "description").
GENERIC_KEYS = {"name", "description"}
RAW_KEYS = (set(SCHEMA["properties"]) | set(SCHEMA["$defs"]["probe"]["properties"])) - GENERIC_KEYS


def raw_yaml_access(sources: Sources, home: str = "engine/spec/") -> list[str]:
    """(e) Outside `home`, subscripts `x["probes"]` and calls `x.get("probes", ...)` whose key is
    a string constant naming a spec key (RAW_KEYS: top level and per probe). The heuristic: the
    YAML is a dict indexed by those names; typed code reads attributes (`spec.probes`), so a
    string key of that set is the raw document (or a copy of its shape) being walked."""
    findings = []
    for path, text in sources.items():
        if path.startswith(home):
            continue
        for node in ast.walk(ast.parse(text, path)):
            key = None
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                key = node.slice.value
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get", "pop", "setdefault")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                key = node.args[0].value
            if isinstance(key, str) and key in RAW_KEYS:
                findings.append(f"{path}:{node.lineno}: raw spec key {key!r}")
    return ordered(findings)


# --- the checks fail on bad trees ---------------------------------------------------------


CYCLE = {
    "engine/__init__.py": "",
    "engine/a.py": "from engine import b\n",
    "engine/b.py": "def f():\n    from engine.pkg import name\n",
    "engine/pkg/__init__.py": "from engine.pkg.c import name\n",
    "engine/pkg/c.py": "import engine.a\nname = 1\n",
    "engine/d.py": "from engine.pkg import c\n",
}


def test_a_cycle_through_a_lazy_import_and_a_reexport_is_found() -> None:
    assert import_cycles(CYCLE) == [
        "cycle engine.a <-> engine.b <-> engine.pkg <-> engine.pkg.c (imports at "
        "engine/a.py:1, engine/b.py:2, engine/pkg/__init__.py:1, engine/pkg/c.py:1)"
    ]
    acyclic = dict(CYCLE, **{"engine/pkg/c.py": "name = 1\n"})
    assert import_cycles(acyclic) == []


def test_relative_and_type_checking_imports_are_edges() -> None:
    tree = {
        "engine/__init__.py": "",
        "engine/p/__init__.py": "",
        "engine/p/x.py": "from . import y\n",
        "engine/p/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from .x import T\n",
    }
    assert [(e.source, e.target) for e in import_edges(tree)] == [
        ("engine.p.x", "engine.p.y"),
        ("engine.p.y", "engine.p.x"),
    ]
    assert len(import_cycles(tree)) == 1


def test_lazy_imports_outside_cli_and_cycle_dodging_ones_in_cli() -> None:
    tree = {
        "engine/cli.py": "def run():\n    from engine import plan\n"
        "def serve():\n    from engine import serve\n",
        "engine/plan.py": "from engine import cli\n",  # cli's lazy import dodges this cycle
        "engine/serve.py": "",
        "engine/runtime.py": "def f():\n    from engine import serve\n",
    }
    assert lazy_imports(tree) == [
        "engine/cli.py:2: function-level import of engine.plan dodges a cycle",
        "engine/runtime.py:2: function-level import of engine.serve",
    ]


def test_layers() -> None:
    tree = {
        "engine/plan/planner.py": "from engine.runtime import prom\nimport engine.spec.expr\n",
        "engine/runtime/prom.py": "import engine.plan.planner\n",
        "engine/spec/expr.py": "def f():\n    from engine.plan import planner\n",
    }
    assert layer_violations(tree) == [
        "engine/plan/planner.py:1: engine.plan.planner imports engine.runtime.prom",
        "engine/spec/expr.py:2: engine.spec.expr imports engine.plan.planner",
    ]


def test_long_functions_count_def_to_last_line() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(79))
    method = "".join(f"        x{i} = {i}\n" for i in range(80))
    tree = {
        "engine/ok.py": f"def f():\n{body}",
        "engine/long.py": f"class C:\n    def g(self):\n{method}",
    }
    assert long_functions(tree) == ["engine/long.py:2: g is 81 lines"]


def test_kind_literals_and_docstrings() -> None:
    tree = {
        "engine/aggs/hist.py": "KIND = 'hist'\n",
        "engine/runtime/sinks.py": '"""A hist is printed."""\nif kind == "hist":\n    pass\n',
        "engine/plan/x.py": "def f():\n    'lhist in prose'\n    return {'lhist': 1, 'hist2': 2}\n",
    }
    assert kind_literals(tree, AGG_KINDS, "engine/aggs/") == [
        "engine/plan/x.py:3: 'lhist'",
        "engine/runtime/sinks.py:2: 'hist'",
    ]
    attach = {
        "engine/doctor.py": "KINDS = ('kprobe', 'uprobes')\n",
        "engine/attach/k.py": "'kprobe'",
    }
    assert kind_literals(attach, ATTACH_KINDS, "engine/attach/") == ["engine/doctor.py:1: 'kprobe'"]


def test_mode_comparisons_only_in_runtime() -> None:
    tree = {
        "engine/runtime/runner.py": "if mode == 'events':\n    pass\n"
        "ok = kind in ('count', 'x')\nlabel = 'events'\n"
        "match mode:\n    case 'aggregate':\n        pass\n",
        "engine/plan/bind.py": "if mode == 'count':\n    pass\n",
    }
    assert mode_comparisons(tree) == [
        "engine/runtime/runner.py:1: compares with 'events'",
        "engine/runtime/runner.py:3: compares with 'count'",
        "engine/runtime/runner.py:6: compares with 'aggregate'",
    ]


def test_raw_yaml_access() -> None:
    tree = {
        "engine/spec/model.py": "probes = document['probes']\n",
        "engine/plan/planner.py": "for p in doc.get('probes', []):\n    f = p['fields']\n"
        "    n = p['name']\n    a = obj.attach\n",
    }
    assert raw_yaml_access(tree) == [
        "engine/plan/planner.py:1: raw spec key 'probes'",
        "engine/plan/planner.py:2: raw spec key 'fields'",
    ]


def test_the_schema_kinds_are_what_the_rules_expect() -> None:
    """If the schema's shape changes, the rules must not silently check nothing."""
    assert {"count", "hist", "lhist"} <= set(AGG_KINDS) and len(AGG_KINDS) >= 7
    assert {"kprobe", "tracepoint", "raw_tracepoint"} <= set(ATTACH_KINDS)
    assert {"probes", "output", "attach", "fields", "filter"} <= RAW_KEYS


# --- the rules on engine/ -----------------------------------------------------------------

RULES = {
    "a_import_cycles": import_cycles,
    "b_lazy_imports": lazy_imports,
    "c_layers": layer_violations,
    "d_long_functions": long_functions,
    "e_raw_yaml": raw_yaml_access,
    "f_agg_kinds": lambda s: kind_literals(s, AGG_KINDS, "engine/aggs/"),
    "f_attach_kinds": lambda s: kind_literals(s, ATTACH_KINDS, "engine/attach/"),
    "g_runtime_modes": mode_comparisons,
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_engine_follows_the_rule(rule: str) -> None:
    findings = RULES[rule](engine_sources())
    assert findings == [], f"{len(findings)} findings:\n" + "\n".join(findings)


# --- docs/architecture.md names modules that exist ----------------------------------------

PATH_IN_DOC = re.compile(r"`((?:engine|templates|tests|docs)/[A-Za-z0-9_./<>*-]*)`")


def named_paths(markdown: str) -> list[str]:
    """The repository paths a page names in code spans (`engine/plan/passes/`); a `<kind>` or
    `*` part stands for any file, so only the folder before it must exist."""
    out = []
    for path in PATH_IN_DOC.findall(markdown):
        fixed = re.split(r"[<*]", path)[0]
        out.append(fixed if fixed == path else fixed.rpartition("/")[0] + "/")
    return out


def missing_paths(markdown: str, root: pathlib.Path = ROOT) -> list[str]:
    return sorted({p for p in named_paths(markdown) if not (root / p).exists()})


def test_missing_paths_sees_a_made_up_module(tmp_path: pathlib.Path) -> None:
    (tmp_path / "engine" / "aggs").mkdir(parents=True)
    (tmp_path / "engine" / "aggs" / "hist.py").write_text("")
    page = "`engine/aggs/hist.py`, `engine/aggs/<kind>.py`, `engine/nope.py` and `engine/x/`"
    assert missing_paths(page, tmp_path) == ["engine/nope.py", "engine/x/"]


def test_the_architecture_page_names_only_what_exists() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert len(named_paths(page)) >= 20, "the page names the modules it describes"
    assert missing_paths(page) == []


def test_test_module_basenames_are_unique() -> None:
    """pytest imports test files by basename (no packages under tests/): two test_X.py in
    different folders stop the whole run at collection ("import file mismatch")."""
    tests = pathlib.Path(__file__).resolve().parents[1]
    seen: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}
