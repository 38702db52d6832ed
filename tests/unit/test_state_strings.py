"""Strings carried between probes: a `str` / `str[N]` state member holds a string copied at
the store with the helper of its address space, and reads back as a string (a field, a
comparison); a value holding strings is built and read in a per-CPU scratch array, not on
the 512-byte BPF stack. A pointer kept in state reads back as a user string only when what
is stored there is a user pointer (tests/specs/bad/state_user_pointer.yaml, live, has the
syscall side; tests/kernel/test_spec_opensnoop.py runs both against bpftrace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from btf_fixture import BTF

from engine.codegen.render import render_c
from engine.errors import SpecError
from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.plan.passes import limits
from engine.plan.state import (
    STR_DEFAULT,
    STR_MAX,
    parse_type,
    string_field_problem,
    user_string_problem,
)
from engine.plan.values import Provenance
from engine.spec.loader import load_text

SPEC = """\
name: names
state:
  open: {key: u32, value: {ts: u64, name: STRTYPE, who: comm}}
probes:
  - name: enter
    attach:
      - kprobe: do_filp_open
    store:
      open: {key: tid, value: {ts: ktime_ns, name: STORED, who: comm}}
  - name: done
    attach:
      - kretprobe: do_filp_open
    let:
      st: take(open, tid)
    fields:
      who: st.who
      name: st.name
      usecs: (ktime_ns - st.ts) / 1000
    filter: FILTER
output:
  columns: [who, name, usecs]
