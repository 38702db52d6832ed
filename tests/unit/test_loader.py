"""The loader: every bad input is one exact, located, one-line Problem; good input keeps marks."""

from __future__ import annotations

import os
import pathlib

import pytest

from engine.errors import Location, Problem, SpecError
from engine.spec.loader import (
    EMPTY_SPEC,
    MAX_BYTES,
    Document,
    json_path,
    load_document,
    load_text,
    quote,
    type_name,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
TCPCONNECT = ROOT / "specs" / "tcpconnect.yaml"

SPEC = """\
name: tcpconnect
probes:
  - name: connect
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      pid: tgid
      empty:
output:
  columns: [pid]
"""


def problem_of(text: str | bytes, file: str = "t.yaml") -> Problem:
    """The single problem loading `text` reports (and that it is a well-formed one)."""
    with pytest.raises(SpecError) as caught:
        load_text(text, file)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert_one_line(problems[0])
    return problems[0]


def located(text: str | bytes) -> str:
    """`line:col: message` of the single problem, the shape every assertion here compares."""
    problem = problem_of(text)
    return f"{problem.location.line}:{problem.location.col}: {problem.message}"


def assert_one_line(problem: Problem) -> None:
    for text in (problem.message, problem.format()):
        assert "\n" not in text and "\r" not in text, text
        assert "Traceback" not in text


# --- reading the file ----------------------------------------------------------------------------


def test_missing_file_is_located_at_the_file(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(SpecError) as caught:
        load_document(path)
    assert caught.value.problems == [Problem("no such file", Location(path))]
    assert caught.value.problems[0].format() == f"{path}: error: no such file"


def test_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_document(str(tmp_path))
    assert caught.value.problems == [
        Problem("is a directory, not a spec file", Location(str(tmp_path)))
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("name: x\n")
    path.chmod(0)
    with pytest.raises(SpecError) as caught:
        load_document(str(path))
    assert caught.value.problems[0].message == "cannot read: permission denied"


def test_path_through_a_file(tmp_path: pathlib.Path) -> None:
    """Any other OS error is reported with its reason, lower-cased to sit inside a sentence."""
    (tmp_path / "spec.yaml").write_text("name: x\n")
    path = str(tmp_path / "spec.yaml" / "child.yaml")
    with pytest.raises(SpecError) as caught:
        load_document(path)
    assert caught.value.problems == [Problem("cannot read: not a directory", Location(path))]


def test_two_mebibyte_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (2 * MAX_BYTES // 10))
    with pytest.raises(SpecError) as caught:
        load_document(str(path))
    assert caught.value.problems == [
        Problem("file too large (2097150 bytes; at most 1048576)", Location(str(path)))
    ]


def test_oversized_text_in_memory() -> None:
    assert problem_of(b"#" * (MAX_BYTES + 1)).message == (
        "file too large (1048577 bytes; at most 1048576)"
    )


def test_binary_file(tmp_path: pathlib.Path) -> None:
    """An ELF executable: its header has a NUL at byte 8 (e_ident padding)."""
    path = tmp_path / "true.yaml"
    path.write_bytes(pathlib.Path("/bin/true").read_bytes()[:4096])
    with pytest.raises(SpecError) as caught:
        load_document(str(path))
    assert [p.format() for p in caught.value.problems] == [
        f"{path}:1:8: error: not a text file (NUL byte at byte 8)"
    ]


def test_invalid_utf8_is_located() -> None:
    assert located(b"name: x\ndescription: caf\xe9\n") == (
        "2:17: not a text file (invalid UTF-8 at byte 25)"
    )


def test_latin1_file_is_not_guessed() -> None:
    assert located("name: naïve\n".encode("latin-1")) == (
        "1:9: not a text file (invalid UTF-8 at byte 9)"
    )


def test_utf8_bom_and_crlf_are_fine() -> None:
    doc = load_text(b"\xef\xbb\xbfname: x\r\ndescription: |\r\n  a\r\n  b\r\n", "t.yaml")
    assert doc.data == {"name": "x", "description": "a\nb\n"}


# --- empty and wrong-shaped documents -------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n# and another\n", "---\n", "~\n"])
def test_empty_spec(text: str) -> None:
    problem = problem_of(text)
    assert problem == Problem(EMPTY_SPEC, Location("t.yaml"))
    assert problem.format() == (
        "t.yaml: error: empty spec: expected a mapping with name, probes and output"
    )


def test_list_document() -> None:
    assert located("# specs\n- name: a\n- name: b\n") == (
        "2:1: expected a mapping at the top level, got a list"
    )


def test_scalar_document() -> None:
    assert located("tcpconnect\n") == "1:1: expected a mapping at the top level, got a string"
    assert located("42\n") == "1:1: expected a mapping at the top level, got an integer"


def test_multiple_documents() -> None:
    assert located("name: a\n---\nname: b\n") == (
        "2:1: more than one YAML document; a spec is a single document"
    )


# --- YAML syntax ----------------------------------------------------------------------------------


def test_tab_indentation() -> None:
    text = "name: x\nprobes:\n\t- name: connect\n"
    assert located(text) == (
        "3:1: found a tab character where indentation is expected (indent with spaces)"
    )


def test_tab_indented_nested_key() -> None:
    assert located("output:\n  columns: [pid]\n\tcount: {by: [pid]}\n") == (
        "3:1: found a tab character where indentation is expected (indent with spaces)"
    )


def test_tab_as_a_separator() -> None:
    assert located("name:\tx\n") == (
        "1:6: found a tab character where a space is expected (YAML separates with spaces)"
    )


def test_unclosed_flow_sequence_names_where_it_started() -> None:
    assert located("output:\n  columns: [pid, task\nprobes: []\n") == (
        "3:7: expected ',' or ']', but got ':' (while parsing a flow sequence that starts at 2:12)"
    )


def test_mapping_value_where_none_is_allowed() -> None:
    assert located("name: tcp: connect\n") == "1:10: mapping values are not allowed here"


def test_unterminated_quote() -> None:
    assert located("name: 'tcp\n") == (
        "2:1: found unexpected end of stream (while scanning a quoted scalar that starts at 1:7)"
    )


# --- things YAML allows and specs do not ----------------------------------------------------------


def test_an_alias_before_its_anchor_is_located() -> None:
    assert located("name: x\nmore: *f\nfields: &f {pid: tgid}\n") == (
        "2:7: unknown alias *f (no anchor &f before it)"
    )


def test_billion_laughs_stops_at_the_node_limit() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n, prev in zip("bcdefghi", "abcdefgh"):
        lines.append(f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]")
    assert located("\n".join(lines) + "\n") == (
        "6:8: too many nodes (more than 100000, aliases expanded)"
    )


def test_duplicate_key() -> None:
    assert (
        located("name: a\nprobes: []\nname: b\n") == "3:1: duplicate key 'name' (first at line 1)"
    )


def test_duplicate_nested_key() -> None:
    text = "probes:\n  - name: c\n    fields:\n      pid: tgid\n      pid: tid\n"
    problem = problem_of(text)
    assert (problem.location.line, problem.location.col) == (5, 7)
    assert problem.message == "duplicate key 'pid' (first at line 4)"
    assert problem.location.path == "$.probes[0].fields"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1: x\n", "1:1: key 1 is read as an integer, not a string; put it in quotes: '1'"),
        ("on: x\n", "1:1: key on is read as a boolean, not a string; put it in quotes: 'on'"),
        ("~: x\n", "1:1: key ~ is read as null, not a string; put it in quotes: '~'"),
        ("? [a, b]\n: x\n", "1:3: mapping keys must be strings, got a list"),
        ("? {a: b}\n: x\n", "1:3: mapping keys must be strings, got a mapping"),
    ],
)
def test_non_string_keys(text: str, expected: str) -> None:
    assert located(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: !!python/object/apply:os.system [id]\n", "('!!python/object/apply:os.system')"),
        ("name: !!python/name:os.system ''\n", "('!!python/name:os.system')"),
        ("name: !foo x\n", "('!foo')"),
        ("name: !!str 1\n", "('!!str')"),
        ("name: !!binary aGVsbG8=\n", "('!!binary')"),
    ],
)
def test_tags_are_rejected(text: str, expected: str) -> None:
    assert located(text) == f"1:7: YAML tags are not supported {expected}"


def test_string_longer_than_ten_thousand() -> None:
    assert located("name: x\ndescription: " + "a" * 10_001 + "\n") == (
        "2:14: string too long (10001 characters; at most 10000)"
    )


def test_string_of_ten_thousand_is_fine() -> None:
    assert len(load_text("d: " + "a" * 10_000 + "\n", "t.yaml").data["d"]) == 10_000


def test_nesting_deeper_than_64() -> None:
    problem = problem_of("a: " + "[" * 70 + "]" * 70 + "\n")
    assert (problem.location.line, problem.location.col, problem.message) == (
        1,
        67,
        "nesting too deep (more than 64 levels)",
    )


def test_nesting_of_64_is_fine() -> None:
    load_text("a: " + "[" * 63 + "]" * 63 + "\n", "t.yaml")


def test_more_than_100000_nodes() -> None:
    problem = problem_of("a: [" + ",".join(["1"] * 100_001) + "]\n")
    assert problem.message == "too many nodes (more than 100000)"
    assert problem.location.line == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\x07b\n", "1:8: control character U+0007 is not allowed"),
        ("name: a\x1bb\n", "1:8: control character U+001B is not allowed"),
        ("name: a\x7fb\n", "1:8: control character U+007F is not allowed"),
        ('name: "a\\x01b"\n', "1:7: control character U+0001 is not allowed"),
        ('name: "a\\rb"\n', "1:7: control character U+000D is not allowed"),
        ('"a\\x00": b\n', "1:1: control character U+0000 is not allowed"),
        ("name: a\ufffeb\n", "1:8: character U+FFFE is not allowed"),
    ],
)
def test_control_characters(text: str, expected: str) -> None:
    assert located(text) == expected


