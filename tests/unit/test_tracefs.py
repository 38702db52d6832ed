"""engine.kernel.tracefs: real format files (copied from kernel 6.18) and a fake tracefs tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.kernel import tracefs
from engine.kernel.tracefs import Field, TracefsError, parse_field, parse_format

INET_SOCK_SET_STATE = """\
name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: "family=%s protocol=%s sport=%hu dport=%hu", __print_symbolic(REC->family, \
{ 2, "AF_INET" }, { 10, "AF_INET6" }), __print_symbolic(REC->protocol, { 6, "IPPROTO_TCP" }), \
REC->sport, REC->dport
"""

SCHED_PROCESS_EXEC = """\
name: sched_process_exec
ID: 365
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
"""

# ftrace's own events: a flexible array, and a print fmt with literal newlines in it.
FTRACE_FUNCTION = """\
name: function
ID: 1
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned long parent_ip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long args[];\toffset:24;\tsize:0;\tsigned:0;

print fmt: " %ps <-- %ps
field:int not_a_field;\toffset:0;\tsize:4;\tsigned:1;", (void *)REC->ip, (void *)REC->parent_ip
"""


def test_inet_sock_set_state() -> None:
    fmt = parse_format(INET_SOCK_SET_STATE, "sock")
    assert (fmt.category, fmt.name, fmt.id) == ("sock", "inet_sock_set_state", 2287)
    assert [f.name for f in fmt.fields][:4] == [
        "common_type",
        "common_flags",
        "common_preempt_count",
        "common_pid",
    ]
    assert all(f.common for f in fmt.fields[:4]) and not fmt.fields[4].common
    assert [f.name for f in fmt.event_fields][:3] == ["skaddr", "oldstate", "newstate"]
    assert fmt.field("common_pid") == Field("common_pid", "int", 4, 4, True, decl="int common_pid")
    assert fmt.field("skaddr") == Field(
        "skaddr", "const void *", 8, 8, False, decl="const void * skaddr"
    )
    saddr = fmt.field("saddr")
    assert saddr is not None
    assert (saddr.type, saddr.offset, saddr.size, saddr.array_len) == ("__u8", 32, 4, 4)
    assert not saddr.data_loc and not saddr.signed
    v6 = fmt.field("daddr_v6")
    assert v6 is not None and (v6.offset, v6.size, v6.array_len) == (56, 16, 16)
    assert fmt.field("oldstate").signed  # type: ignore[union-attr]
    assert fmt.field("nope") is None
    assert fmt.print_fmt.startswith('"family=%s protocol=%s')


def test_sched_process_exec_data_loc() -> None:
    fmt = parse_format(SCHED_PROCESS_EXEC, "sched", "sched_process_exec")
    filename = fmt.field("filename")
    assert filename == Field(
        "filename",
        "char",
        8,
        4,
        False,
        array_len=0,
        data_loc=True,
        decl="__data_loc char[] filename",
    )
    pid = fmt.field("pid")
    assert pid is not None and (pid.type, pid.offset, pid.signed, pid.array_len) == (
        "pid_t",
        12,
        True,
        None,
    )


def test_flexible_array_and_multiline_print_fmt() -> None:
    fmt = parse_format(FTRACE_FUNCTION)
    args = fmt.field("args")
    assert args is not None and (args.type, args.size, args.array_len) == ("unsigned long", 0, 0)
    assert fmt.field("not_a_field") is None  # inside print fmt, not a field
    assert "not_a_field" in fmt.print_fmt and fmt.print_fmt.endswith("REC->parent_ip")


@pytest.mark.parametrize(
    ("line", "name", "ctype", "array_len", "flags"),
    [
        ("field:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;", "prev_comm", "char", 16, ""),
        ("field:char comm[TASK_COMM_LEN];\toffset:8;\tsize:16;", "comm", "char", 0, ""),
        ("field:u32 grid[2][4];\toffset:8;\tsize:32;\tsigned:0;", "grid", "u32", 8, ""),
        ("field:u8 x[0x10];\toffset:8;\tsize:16;\tsigned:0;", "x", "u8", 16, ""),
        ("field:__rel_loc u8[] buf;\toffset:8;\tsize:4;\tsigned:0;", "buf", "u8", 0, "rel"),
        ("field:__data_loc u32[] ids;\toffset:8;\tsize:4;\tsigned:0;", "ids", "u32", 0, "data"),
        ("field:struct foo * foo;\toffset:8;\tsize:8;\tsigned:0;", "foo", "struct foo *", None, ""),
        (
            "field:void (*fn)(void);\toffset:8;\tsize:8;\tsigned:0;",
            "fn",
            "void (*fn)(void)",
            None,
            "",
        ),
    ],
)
def test_field_shapes(line: str, name: str, ctype: str, array_len: int | None, flags: str) -> None:
    f = parse_field(line)
    assert (f.name, f.type, f.array_len) == (name, ctype, array_len)
    assert (f.data_loc, f.rel_loc) == (flags == "data", flags == "rel")
    assert f.offset == 8


def test_old_format_without_signed() -> None:
    f = parse_field("field:int x;\toffset:4;\tsize:4;")
    assert (f.name, f.offset, f.size, f.signed) == ("x", 4, 4, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nID: 1\nformat:\n", "no fields"),
        ("field:int x;\tsize:4;\n", "has no offset or size"),
        ("field:int x;\toffset:four;\tsize:4;\n", "bad number 'four'"),
        ("field:;\toffset:0;\tsize:4;\n", "cannot parse field"),
    ],
)
def test_bad_formats(text: str, message: str) -> None:
    with pytest.raises(TracefsError) as err:
        parse_format(text, where="events/x/y/format")
    assert str(err.value).startswith("events/x/y/format: ") and message in str(err.value)
    assert isinstance(err.value, EngineError)


def _fake_tracefs(tmp_path: Path) -> str:
    root = tmp_path / "tracing"
    for cat, name, text, event_id in [
        ("sock", "inet_sock_set_state", INET_SOCK_SET_STATE, 2287),
        ("sched", "sched_process_exec", SCHED_PROCESS_EXEC, 365),
    ]:
        d = root / "events" / cat / name
        d.mkdir(parents=True)
        (d / "format").write_text(text)
        (d / "id").write_text(f"{event_id}\n")
        (d / "enable").write_text("0\n")
        (d.parent / "enable").write_text("0\n")
    (root / "events" / "enable").write_text("0\n")
    (root / "events" / "header_page").write_text("")
    return str(root)


def test_fake_tree(tmp_path: Path) -> None:
    root = _fake_tracefs(tmp_path)
    assert tracefs.events_dir(root) == os.path.join(root, "events")
    assert tracefs.categories(root) == ["sched", "sock"]
    assert tracefs.events("sock", root) == ["inet_sock_set_state"]
    assert tracefs.events("nope", root) == [] and tracefs.events("..", root) == []
    assert tracefs.all_events(root) == ["sched/sched_process_exec", "sock/inet_sock_set_state"]
    assert tracefs.exists("sock", "inet_sock_set_state", root)
    assert not tracefs.exists("sock", "inet_sock_set", root)
    assert not tracefs.exists("..", "sock", root) and not tracefs.exists("sock/..", "x", root)
    assert tracefs.event_id("sched", "sched_process_exec", root) == 365
    fmt = tracefs.read_format("sock", "inet_sock_set_state", root)
    assert fmt.category == "sock" and fmt.field("dport") is not None
    with pytest.raises(TracefsError, match=r"^no tracepoint sock/nope in .*/events$"):
        tracefs.read_format("sock", "nope", root)
    with pytest.raises(TracefsError, match=r"^no tracepoint sock/nope"):
        tracefs.event_id("sock", "nope", root)


def test_not_mounted(tmp_path: Path) -> None:
    empty = tmp_path / "tracing"
    empty.mkdir()  # a mount point with nothing mounted on it
    with pytest.raises(TracefsError, match=r"^tracefs is not mounted \(no .*/tracing/events\)"):
        tracefs.exists("sock", "inet_sock_set_state", str(empty))
    with pytest.raises(TracefsError, match="not mounted"):
        tracefs.categories(str(tmp_path / "missing"))


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_tracefs(tmp_path)

    def denied(path: str) -> list[str]:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "listdir", denied)  # root ignores file modes, so fake it
    with pytest.raises(TracefsError, match=r"^cannot read tracefs at .*: permission denied"):
        tracefs.exists("sock", "inet_sock_set_state", root)


def test_unreadable_format_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_tracefs(tmp_path)
    real_open = open

    def guarded(path: str, *args: object, **kwargs: object) -> object:
        if str(path).endswith("format"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", guarded)
    with pytest.raises(TracefsError, match=r"^cannot read .*/format: permission denied"):
        tracefs.read_format("sock", "inet_sock_set_state", root)
