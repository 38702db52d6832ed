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
from engine.memory import AddressSpace
from engine.nodes import Visitor
from engine.plan import model as M
from engine.plan.layout import STATE_VALUE_ALIGN, layout
from engine.plan.values import VT, PlanError, Provenance, Val, ValueResolver, VKind, int_vt
from engine.spec import expr as E
from engine.spec import model as S

INT_TYPES = ("u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64")
COMM_LEN = 16
STR_DEFAULT = 64  # `str`: the bytes a string member keeps, as a string field's default
STR_MAX = 256  # `str[N]`: at most, as a string field's `size`
VALUE_TYPES = f"an integer type ({', '.join(INT_TYPES)}), comm, or str / str[N] (N 1..{STR_MAX})"
STATE_HELPERS = ("take", "get", "has")  # the helpers engine.plan.resolve sends here
DEFAULT_SIZE = 10240


@dataclass(frozen=True)
class Member:
    name: str  # the spec's name ("value" for a single-value map)
    ctype: str  # u8..s64, or "char" for comm and strings
    count: int  # 16 for comm, N for str[N], else 0
    string: bool = False  # str[N]: a string copied at the store (not the task's comm)


def parse_type(text: str) -> Member | None:
    """A state key or value type: an integer type, `comm` (the task name, char[16]), or
    `str` / `str[N]` (a string of at most N bytes, NUL included, copied at the store)."""
    if text in INT_TYPES:
        return Member("", text, 0)
    if text == "comm":
        return Member("", "char", COMM_LEN)
    if text == "str":
        return Member("", "char", STR_DEFAULT, string=True)
    if text.startswith("str[") and text.endswith("]") and text[4:-1].isdigit():
        size = int(text[4:-1])
        return Member("", "char", size, string=True) if 1 <= size <= STR_MAX else None
    return None


