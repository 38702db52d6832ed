"""The first check of a loaded spec: the JSON Schema shipped as package data.

jsonschema's own messages echo whole instances and speak JSON ("is not of type 'object'");
users wrote YAML and want one line that says what is wrong and what would be right, at the
node they typed. So every error is translated here: unknown keys with the allowed ones and a
did-you-mean, located at the key; oneOf failures reduced to the alternative the user meant.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Dict, FrozenSet, Iterable, List, Sequence, Tuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from engine.errors import Problem, did_you_mean
from engine.spec.loader import Document, PathItem, quote, type_name

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}

# What a user calls the things the schema's $defs describe.
_DEF_NOUNS = {
    "attach": "attach alternative",
    "identifier": "name",
    "functions": "function list",
    "function": "function",
    "bindings": "let",
    "user_target": "uprobe target",
}

# For a string that fails its pattern: what the noun's strings look like.
_PATTERN_HINTS = {
    "name": "use letters, digits and _ (at most 64), not starting with a digit",
    "tracepoint": "use category/event, each letters, digits and _, e.g. sock/inet_sock_set_state",
    "flag": "use -x, --long-name or -x/--long-name (lowercase letters, digits and -)",
    "metavar": "use capitals, digits and _,[]. (at most 41), starting with a capital",
    "header": "use 1 to 32 characters, no spaces or control characters",
    "function": "use a function name, or a pattern of them with *, ? and [a-z] (e.g. vfs_*)",
    "profile": "use hz:N, or s:N, ms:N, us:N, ns:N (N a number or $option), then optionally"
    " cpus:0,2-3 (e.g. hz:49)",
    "perf_event": "use software:EVENT[:N] or hardware:EVENT[:N], then optionally cpus:0,2-3"
    " (e.g. software:page-faults:1; engine explain perf: lists them)",
}

# For a string of the wrong length whose shape the schema does not check: what it looks like.
_SHAPE_HINTS = {
    "uprobe target": "expected BINARY:SYMBOL (e.g. libc:getaddrinfo, /bin/bash:readline)",
    "usdt": "expected BINARY:PROVIDER:NAME (e.g. ./app:myapp:tick, /usr/bin/python3:python:"
    "function__entry)",
}

_ROOT = "spec"


@dataclass(frozen=True)
class _Finding:
    """A translated error, before location; `missing`/`suggests` let one typo yield one line."""

    message: str
    path: Tuple[PathItem, ...]
    at_key: bool = False
    missing: FrozenSet[str] = frozenset()  # keys this finding reports as absent
    suggests: str | None = None  # the known key an unknown key probably meant
    weak: bool = False  # only worth saying when nothing else is wrong at this path


@dataclass
class _Checker:
    """The validator plus the noun of every subschema (by identity), built once."""

    schema: Dict[str, Any]
    validator: Draft202012Validator = field(init=False)
    nouns: Dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validator = Draft202012Validator(self.schema)
        self._name(self.schema, _ROOT)

    def _name(self, node: Any, noun: str) -> None:
        """Give `node` and the subschemas that describe the same thing the noun `noun`."""
        if not isinstance(node, dict):
            return
        self.nouns[id(node)] = noun
        for keyword, value in node.items():
            if keyword == "properties":
                for name, sub in value.items():
                    self._name(sub, name)
            elif keyword == "$defs":
                for name, sub in value.items():
                    self._name(sub, _DEF_NOUNS.get(name, name))
            elif keyword in ("oneOf", "anyOf", "allOf"):
                for sub in value:
                    self._name(sub, noun)
            elif keyword in ("items", "additionalProperties", "propertyNames"):
                self._name(value, noun)

    def noun(self, schema: Any) -> str:
        return self.nouns.get(id(schema), "value")

    def resolve(self, schema: Any) -> Any:
        """Follow local `$ref`s ("#/$defs/x") to the subschema they name."""
        while isinstance(schema, dict) and "$ref" in schema:
            target: Any = self.schema
            for part in schema["$ref"].lstrip("#/").split("/"):
                target = target[part]
            schema = target
        return schema


@functools.cache
def _load_schema_text() -> str:
    return (resources.files("engine") / "spec.schema.json").read_text(encoding="utf-8")


def load_schema() -> Dict[str, Any]:
    """The spec language's JSON Schema, read once from the installed package."""
    return _checker().schema


@functools.cache
def _checker() -> _Checker:
    schema: Dict[str, Any] = json.loads(_load_schema_text())
    return _Checker(schema)


def check_schema(doc: Document) -> List[Problem]:
    """Every schema violation of `doc` as a located one-line Problem, sorted by location."""
    checker = _checker()
    findings: List[_Finding] = []
    for error in checker.validator.iter_errors(doc.data):
        findings.extend(_translate(checker, error))
    problems = [
        Problem(f.message, doc.locate(f.path, key=f.at_key)) for f in _drop_echoes(findings)
    ]
    problems.sort(key=lambda p: (p.location.line, p.location.col, p.message))
    return _unique(problems)


