"""The schema check: exact, located, one-line messages for every kind of schema violation."""

from __future__ import annotations

import pathlib

import pytest

from engine.attach import KINDS
from engine.errors import Problem
from engine.spec.loader import load_document, load_text
from engine.spec.schema import check_schema, load_schema

ROOT = pathlib.Path(__file__).resolve().parents[2]

# A small valid spec; each test changes one thing. Line numbers below refer to this text.
BASE = """\
name: tcpconnect
options:
  pid: {flag: -p/--pid, type: u32, help: trace this PID only}
probes:
  - name: connect
    attach:
      - kretprobe: [tcp_v4_connect, tcp_v6_connect]
        where: ret == 0
      - tracepoint: sock/inet_sock_set_state
        let:
          sk: args.skaddr as sock
    fields:
      pid: tgid
      task: {value: comm, header: COMM, width: 12}
      dport: {value: sk.__sk_common.skc_dport, decode: be16}
    filter: pid == $pid
output:
  columns: [pid, {field: task, if: pid}, dport]
  count:
    by: [dport]
"""


def problems_of(text: str) -> list[Problem]:
    problems = check_schema(load_text(text, "t.yaml"))
    for problem in problems:
        for line in (problem.message, problem.format()):
            assert "\n" not in line and "\r" not in line, line
            assert "Traceback" not in line
    return problems


def check(old: str, new: str) -> list[str]:
    """`line:col: message` of every problem after replacing `old` (once) in BASE."""
    assert old in BASE, old
    problems = problems_of(BASE.replace(old, new, 1))
    return [f"{p.location.line}:{p.location.col}: {p.message}" for p in problems]


NAME_RULE = "use letters, digits and _ (at most 64), not starting with a digit"


def test_base_and_shipped_specs_are_valid() -> None:
    assert problems_of(BASE) == []
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        assert check_schema(load_document(str(spec))) == [], spec


def test_schema_is_package_data_and_cached() -> None:
    schema = load_schema()
    assert schema["title"] == "engine probe spec"
    assert load_schema() is schema


# --- unknown and missing keys ---------------------------------------------------------------------


def test_unknown_key_in_probe_is_located_at_the_key() -> None:
    assert check("    filter:", "    fliter:") == [
        "16:5: unknown key 'fliter' in probe; expected one of attach, delete, fields, filter,"
        " let, name, store; did you mean 'filter'?"
    ]


def test_unknown_key_at_top_level_without_suggestion() -> None:
    assert check("output:", "colour: red\noutput:") == [
        "17:1: unknown key 'colour' at the top level;"
        " expected one of description, metrics, name, options, output, probes, state"
        " or x-NAME (anchors to share)"
    ]


def test_misspelt_required_key_says_it_once() -> None:
    """`feilds` is unknown and `fields` is missing: one mistake, one line."""
    assert check("    fields:", "    feilds:") == [
        "12:5: unknown key 'feilds' in probe; expected one of attach, delete, fields, filter,"
        " let, name, store; did you mean 'fields'?"
    ]


def test_missing_required_key_at_the_parent() -> None:
    assert check("name: tcpconnect\n", "") == ["1:1: missing required key 'name'"]
    attach = BASE[BASE.index("    attach:") : BASE.index("    fields:")]
    assert check(attach, "") == ["5:5: missing required key 'attach'"]
    # A probe without fields is fine (it only stores state); an output without columns
    # must aggregate.
    fields = BASE[BASE.index("    fields:") : BASE.index("    filter:")]
    assert check(fields, "") == []
    assert check("  columns: [pid, {field: task, if: pid}, dport]\n", "") == [
        "18:3: an output names at least one of columns, aggregations; got none"
    ]


def test_missing_probes_and_output() -> None:
    assert problems_of("name: x\n")[0].message == "missing required key 'output'"
    assert [p.message for p in problems_of("name: x\n")] == [
        "missing required key 'output'",
        "missing required key 'probes'",
    ]