def _stand_in(text: str) -> Member:
    """The member planned in place of a bad value type (already said), so that its stores
    and reads say nothing more: a string for a string-like type (`str[0]`, `str[300]`,
    `string`), else a u64."""
    if text.startswith("str"):
        return Member("", "char", STR_DEFAULT, string=True)
    return Member("", "u64", 0)


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
                m = Member("", "u64", 0)  # said; a stand-in keeps the key's parts in line
            key_members.append((key_slot(i), m.ctype, 0))
        value_members, strings = [], []
        for member in item.value:
            m = parse_type(member.type)
            if m is None:
                problem(f"a state value is {VALUE_TYPES}; got '{member.type}'", member.at)
                m = _stand_in(member.type)
            value_members.append((value_slot(member.name), m.ctype, m.count))
            if m.string:
                strings.append(value_slot(member.name))
        maps[name] = M.StateMap(
            name,
            layout(f"state_{name}_key_t", key_members),
            layout(f"state_{name}_val_t", value_members, STATE_VALUE_ALIGN),
            tuple(m.name for m in item.value),
            item.size,
            item.lru,
            index,
            strings=tuple(strings),
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
        scratch = self.scratch_entry(smap)
        s.emit(M.StateRead(dest, smap.name, key, take, defaults, has_default, smap.index, scratch))
        return self.value_of(smap, dest)

    def scratch_entry(self, smap: M.StateMap) -> int:
        """The entry of the map's per-CPU scratch array this read or store uses (-1: the
        value lives on the stack): one entry per read and store of the map in this function,
        so a value read and stored on (or two reads) do not overwrite each other."""
        if not smap.scratch:
            return -1
        return sum(
            1
            for step in self.r.s.steps
            if isinstance(step, (M.StateRead, M.StatePut))
            and step.map == smap.name
            and step.scratch >= 0
        )

    def value_of(self, smap: M.StateMap, dest: str) -> Val:
        if smap.members == ("value",):
            slot = smap.value.slots[0]
            return self.member_val(slot, _member_var(smap, dest, slot), origin(smap.name, "value"))
        return Val(VT(VKind.STATE, label=f"state '{smap.name}' value", state=smap.name), var=dest)

    @staticmethod
    def member_val(slot: M.Slot, var: str, where: str) -> Val:
        if slot.count:  # comm, or a str[N] member: a char array in the value (`origins`
            # names the member, so a string field of it can say which one it copies)
            label = f"char[{slot.count}]"
            vt = VT(VKind.STR, slot.count, count=slot.count, label=label, char=True)
            return Val(replace(vt, origins=(where,)), var=var)
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
        return self.member_val(
            slot, _member_var(smap, base.var, slot), origin(smap.name, node.attr)
        )

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
        parts, comm, strings, spaces = [], [], [], []
        for name, slot in zip(smap.members, smap.value.slots):
            found: tuple[M.Operand, AddressSpace | None] | None
            given = values[name]
            if slot.name in smap.strings and isinstance(given, E.Str):
                if given.value:  # the value struct starts zeroed: "" is left so
                    member = name if isinstance(value, dict) else ""
                    raise StoreValueError(
                        'a string member takes "" (empty) as its only constant', 0, member
                    )
                continue
            try:
                if slot.name in smap.strings:
                    found = self.string_source(smap, name, values[name])
                else:
                    text = self.member_text(smap, name, slot, values[name])
                    found = None if text is None else (text, None)
            except PlanError as exc:
                member = name if isinstance(value, dict) else ""
                raise StoreValueError(exc.message, exc.col, member) from None
            if found is None:
                comm.append(slot.name)
            elif found[1] is None:
                parts.append((slot.name, found[0]))
            else:
                strings.append((slot.name, found[0]))
                spaces.append(found[1])
        dest = self.r.s.local()
        put = M.StatePut(dest, smap.name, key, tuple(parts), tuple(comm), smap.index)
        if smap.scratch:
            put = replace(
                put, strings=tuple(strings), spaces=tuple(spaces), scratch=self.scratch_entry(smap)
            )
        self.r.s.emit(put)

    def string_source(
        self, smap: M.StateMap, name: str, node: E.Node
    ) -> tuple[M.Operand, AddressSpace] | None:
        """Where a string member's bytes come from, and the helper's address space (None: the
        task's comm). A user `char *` is read with bpf_probe_read_user_str, a kernel char
        array or `char *` with the kernel helper, a string kept in state from the map's memory;
        a pointer kept in state is a user pointer (checked once every store is known)."""
        val = self.r.value(node)
        vt = val.vt
        if vt.kind is VKind.COMM:
            return None
        if vt.kind is VKind.STR and val.var and vt.count:  # a string member of a state value
            return M.member(val.var), AddressSpace.KERNEL
        if vt.kind is VKind.ARRAY and vt.char and val.is_lvalue:
            return M.operand(self.r.address(val)), AddressSpace.KERNEL
        if vt.kind is VKind.PTR and vt.char:
            ptr = self.r.rvalue(val)
            return M.operand(ptr.var), M.read_space(vt.user)
        if vt.kind is VKind.INT and vt.size == 8 and vt.origins and not val.is_const:
            self.r.s.provenance.strings.append((node, vt.origins))
            return M.operand(self.r.rvalue(val).var), AddressSpace.USER
        raise PlanError(
            f"state '{smap.name}' member '{name}' is a string ({smap_label(smap, name)}); store "
            f"a string: a `char *` (args.filename), a char array, comm, a string member of "
            f"another state value, or a user pointer kept in state; got a '{vt.label}'",
            _col(node),
        )

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
        val = self.r.value(node)
        if val.vt.kind in (VKind.COMM, VKind.STR, VKind.ARRAY, VKind.STRUCT, VKind.INET):
            raise PlanError(
                f"state '{smap.name}' member '{name}' is a {slot.ctype}; a '{val.vt.label}' is "
                "no number to store there (declare the member `comm` or `str` for a string)",
                _col(node),
            )
        val = self.r.number(val, node)
        provenance = self.r.s.provenance
        if val.vt.user:
            provenance.user.setdefault(origin(smap.name, name), val.vt.label)
        elif val.vt.kind is VKind.PTR:
            provenance.kernel.setdefault(origin(smap.name, name), val.vt.label)
        if val.vt.origins:
            provenance.flows.setdefault(origin(smap.name, name), set()).update(val.vt.origins)
        if val.is_const:
            return M.Constant(str(self.r.constant(node, slot.ctype)))
        return M.operand(val.var)

    def delete(self, smap: M.StateMap, key_node: E.Node) -> None:
        key = self.key(smap, key_node)
        self.r.s.emit(M.StateDelete(self.r.s.local(), smap.name, key, smap.index))


def _member_var(smap: M.StateMap, dest: str, slot: M.Slot) -> str:
    """A value member's C text: `v3.f_ts` on the stack, `v3->f_ts` in the scratch array."""
    return f"{dest}->{slot.name}" if smap.scratch else f"{dest}.{slot.name}"


def smap_label(smap: M.StateMap, name: str) -> str:
    """`str[64]`: how the spec spells a string member's type."""
    slot = smap.value.slots[smap.members.index(name)]
    return f"str[{slot.count}]"


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


def string_field_problem(maps: dict[str, M.StateMap], member: str, size: int) -> str:
    """Why a string field of state member `member` ("map.member") cannot have `size: SIZE`
    ("" when it can): the field copies the member whole, so its size is the member's own;
    a different one would silently cut the string or not be honoured."""
    smap_name, name = member.split(".", 1)
    smap = maps[smap_name]
    slot = smap.value.slots[smap.members.index(name)]
    if size == slot.count:
        return ""
    string = slot.name in smap.strings
    what = f"str[{slot.count}]" if string else "comm"
    if name == "value":
        holder, decl = f"state '{smap_name}'", f"its value '{what}'"
    else:
        holder, decl = f"'{name}'", f"state '{smap_name}' member '{name}: {what}'"
    if size > slot.count:
        fix = f"declare it str[{size}] to keep longer strings" if string else "drop `size:`"
        return f"{holder} holds at most {slot.count} bytes ({decl}); {fix}"
    fix = f"drop `size: {size}`" + (f" or declare it str[{size}]" if string else "")
    return f"{holder} holds {slot.count} bytes ({decl}) and a field of it keeps them all: {fix}"


def user_string_problem(provenance: Provenance, origins: tuple[str, ...]) -> str:
    """Why a value read from state cannot be read as a user string ("" when it can)."""
    kernel = provenance.kernel_pointer(origins)
    if kernel is not None:
        where = _member_words(kernel[0])
        return (
            f"{where} holds a kernel pointer (stored from a '{kernel[1]}'); a pointer kept in "
            "state is read as a user-space string (bpf_probe_read_user_str), which reads "
            "nothing at a kernel address: store the string itself in a `str` member. A kernel "
            "function's argument is a kernel pointer here, `__user` ones too (without BTF type "
            "tags they look alike): a user string comes from a syscall tracepoint "
            "(syscalls/sys_enter_*)"
        )
    if provenance.user_pointer(origins) is None:
        return (
            f"{_member_words(origins[0])} holds no user-space pointer; only a user pointer "
            "kept in state (a syscall's `const char *`) can be read as a string later: "
            "store a string in a `str` member"
        )
    return ""


def _member_words(member: str) -> str:
    smap, name = member.split(".", 1)
    return f"state '{smap}'" if name == "value" else f"'{name}' comes from state '{smap}', which"


def _col(node: E.Node) -> int:
    return int(getattr(node, "col", 0))