def test_newlines_and_tabs_in_strings_are_fine() -> None:
    doc = load_text('description: "a\\tb\\nc"\nhelp: |\n  one\n  two\n', "t.yaml")
    assert doc.data == {"description": "a\tb\nc", "help": "one\ntwo\n"}


# --- what comes out -------------------------------------------------------------------------------


def test_plain_data() -> None:
    doc = load_text("a: 1\nb: 1.5\nc: yes\nd: ~\ne: 2024-01-01\nf: [x]\ng: '010'\nh: <<\n", "t")
    assert doc.data == {
        "a": 1,
        "b": 1.5,
        "c": True,
        "d": None,
        "e": "2024-01-01",
        "f": ["x"],
        "g": "010",
        "h": "<<",
    }


def test_hostile_strings_load_as_plain_strings() -> None:
    """Loading does not judge names; the schema does. They just have to arrive intact."""
    doc = load_text("a: 'x; } int evil() {'\nb: /*\nc: naïve\nd: \"con\\nnect\"\n", "t.yaml")
    assert doc.data == {"a": "x; } int evil() {", "b": "/*", "c": "naïve", "d": "con\nnect"}


def test_locate_values_and_keys() -> None:
    doc = load_text(SPEC, "t.yaml")
    assert doc.locate(["probes", 0, "attach", 0, "tracepoint"]) == Location(
        "t.yaml", 5, 21, "$.probes[0].attach[0].tracepoint"
    )
    assert doc.locate(["probes", 0, "fields", "pid"], key=True) == Location(
        "t.yaml", 7, 7, "$.probes[0].fields.pid"
    )
    assert doc.locate(["probes", 0, "fields", "pid"]) == Location(
        "t.yaml", 7, 12, "$.probes[0].fields.pid"
    )
    assert doc.locate([]) == Location("t.yaml", 1, 1, "$")


