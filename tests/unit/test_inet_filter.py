"""Addresses in filters: `daddr == "127.0.0.1"` and `saddr == $laddr` with an option of
`type: inet` (tcprtt's -a/-A). The family and every address byte are compared; an option not
given drops out; mistakes are located. tests/kernel/test_spec_tcprtt.py runs them on traffic."""

from __future__ import annotations

import argparse

import pytest

from engine import cli
from engine.codegen import render
from engine.errors import SpecError
from engine.plan import model as M
from engine.plan import planner
from engine.plan.bind import bind
from engine.spec.loader import load_text
from tests.unit.test_arith import FIXTURE

SPEC = """\
name: t
options:
  laddr: {flag: -a, type: inet}
  port: {flag: -P, type: u16}
probes:
  - name: p
    attach:
      - tracepoint: sock/inet_sock_set_state
        let:
          sk: args.skaddr as sock
    fields:
      sport: args.sport
      saddr: {value: sock_saddr(sk), decode: inet}
    filter: 'FILTER'
output:
  columns: [sport, saddr]
"""


def plan(filt: str) -> M.Plan:
    return planner.plan(load_text(SPEC.replace("FILTER", filt), "t.yaml"), FIXTURE)


def problems(filt: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        plan(filt)
    return [f"{p.location.col}: {p.message}" for p in info.value.problems]


def filter_c(filt: str, **options: object) -> str:
    c = render.render_c(bind(plan(filt), options=options))
    return c.split("if (!(", 1)[1].split("\n", 1)[0]


def test_a_constant_compares_family_and_bytes() -> None:
    assert filter_c('saddr == "127.0.0.1"') == (
        "ev.f_saddr.family == 2 && ev.f_saddr.addr[0] == 127 && ev.f_saddr.addr[1] == 0 && "
        "ev.f_saddr.addr[2] == 0 && ev.f_saddr.addr[3] == 1))"
    )
    six = filter_c('saddr != "::1"')
    assert six.startswith("!(ev.f_saddr.family == 10 && ev.f_saddr.addr[0] == 0")
    assert six.count("ev.f_saddr.addr[") == 16 and "ev.f_saddr.addr[15] == 1)" in six


def test_an_option_binds_per_run_and_drops_out_unset() -> None:
    assert "ev.f_saddr.addr[3] == 9" in filter_c("saddr == $laddr and sport == 1", laddr="10.0.0.9")
    assert "family == 10" in filter_c("saddr == $laddr", laddr="fe80::1")
    assert "ev.f_saddr" not in filter_c("saddr == $laddr and sport == 1")


@pytest.mark.parametrize(
    ("filt", "want"),
    [
        ('saddr == "localhost"', "23: 'localhost' is not an IPv4 or IPv6 address"),
        ("saddr < $laddr", "14: addresses compare with == or !="),
        ("saddr == $port", "23: $port is a u16, not an address (an option of type: inet)"),
        ("sport == $laddr", "23: $laddr is an address; compare it with an address field"),
        ("saddr == 5", '23: compare an address with an address ("127.0.0.1", "::1")'),
        ("sport == 1 or saddr == $laddr", "28: a comparison with $laddr can only be joined"),
        ("saddr == $nope", "23: unknown option $nope"),
    ],
)
def test_errors(filt: str, want: str) -> None:
    got = problems(filt)
    assert any(p.startswith(want) for p in got), got


def test_the_command_line_takes_either_family() -> None:
    assert cli.inet_parser("127.0.0.1") == "127.0.0.1"
    assert cli.inet_parser("0:0::1") == "::1"
    for bad in ("127.1", "::g", "", "1.2.3.4/8"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not an IPv4 or IPv6 address"):
            cli.inet_parser(bad)
