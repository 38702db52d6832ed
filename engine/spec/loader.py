"""Load a spec file into plain Python data, remembering the line:col of every node.

Specs come from users and from CI of other people's repositories, so the loader trusts
nothing: it reads at most 1 MiB, accepts only UTF-8 text, and builds the data itself from
the YAML event stream of yaml's SafeLoader (never `yaml.load`), rejecting tags, duplicate and
non-string keys, deep nesting, huge strings and node floods. Anchors, aliases and merge keys
(`<<: *common`) let probes share fields: an alias is a copy of what its anchor built, counted
node by node against the flood limit (so a billion-laughs bomb stops there), and every node of
the copy keeps the line:col where its text is written, inside the anchor. Every bad input
becomes one located, one-line Problem inside a SpecError, never a traceback.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Dict, List, NoReturn, Sequence, Tuple, Union

import yaml

from engine.errors import Location, Problem, SpecError

MAX_BYTES = 1 << 20
MAX_STRING = 10_000
MAX_DEPTH = 64
MAX_NODES = 100_000

PathItem = Union[str, int]
Path = Tuple[PathItem, ...]
Mark = Tuple[int, int]  # 1-based line and column

# C0 and C1 control characters; the raw text may also hold line breaks (\r, \x85 are YAML's).
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")
_CONTROL_IN_SCALAR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
# Scalars that become numbers, booleans or null; every other scalar stays the string it reads as
# (so `2024-01-01` is a string, not a date). A plain `<<` key merges mappings (YAML's merge key).
_CONVERTED_TAGS = frozenset(_YAML_TAG_PREFIX + t for t in ("int", "float", "bool", "null"))

MERGE = "<<"  # YAML's merge key, when written plain
EMPTY_SPEC = "empty spec: expected a mapping with name, probes and output"


@dataclass
class Document:
    """A loaded spec: plain data plus where each node was written."""

    file: str
    data: Any
    text: str = field(default="", repr=False)  # the source, for columns inside expressions
    marks: Dict[Path, Mark] = field(default_factory=dict, repr=False)
    key_marks: Dict[Path, Mark] = field(default_factory=dict, repr=False)
    _lines: List[str] | None = field(default=None, repr=False, compare=False)

    def line(self, number: int) -> str:
        """The text of 1-based line `number` (lines broken as YAML breaks them), or ""."""
        if self._lines is None:
            self._lines = _LINE_BREAK.split(self.text)
        lines = self._lines
        return lines[number - 1] if 0 < number <= len(lines) else ""

    def locate(self, path: Sequence[PathItem], *, key: bool = False) -> Location:
        """Location of the value at `path` (or its mapping key), else of its nearest ancestor."""
        full = tuple(path)
        where = json_path(full)
        if key and full in self.key_marks:
            line, col = self.key_marks[full]
            return Location(self.file, line, col, where)
        for end in range(len(full), -1, -1):
            mark = self.marks.get(full[:end])
            if mark is not None:
                return Location(self.file, mark[0], mark[1], where)
        return Location(self.file, path=where)


def json_path(path: Sequence[PathItem]) -> str:
    """`$.probes[0].attach[1].tracepoint`; keys that are not identifiers go in ["..."]."""
    parts = ["$"]
    for item in path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _IDENTIFIER.match(item):
            parts.append(f".{item}")
        else:
            parts.append(f"[{_escape(item, quote_char=chr(34))}]")
    return "".join(parts)


def quote(text: str, limit: int = 40) -> str:
    """A user's string for a message: quoted, one line, non-printables escaped, cut at `limit`."""
    if len(text) > limit:
        return _escape(text[:limit], tail="...")
    return _escape(text)