def _unique(problems: Iterable[Problem]) -> List[Problem]:
    return list(dict.fromkeys(problems))


def _drop_echoes(findings: Sequence[_Finding]) -> List[_Finding]:
    """One typo, one line: drop "missing 'filter'" when "unknown 'fliter'" already says it."""
    suggested = {(f.path[:-1], f.suggests) for f in findings if f.suggests}
    per_path = Counter(f.path for f in findings)
    kept = []
    for finding in findings:
        if any((finding.path, name) in suggested for name in finding.missing):
            continue
        if finding.weak and per_path[finding.path] > 1:
            continue
        kept.append(finding)
    return kept


def _translate(checker: _Checker, error: ValidationError) -> List[_Finding]:
    """Findings for one jsonschema error (oneOf/anyOf may give several, or none)."""
    path = tuple(error.absolute_path)
    keyword = str(error.validator)
    if keyword in ("oneOf", "anyOf"):
        return _alternatives(checker, error, path)
    if keyword == "additionalProperties":
        return _unknown_keys(checker, error, path)
    if keyword == "required":
        return _missing_keys(error, path)
    if "propertyNames" in error.absolute_schema_path:
        path = (*path, _instance(error))
        return [_Finding(_scalar_message(checker, error), path, at_key=True)]
    weak = keyword in ("minProperties", "minItems")
    return [_Finding(_scalar_message(checker, error), path, weak=weak)]


def _unknown_keys(
    checker: _Checker, error: ValidationError, path: Tuple[PathItem, ...]
) -> List[_Finding]:
    known = sorted(_schema(error).get("properties", {}))
    noun = checker.noun(_schema(error))
    where = "at the top level" if noun == _ROOT else f"in {noun}"
    findings = []
    patterns = _schema(error).get("patternProperties", {})
    extra = " or x-NAME (anchors to share)" if "^x-" in patterns else ""
    for key in _instance(error):
        if key in known or any(re.match(p, key) for p in patterns):
            continue
        hint = did_you_mean(key, known)
        message = (
            f"unknown key {quote(key)} {where}; expected one of {', '.join(known)}{extra}{hint}"
        )
        suggests = hint[len("; did you mean '") : -len("'?")] if hint else None
        findings.append(_Finding(message, (*path, key), at_key=True, suggests=suggests))
    return findings


def _missing_keys(error: ValidationError, path: Tuple[PathItem, ...]) -> List[_Finding]:
    missing = [key for key in _expected(error) if key not in _instance(error)]
    return [
        _Finding(f"missing required key {quote(key)}", path, missing=frozenset([key]))
        for key in missing
    ]


def _alternatives(
    checker: _Checker, error: ValidationError, path: Tuple[PathItem, ...]
) -> List[_Finding]:
    """A oneOf/anyOf failure, told in terms of the alternative the user evidently meant."""
    branches = [checker.resolve(b) for b in _expected(error)]
    if all(set(b) == {"required"} and len(b["required"]) == 1 for b in branches):
        return [_exactly_one_key(checker, error, branches, path)]
    fitting = [i for i, b in enumerate(branches) if _accepts(checker, b, _instance(error))]
    if not fitting:
        kinds = _join_or(_dedupe(t for b in branches for t in _accepted_types(checker, b)))
        return [_Finding(f"expected {kinds}, got {_described(_instance(error))}", path)]
    context = [e for e in error.context or () if e.relative_schema_path[0] in fitting]
    if not context:
        noun = checker.noun(_schema(error))
        return [_Finding(f"this {noun} matches more than one of its allowed forms", path)]
    if len(fitting) > 1:
        chosen = best_match(context)
        context = [chosen] if chosen is not None else context
    findings: List[_Finding] = []
    for sub in context:
        findings.extend(_translate(checker, sub))
    return findings


def _exactly_one_key(
    checker: _Checker,
    error: ValidationError,
    branches: List[Dict[str, Any]],
    path: Tuple[PathItem, ...],
) -> _Finding:
    """oneOf over `required: [k]`: the instance must name exactly one of the keys."""
    keys = [b["required"][0] for b in branches]
    given = [k for k in keys if isinstance(_instance(error), dict) and k in _instance(error)]
    got = " and ".join(given) if given else "none"
    noun = checker.noun(_schema(error))
    article = "an" if noun[:1] in "aeiou" else "a"
    how = "exactly one" if error.validator == "oneOf" else "at least one"
    message = f"{article} {noun} names {how} of {', '.join(keys)}; got {got}"
    return _Finding(message, path, missing=frozenset(keys) if not given else frozenset())


def _accepts(checker: _Checker, schema: Any, instance: Any) -> bool:
    """Whether `instance` has a JSON type the alternative `schema` allows at all."""
    types = _accepted_types(checker, schema)
    return not types or any(checker.validator.is_type(instance, t) for t in types)


