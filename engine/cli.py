"""The `engine` command: run, validate, render, explain, doctor.

`run` and `render` parse twice: once to find the spec, then with the spec's own options added
as typed flags, so `engine run SPEC --help` lists them. User mistakes end in one line on
stderr and exit 2 (flags) or 1 (spec, kernel); never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from typing import Any, Callable, NoReturn, Sequence

from engine import __version__
from engine.decoders import STACK_DECODERS
from engine.errors import EngineError, SpecError, UsageError, did_you_mean
from engine.output import STACK_FORMATS
from engine.plan import model as M
from engine.runtime import signals
from engine.runtime.output import FORMATS

EXAMPLES = """\
examples:
  engine run specs/tcpconnect.yaml            trace TCP connects (Ctrl-C to end)
  engine run specs/tcpconnect.yaml -P 80,443  only connects to ports 80 and 443
  engine run specs/tcpconnect.yaml -c         count connects per address pair, in the kernel
  engine run specs/icmp.yaml -o json          one JSON object per answered ping
  engine run specs/tcpconnect.yaml --help     the spec's own options
  engine validate specs/*.yaml                check specs against this kernel's BTF (no root)
  engine render specs/tcpconnect.yaml         print the generated BPF C
  engine explain tcp_v4_connect               a function's arguments, from BTF
  engine explain sock/inet_sock_set_state     a tracepoint's fields
  engine explain struct sock_common           a struct's members with offsets
  engine explain /usr/bin/bash                a binary's functions and USDT probes (ELF)
  engine explain lib:c:getaddrinfo            a library function (lib:NAME as ldconfig -p names it)
  engine doctor                               what this kernel offers, with remedies
  engine serve specs/tcpconnect.yaml          aggregations as Prometheus metrics on :9435
"""


SPEC_RULE = (
    "SPEC may come before, between or after the flags: it is the first argument ending in "
    ".yaml or .yml, else the first naming a file (in each case preferring one that does not "
    "follow a spec option's flag; values of the engine's own flags are skipped; `--` ends "
    "the flags)"
)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (naming the flag) and exit 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


INTEGER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0|[1-9][0-9]*)")  # ASCII only, no 1_000
DECIMAL = re.compile(r"[0-9]+")
SECONDS = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
MAX_SECONDS = 366 * 86400.0  # --duration/--interval: a year; nan, inf and 1e308 are refused
MAX_WAKEUP = 65536
SET_LIMIT = 32768  # list option values; more than SET_INLINE of them go to a BPF hash set


def shown(text: str) -> str:
    """A user's value quoted for a one-line error: escaped (no newline breaks the line), cut."""
    return repr(text[:40]) + ("..." if len(text) > 40 else "")


def int_parser(ctype: str) -> Callable[[str], int]:
    """argparse type for an integer option: ASCII decimal or 0x hex, range-checked for its C
    type. Python's int() alone would take Unicode digits ('٣' is 3), '1_000' and spaces."""
    from engine.plan.values import ctype_range

    lo, hi = ctype_range(ctype)

    def parse(text: str) -> int:
        item = text.strip(" ")
        if not INTEGER.fullmatch(item):
            raise argparse.ArgumentTypeError(f"{shown(text)} is not an integer ({ctype})")
        value = int(item, 0)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range for {ctype} ({lo}..{hi})")
        return value

    return parse


def str_parser(text: str) -> str:
    """argparse type for a string option: printable ASCII, as a filter compares bytes."""
    if not text or len(text) > 255 or not all(" " <= c <= "~" for c in text):
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not 1 to 255 printable ASCII characters"
        )
    return text


def inet_parser(text: str) -> str:
    """argparse type for an inet option: one IPv4 or IPv6 address, as ipaddress reads it."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not an IPv4 or IPv6 address (127.0.0.1, ::1)"
        ) from None


def pinned_parser(text: str) -> str:
    """argparse type for a pinned_map option: the path of a hash map keyed by u64 that
    another tool pinned (opened and checked now, so a wrong one is a usage error)."""
    from engine.kernel.pinned import PinnedError, key_set

    try:
        return key_set(text)
    except PinnedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def list_parser(ctype: str) -> Callable[[str], list[int]]:
    """argparse type for a list option: comma-separated integers, at most SET_LIMIT of them."""
    one = int_parser(ctype)

    def parse(text: str) -> list[int]:
        items = text.split(",")
        if len(items) > SET_LIMIT:
            raise argparse.ArgumentTypeError(
                f"{len(items)} values; a list takes at most {SET_LIMIT}"
            )
        if any(not item.strip(" ") for item in items):
            raise argparse.ArgumentTypeError(
                f"{shown(text)} has an empty item; expected a comma-separated list such as 80,443"
            )
        return [one(item) for item in items]

    return parse


def pages(text: str) -> int:
    """--buffer-pages: a power of two from 1 to 65536, in ASCII decimal."""
    if not DECIMAL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of pages")
    value = int(text)
    if value < 1 or value & (value - 1) or value > 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a power of two from 1 to 65536")
    return value


def wakeup(text: str) -> int:
    """--wakeup: 0 to MAX_WAKEUP events, in ASCII decimal (the number lands in the C)."""
    if not DECIMAL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of events")
    value = int(text)
    if value > MAX_WAKEUP:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0..{MAX_WAKEUP})")
    return value


def stack_storage(text: str) -> int:
    """--stack-storage-size: 1 to 1048576 stacks, in ASCII decimal (the number lands in the C)."""
    if not DECIMAL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of stacks")
    value = int(text)
    if not 1 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError(f"{value} is out of range (1..{1 << 20})")
    return value


def cgroup_dir(text: str) -> str:
    """--cgroup: a cgroup v2 directory, resolved now (engine.kernel.cgroups)."""
    from engine.kernel.cgroups import CgroupError, resolve

    try:
        return resolve(text).path
    except CgroupError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pod_name(text: str) -> str:
    """--pod: NAMESPACE/NAME, as kubectl prints a pod."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not NAMESPACE/NAME (shop/web-1)")
    return text


def label_selector(text: str) -> str:
    """--selector: KEY=VALUE pairs joined by commas, each key non-empty."""
    for item in text.split(","):
        key, eq, _ = item.partition("=")
        if not eq or not key.strip():
            raise argparse.ArgumentTypeError(
                f"{shown(text)} is not KEY=VALUE[,KEY=VALUE...] (app=web,tier=front)"
            )
    return text


def positive_int(text: str) -> int:
    """--top: 1 to 1000000 rows, in ASCII decimal."""
    if not DECIMAL.fullmatch(text) or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of rows (1..1000000)")
    return int(text)


def positive(text: str) -> float:
    """--duration/--interval: finite seconds above 0, at most MAX_SECONDS (ASCII digits)."""
    if not SECONDS.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of seconds")
    value = float(text)
    if not 0 < value <= MAX_SECONDS:  # also false for nan
        raise argparse.ArgumentTypeError(
            f"{text} must be above 0 and at most {MAX_SECONDS:.0f} seconds"
        )
    return value


def help_text(text: str) -> str:
    """Spec text as an argparse help string: argparse %-formats help, so `%` is doubled."""
    return text.replace("%", "%%")


def description_text(text: str) -> str:
    """Spec text as an argparse description: it is %-formatted only when it holds `%(prog)`."""
    return text.replace("%", "%%") if "%(prog)" in text else text


def type_words(opt: M.Option) -> str:
    """An option's type as --help says it."""
    if opt.ctype == "pinned_map":
        return "path of a pinned BPF hash map with u64 keys"
    if opt.ctype == "inet":
        return "IPv4 or IPv6 address"
    return f"{'list of ' if opt.is_list else ''}{opt.ctype}"


def add_spec_options(parser: argparse.ArgumentParser, plan: M.Plan) -> None:
    group = parser.add_argument_group(
        f"options of spec '{plan.name}'",
        description=f"A list option takes up to {SET_LIMIT} comma-separated values.",
    )
    for opt in plan.options:
        flags = [f for f in (opt.short, opt.long) if f]
        if opt.ctype == "bool":
            group.add_argument(
                *flags, dest=f"opt_{opt.name}", action="store_true", help=help_text(opt.help)
            )
        else:
            kind: Callable[[str], Any]
            if opt.ctype == "str":
                kind = str_parser
            elif opt.ctype == "pinned_map":
                kind = pinned_parser
            elif opt.ctype == "inet":
                kind = inet_parser
            elif opt.is_list:
                kind = list_parser(opt.ctype)
            else:
                kind = int_parser(opt.ctype)
            default = f", default {opt.default}" if opt.default is not None else ""
            where: dict[str, Any] = (
                {"nargs": "?"} if opt.positional else {"dest": f"opt_{opt.name}"}
            )
            group.add_argument(
                *(flags or [f"opt_{opt.name}"]),
                **where,
                type=kind,
                metavar=opt.metavar,
                default=opt.default,
                help=help_text(f"{opt.help} ({type_words(opt)}{default})"),
            )


def add_order_flags(p: argparse.ArgumentParser) -> None:
    """`engine run`'s --sort and --top: how aggregation tables are ordered and cut."""
    p.add_argument(
        "--sort",
        metavar="COLUMN",
        help="aggregation tables: sort rows by this aggregation (its name or header, "
        "largest first; default: the first one), in every format",
    )
    p.add_argument(
        "--clock",
        action="store_true",
        help="with --interval: each interval's tables follow the time, HH:MM:SS (bcc's -T)",
    )
    p.add_argument(
        "--top",
        type=positive_int,
        metavar="N",
        help="aggregation tables: print only the N largest rows (by --sort's column)",
    )


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """`engine run`'s own flags (the spec's options come after, from its plan)."""
    p.add_argument(
        "-o",
        "--output",
        choices=(*FORMATS, *STACK_FORMATS),
        help="output format (default: table, or what a spec's switch chooses, e.g. profile -f); "
        f"{' and '.join(STACK_FORMATS)} print aggregations keyed by stacks (flame graphs)",
    )
    p.add_argument(
        "-c",
        "--count",
        action="store_true",
        help="count events in the kernel by the spec's count keys; print the "
        "table on exit (and every --interval)",
    )
    p.add_argument(
        "--interval",
        type=positive,
        metavar="SECONDS",
        help="aggregations (-c, or the spec's): print them every SECONDS, and on exit",
    )
    p.add_argument(
        "--clear",
        action="store_true",
        help="with --interval: reset the aggregations after each print (like bcc's tools)",
    )
    p.add_argument(
        "--duration",
        type=positive,
        metavar="SECONDS",
        help="stop after SECONDS (default: run until Ctrl-C, SIGTERM or SIGHUP; any of "
        "these stops it normally, also while it compiles: what was gathered is printed, "
        "everything is detached, exit 0)",
    )
    p.add_argument(
        "--envelope",
        action="store_true",
        help='with -o json: each row also carries "engine": {time, host, spec, probe, '
        "container, pod} for log shippers (the fields stay at the top level; container and "
        "pod are host for a task in no container)",
    )
    p.add_argument("--ebpf", action="store_true", help="print the generated BPF C and exit")
    p.add_argument(
        "--perf-buffer",
        action="store_true",
        help="use a perf buffer even where the kernel has a ring buffer",
    )
    p.add_argument(
        "--wakeup",
        type=wakeup,
        default=32,
        metavar="N",
        help="ring buffer: wake the reader every N events (0 to 65536), and read what "
        "waits at least every 100 ms (default 32: far less CPU per event; 1: wake on "
        "every event)",
    )
    p.add_argument(
        "--buffer-pages",
        type=pages,
        default=64,
        metavar="PAGES",
        help="size of the ring (or per-CPU perf) buffer in pages, a power of two (default 64)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show the compiler and verifier output"
    )
    p.add_argument(
        "--alternative",
        type=int,
        default=0,
        metavar="N",
        help="use each probe's N-th attach alternative, no fallback (default: the first "
        "that works)",
    )


def add_scope_flags(p: argparse.ArgumentParser) -> None:
    """`engine run`'s flags choosing whose events count."""
    p.add_argument(
        "--cgroup",
        action="append",
        type=cgroup_dir,
        metavar="PATH",
        help="only events of tasks in this cgroup v2 directory or below it (a container's, a "
        "service's), checked in the kernel; a path in the cgroup2 mount, or as "
        "/proc/PID/cgroup prints it (repeat it for several; a cgroup made below later counts)",
    )
    p.add_argument(
        "--container",
        action="append",
        metavar="NAME|ID",
        help="only events of tasks in this container (its name, or a prefix of its id), "
        "checked in the kernel through its cgroup; one started later under this name is traced "
        "from the moment the runtime lists it (within a second); repeat it for several. "
        "Runtimes asked: podman, the CRI socket (containerd, CRI-O; CONTAINER_RUNTIME_ENDPOINT "
        "names another) and containerd's ctr",
    )
    p.add_argument(
        "--pod",
        action="append",
        type=pod_name,
        metavar="NAMESPACE/NAME",
        help="only events of tasks in this pod's containers (the kubelet's labels "
        "io.kubernetes.pod.namespace and io.kubernetes.pod.name); repeat it for several",
    )
    p.add_argument(
        "--selector",
        action="append",
        type=label_selector,
        metavar="KEY=VALUE[,KEY=VALUE...]",
        help="only events of tasks in containers carrying all these labels (as kubectl -l "
        "with =; io.kubernetes.container.name=app, or any label of the runtime's)",
    )


def add_stack_flags(p: argparse.ArgumentParser) -> None:
    """`engine run`'s flags for specs reading stacks."""
    p.add_argument(
        "--stack-storage-size",
        type=stack_storage,
        default=16384,
        metavar="N",
        help="stacks (kstack, ustack): the number of distinct stacks the kernel keeps (default "
        "16384, as bcc's profile); stacks past it print [Missed ... Stack] and are counted",
    )


def add_render_flags(p: argparse.ArgumentParser) -> None:
    """`engine render`'s own flags."""
    p.add_argument(
        "--decoder",
        action="store_true",
        help="print the Python decoder module instead of the C",
    )
    p.add_argument("--btf", metavar="FILE", help="resolve against this BTF file")
    p.add_argument(
        "--alternative",
        type=int,
        default=1,
        metavar="N",
        help="render each probe's N-th attach alternative (default: 1)",
    )
    p.add_argument("-c", "--count", action="store_true", help="render count mode")


def spec_parser(verb: str, plan: M.Plan | None) -> argparse.ArgumentParser:
    description = {
        "run": "Load the spec's probes into the kernel and print what they see.",
        "render": "Print the BPF C (or, with --decoder, the Python decoder) a spec becomes.",
    }[verb]
    if plan is not None and plan.description:
        description = description_text(f"{plan.name}: {plan.description}")
    p = Parser(
        prog=f"engine {verb}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", help=f"a spec file (YAML). {SPEC_RULE}")
    if verb == "run":
        add_run_flags(p)
        add_order_flags(p)
        add_scope_flags(p)
        add_stack_flags(p)
    else:
        add_render_flags(p)
    if plan is not None:
        add_spec_options(p, plan)
    else:
        p.epilog = f"The spec's own options are listed by: engine {verb} SPEC --help"
    return p


def find_spec(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """Which argument is SPEC, before the spec's own flags are known (see SPEC_RULE).

    The verb's own flags are the parser's; a value-taking one skips its value. An unknown
    flag is a spec option's, which may or may not take the next argument: that argument is
    SPEC only when nothing better is there (`-P 80 spec.yaml`: 80 is the port).
    """
    takes = {s: a.nargs != 0 for a in parser._actions for s in a.option_strings}
    found: list[tuple[str, bool]] = []  # (argument, right after an unknown flag)
    after_unknown = flags_done = skip = False
    for arg in argv:
        if skip:
            skip = False
        elif flags_done or arg == "-" or not arg.startswith("-"):
            found.append((arg, after_unknown))
            after_unknown = False
        elif arg == "--":
            flags_done, after_unknown = True, False
        elif arg in takes:
            skip, after_unknown = takes[arg], False
        else:
            after_unknown = "=" not in arg
    tests: tuple[Callable[[str], bool], ...] = (
        lambda a: a.endswith((".yaml", ".yml")),
        os.path.isfile,
        lambda _: True,
    )
    for test in tests:  # within a rank, an argument no unknown flag may have taken first
        for may_be_value in (False, True):
            hit = next((a for a, after in found if after == may_be_value and test(a)), None)
            if hit is not None:
                return hit
    return None


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of `flag FILE` or `flag=FILE` among the flags (before `--`)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def option_values(plan: M.Plan, ns: argparse.Namespace) -> dict[str, Any]:
    return {o.name: getattr(ns, f"opt_{o.name}", None) for o in plan.options}


def cmd_with_spec(verb: str, argv: list[str]) -> int:
    """`run` and `render`: find the spec first, then parse the spec's flags."""
    from engine.pipeline import check

    pre = spec_parser(verb, None)
    pre_args = [a for a in argv if a not in ("-h", "--help")]
    spec = find_spec(pre, pre_args)
    if spec is None:
        if len(pre_args) < len(argv):
            pre.print_help()
            return 0
        pre.error("the following arguments are required: SPEC")
    btf = flag_value(argv, "--btf")
    plan = check(spec, btf).plan
    final = spec_parser(verb, plan)
    ns = final.parse_intermixed_args(argv)  # a positional option may follow flags
    if ns.spec != spec:  # the spec's own flags took another reading of the arguments
        final.error(f"cannot tell which argument is SPEC: {spec} or {ns.spec}")
    if verb == "run" and ns.envelope:  # each row's container and pod: a hidden cgroup id
        plan = envelope_plan(spec, btf)
    values = option_values(plan, ns)
    if ns.count and plan.counted is None:
        raise UsageError(f"-c/--count: spec '{plan.name}' declares no output.count")
    if verb == "render":
        return cmd_render(plan, ns, values)
    return cmd_run(plan, ns, values)


def envelope_plan(spec: str, btf: str | None) -> M.Plan:
    """The spec planned with a field no column prints, the cgroup id of each event, from
    which --envelope names the row's container and pod (engine.plan.implicit)."""
    from engine.pipeline import check_spec, load
    from engine.plan.implicit import with_envelope_field

    return check_spec(with_envelope_field(load(spec)), btf).plan


def cmd_render(plan: M.Plan, ns: argparse.Namespace, values: dict[str, Any]) -> int:
    from engine.codegen import render
    from engine.plan.bind import bind

    if ns.decoder:
        sys.stdout.write(render.render_decoder(plan))
        return 0
    choices = {}
    for probe in plan.probes:
        if not 1 <= ns.alternative <= len(probe.alternatives):
            raise UsageError(
                f"--alternative: probe '{probe.name}' has {len(probe.alternatives)} alternatives"
            )
        choices[probe.name] = ns.alternative - 1
    program = bind(plan, count=ns.count, options=values, choices=choices)
    sys.stdout.write(render.render_c(program))
    return 0


def cmd_run(plan: M.Plan, ns: argparse.Namespace, values: dict[str, Any]) -> int:
    from engine.codegen import render
    from engine.plan.bind import bind
    from engine.runtime import runner

    for probe in plan.probes if ns.alternative else ():
        if not 1 <= ns.alternative <= len(probe.alternatives):
            raise UsageError(
                f"--alternative {ns.alternative}: probe '{probe.name}' has "
                f"{len(probe.alternatives)} alternatives"
            )
    scope = run_scope(ns)
    if ns.ebpf:
        program = bind(
            plan, count=ns.count, options=values, clear=ns.clear, cgroups=scope.cgroups,
            cgroup_slots=scope.slots,
        )  # fmt: skip
        sys.stdout.write(render.render_c(program))
        return 0
    # Option values meet the plan (a string longer than its field, ...) before the kernel does.
    program = bind(plan, count=ns.count, options=values)
    if (ns.interval or ns.clear) and not program.aggregations:
        flag = "--interval" if ns.interval else "--clear"
        raise UsageError(
            f"{flag} goes with an aggregation (-c/--count, or the spec's output.aggregations)"
        )
    check_sort(ns, program)
    if ns.clock and not ns.interval:
        raise UsageError("--clock goes with --interval (it stamps each interval's print)")
    fmt = output_format(plan, ns, values, program)
    if ns.envelope and fmt != "json":
        raise UsageError("--envelope goes with -o json")
    config = runner.RunConfig(
        envelope=ns.envelope,
        fmt=fmt,
        count=ns.count,
        interval=ns.interval or 0.0,
        duration=ns.duration or 0.0,
        verbose=ns.verbose,
        transport="perf" if ns.perf_buffer else "auto",
        wakeup_batch=ns.wakeup,
        ringbuf_pages=ns.buffer_pages,
        options=values,
        clear=ns.clear,
        alternative=ns.alternative,
        stack_storage=ns.stack_storage_size,
        sort=ns.sort or "",
        top=ns.top or 0,
        clock=ns.clock,
        scope=scope,
    )
    return runner.run(plan, config)


def run_scope(ns: argparse.Namespace) -> Any:
    """--cgroup, --container, --pod, --selector as the runner takes them (runner.Scope)."""
    from engine.runtime.runner import Scope

    selectors = container_selectors(ns)
    cgroups, slots = cgroup_paths(ns.cgroup), 0
    if selectors:
        cgroups, slots = container_cgroups(cgroups, selectors)
    return Scope(cgroups, slots, selectors)


def container_selectors(ns: argparse.Namespace) -> tuple[Any, ...]:
    """--container, --pod and --selector, in the order given, each once."""
    from engine.kernel.containers import Selector

    given = [Selector("--container", v) for v in ns.container or ()]
    given += [Selector("--pod", v) for v in ns.pod or ()]
    given += [Selector("--selector", v) for v in ns.selector or ()]
    return tuple(dict.fromkeys(given))


def container_cgroups(paths: tuple[str, ...], selectors: tuple[Any, ...]) -> tuple[Any, int]:
    """--cgroup's directories and those of the containers --container/--pod/--selector pick now, and
    how many slots the kernel's array keeps for them (room for containers started later)."""
    from engine.kernel import cgroups as cg
    from engine.kernel import containers as ct

    # the process's one listing (its thread keeps it current from now on); it says on stderr
    # a runtime that failed, whose containers may be the ones meant
    listing = ct.shared().listing
    try:
        chosen = ct.select(selectors, listing)
    except ct.ContainerError as exc:
        raise UsageError(str(exc)) from None
    found = []
    for c in chosen:
        try:
            found.append(cg.resolve(c.cgroup).path)
        except cg.CgroupError:  # stopped since it was listed: a later listing may find it again
            continue
    paths = tuple(dict.fromkeys(paths + tuple(found)))
    slots = min(cg.MAX_CGROUPS, len(paths) + max(ct.SPARE_SLOTS, len(found)))
    if len(paths) > cg.MAX_CGROUPS:
        raise UsageError(
            f"--container/--pod/--selector: {len(paths)} cgroups; at most {cg.MAX_CGROUPS}"
        )
    return paths, slots


def cgroup_paths(given: list[str] | None) -> tuple[str, ...]:
    """--cgroup's directories, each once, at most MAX_CGROUPS of them."""
    from engine.kernel.cgroups import MAX_CGROUPS

    paths = tuple(dict.fromkeys(given or ()))
    if len(paths) > MAX_CGROUPS:
        raise UsageError(f"--cgroup: {len(paths)} directories; at most {MAX_CGROUPS}")
    return paths


def check_sort(ns: argparse.Namespace, program: M.Program) -> None:
    """--sort names an aggregation of this run's tables; --top and --sort need a table."""
    plain = [s.agg for s in program.aggregations if not s.kind.histogram]
    columns = [(a.name, a.header) for a in plain if not a.hide]
    columns += [(d.name, d.header) for d in program.derived]
    if (ns.sort or ns.top) and not plain:
        flag = "--sort" if ns.sort else "--top"
        raise UsageError(
            f"{flag} orders aggregation tables (count, sum, min, max, avg: -c/--count or the "
            "spec's output.aggregations); this run has none"
        )
    if ns.sort and not any(M.answers_to(c, ns.sort) for c in columns):
        names = [header for _, header in columns]
        raise UsageError(
            f"--sort {ns.sort}: no such aggregation; this run's: {', '.join(names)}"
            f"{did_you_mean(ns.sort.upper(), names)}"
        )


def output_format(
    plan: M.Plan, ns: argparse.Namespace, values: dict[str, Any], program: M.Program
) -> str:
    """-o, else the format a given switch chooses (`output:`), else table. A stacks-only
    format (folded, flamegraph) needs an aggregation keyed by a stack."""
    chosen = [o for o in plan.options if o.output and values.get(o.name)]
    fmt = ns.output or (chosen[0].output if chosen else "table")
    if fmt in STACK_FORMATS:
        stacks = {f.name for f in program.fields if f.decoder in STACK_DECODERS}
        said = f"-o {fmt}"
        if not ns.output:
            said = chosen[0].label
        if not any(c.field in stacks for a in program.aggregations for c in a.by):
            raise UsageError(
                f"{said}: prints aggregations keyed by a stack (kstack, ustack); this run has none"
            )
        if fmt == "flamegraph" and ns.interval:
            raise UsageError(f"{said}: one graph per run; drop --interval")
    return fmt


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="engine",
        description="A declarative eBPF probe engine: write a YAML spec, get a bcc-style tool.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"engine {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.add_parser("run", help="run a spec: attach, print events or counts (root)", add_help=False)
    sub.add_parser("render", help="print the BPF C or decoder a spec becomes", add_help=False)
    add_validate(sub)
    add_explain_and_doctor(sub)
    add_serve(sub)
    return p


def add_validate(sub: argparse._SubParsersAction[Parser]) -> None:
    """`engine validate`: no root, no bcc; --btf many times (or a folder) makes a matrix."""
    v = sub.add_parser(
        "validate",
        help="check specs against kernel BTF (no root needed)",
        description="Check specs: schema, then every name against kernel BTF. "
        "Exit 0 all valid, 1 some invalid, 2 usage error.",
    )
    v.add_argument("specs", nargs="+", metavar="SPEC")
    v.add_argument(
        "--btf",
        metavar="FILE|DIR",
        action="append",
        help="BTF of the target kernel (default: /sys/kernel/btf/vmlinux); repeat it, or name "
        "a folder of *.btf[.xz], for a matrix of every spec on every kernel",
    )
    v.add_argument(
        "--format",
        choices=("text", "json", "github", "sarif"),
        default="text",
        help="report format; github prints workflow annotations, sarif is for code scanning",
    )
    v.add_argument(
        "--compile",
        action="store_true",
        help="also compile every alternative with bcc and load it through the verifier (root)",
    )


def add_explain_and_doctor(sub: argparse._SubParsersAction[Parser]) -> None:
    """`engine explain` and `engine doctor`: what this kernel (or a BTF file) offers."""
    e = sub.add_parser(
        "explain",
        help="show a function's arguments, a tracepoint's fields or a struct's members, from BTF;"
        " or a user-space binary's functions and USDT probes, from ELF",
        description="Explain what a spec can name. Kernel targets (from BTF): FUNCTION, "
        "CATEGORY/EVENT, raw:EVENT, struct NAME, union NAME, enum NAME. User-space targets "
        "(from ELF): a path starting with /, ./ or ../, or lib:NAME for a library as "
        "`ldconfig -p` names it (lib:c, lib:libc.so.6) lists the binary's functions and USDT "
        "probes; BINARY:FUNCTION shows one function, BINARY:PROVIDER:NAME one USDT probe's "
        "argument descriptors.",
    )
    e.add_argument(
        "target", metavar="FUNCTION|CATEGORY/TRACEPOINT|struct NAME|BINARY[:SYMBOL]", nargs="+"
    )
    e.add_argument("--btf", metavar="FILE", help="BTF file (default: the running kernel's)")
    e.add_argument("--expand", action="store_true", help="expand nested structs one level")
    d = sub.add_parser("doctor", help="measure what this kernel offers, with remedies")
    d.add_argument("--json", action="store_true", help="one JSON object")


def add_serve(sub: argparse._SubParsersAction[Parser]) -> None:
    """`engine serve`: the exporter's listener and its limits on slow and many clients."""
    s = sub.add_parser(
        "serve",
        help="serve specs' in-kernel aggregations as Prometheus metrics (root)",
        description="Load every SPEC, keep its aggregations (or output.count) in the kernel "
        "and serve them at /metrics (read at scrape time) and /healthz. A spec mistake "
        "refuses to start; a spec that fails to load is reported and the others serve.",
    )
    s.add_argument("specs", nargs="+", metavar="SPEC")
    s.add_argument(
        "--listen",
        default="127.0.0.1:9435",
        metavar="ADDR:PORT",
        help="where to serve (default 127.0.0.1:9435; [::]:9435 or 0.0.0.0:9435 for a fleet)",
    )
    s.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="TLS and basic auth, in the Prometheus exporters' web config format "
        "(tls_server_config, basic_auth_users; docs/spec.md)",
    )
    s.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="a TLS handshake, a request's head and the taking of its answer must each "
        "finish within this, or the connection is closed (default 10)",
    )
    s.add_argument(
        "--max-connections",
        type=_positive_int,
        default=64,
        metavar="N",
        help="open connections at most; one more closes the one waiting longest for its "
        "request (default 64)",
    )
    s.add_argument(
        "--max-header-bytes",
        type=_positive_int,
        default=8192,
        metavar="N",
        help="a longer request head is answered 431 (default 8192)",
    )
    s.add_argument(
        "-v", "--verbose", action="store_true", help="show the compiler and verifier output"
    )
    add_scope_flags(s)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def dispatch(args: list[str]) -> int:
    """Run one verb; the exit code."""
    if args and args[0] in ("run", "render"):
        return cmd_with_spec(args[0], args[1:])
    ns = build_parser().parse_args(args)
    if ns.verb is None:
        build_parser().print_help()
        return 2
    if ns.verb == "validate":
        from engine.verbs.validate import run_matrix, run_validate

        btfs = ns.btf or []
        if len(btfs) > 1 or any(os.path.isdir(b) for b in btfs) or ns.format == "sarif":
            code = run_matrix(ns.specs, btfs or ["/sys/kernel/btf/vmlinux"], ns.format, sys.stdout)
        else:
            code = run_validate(ns.specs, btfs[0] if btfs else None, ns.format, sys.stdout)
        if ns.compile and code == 0:
            from engine.verbs.verify import compile_check

            code = compile_check(ns.specs, sys.stdout)
        return code
    if ns.verb == "serve":
        from engine.runtime.promhttp import Limits
        from engine.verbs.serve import run_serve

        limits = Limits(ns.request_timeout, ns.max_header_bytes, ns.max_connections)
        return run_serve(ns.specs, ns.listen, ns.verbose, limits, ns.web_config, run_scope(ns))
    if ns.verb == "doctor":
        from engine.verbs.doctor import run_doctor

        return run_doctor(ns.json, sys.stdout)
    from engine.verbs.explain import run_explain

    return run_explain(" ".join(ns.target), ns.btf, ns.expand, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: user mistakes end as one line and an exit code, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        # Before planning, bcc or the compiler: a stop signal from here on is a clean stop.
        signals.install()
    try:
        code = dispatch(args)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
        return code
    except SpecError as exc:
        for problem in exc.problems:
            print(problem.format(), file=sys.stderr)
        return 1
    except EngineError as exc:
        print(f"engine: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`engine ... | head`): nothing is wrong; stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        signals.restore()


if __name__ == "__main__":
    sys.exit(main())