"""


def spec(strtype: str = "str", stored: str = "pathname.name", filt: str = "usecs >= 0") -> str:
    return SPEC.replace("STRTYPE", strtype).replace("STORED", stored).replace("FILTER", filt)


def plan(text: str) -> M.Plan:
    return planner.plan(load_text(text, "t.yaml"), BTF)


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        plan(text)
    return [f"{p.location.line}:{p.location.col}: {p.message}" for p in info.value.problems]


def test_member_types_str_and_str_n() -> None:
    assert parse_type("str") == parse_type(f"str[{STR_DEFAULT}]")
    m = parse_type("str[8]")
    assert m is not None and (m.ctype, m.count, m.string) == ("char", 8, True)
    assert parse_type(f"str[{STR_MAX}]") is not None
    for bad in (f"str[{STR_MAX + 1}]", "str[0]", "str[]", "str[x]", "string"):
        assert parse_type(bad) is None, bad
    comm = parse_type("comm")
    assert comm is not None and not comm.string


def test_a_kernel_string_is_copied_at_the_store_into_the_scratch_array() -> None:
    p = plan(spec('"str[200]"'))
    (st,) = p.states
    assert st.strings == ("f_name",) and st.scratch
    c = render_c(bind(p))
    # the value: 8 + 200 + 16 bytes, built in its per-CPU scratch entry 0
    assert "BPF_PERCPU_ARRAY(state_open_scratch, struct state_open_val_t, 1);" in c
    assert "char f_name[200];" in c
    put = re.search(r"struct state_open_val_t \*(v\d+) = state_open_scratch.lookup", c)
    assert put is not None
    v = put.group(1)
    assert f"bpf_probe_read_kernel_str(&{v}->f_name, sizeof({v}->f_name), (void *)" in c
    assert f"bpf_get_current_comm(&{v}->f_who, sizeof({v}->f_who));" in c
    assert "state_open.insert(&" in c and f", {v}) == 0" in c
    # read back: copied from the map into scratch, then the event's slots from there
    assert re.search(r"__builtin_memcpy\(&ev\.f_name, &v\d+->f_name, 200\);", c)
    assert re.search(r"__builtin_memcpy\(&ev\.f_who, &v\d+->f_who, 16\);", c)
    (name,) = [f for f in p.fields if f.name == "name"]
    assert (name.ctype, name.count, name.decoder) == ("char", 200, "str")


def test_the_scratch_value_costs_the_stack_a_pointer_not_its_size() -> None:
    p = plan(spec('"str[256]"'))
    program = bind(p)
    for probe in program.probes:
        use = limits.stack_use(probe, program)
        assert use.states.get("open", 0) <= 2 * limits.SLOT + 8, use  # key + pointer
    # the event holds the 256-byte string once; the value (280 bytes) is not on the stack
    assert max(limits.stack_use(pr, program).total for pr in program.probes) < 512


def test_two_reads_of_one_map_use_two_scratch_entries() -> None:
    text = (
        spec()
        .replace(
            "      st: take(open, tid)\n",
            "      st: get(open, tid)\n      again: take(open, pid)\n",
        )
        .replace("who: st.who\n", "who: again.who\n")
    )
    c = render_c(bind(plan(text)))
    assert "BPF_PERCPU_ARRAY(state_open_scratch, struct state_open_val_t, 2);" in c
    entries = re.findall(r"int v\d+_i = (\d+);", c)
    assert sorted(entries) == ["0", "0", "1"]  # the store (own function), then two reads


def test_a_string_member_stores_on_into_another_map() -> None:
    text = (
        spec()
        .replace(
            "  open: {key: u32",
            "  names: {key: u32, value: str[32]}\n  open: {key: u32",
        )
        .replace(
            "    filter: usecs >= 0\n",
            "    filter: usecs >= 0\n    store:\n      names: {key: pid, value: st.name}\n",
        )
    )
    text = text.replace("value: str[32]", 'value: "str[32]"')
    c = render_c(bind(plan(text)))
    assert "BPF_PERCPU_ARRAY(state_names_scratch, struct state_names_val_t, 1);" in c
    # from the scratch copy of `open`'s value: map memory, the kernel helper
    assert re.search(
        r"bpf_probe_read_kernel_str\(&v\d+->f_value, sizeof\(v\d+->f_value\), "
        r"\(void \*\)v\d+->f_name\);",
        c,
    )


def test_a_string_read_back_compares_in_the_filter() -> None:
    c = render_c(bind(plan(spec(filt='name == "/etc/passwd"'))))
    assert "ev.f_name[0] == 47" in c


def test_maps_without_strings_keep_their_values_on_the_stack() -> None:
    text = spec().replace("name: STRTYPE, ", "").replace("name: pathname.name, ", "")
    text = SPEC.replace("name: STRTYPE, ", "").replace("name: STORED, ", "")
    text = text.replace("      name: st.name\n", "").replace("[who, name, usecs]", "[who, usecs]")
    c = render_c(bind(plan(text.replace("FILTER", "usecs >= 0"))))
    assert "scratch" not in c
    assert re.search(r"struct state_open_val_t v\d+;", c)


def test_string_member_mistakes_are_located() -> None:
    assert problems(spec('"str[300]"')) == [
        "3:44: a state value is an integer type (u8, u16, u32, u64, s8, s16, s32, s64), comm, "
        "or str / str[N] (N 1..256); got 'str[300]'"
    ]
    (said,) = problems(spec(stored="ktime_ns"))
    assert said.startswith(
        "9:52: state 'open' member 'name' is a string (str[64]); store a string: a `char *` "
    ) and said.endswith("got a 'u64'")
    (said,) = problems(spec(stored="pathname"))
    assert said.endswith("got a 'struct filename *'")
    text = spec().replace("take(open, tid)", "get(open, tid, 0)")
    (said,) = problems(text)
    assert "a default fits a map with one integer value" in said


def test_a_kernel_pointer_kept_in_state_is_no_user_string() -> None:
    text = (
        spec()
        .replace("  open: {key: u32", "  ptrs: {key: u32, value: u64}\n  open: {key: u32")
        .replace(
            "      open: {key: tid,",
            "      ptrs: {key: tid, value: pathname.name}\n      open: {key: tid,",
        )
        .replace(
            "      st: take(open, tid)\n", "      st: take(open, tid)\n      p: take(ptrs, tid)\n"
        )
        .replace("      who: st.who\n", "      who: st.who\n      later: {value: p, decode: str}\n")
    )
    (said,) = problems(text)
    assert said == (
        "20:22: state 'ptrs' holds a kernel pointer (stored from a 'const char *'); a pointer "
        "kept in state is read as a user-space string (bpf_probe_read_user_str), which reads "
        "nothing at a kernel address: store the string itself in a `str` member. A kernel "
        "function's argument is a kernel pointer here, `__user` ones too (without BTF type "
        "tags they look alike): a user string comes from a syscall tracepoint "
        "(syscalls/sys_enter_*)"
    )


def test_user_string_problem_follows_stores_between_maps() -> None:
    p = Provenance()
    p.flows["b.value"] = {"a.p"}
    assert "holds no user-space pointer" in user_string_problem(p, ("b.value",))
    p.user["a.p"] = "const char *"
    assert user_string_problem(p, ("b.value",)) == ""
    p.kernel["a.p"] = "char *"  # another store puts a kernel pointer there too
    assert "holds a kernel pointer" in user_string_problem(p, ("b.value",))


ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_example_is_what_opensnoop_says() -> None:
    """docs/spec.md shows part of specs/opensnoop.yaml in a plain block (the spec validates
    only on the live kernel, so it is no ```yaml example): each line is the spec's, in order."""
    doc = (ROOT / "docs" / "spec.md").read_text()
    start = doc.index("`specs/opensnoop.yaml` keeps the pointer")
    block = doc[doc.index("```\n", start) + 4 : doc.index("\n```", start)]
    spec = (ROOT / "specs" / "opensnoop.yaml").read_text().splitlines()
    at = 0
    for line in block.splitlines():
        assert line in spec[at:], line
        at = spec.index(line, at) + 1


def test_a_string_field_of_a_state_member_takes_its_size_or_says_why_not() -> None:
    """The field copies the member whole: a larger `size:` would be silently cut at the
    member's N, a smaller one not honoured; both are refused where the field is."""
    text = spec().replace("      name: st.name\n", "      name: {value: st.name, size: SIZE}\n")
    assert problems(text.replace("SIZE", "256")) == [
        "17:24: 'name' holds at most 64 bytes (state 'open' member 'name: str[64]'); declare "
        "it str[256] to keep longer strings"
    ]
    assert problems(text.replace("SIZE", "32")) == [
        "17:24: 'name' holds 64 bytes (state 'open' member 'name: str[64]') and a field of it "
        "keeps them all: drop `size: 32` or declare it str[32]"
    ]
    (field,) = [f for f in plan(text.replace("SIZE", "64")).fields if f.name == "name"]
    assert field.count == 64
    (field,) = [f for f in plan(spec('"str[200]"')).fields if f.name == "name"]
    assert field.count == 200  # no `size:`: the member's
    who = spec().replace("      who: st.who\n", "      who: {value: st.who, size: 32}\n")
    assert problems(who) == [
        "16:23: 'who' holds at most 16 bytes (state 'open' member 'who: comm'); drop `size:`"
    ]


def test_a_single_string_value_names_its_map() -> None:
    text = (
        spec()
        .replace("  open: {key: u32", '  one: {key: u32, value: "str[8]"}\n  open: {key: u32')
        .replace(
            "      open: {key: tid,",
            "      one: {key: tid, value: pathname.name}\n      open: {key: tid,",
        )
        .replace(
            "      st: take(open, tid)\n", "      st: take(open, tid)\n      o: get(one, tid)\n"
        )
        .replace("      who: st.who\n", "      who: st.who\n      o: {value: o, size: 200}\n")
    )
    assert problems(text) == [
        "20:18: state 'one' holds at most 8 bytes (its value 'str[8]'); declare it str[200] "
        "to keep longer strings"
    ]


@pytest.mark.parametrize("bad", ['"str[0]"', '"str[300]"', '"str[x]"', "u128"])
def test_a_bad_string_type_is_said_once(bad: str) -> None:
    """The member planned in its place is a string for a string-like type: its store of a
    string and its string field say nothing more (they said 'a char[16] cannot be compared')."""
    one = spec(bad, stored="comm") if bad != "u128" else spec(bad, stored="ktime_ns")
    (said,) = problems(one)
    assert said.startswith("3:4") and f"got '{bad.strip(chr(34))}'" in said, said


def test_the_docs_say_the_size_refusal_and_the_kernel_argument_limit_as_the_engine_does() -> None:
    """docs/spec.md quotes the size refusal word for word, and says that a kernel function's
    `__user` argument is a kernel pointer to the engine, as the refusal in s4's case does."""
    doc = " ".join((ROOT / "docs" / "spec.md").read_text().split())
    maps = {s.name: s for s in plan(spec()).states}
    said = string_field_problem(maps, "open.name", 256).replace("'name'", "'fname'")
    assert said.replace("'open'", "'start'").replace("name: ", "fname: ") in doc
    assert "kernel pointers to the engine, those the kernel marks `__user` too" in doc
    p = Provenance()
    p.kernel["p.f"] = "char *"
    assert "`__user` ones too (without BTF type tags" in user_string_problem(p, ("p.f",))