def test_unknown_keys_in_each_kind_of_mapping() -> None:
    assert check("{value: comm,", "{valu: comm,") == [
        "14:14: unknown key 'valu' in field; expected one of decode, header, size, value, width;"
        " did you mean 'value'?"
    ]
    assert check("{field: task, if: pid}", "{field: task, iff: pid}") == [
        "18:32: unknown key 'iff' in column; expected one of field, header, if, unless, width;"
        " did you mean 'if'?"
    ]
    assert check("type: u32,", "typ: u32,") == [
        "3:25: unknown key 'typ' in option; expected one of default, flag, help, metavar, output,"
        " type; did you mean 'type'?"
    ]
    assert check("    by: [dport]", "    by: [dport]\n    hedaer: N") == [
        "21:5: unknown key 'hedaer' in count; expected one of by, header; did you mean 'header'?"
    ]


ONE_OF = load_schema()["$defs"]["attach"]["oneOf"]
KIND_LIST = ", ".join(o["required"][0] for o in ONE_OF)  # the schema's oneOf order
ATTACH_KEYS = ", ".join(sorted([*KINDS, "let", "where", "args", "ret", "pid"]))


# --- attach alternatives --------------------------------------------------------------------------


def test_attach_with_two_kinds() -> None:
    assert check("        where: ret == 0\n", "        tracepoint: sock/x\n") == [
        f"7:9: an attach alternative names exactly one of {KIND_LIST}; got kretprobe and tracepoint"
    ]


def test_attach_with_no_kind() -> None:
    assert check("      - kretprobe: [tcp_v4_connect, tcp_v6_connect]\n", "      -\n") == [
        f"8:9: an attach alternative names exactly one of {KIND_LIST}; got none"
    ]


def test_attach_kind_misspelt_says_it_once() -> None:
    assert check("- kretprobe:", "- kretprobes:") == [
        "7:9: unknown key 'kretprobes' in attach alternative; expected one of "
        f"{ATTACH_KEYS}; did you mean 'kretprobe'?"
    ]


def test_empty_attach_mapping_says_it_once() -> None:
    assert check("      - kretprobe: [tcp_v4_connect, tcp_v6_connect]\n        where: ret == 0\n",
                 "      - {}\n") == [
        f"7:9: an attach alternative names exactly one of {KIND_LIST}; got none"
    ]  # fmt: skip


def test_function_list_of_the_wrong_type() -> None:
    assert check("kretprobe: [tcp_v4_connect, tcp_v6_connect]", "kretprobe:") == [
        "7:9: expected a string or a list, got null"
    ]
    assert check("[tcp_v4_connect, tcp_v6_connect]", "{tcp: v4}") == [
        "7:20: expected a string or a list, got a mapping"
    ]


def test_function_name_in_a_list() -> None:
    """A kernel function target is a name or a pattern of names (vfs_*): the rule says both."""
    assert check("tcp_v6_connect]", "'tcp v6']") == [
        "7:37: 'tcp v6' is not a valid function: use a function name, or a pattern of them "
        "with *, ? and [a-z] (e.g. vfs_*)"
    ]
    assert check("tcp_v6_connect]", "'tcp_v[46_connect']") == [
        "7:37: 'tcp_v[46_connect' is not a valid function: use a function name, or a pattern of "
        "them with *, ? and [a-z] (e.g. vfs_*)"
    ]
    assert check("tcp_v6_connect]", "'tcp_v?_conn*', 'vfs_[a-c]*', 'x[!a-z]']") == []


def test_tracepoint_without_category() -> None:
    assert check("sock/inet_sock_set_state", "inet_sock_set_state") == [
        "9:21: 'inet_sock_set_state' is not a valid tracepoint: use category/event, each letters,"
        " digits and _, e.g. sock/inet_sock_set_state"
    ]


UPROBE_SHAPE = "expected BINARY:SYMBOL (e.g. libc:getaddrinfo, /bin/bash:readline)"


