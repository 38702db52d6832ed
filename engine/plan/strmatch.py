"""String matching in filters: equality, prefix, suffix, substring and glob (`*`, `?`) on a
fixed-size char slot of the event, computed in the kernel.

The planner checks a pattern here (a constant at validation, an option's value when a run
binds it: both say the same), and the renderer writes the C from the same pattern: a prefix
or an exact match is one chain of byte compares; a suffix, a substring and a glob with `*`
walk the slot in loops bounded by its size (the verifier proves them), stopping at its NUL.
"""

from __future__ import annotations

KINDS = ("eq", "prefix", "suffix", "contains", "glob")
# helper name in a spec -> kind; `"x" in field` is "contains"
CALLS = {"startswith": "prefix", "endswith": "suffix", "contains": "contains", "glob": "glob"}
WORDS = {
    "eq": "compared",
    "prefix": "a prefix",
    "suffix": "a suffix",
    "contains": "a substring",
    "glob": "a glob",
}


def literal_length(kind: str, pattern: bytes) -> int:
    """The fewest characters a matching string has."""
    return len(pattern.replace(b"*", b"")) if kind == "glob" else len(pattern)


def problem(kind: str, pattern: bytes, size: int) -> str:
    """Why `pattern` cannot be matched against a slot of `size` bytes, or ""."""
    if kind != "eq" and not pattern:
        return "an empty pattern matches every string"
    if kind == "glob" and b"[" in pattern:
        return "a glob takes `*` (any characters) and `?` (one character); `[...]` is not supported"
    if literal_length(kind, pattern) >= size:
        return (
            f"'{pattern.decode()[:40]}' is longer than the field holds ({size - 1} characters), "
            "so it never matches"
        )
    return ""


def c_text(slot: str, size: int, kind: str, pattern: bytes) -> str:
    """The C of one match, parenthesized (1 when it matches)."""
    if kind == "eq":
        data = pattern + (b"\0" if len(pattern) < size else b"")
        return _at(slot, 0, data)
    if kind == "prefix":
        return _at(slot, 0, pattern)
    if kind == "glob" and b"*" not in pattern:
        return _at(slot, 0, pattern + (b"\0" if len(pattern) < size else b""), True)
    length = f"u32 _n = 0; while (_n < {size} && {slot}[_n]) _n++;"
    if kind == "suffix":
        m = len(pattern)
        return f"({{ {length} _n >= {m} && {_at(slot, f'_n - {m}', pattern)}; }})"
    if kind == "contains":
        m = len(pattern)
        return (
            f"({{ int _f = 0; for (u32 _i = 0; _i + {m} <= {size}; _i++) {{ "
            f"if (!{slot}[_i]) break; if {_at(slot, '_i', pattern)} {{ _f = 1; break; }} }} _f; }})"
        )
    first, *middle, last = pattern.split(b"*")
    lines = [length, f"int _ok = _n >= {literal_length(kind, pattern)};"]
    if first:
        lines.append(f"_ok = _ok && {_at(slot, 0, first, True)};")
    lines.append(f"u32 _p = {len(first)};")
    for seg in middle:
        if not seg:
            continue
        b = len(seg)
        lines.append(
            f"if (_ok) {{ int _f = 0; for (u32 _i = 0; _i + {b} <= {size}; _i++) {{ "
            f"if (_i < _p) continue; if (_i + {b + len(last)} > _n) break; "
            f"if {_at(slot, '_i', seg, True)} {{ _f = 1; _p = _i + {b}; break; }} }} _ok = _f; }}"
        )
    if last:
        c = len(last)
        lines.append(f"_ok = _ok && _n - {c} >= _p && {_at(slot, f'_n - {c}', last, True)};")
    return "({ " + " ".join(lines) + " _ok; })"


def _at(slot: str, start: int | str, data: bytes, wild: bool = False) -> str:
    """`data` at `start` (a number or a C expression), byte by byte as numbers; with `wild`
    (a glob's pieces) `?` is any character but the NUL."""
    terms = []
    for i, byte in enumerate(data):
        index = start + i if isinstance(start, int) else (f"{start} + {i}" if i else start)
        cell = f"{slot}[{index}]"
        terms.append(f"{cell} != 0" if wild and byte == ord("?") else f"{cell} == {byte}")
    return "(" + " && ".join(terms) + ")"