def test_locate_empty_value_points_at_its_key() -> None:
    doc = load_text(SPEC, "t.yaml")
    assert doc.locate(["probes", 0, "fields", "empty"]) == Location(
        "t.yaml", 8, 7, "$.probes[0].fields.empty"
    )


def test_locate_falls_back_to_the_nearest_ancestor() -> None:
    doc = load_text(SPEC, "t.yaml")
    assert doc.locate(["probes", 0, "filter"]) == Location("t.yaml", 3, 5, "$.probes[0].filter")
    assert doc.locate(["probes", 0, "filter"], key=True).line == 3
    assert doc.locate(["output", "columns", 0], key=True) == Location(
        "t.yaml", 10, 13, "$.output.columns[0]"
    )


def test_locate_without_marks() -> None:
    assert Document("f", {}).locate(["a"]) == Location("f", 0, 0, "$.a")


def test_load_document_of_the_shipped_spec() -> None:
    doc = load_document(str(TCPCONNECT))
    assert doc.file == str(TCPCONNECT)
    assert doc.data["name"] == "tcpconnect"
    assert doc.locate(["probes", 0, "attach", 1, "tracepoint"]).line == 22


def test_json_path() -> None:
    assert json_path([]) == "$"
    assert json_path(["probes", 0, "attach", 1, "tracepoint"]) == (
        "$.probes[0].attach[1].tracepoint"
    )
    assert json_path(["fields", "d port"]) == '$.fields["d port"]'
    assert json_path(["fields", 'a"\nb']) == '$.fields["a\\"\\nb"]'


def test_quote() -> None:
    assert quote("x; } int evil() {") == "'x; } int evil() {'"
    assert quote("con\nnect") == "'con\\nnect'"
    assert quote("naïve") == "'naïve'"
    assert quote("it's") == "'it\\'s'"
    assert quote("a\u200bb\u2028") == "'a\\u200bb\\u2028'"
    assert quote("x" * 5000) == "'" + "x" * 40 + "...'"


def test_type_name() -> None:
    values: list[object] = [{}, [], "", 1, 1.5, True, None]
    names = [type_name(v) for v in values]
    assert names == [
        "a mapping",
        "a list",
        "a string",
        "an integer",
        "a number",
        "a boolean",
        "null",
    ]