def test_user_space_targets_too_short_say_their_shape() -> None:
    """A target too short to be BINARY:SYMBOL says what one looks like, not only its length."""
    kernel = "kretprobe: [tcp_v4_connect, tcp_v6_connect]"
    assert check(kernel, "uprobe: c") == [
        f"7:17: uprobe target too short (at least 3): {UPROBE_SHAPE}"
    ]
    assert check(kernel, "uretprobe: [libc:x, c]") == [
        f"7:29: uprobe target too short (at least 3): {UPROBE_SHAPE}"
    ]
    assert check(kernel, "usdt: a:b") == [
        "7:15: usdt too short (at least 5): expected BINARY:PROVIDER:NAME (e.g. ./app:myapp:tick, "
        "/usr/bin/python3:python:function__entry)"
    ]
    assert check(kernel, "uprobe: []") == ["7:17: expected at least 1 entry, got none"]


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("'x; } int evil() {'", "'x; } int evil() {'"),
        ("/*", "'/*'"),
        ('"con\\nnect"', "'con\\nnect'"),
        ("naïve", "'naïve'"),
        ("1st", "'1st'"),
        ("a" * 65, "'" + "a" * 40 + "...'"),
        ("x" * 5000, "'" + "x" * 40 + "...'"),
        ('"tab\\there"', "'tab\\there'"),
        ('"zero\\u200bwidth"', "'zero\\u200bwidth'"),
    ],
)
def test_hostile_probe_names(written: str, shown: str) -> None:
    assert check("  - name: connect", f"  - name: {written}") == [
        f"5:11: {shown} is not a valid name: {NAME_RULE}"
    ]


def test_hostile_field_name_is_located_at_the_key() -> None:
    assert check("      pid: tgid", "      'pid; evil': tgid") == [
        f"13:7: 'pid; evil' is not a valid name: {NAME_RULE}"
    ]


def test_hostile_option_and_binding_names() -> None:
    assert check("  pid: {flag", "  p-id: {flag") == [
        f"3:3: 'p-id' is not a valid name: {NAME_RULE}"
    ]
    assert check("          sk:", "          sk k:") == [
        f"11:11: 'sk k' is not a valid name: {NAME_RULE}"
    ]


# --- scalar values --------------------------------------------------------------------------------


def test_unknown_decoder() -> None:
    assert check("decode: be16", "decode: ip_versoin") == [
        "15:56: unknown decoder 'ip_versoin'; expected one of be16, be32, be64, inet, ip_version,"
        " enum, errno, str, bool, hex, elapsed, ksym, syscall, ms, secs, devt, cgroup, container,"
        " container_id, image, pod, pod_namespace, pod_name, pod_container, kstack, ustack; did"
        " you mean 'ip_version'?"
    ]


def test_decoder_of_the_wrong_type() -> None:
    assert check("decode: be16", "decode: 16") == [
        "15:56: expected a string or a mapping, got the integer 16"
    ]
    assert check("decode: be16", "decode: {enumm: TCP_CLOSE}") == [
        "15:57: unknown key 'enumm' in decoder; expected one of enum; did you mean 'enum'?"
    ]


def test_unknown_option_type() -> None:
    assert check("type: u32", "type: u23") == [
        "3:31: unknown type 'u23'; expected one of u8, u16, u32, u64, s8, s16, s32, s64, bool,"
        " str, inet, pinned_map, list[u8], list[u16], list[u32], list[u64], list[s8], list[s16],"
        " list[s32], list[s64]; did you mean 'u32'?"
    ]


def test_option_type_not_a_string() -> None:
    assert check("type: u32", "type: 32") == [
        "3:31: expected one of u8, u16, u32, u64, s8, s16, s32, s64, bool, str, inet, pinned_map,"
        " list[u8], list[u16], list[u32], list[u64], list[s8], list[s16], list[s32], list[s64];"
        " got an integer"
    ]


def test_flag_and_metavar_patterns() -> None:
    assert check("-p/--pid", "-pid") == [
        "3:15: '-pid' is not a valid flag: use -x, --long-name or -x/--long-name"
        " (lowercase letters, digits and -)"
    ]
    assert check("type: u32,", "type: u32, metavar: pid,") == [
        "3:45: 'pid' is not a valid metavar: use capitals, digits and _,[]. (at most 41),"
        " starting with a capital"
    ]


