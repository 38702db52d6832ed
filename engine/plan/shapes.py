"""The program shapes a spec's options can produce, for checks that must see each of them.

Options change the generated program, not just its constants: a switch turns aggregations and
their `by` columns (so their keys) on and off and guards filter terms; an integer or string
option adds a comparison when given; a list option compares inline up to 8 values and looks a
hash set up past that. The planner's stack check and `engine validate --compile` look at
every shape here: no option given, every option given (a list with more values than are
compared inline), each switch alone, each list option alone with one value, and for each
aggregation the switches that make its key widest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from engine import aggs
from engine.plan import model as M
from engine.plan.bind import SET_INLINE, OptionValue
from engine.plan.values import INET_OPTION, PINNED


@dataclass(frozen=True)
class Shape:
    """Option values for one shape, and how a person would give them on the command line."""

    flags: str  # "", "-t -p 1", ...
    values: Mapping[str, OptionValue]

    @property
    def label(self) -> str:
        return self.flags or "no options"


def given(option: M.Option, many: bool = True) -> OptionValue:
    """A value for a given option: a list has more values than are compared inline (the
    hash set), or with `many` off one (the inline ==). A pinned map (`--cgroupmap PATH`) is
    left out: bcc opens (or creates and pins) the map at PATH when it loads the program, so a
    shape cannot name one that is not there; its lookup adds an 8-byte key to the stack."""
    if option.ctype == PINNED:
        return None
    if option.ctype == "bool":
        return True
    if option.ctype == "str":
        return "a"
    if option.ctype == INET_OPTION:
        return "::1"  # an IPv6 address compares the most bytes
    if option.is_list:
        return list(range(1, SET_INLINE + 2)) if many else [1]
    return 1


def flag_text(option: M.Option, value: OptionValue) -> str:
    flag = option.short or option.long
    if option.positional:
        return str(value)
    if isinstance(value, bool):
        return flag
    if isinstance(value, list):
        return f"{flag} {','.join(str(v) for v in value)}"
    return f"{flag} {value}"


def _shape(plan: M.Plan, values: dict[str, OptionValue]) -> Shape:
    options = {o.name: o for o in plan.options}
    flags = [flag_text(options[n], v) for n, v in values.items() if v not in (None, False)]
    return Shape(" ".join(flags), values)


def option_shapes(plan: M.Plan) -> list[Shape]:
    """Every shape worth compiling, without repeats (the first is no option given)."""
    shapes = [_shape(plan, {})]
    if plan.options:
        shapes.append(_shape(plan, {o.name: given(o) for o in plan.options}))
    # alone: a switch (it may turn off what another turns on), a list with one value (inline ==);
    # a number or string only adds its own comparison, which every option given has
    alone = [o for o in plan.options if o.ctype == "bool" or o.is_list]
    shapes += [_shape(plan, {o.name: given(o, many=False)}) for o in alone]
    for agg in plan.aggregations:
        if agg.by_count or set(agg.unless) & set(agg.when):
            continue  # -c's count has its own mode; an `if` and `unless` of one switch never is
        on = [*agg.when, *(c.option for c in agg.by if c.option and c.option not in agg.unless)]
        shapes.append(_shape(plan, dict.fromkeys(on, True)))
        for c in agg.by:  # a key dropped by a switch (profile's -U drops the kernel stack)
            if c.unless and c.unless not in agg.unless:
                shapes.append(_shape(plan, dict.fromkeys([*agg.when, c.unless], True)))
    seen: set[tuple[tuple[str, str], ...]] = set()
    out = []
    for shape in shapes:
        key = tuple(sorted((n, repr(v)) for n, v in shape.values.items()))
        if key not in seen:
            seen.add(key)
            out.append(shape)
    return out


def counts(plan: M.Plan) -> tuple[bool, ...]:
    """The output modes a run can choose: events (or the active aggregations), and `-c`
    (True: the spec's counted aggregation alone)."""
    return (False, True) if plan.counted else (False,)


def mode_word(count: bool) -> str:
    """How `validate --compile` names a mode: the counted aggregation's name, or events."""
    return aggs.COUNT.name if count else "events"