def type_name(value: Any) -> str:
    """What a user would call a value's type: "a mapping", "a list", "an integer", "null"..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def load_document(path: str) -> Document:
    """Read and load the spec at `path`; raise SpecError with one Problem if it is unusable."""
    return load_text(_read_bytes(path), path)


def load_text(text: Union[str, bytes], file: str) -> Document:
    """Load spec text (bytes are checked for size, NULs and UTF-8 first) named `file`."""
    if isinstance(text, bytes):
        text = _decode(text, file)
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        _fail(file, _too_large(len(text.encode("utf-8", "surrogatepass"))))
    _check_characters(text, file)
    return _Builder(text, file).build()


def _read_bytes(path: str) -> bytes:
    """The file's bytes, at most MAX_BYTES + 1 of them; every OS failure is a Problem.

    Only a regular file is read: it is opened without blocking and checked through its own
    descriptor, so a FIFO (or a device) is refused at once instead of waiting for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        _fail(path, "no such file")
    except IsADirectoryError:
        _fail(path, "is a directory, not a spec file")
    except OSError as error:
        _fail(path, f"cannot read: {(error.strerror or str(error)).lower()}")
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            _fail(path, "is a directory, not a spec file")
        if not stat.S_ISREG(info.st_mode):
            _fail(path, f"is {_file_kind(info.st_mode)}, not a regular file; a spec is a file")
        if info.st_size > MAX_BYTES:
            _fail(path, _too_large(info.st_size))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as stream:
            fd = -1
            data = stream.read(MAX_BYTES + 1)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        _fail(path, f"cannot read: {reason}")
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_BYTES:
        _fail(path, f"file too large (more than {MAX_BYTES} bytes)")
    return data