def _accepted_types(checker: _Checker, schema: Any) -> List[str]:
    """The JSON types `schema` can accept (empty: any); enough for the schema's oneOfs."""
    schema = checker.resolve(schema)
    if not isinstance(schema, dict):
        return []
    if "type" in schema:
        kind = schema["type"]
        return [kind] if isinstance(kind, str) else list(kind)
    if "enum" in schema:
        return _dedupe(_json_type(v) for v in schema["enum"])
    for keyword in ("oneOf", "anyOf"):
        if keyword in schema:
            nested = [_accepted_types(checker, b) for b in schema[keyword]]
            if all(nested):
                return _dedupe(t for n in nested for t in n)
    return []


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _scalar_message(checker: _Checker, error: ValidationError) -> str:
    """The message for a single-keyword error: type, enum, pattern, lengths, bounds."""
    keyword = str(error.validator)
    expected = _expected(error)
    value = _instance(error)
    noun = checker.noun(_schema(error))
    if keyword == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        return f"expected {_join_or(kinds)}, got {_described(value)}{_quote_hint(kinds, value)}"
    if keyword == "enum":
        return _enum_message(noun, list(expected), value)
    if keyword == "const":
        return f"expected {expected!r}, got {_show(value)}"
    if keyword == "pattern":
        hint = _PATTERN_HINTS.get(noun, f"it must match {expected}")
        return f"{_show(value)} is not a valid {noun}: {hint}"
    sized = _size_message(keyword, expected, value, noun)
    if sized and noun in _SHAPE_HINTS and keyword in ("minLength", "maxLength"):
        sized += f": {_SHAPE_HINTS[noun]}"
    return sized or _fallback(error)


def _size_message(keyword: str, expected: Any, value: Any, noun: str) -> str | None:
    """Messages for the length, count and range keywords; None for any other keyword."""
    if keyword == "minLength":
        return f"{noun} is empty" if expected == 1 else f"{noun} too short (at least {expected})"
    if keyword == "maxLength":
        return f"{noun} too long ({len(value)} characters; at most {expected})"
    if keyword in ("minItems", "minProperties"):
        unit = _plural(expected, "entry", "entries") if keyword == "minItems" else "key"
        unit = _plural(expected, "key", "keys") if unit == "key" else unit
        got = len(value) if value else "none"
        return f"expected at least {expected} {unit}, got {got}"
    if keyword in ("maxItems", "maxProperties"):
        unit = "entries" if keyword == "maxItems" else "keys"
        return f"too many {unit} ({len(value)}; at most {expected})"
    if keyword in ("minimum", "exclusiveMinimum"):
        return f"{noun} must be at least {expected}, got {value}"
    if keyword in ("maximum", "exclusiveMaximum"):
        return f"{noun} must be at most {expected}, got {value}"
    return None


def _enum_message(noun: str, allowed: List[Any], value: Any) -> str:
    names = ", ".join(str(a) for a in allowed)
    if not isinstance(value, str):
        return f"expected one of {names}; got {type_name(value)}"
    hint = did_you_mean(value, [str(a) for a in allowed])
    return f"unknown {noun} {quote(value)}; expected one of {names}{hint}"


def _fallback(error: ValidationError) -> str:
    """jsonschema's own words, made one line and bounded, for keywords not handled above."""
    text = " ".join(error.message.split())
    return text if len(text) <= 200 else text[:200] + "..."


def _described(value: Any) -> str:
    """`a mapping`, `the string '12'`, `the integer 5`: values shown when they are short."""
    if isinstance(value, str):
        return f"the string {quote(value)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = str(value)
        word = "integer" if isinstance(value, int) else "number"
        return f"the {word} {shown}" if len(shown) <= 40 else type_name(value)
    return type_name(value)


def _quote_hint(kinds: Sequence[str], value: Any) -> str:
    """YAML turns `no`, `1.0`, `~` into non-strings: where a string was wanted, say how."""
    if "string" in kinds and isinstance(value, (bool, int, float)):
        return "; put it in quotes to make it a string"
    return ""


def _show(value: Any) -> str:
    return quote(value) if isinstance(value, str) else str(value)


def _join_or(kinds: Sequence[str]) -> str:
    names = [_TYPE_NAMES.get(k, k) for k in kinds]
    if len(names) <= 2:
        return " or ".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def _instance(error: ValidationError) -> Any:
    """The offending value (jsonschema types it as possibly unset; it never is here)."""
    return error.instance


def _expected(error: ValidationError) -> Any:
    """The failing keyword's value in the schema, e.g. the list of `required` keys."""
    return error.validator_value


def _schema(error: ValidationError) -> Any:
    """The subschema holding the failing keyword."""
    return error.schema


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _dedupe(items: Iterable[str]) -> List[str]:
    return list(dict.fromkeys(items))
