"""Text from the kernel (a task's comm, a file name) is the traced program's to choose: tables
and CSV escape what is not printable, so no escape sequence reaches the terminal and no
newline forges a row; JSON keeps the text exact. Checked on the decoder, through RowMaker and
the Printer, and on a histogram's key line read through sinks.Reader."""

from __future__ import annotations

import ctypes
import io
import json
import pathlib

import pytest

from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.plan.layout import layout
from engine.runtime import decoders, output, rows, sinks
from engine.spec.loader import load_text

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = str(ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz")

HOSTILE = b"a\x1b[31m\x07b\nc\\d"  # ESC, BEL, newline, a backslash: 11 bytes, fits a comm


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"curl\0junk", "curl"),
        (b"", ""),
        (HOSTILE, "a\\x1b[31m\\x07b\\x0ac\\\\d"),
        (b"tab\there", "tab\\x09here"),
        (b"del\x7f", "del\\x7f"),
        (b"\xffab", "\\xffab"),  # not UTF-8: the byte itself, not U+FFFD
        ("caf\u00e9 \u4e2d".encode(), "caf\u00e9 \u4e2d"),  # printable UTF-8 stays
        ("x\u009by".encode(), "x\\xc2\\x9by"),  # C1 CSI: a terminal escape in UTF-8
        ("r\u202eevil".encode(), "r\\xe2\\x80\\xaeevil"),  # right-to-left override
        (b"\\x41", "\\\\x41"),  # a real backslash-x name cannot pass for an escaped byte
    ],
)
def test_escaped_text(raw: bytes, shown: str) -> None:
    assert decoders.escaped_text(raw) == shown
    assert shown.isprintable()


def unescape(shown: str) -> bytes:
    """The inverse the docs promise: \\\\ is a backslash, \\xNN the byte NN."""
    out, i = bytearray(), 0
    while i < len(shown):
        if shown[i] == "\\":
            if shown[i + 1] == "\\":
                out.append(0x5C)
                i += 2
            else:
                assert shown[i + 1] == "x"
                out.append(int(shown[i + 2 : i + 4], 16))
                i += 4
        else:
            out += shown[i].encode()
            i += 1
    return bytes(out)


def test_escaping_is_reversible_for_every_byte() -> None:
    for b in range(1, 256):
        raw = bytes([b, 0x41, b])
        assert unescape(decoders.escaped_text(raw)) == raw, raw


def test_exact_text_keeps_control_characters() -> None:
    assert decoders.text(HOSTILE) == HOSTILE.decode()


def comm_maker(exact: bool) -> tuple[rows.RowMaker, type[ctypes.Structure]]:
    f = M.Field("comm", "char", 16, "str", "COMM", 12)
    lay = layout("event_t", [(M.slot_name("comm"), "char", 16)])
    plan = M.Plan(
        name="t", description="", options=(), probes=(), fields=(f,), event=lay,
        columns=(),
    )  # fmt: skip
    S = type("S", (ctypes.Structure,), {"_fields_": [("f_comm", ctypes.c_char * 16)]})
    maker = rows.RowMaker(plan, lay, [M.Column("comm", "COMM", 12)], decoders.State(exact))
    return maker, S


def printed(fmt: str) -> str:
    maker, S = comm_maker(exact=fmt == "json")
    out = io.StringIO()
    p = output.Printer(fmt, [("comm", "COMM", 12, False), ("n", "N", 3, False)], out)
    p.header()
    p.row([*maker.values(bytes(S(HOSTILE))), 7])
    p.flush()
    return out.getvalue()


def test_table_row_is_one_escaped_line() -> None:
    assert printed("table") == "COMM         N\na\\x1b[31m\\x07b\\x0ac\\\\d 7\n"


def test_csv_row_is_one_escaped_line() -> None:
    assert printed("csv") == "COMM,N\na\\x1b[31m\\x07b\\x0ac\\\\d,7\n"


def test_json_row_is_exact() -> None:
    (line,) = printed("json").splitlines()
    assert json.loads(line) == {"comm": HOSTILE.decode(), "n": 7}
    assert "\x1b" not in line and "\x07" not in line  # JSON's own \u escapes


SPEC = """\
name: t
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
    fields:
      comm: comm
      delta: args.dport
output:
  aggregations:
    - {hist: delta, by: [comm], unit: usecs}
"""


def hist_text(fmt: str) -> str:
    """One histogram key (comm = HOSTILE) with 2 events in bucket 3, printed as `fmt`."""
    from tests.unit.test_sinks import Table, leaf

    program = bind(planner.plan(load_text(SPEC, "t.yaml"), FIXTURE))
    (agg,) = program.aggregations
    fmt_, index = rows.struct_format(agg.key)
    import struct

    values = [0] * len(struct.unpack(fmt_, bytes(agg.key.size)))
    values[index[M.slot_name("comm")]] = HOSTILE
    key = struct.pack(fmt_, *values)
    bpf = {
        agg.map: Table({key: [leaf(agg, buckets=[0, 0, 0, 2], sum=9)]}),
        f"{agg.map}_other": Table({b"other": []}),
    }
    out = io.StringIO()
    sinks.AggregatePrinter(program, fmt, out, decoders.State(fmt == "json")).print(bpf)
    return out.getvalue()


def test_histogram_key_line_is_escaped_in_tables() -> None:
    text = hist_text("table")
    assert text.startswith("\ncomm = a\\x1b[31m\\x07b\\x0ac\\\\d\n     usecs "), text
    assert "\x1b" not in text and "\x07" not in text


def test_histogram_key_is_exact_in_json() -> None:
    assert json.loads(hist_text("json"))["comm"] == HOSTILE.decode()