def _file_kind(mode: int) -> str:
    """What a user would call a file that is not a regular one."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _too_large(size: int) -> str:
    return f"file too large ({size} bytes; at most {MAX_BYTES})"


def _decode(data: bytes, file: str) -> str:
    """UTF-8 text, or a Problem at the first NUL or undecodable byte."""
    if len(data) > MAX_BYTES:
        _fail(file, _too_large(len(data)))
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = error.start if nul < 0 else min(nul, error.start)
    else:
        if nul < 0:
            return text
        bad = nul
    what = "NUL byte" if bad == nul else "invalid UTF-8"
    line_start = data.rfind(b"\n", 0, bad) + 1
    line = data.count(b"\n", 0, bad) + 1
    col = len(data[line_start:bad].decode("utf-8", "replace")) + 1
    _fail(file, f"not a text file ({what} at byte {bad + 1})", line, col)


def _check_characters(text: str, file: str) -> None:
    """Reject control characters before yaml does, with a position and a readable message."""
    found = _CONTROL_IN_TEXT.search(text)
    if found:
        line, col = _line_col(text, found.start())
        _fail(file, _control_message(found.group()), line, col)


def _control_message(char: str) -> str:
    return f"control character U+{ord(char):04X} is not allowed"


def _line_col(text: str, index: int) -> Mark:
    """1-based line and column of `text[index]`, counting line breaks as YAML does."""
    lines = _LINE_BREAK.split(text[:index])
    return len(lines), len(lines[-1]) + 1


def _fail(file: str, message: str, line: int = 0, col: int = 0, path: str = "$") -> NoReturn:
    raise SpecError([Problem(message, Location(file, line, col, path))])


def _escape(text: str, *, quote_char: str = "'", tail: str = "") -> str:
    """Quote `text` repr-style: printable characters as they are, the rest as escapes."""
    out = []
    for char in text:
        if char in ("\\", quote_char):
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return f"{quote_char}{''.join(out)}{tail}{quote_char}"


def _non_string_key(source: str, key: Any) -> str:
    """YAML 1.1 reads `on`, `no`, `1`, `~` as non-strings; say so, with the fix."""
    if not source:
        return "mapping keys must be strings, got an empty key"
    shown = _shorten(source)
    return f"key {shown} is read as {type_name(key)}, not a string; put it in quotes: '{shown}'"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Builder:
    """Walks yaml's event stream and builds plain data, marks and the checks in between."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.document = Document(file, None)
        self.nodes = 0
        # anchor -> (the path its node was built at, that node's data, its node count)
        self.anchors: dict[str, tuple[Path, Any, int]] = {}
        self.alias_marks: dict[Path, Mark] = {}  # where each alias is written

    def build(self) -> Document:
        try:
            # Made here, not in __init__: yaml checks the characters as it is constructed.
            self.loader = yaml.SafeLoader(self.text)
            return self._stream()
        except yaml.MarkedYAMLError as error:
            raise SpecError([self._syntax_problem(error)]) from None
        except yaml.reader.ReaderError as error:
            line, col = _line_col(self.text, error.position)
            message = f"character U+{error.character:04X} is not allowed"
            raise SpecError([Problem(message, Location(self.file, line, col))]) from None

    def _stream(self) -> Document:
        self.loader.get_event()  # StreamStartEvent
        if self.loader.check_event(yaml.StreamEndEvent):
            _fail(self.file, EMPTY_SPEC)
        self.loader.get_event()  # DocumentStartEvent
        start = self.loader.peek_event().start_mark
        data = self._node((), 1)
        self.loader.get_event()  # DocumentEndEvent
        if not self.loader.check_event(yaml.StreamEndEvent):
            extra = self.loader.peek_event()
            self._reject("more than one YAML document; a spec is a single document", extra, ())
        if data is None:
            _fail(self.file, EMPTY_SPEC)
        if not isinstance(data, dict):
            got = type_name(data)
            self._reject_at(f"expected a mapping at the top level, got {got}", _mark(start), ())
        self.document.data = data
        self.document.text = self.text
        return self.document

    def _node(self, path: Path, depth: int) -> Any:
        event = self.loader.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self.loader.get_event()
            return self._alias(event, path)
        before = self.nodes
        self._check_node_event(event, path, depth)
        self.document.marks[path] = _mark(event.start_mark)
        if isinstance(event, yaml.ScalarEvent):
            self.loader.get_event()
            data = self._scalar(event, path)
        elif isinstance(event, yaml.SequenceStartEvent):
            data = self._sequence(path, depth)
        else:
            data = self._mapping(path, depth)
        if event.anchor:
            self.anchors[event.anchor] = (path, data, self.nodes - before)
        return data

    def _alias(self, event: yaml.AliasEvent, path: Path) -> Any:
        """A copy of the anchored node's data; its marks copied from where it is written."""
        name = event.anchor or ""
        found = self.anchors.get(name)
        if found is None:  # yaml's composer would say so; the event stream does not
            self._reject(f"unknown alias *{name} (no anchor &{name} before it)", event, path)
        source, data, count = found
        self.nodes += count
        if self.nodes > MAX_NODES:
            self._reject(f"too many nodes (more than {MAX_NODES}, aliases expanded)", event, path)
        self._copy_marks(source, path)
        self.alias_marks[path] = _mark(event.start_mark)
        return copy.deepcopy(data)

    def _copy_marks(self, source: Path, target: Path) -> None:
        """Marks under `source` repeated under `target` (same text, a second place in data)."""
        n = len(source)
        for table in (self.document.marks, self.document.key_marks):
            for p, mark in list(table.items()):
                if p[:n] == source and (p != source or table is self.document.marks):
                    table[target + p[n:]] = mark

    def _check_node_event(self, event: yaml.Event, path: Path, depth: int) -> None:
        """The rules every node obeys, whatever its kind."""
        tag = getattr(event, "tag", None)
        if tag is not None:
            self._reject(f"YAML tags are not supported ({quote(_short_tag(tag))})", event, path)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self._reject(f"too many nodes (more than {MAX_NODES})", event, path)
        if depth > MAX_DEPTH and not isinstance(event, yaml.ScalarEvent):
            self._reject(f"nesting too deep (more than {MAX_DEPTH} levels)", event, path)

    def _scalar(self, event: yaml.ScalarEvent, path: Path) -> Any:
        value = event.value
        if len(value) > MAX_STRING:
            self._reject(
                f"string too long ({len(value)} characters; at most {MAX_STRING})", event, path
            )
        control = _CONTROL_IN_SCALAR.search(value)
        if control:
            self._reject(_control_message(control.group()), event, path)
        tag = self.loader.resolve(yaml.ScalarNode, value, event.implicit)
        if tag not in _CONVERTED_TAGS:
            return value
        node = yaml.ScalarNode(tag, value)
        return self.loader.yaml_constructors[tag](self.loader, node)

    def _sequence(self, path: Path, depth: int) -> list[Any]:
        self.loader.get_event()
        items: list[Any] = []
        while not self.loader.check_event(yaml.SequenceEndEvent):
            items.append(self._node((*path, len(items)), depth + 1))
        self.loader.get_event()
        return items

    def _mapping(self, path: Path, depth: int) -> dict[str, Any]:
        self.loader.get_event()
        items: dict[str, Any] = {}
        merges: list[tuple[Path, Any]] = []
        while not self.loader.check_event(yaml.MappingEndEvent):
            key_event = self.loader.peek_event()
            if (
                isinstance(key_event, yaml.ScalarEvent)
                and key_event.value == MERGE
                and key_event.implicit[0]
            ):
                self.loader.get_event()
                value_path = (*path, MERGE, len(merges))
                merges.append((value_path, self._node(value_path, depth + 1)))
                continue
            key = self._key(path, items, depth)
            value_path = (*path, key)
            event = self.loader.peek_event()
            items[key] = self._node(value_path, depth + 1)
            if isinstance(event, yaml.ScalarEvent) and event.value == "" and event.implicit[0]:
                # `fields:` with nothing after it: point at `fields`, not past the colon.
                self.document.marks[value_path] = self.document.key_marks[value_path]
        self.loader.get_event()
        for merge_path, data in merges:
            self._merge(path, items, merge_path, data)
        return items

    def _merge(self, path: Path, items: dict[str, Any], source: Path, data: Any) -> None:
        """YAML's merge key: `<<: *a` or `<<: [*a, *b]` adds the keys the mapping lacks (its
        own keys win; of the merged mappings, the first that has a key gives it)."""
        parts = data if isinstance(data, list) else [data]
        for i, part in enumerate(parts):
            where = (*source, i) if isinstance(data, list) else source
            if not isinstance(part, dict):
                marks = (self.alias_marks, self.document.marks)
                mark = next((m[p] for p in (where, source) for m in marks if p in m), (0, 0))
                self._reject_at(
                    f"a merge (`<<`) takes a mapping or a list of mappings, got {type_name(part)}",
                    mark,
                    path,
                )
            for key, value in part.items():
                if key not in items:
                    items[key] = value
                    self._copy_marks((*where, key), (*path, key))
        for table in (self.document.marks, self.document.key_marks):
            for p in [p for p in table if p[: len(source)] == source]:
                del table[p]

    def _key(self, path: Path, seen: dict[str, Any], depth: int) -> str:
        """A mapping key: a plain string, new in its mapping; its mark is recorded."""
        event = self.loader.peek_event()
        self._check_node_event(event, path, depth + 1)
        if not isinstance(event, yaml.ScalarEvent):
            kind = "a list" if isinstance(event, yaml.SequenceStartEvent) else "a mapping"
            self._reject(f"mapping keys must be strings, got {kind}", event, path)
        self.loader.get_event()
        key = self._scalar(event, path)
        if not isinstance(key, str):
            self._reject(_non_string_key(event.value, key), event, path)
        if key in seen:
            first = self.document.key_marks[(*path, key)][0]
            self._reject(f"duplicate key {quote(key)} (first at line {first})", event, path)
        self.document.key_marks[(*path, key)] = _mark(event.start_mark)
        return key

    def _reject(self, message: str, event: yaml.Event, path: Path) -> NoReturn:
        self._reject_at(message, _mark(event.start_mark), path)

    def _reject_at(self, message: str, mark: Mark, path: Path) -> NoReturn:
        _fail(self.file, message, mark[0], mark[1], json_path(path))

    def _syntax_problem(self, error: yaml.MarkedYAMLError) -> Problem:
        """yaml's own wording, on one line, at its problem mark (a tab gets clearer words)."""
        mark = error.problem_mark or error.context_mark
        line, col = _mark(mark) if mark else (0, 0)
        problem = self._tab_problem(mark) or _one_line(
            error.problem or error.context or "invalid YAML"
        )
        if error.context and error.context_mark and error.problem:
            context_line, context_col = _mark(error.context_mark)
            problem += f" ({_one_line(error.context)} that starts at {context_line}:{context_col})"
        return Problem(problem, Location(self.file, line, col))

    def _tab_problem(self, mark: Any) -> str | None:
        """yaml says "found character '\\t' that cannot start any token"; say what to do."""
        if mark is None or mark.index >= len(self.text) or self.text[mark.index] != "\t":
            return None
        line_start = self.text.rfind("\n", 0, mark.index) + 1
        if self.text[line_start : mark.index].strip(" \t-") == "":
            return "found a tab character where indentation is expected (indent with spaces)"
        return "found a tab character where a space is expected (YAML separates with spaces)"


def _mark(mark: Any) -> Mark:
    """1-based (line, col) of a yaml mark (0-based)."""
    return mark.line + 1, mark.column + 1


def _short_tag(tag: str) -> str:
    if tag.startswith(_YAML_TAG_PREFIX):
        return "!!" + tag[len(_YAML_TAG_PREFIX) :]
    return tag
