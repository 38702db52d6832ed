"""State shared between events and probes: the spec's `state` maps, `store`, and the
`take()`, `get()` and `has()` helpers.

A state map is a BPF hash (LRU by default, so keys whose pairing event never comes cannot
fill it) declared in the spec with typed keys and values. A probe stores into it; another
reads it back: `take(start, tid)` reads and deletes, `get(start, tid)` reads, `has(start,
tid)` tests. A missing key drops the event unless `get` is given a default. Reads run right
after the alternative's `where` (which says whether the event is the probe's at all) and
before the probe's filter, so a `take` deletes its key on every path the event takes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from engine.errors import did_you_mean
from engine.nodes import Visitor
from engine.plan import model as M
from engine.plan.layout import STATE_VALUE_ALIGN, layout
from engine.plan.values import VT, PlanError, Val, ValueResolver, VKind, int_vt
from engine.spec import expr as E
from engine.spec import model as S

INT_TYPES = ("u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64")
COMM_LEN = 16
STATE_HELPERS = ("take", "get", "has")  # the helpers engine.plan.resolve sends here
DEFAULT_SIZE = 10240


@dataclass(frozen=True)
class Member:
    name: str  # the spec's name ("value" for a single-value map)
    ctype: str  # u8..s64, or "char" for comm
    count: int  # 16 for comm, else 0


def parse_type(text: str) -> Member | None:
    """A state key or value type: an integer type, or `comm` (the task name, char[16])."""
    if text in INT_TYPES:
        return Member("", text, 0)
    if text == "comm":
        return Member("", "char", COMM_LEN)
    return None


def plan_states(
    states: Sequence[S.State], problem: Callable[[str, S.At], None]
) -> dict[str, M.StateMap]:
    """The top-level `state:` maps, with their key and value layouts."""
    maps: dict[str, M.StateMap] = {}
    for index, item in enumerate(states):
        name = item.name
        key_members = []
        for i, part in enumerate(item.key):
            m = parse_type(part.type)
            if m is None or m.count:
                problem(f"a state key part is an integer type ({', '.join(INT_TYPES)})", part.at)
                continue
            key_members.append((key_slot(i), m.ctype, 0))
        value_members = []
        for member in item.value:
            m = parse_type(member.type)
            if m is None:
                problem(
                    f"a state value is an integer type ({', '.join(INT_TYPES)}) or comm", member.at
                )
                continue
            value_members.append((value_slot(member.name), m.ctype, m.count))
        maps[name] = M.StateMap(
            name,
            layout(f"state_{name}_key_t", key_members),
            layout(f"state_{name}_val_t", value_members, STATE_VALUE_ALIGN),
            tuple(m.name for m in item.value),
            item.size,
            item.lru,
            index,
        )
    return maps


def key_slot(i: int) -> str:
    return f"k{i}"


def value_slot(name: str) -> str:
    return M.slot_name(name)


def uses_state(node: E.Node | None) -> bool:
    """Whether an expression calls take/get/has (such `let`s run first, on every path)."""
    if node is None:
        return False
    walker = _StateCalls()
    walker.visit(node)
    return walker.found


class _StateCalls(Visitor[None]):
    """Finds a take/get/has call anywhere in an expression (the rest walked by children)."""

    def __init__(self) -> None:
        self.found = False

    def visit_Call(self, node: E.Call) -> None:
        self.found = self.found or node.func in STATE_HELPERS
        self.generic_visit(node)


class StoreValueError(PlanError):
    """A problem in a store's value (`member`: which one of a mapping, "" for a single value),
    so the planner locates it there and not at the key."""

    def __init__(self, message: str, col: int, member: str) -> None:
        super().__init__(message, col)
        self.member = member


class StateResolver:
    """Resolves state helpers and stores within one alternative's Resolver."""

    def __init__(self, r: ValueResolver, maps: dict[str, M.StateMap]) -> None:
        self.r = r
        self.maps = maps

    def the_map(self, node: E.Node, what: str) -> M.StateMap:
        if not isinstance(node, E.Name):
            raise PlanError(f"{what}: the first argument names a state map", _col(node))
        found = self.maps.get(node.name)
        if found is None:
            declared = ", ".join(self.maps) or "none declared (top-level `state:`)"
            raise PlanError(
                f"no state map '{node.name}'; state maps: {declared}"
                f"{did_you_mean(node.name, self.maps)}",
                node.col,
            )
        return found

    def key(self, smap: M.StateMap, node: E.Node) -> M.Local:
        """Emit the key struct for `node` (one expression, or a tuple for a multi-part key)."""
        items = node.items if isinstance(node, E.ListOf) else (node,)
        if len(items) != len(smap.key.slots):
            raise PlanError(
                f"state '{smap.name}' has {len(smap.key.slots)}-part keys "
                f"({', '.join(s.ctype for s in smap.key.slots)}); this key has {len(items)}",
                _col(node),
            )
        parts: list[tuple[str, M.Operand]] = []
        for item, slot in zip(items, smap.key.slots):
            val = self.r.number(self.r.value(item), item)
            if not val.is_const and val.vt.size > slot.size:
                raise PlanError(
                    f"this key is a {val.vt.ctype} ({val.vt.size} bytes) but state "
                    f"'{smap.name}' keys are {slot.ctype}; use a {slot.ctype} value or declare "
                    f"`key: {val.vt.ctype}`",
                    _col(item),
                )
            if val.is_const:
                parts.append((slot.name, M.Constant(str(self.r.constant(item, slot.ctype)))))
            else:
                parts.append((slot.name, M.operand(val.var)))
        dest = self.r.s.local()
        self.r.s.emit(M.StateKey(dest, smap.name, tuple(parts)))
        return M.Local(dest)

    def call(self, node: E.Call) -> Val:
        what = f"{node.func}(MAP, KEY{', DEFAULT' if node.func == 'get' else ''})"
        most = 3 if node.func == "get" else 2
        if not 2 <= len(node.args) <= most:
            raise PlanError(f"{what} takes {'2 or 3' if most == 3 else 2} arguments", node.col)
        smap = self.the_map(node.args[0], what)
        key = self.key(smap, node.args[1])
        s = self.r.s
        dest = s.local()
        if node.func == "has":
            s.emit(M.StateHas(dest, smap.name, key))
            return Val(int_vt("u64"), var=dest)
        defaults: tuple[tuple[str, M.Constant], ...] = ()
        has_default = len(node.args) == 3
        if has_default:
            if len(smap.value.slots) != 1 or smap.value.slots[0].count:
                raise PlanError(
                    f"a default fits a map with one integer value; '{smap.name}' holds "
                    f"{', '.join(m for m in smap.members)}",
                    _col(node.args[2]),
                )
            slot = smap.value.slots[0]
            defaults = ((slot.name, M.Constant(str(self.r.constant(node.args[2], slot.ctype)))),)
        take = node.func == "take"
        s.emit(M.StateRead(dest, smap.name, key, take, defaults, has_default, smap.index))
        return self.value_of(smap, dest)

    def value_of(self, smap: M.StateMap, dest: str) -> Val:
        if smap.members == ("value",):
            slot = smap.value.slots[0]
            return self.member_val(slot, f"{dest}.{slot.name}", origin(smap.name, "value"))
        return Val(VT(VKind.STATE, label=f"state '{smap.name}' value", state=smap.name), var=dest)

    @staticmethod
    def member_val(slot: M.Slot, var: str, where: str) -> Val:
        if slot.count:
            vt = VT(VKind.STR, slot.count, count=slot.count, label="char[16]", char=True)
            return Val(vt, var=var)
        return Val(replace(int_vt(slot.ctype), origins=(where,)), var=var)

    def member(self, base: Val, node: E.Attr) -> Val:
        smap = self.maps[base.vt.state]
        if node.attr not in smap.members:
            raise PlanError(
                f"state '{smap.name}' values have no '{node.attr}'; they hold "
                f"{', '.join(smap.members)}{did_you_mean(node.attr, smap.members)}",
                node.col,
            )
        slot = smap.value.slots[smap.members.index(node.attr)]
        return self.member_val(slot, f"{base.var}.{slot.name}", origin(smap.name, node.attr))

    def store(self, smap: M.StateMap, key_node: E.Node, value: Any, col: int) -> None:
        """`store: {MAP: {key: K, value: V}}`: V an expression, or a mapping per member."""
        key = self.key(smap, key_node)
        values: dict[str, E.Node] = value if isinstance(value, dict) else {"value": value}
        missing = [m for m in smap.members if m not in values]
        extra = [m for m in values if m not in smap.members]
        if missing or extra:
            raise PlanError(
                f"state '{smap.name}' values hold {', '.join(smap.members)}; "
                + (f"missing {', '.join(missing)}" if missing else f"no {', '.join(extra)}")
                + (did_you_mean(extra[0], smap.members) if extra else ""),
                col,
            )
        parts, comm = [], []
        for name, slot in zip(smap.members, smap.value.slots):
            try:
                text = self.member_text(smap, name, slot, values[name])
            except PlanError as exc:
                member = name if isinstance(value, dict) else ""
                raise StoreValueError(exc.message, exc.col, member) from None
            if text is None:
                comm.append(slot.name)
            else:
                parts.append((slot.name, text))
        dest = self.r.s.local()
        self.r.s.emit(M.StatePut(dest, smap.name, key, tuple(parts), tuple(comm), smap.index))

    def member_text(
        self, smap: M.StateMap, name: str, slot: M.Slot, node: E.Node
    ) -> M.Operand | None:
        """What is stored into one value member (None: the task's comm)."""
        if slot.count:
            if not (isinstance(node, E.Name) and node.name == "comm"):
                raise PlanError(
                    f"state '{smap.name}' member '{name}' is a comm (char[16]); store `comm`",
                    _col(node),
                )
            return None
        val = self.r.number(self.r.value(node), node)
        provenance = self.r.s.provenance
        if val.vt.user:
            provenance.user.setdefault(origin(smap.name, name), val.vt.label)
        if val.vt.origins:
            provenance.flows.setdefault(origin(smap.name, name), set()).update(val.vt.origins)
        if val.is_const:
            return M.Constant(str(self.r.constant(node, slot.ctype)))
        return M.operand(val.var)

    def delete(self, smap: M.StateMap, key_node: E.Node) -> None:
        key = self.key(smap, key_node)
        self.r.s.emit(M.StateDelete(self.r.s.local(), smap.name, key, smap.index))


def origin(smap: str, member: str) -> str:
    """A state member as Provenance and VT.origins name it."""
    return f"{smap}.{member}"


def user_pointer_message(member: str, label: str) -> str:
    """Why a value read from state cannot be cast: it is a user-space pointer."""
    smap, name = member.split(".", 1)
    where = f"state '{smap}'" if name == "value" else f"'{name}' comes from state '{smap}', which"
    return (
        f"{where} holds a user-space pointer (stored from a '{label}'); kernel structs cannot "
        "be read through it (bpf_probe_read_kernel of a user address reads nothing)"
    )


def _col(node: E.Node) -> int:
    return int(getattr(node, "col", 0))