def test_type_errors() -> None:
    assert check("width: 12}", "width: '12'}") == [
        "14:48: expected an integer, got the string '12'"
    ]
    assert check("width: 12}", "width: yes}") == ["14:48: expected an integer, got a boolean"]
    assert check("width: 12}", "width: 1.5}") == ["14:48: expected an integer, got the number 1.5"]
    assert check("help: trace this PID only", "help: no") == [
        "3:42: expected a string, got a boolean; put it in quotes to make it a string"
    ]
    assert check("name: tcpconnect", "name: 42") == [
        "1:7: expected a string, got the integer 42; put it in quotes to make it a string"
    ]


def test_null_value_points_at_its_key() -> None:
    text = BASE.replace(
        BASE[BASE.index("    fields:") : BASE.index("    filter:")], "    fields:\n"
    )
    assert [(p.location.line, p.location.col, p.message) for p in problems_of(text)] == [
        (12, 5, "expected a mapping, got null")
    ]


def test_ranges() -> None:
    assert check("width: 12}", "width: 0}") == ["14:48: width must be at least 1, got 0"]
    assert check("width: 12}", "width: 65}") == ["14:48: width must be at most 64, got 65"]


def test_header_pattern() -> None:
    assert check("header: COMM", "header: 'TASK NAME'") == [
        "14:35: 'TASK NAME' is not a valid header: use 1 to 32 characters,"
        " no spaces or control characters"
    ]


def test_expression_too_long() -> None:
    assert check("filter: pid == $pid", "filter: " + "x" * 5000) == [
        "16:13: expression too long (5000 characters; at most 1000)"
    ]


def test_expression_empty() -> None:
    assert check("filter: pid == $pid", "filter: ''") == ["16:13: expression is empty"]


def test_description_too_long() -> None:
    assert check("name: tcpconnect\n", "name: tcpconnect\ndescription: " + "d" * 600 + "\n") == [
        "2:14: description too long (600 characters; at most 500)"
    ]


# --- lists and mappings ---------------------------------------------------------------------------


def test_empty_and_overfull_lists() -> None:
    assert check("columns: [pid, {field: task, if: pid}, dport]", "columns: []") == [
        "18:12: expected at least 1 entry, got none"
    ]
    many = ", ".join(["pid"] * 33)
    assert check("columns: [pid, {field: task, if: pid}, dport]", f"columns: [{many}]") == [
        "18:12: too many entries (33; at most 32)"
    ]


def test_empty_fields_mapping() -> None:
    text = BASE.replace(
        BASE[BASE.index("    fields:") : BASE.index("    filter:")], "    fields: {}\n"
    )
    assert [p.message for p in problems_of(text)] == ["expected at least 1 key, got none"]


def test_column_of_the_wrong_shape() -> None:
    assert check("columns: [pid,", "columns: [[pid],") == [
        "18:13: expected a string or a mapping, got a list"
    ]


def test_wrong_type_of_section() -> None:
    assert check("output:\n", "output: []\nx:\n") == [
        "17:9: expected a mapping, got a list",
        "18:1: unknown key 'x' at the top level;"
        " expected one of description, metrics, name, options, output, probes, state"
        " or x-NAME (anchors to share)",
    ]


def test_several_problems_are_all_reported_in_order() -> None:
    text = BASE.replace("    filter:", "    fliter:").replace("decode: be16", "decode: be61")
    text = text.replace("name: tcpconnect", "name: 'tcp connect'")
    assert [(p.location.line, p.location.col) for p in problems_of(text)] == [
        (1, 7),
        (15, 56),
        (16, 5),
    ]


def test_problem_paths() -> None:
    [problem] = problems_of(BASE.replace("decode: be16", "decode: be61"))
    assert problem.location.path == "$.probes[0].fields.dport.decode"
    assert problem.format().startswith("t.yaml:15:56: error: unknown decoder 'be61';")
    assert problem.format().endswith(" [$.probes[0].fields.dport.decode]")
