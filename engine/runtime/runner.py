"""Run: choose an attach alternative per probe, load with bcc, attach, poll, decode, print.

One `Session` owns the bcc object and every attachment and detaches all of it on every exit
path (the good part of bcc's own design). Alternatives are chosen by really probing the
kernel for each target (engine.kernel.capabilities, the same code `engine doctor` runs); if the
real attach still fails, the next alternative is tried.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import select
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, TextIO

from engine.attach import KINDS
from engine.codegen import render
from engine.errors import EngineError, UsageError
from engine.kernel import capabilities
from engine.kernel import containers as ct
from engine.kernel.containers import Selector
from engine.output import RENDERERS
from engine.plan import model as M
from engine.plan import resources
from engine.plan.bind import OptionValue, bind
from engine.runtime import decoders, signals
from engine.runtime.loop import POLL_MS, BufferEvents, runtime_sinks, stop_writing
from engine.runtime.output import Printer
from engine.runtime.rows import RowMaker
from engine.runtime.scope import keep_current
from engine.runtime.sinks import AggregatePrinter, check_membarrier
from engine.runtime.stacks import StackReader, user_stack_places


@dataclass(frozen=True)
class Scope:
    """Whose events count: --cgroup's directories and those of the containers --container
    and --pod picked at the start (resolved), how many slots the kernel's cgroup array has
    (room for containers started later), and the selectors that keep it current."""

    cgroups: tuple[str, ...] = ()
    slots: int = 0
    selectors: tuple[Selector, ...] = ()


@dataclass
class RunConfig:
    """What `engine run` was asked to do."""

    fmt: str = "table"
    count: bool = False
    interval: float = 0.0
    duration: float = 0.0
    verbose: bool = False
    transport: str = "auto"  # auto | ringbuf | perf
    ringbuf_pages: int = 64
    wakeup_batch: int = 32  # wake the reader every N events; unsignalled ones wait <= POLL_MS
    clear: bool = False  # aggregations: reset after each print (two map sets: sinks.Epochs)
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    envelope: bool = False  # -o json: rows lead with {"engine": {time, host, spec, probe, ...}}
    alternative: int = 0  # 1-based: force each probe's N-th alternative (0: the first that works)
    stack_storage: int = resources.STACK_STORAGE  # the stack map's entries
    sort: str = ""  # --sort: the aggregation (name or header) tables are sorted by
    top: int = 0  # --top: at most this many rows per table (0: all)
    clock: bool = False  # --clock: each interval's tables after the time (bcc's -T)
    scope: Scope = field(default_factory=Scope)  # --cgroup, --container, --pod


REMEMBER_EVERY = 1.0  # s: how often the processes behind user stacks have their maps read


def say(message: str) -> None:
    """A status line on stderr; stdout carries only data."""
    print(message, file=sys.stderr, flush=True)


# --- choosing alternatives ---------------------------------------------------------------


def probe_alternative(alt: M.Alternative) -> str | None:
    """None when every function of the alternative can attach here, else the reason."""
    for fn in alt.functions:
        target = KINDS[fn.kind].spec_name(fn.target)
        result = capabilities.can_attach(fn.kind, target)
        if not result.ok:
            return f"{fn.kind} {target}: {result.detail}"
    return None


def describe(alt: M.Alternative) -> str:
    return f"{alt.kind} {', '.join(alt.targets)}"


def choose(
    plan: M.Plan, excluded: Mapping[tuple[str, int], str], forced: int = 0
) -> dict[str, int]:
    """The first usable alternative of each probe; EngineError listing reasons if none.

    `forced` (1-based) takes each probe's N-th alternative or fails saying why it cannot
    attach: no fallback, so a test can run one chosen path (kprobe vs tracepoint) on purpose.
    """
    choices: dict[str, int] = {}
    for probe in plan.probes:
        if forced:
            if not 1 <= forced <= len(probe.alternatives):
                raise UsageError(
                    f"--alternative {forced}: probe '{probe.name}' has "
                    f"{len(probe.alternatives)} alternatives"
                )
            alt = probe.alternatives[forced - 1]
            reason = excluded.get((probe.name, forced - 1)) or probe_alternative(alt)
            if reason is not None:
                raise EngineError(
                    f"probe '{probe.name}': alternative {forced} ({describe(alt)}) "
                    f"cannot attach on this kernel: {reason}"
                )
            choices[probe.name] = forced - 1
            say(f"probe '{probe.name}': using {describe(alt)} (forced: --alternative {forced})")
            continue
        reasons = []
        for i, alt in enumerate(probe.alternatives):
            reason = excluded.get((probe.name, i)) or probe_alternative(alt)
            if reason is None:
                choices[probe.name] = i
                break
            reasons.append(f"  {i + 1}. {describe(alt)}: {reason}")
        else:
            raise EngineError(
                f"probe '{probe.name}': no attach alternative works on this kernel:\n"
                + "\n".join(reasons)
            )
        if reasons:
            skipped = "; ".join(r.strip() for r in reasons)
            say(
                f"probe '{probe.name}': using {describe(probe.alternatives[i])} (skipped {skipped})"
            )
        else:
            say(f"probe '{probe.name}': using {describe(probe.alternatives[i])}")
    return choices


# --- bcc session ---------------------------------------------------------------------------


# Watches a capture from outside: if the engine ends without saying "ok" (clang's BPF backend
# exits the process on some errors, the stack limit among them), it prints the capture.
_WATCHER = (
    'read -r said; [ "$said" = ok ] || { '
    'printf "engine: the compiler ended the process; it said:\\n" >&2; cat "$1" >&2; }; '
    'rm -f "$1"'
)


@contextlib.contextmanager
def captured_stderr() -> Iterator[TextIO]:
    """Route fd 2 (where bcc and clang write) to a temporary file for the block.

    Should the C side end the process inside the block, a watching `sh` (its stdin a pipe
    only this block writes "ok" to) copies what was captured to the real stderr, so the
    compiler's last words are never lost with the temporary file.
    """
    sys.stderr.flush()
    fd, path = tempfile.mkstemp(prefix="engine-capture-", suffix=".log")
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    try:
        watcher = subprocess.Popen(
            ["sh", "-c", _WATCHER, "sh", path], stdin=read_end, stderr=saved, close_fds=True
        )
    finally:
        os.close(read_end)
    with os.fdopen(fd, "w+") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            with contextlib.suppress(OSError):
                os.write(write_end, b"ok\n")
            os.close(write_end)
            watcher.wait()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def import_bcc() -> Any:
    try:
        import bcc
    except ImportError:
        raise EngineError(
            "bcc is not available to this Python: run scripts/setup.sh "
            "(Debian/Ubuntu: apt install python3-bpfcc, and use /usr/bin/python3)"
        ) from None
    return bcc


def kfunc_style() -> str:
    """How the installed bcc names fentry/fexit programs (see engine.plan.bind.bind)."""
    bcc = import_bcc()
    version = str(getattr(bcc, "__version__", "0.0"))
    try:
        major_minor = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        return "module"
    return "legacy" if major_minor < (0, 27) else "module"


def bcc_contexts(program: M.Program) -> list[Any]:
    """What bcc must know before compiling, from each function's kind (USDT contexts)."""
    return [
        context
        for probe in program.probes
        for fn in probe.alternative.functions
        for context in KINDS[fn.kind].bcc_contexts(fn.name, fn.target, fn.pid)
    ]


class Session:
    """Owns one loaded program and its attachments; `close()` detaches everything."""

    def __init__(self, program: M.Program, verbose: bool) -> None:
        self.program = program
        self.resources = resources.declare(program)  # the maps, as the C declares them
        self.verbose = verbose
        self.bpf: Any = None
        self.contexts: list[Any] = []

    def bcc_contexts(self) -> list[Any]:
        return bcc_contexts(self.program)

    def load(self) -> None:
        bcc = import_bcc()
        text = render.render_c(self.program)
        with captured_stderr() as log:
            try:
                self.contexts = self.bcc_contexts()  # kept: bcc's USDT contexts live with us
                self.bpf = bcc.BPF(text=text, usdt_contexts=self.contexts)
            except EngineError:
                raise
            except Exception as exc:
                log.seek(0)
                detail = self.save_log(log.read())
                raise EngineError(f"compiling the generated C failed ({exc}){detail}") from None

    def fill_sets(self) -> None:
        """Long list options' values into their hash sets, and --cgroup's directories into
        their array: before attach, so the first event already sees them all."""
        if self.program.cgroups:
            cgroups = self.bpf[resources.CGROUPS]
            for index, path in enumerate(self.program.cgroups):
                try:
                    cgroups[index] = path  # bcc opens the directory and stores its fd
                except OSError as exc:  # gone since it was checked
                    raise EngineError(f"--cgroup {path}: {exc.strerror or exc}") from None
        for st in self.program.sets:
            if st.pinned:  # another tool's map: its keys are its own
                continue
            table = self.bpf[st.map]
            one = table.Leaf(1)
            for value in st.values:
                table[table.Key(value)] = one

    def attach(self, stop: signals.Stop | None = None) -> None:
        """Attach every function; raises AttachError naming the failing function, Stopped
        when a stop was requested (what is attached so far is detached by close())."""
        b = self.bpf
        for probe in self.program.probes:
            for fn in probe.alternative.functions:
                if stop is not None and stop.requested:
                    raise Stopped()
                with captured_stderr() as log:
                    try:
                        self._attach_one(b, fn)
                    except Exception as exc:
                        log.seek(0)
                        raise AttachError(probe.name, fn, str(exc), log.read()) from None

    @staticmethod
    def _attach_one(b: Any, fn: M.Function) -> None:
        KINDS[fn.kind].attach(b, fn.name, fn.target, fn.pid)  # engine.attach: its bcc call

    def save_log(self, content: str) -> str:
        """Compiler or verifier output: on stderr with -v, else in a file named in the error."""
        if not content.strip():
            return ""
        if self.verbose:
            sys.stderr.write(content)
            return ""
        fd, path = tempfile.mkstemp(prefix="engine-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(content + "\n--- generated C ---\n" + render.render_c(self.program))
        return f"; compiler/verifier log in {path} (or run with -v)"

    def errors(self) -> list[int]:
        """engine_errors: per counter (Program.errors), summed over CPUs."""
        if not self.program.errors:
            return []
        counters = self.resources.errors
        table = self.bpf[counters.map.name]
        return [
            int(sum(getattr(v, "value", v) for v in table[i])) for i in range(len(counters.names))
        ]

    def evicted(self) -> list[int]:
        """Per LRU state map (Program.states order; 0 for the others): keys the kernel evicted,
        which it tells no one, as the keys inserted - deleted - still held. Read in that
        order, so stores and takes running meanwhile can only make it smaller: it never
        reports an eviction that did not happen, and a later read catches up."""
        states = self.program.states
        if not any(st.lru for st in states):
            return [0] * len(states)
        keys = self.resources.state_keys
        table = self.bpf[keys.map.name] if keys else {}

        def total(i: int) -> int:
            return int(sum(getattr(v, "value", v) for v in table[i]))

        inserted = [total(resources.inserted_counter(st.index)) if st.lru else 0 for st in states]
        held = [self.held(st) if st.lru else 0 for st in states]
        deleted = [total(resources.deleted_counter(st.index)) if st.lru else 0 for st in states]
        return [max(0, i - h - d) for i, h, d in zip(inserted, held, deleted)]

    def held(self, st: M.StateMap) -> int:
        """Keys in a state map. The map is opened with byte-array key and value types: only
        its keys are walked, and bcc cannot decode every C type (an `s8` member's `signed
        char`). A key deleted while the walk stands on it restarts it: at most `size`."""
        byte = ctypes.c_uint8
        table = self.bpf.get_table(
            self.resources.state(st).name, keytype=byte * st.key.size, leaftype=byte * st.value.size
        )
        return sum(1 for _ in itertools.islice(table.keys(), st.size))

    def lost(self) -> int:
        """Events the BPF side could not hand over (its buffer full), summed over CPUs."""
        lost = self.resources.lost.name
        per_cpu = self.bpf[lost][0]  # bcc gives plain ints for a u64 per-CPU array
        return int(sum(getattr(v, "value", v) for v in per_cpu))

    def close(self) -> None:
        if self.bpf is not None:
            with contextlib.suppress(Exception):
                self.bpf.cleanup()
            self.bpf = None
        self.contexts = []  # after detaching: a USDT context's end undoes its semaphores


class Stopped(Exception):
    """A stop signal arrived while loading or attaching: end cleanly, before "Tracing"."""


class AttachError(Exception):
    def __init__(self, probe: str, fn: M.Function, message: str, log: str) -> None:
        super().__init__(message)
        self.probe = probe
        self.fn = fn
        self.log = log


def start(
    plan: M.Plan, config: RunConfig, transport: M.Transport, stop: signals.Stop | None = None
) -> Session:
    """Load and attach, falling back to a probe's next alternative when an attach fails;
    Stopped when a stop is requested on the way (checked between the slow steps)."""
    excluded: dict[tuple[str, int], str] = {}
    stop = stop or signals.Stop()
    while True:
        if stop.requested:
            raise Stopped()
        choices = choose(plan, excluded, config.alternative)
        program = bind(
            plan,
            kfunc_style=kfunc_style(),
            count=config.count,
            options=config.options,
            choices=choices,
            transport=transport,
            ringbuf_pages=config.ringbuf_pages,
            wakeup_batch=config.wakeup_batch,
            clear=config.clear,
            stack_storage=config.stack_storage,
            cgroups=config.scope.cgroups,
            cgroup_slots=config.scope.slots,
        )
        session = Session(program, config.verbose)
        try:
            session.load()  # clang: seconds; a signal meanwhile only sets stop.requested
            session.fill_sets()
            session.attach(stop)
            return session
        except AttachError as exc:
            reason = f"{exc}{session.save_log(exc.log)}"
            session.close()
            excluded[(exc.probe, choices[exc.probe])] = f"attach failed: {reason}"
            say(
                f"probe '{exc.probe}': {exc.fn.kind} {exc.fn.target} failed to attach "
                f"({reason}); trying the next alternative"
            )
        except BaseException:
            session.close()
            raise


# --- the event loop ---------------------------------------------------------------------------

Stop = signals.Stop  # the stop request (engine.runtime.signals installs the handlers)


def run(plan: M.Plan, config: RunConfig, out: TextIO = sys.stdout) -> int:
    """`engine run`: exit 0 on a normal stop (SIGINT, SIGTERM, SIGHUP, --duration, closed
    stdout), also when the stop comes before tracing began (then nothing is printed)."""
    fresh = not signals.installed()  # engine.cli installs them first thing; a caller may not
    stop = signals.install()
    session: Session | None = None
    watch: ct.Watch | None = None
    try:
        if stop.requested:
            return 0
        check_privileges()
        if config.clear:
            check_membarrier()
        if config.transport == "auto":
            ring = capabilities.probe("ringbuf").ok
            transport = M.Transport.RINGBUF if ring else M.Transport.PERF
        else:
            transport = M.Transport(config.transport)
        columns = active_columns(plan, config)
        try:
            session = start(plan, config, transport, stop)
        except Stopped:
            return 0
        names = ", ".join(p.name for p in plan.probes)
        loop = EventLoop(plan, config, session, columns, out, stop)
        loop.open()  # before "Tracing": nothing sent after it is lost
        if stop.requested:
            return 0
        watch = watch_containers(config, session, loop.state)
        say(f"Tracing {names} ... Hit Ctrl-C to end.")
        return loop.run()
    finally:
        if watch is not None:
            watch.stop()
            if watch.failures:
                each = ", ".join(f"{name} {n}" for name, n in sorted(watch.failed.items()))
                say(f"listing containers: failures by runtime: {each} (last: {watch.failure})")
        if session is not None:
            session.close()
        if fresh:
            signals.restore()


def watch_containers(config: RunConfig, session: Session, state: decoders.State) -> ct.Watch | None:
    """The node's containers, listed every second in a thread: made when a column first
    decoded a container (decoders.State.containers), or here for --container/--pod, whose
    scope puts newly started containers into the kernel's cgroup array at each listing."""
    if not config.scope.selectors:
        return state.watch
    watch = state.containers()
    keep_scope(watch, session, config.scope)
    return watch


def keep_scope(watch: ct.Watch, session: Session, scope: Scope) -> None:
    """--container/--pod kept current in a session's cgroup array at each listing."""
    table = session.bpf[resources.CGROUPS]
    slots = session.program.cgroup_slots
    keep_current(watch, table, slots, scope.cgroups, scope.selectors, say)


def check_privileges() -> None:
    root = capabilities.probe("root")
    if not root.ok:
        raise EngineError(
            f"engine run needs root or CAP_BPF+CAP_PERFMON ({root.detail}); "
            "try: sudo engine run ..."
        )
    headers = capabilities.probe("headers")
    if not headers.ok:
        raise EngineError(f"kernel headers missing ({headers.detail}): {headers.remedy}")
    tracefs = capabilities.probe("tracefs")
    if not tracefs.ok:
        raise EngineError(f"tracefs is not mounted ({tracefs.detail}): {tracefs.remedy}")


def active_columns(plan: M.Plan, config: RunConfig) -> list[M.Column]:
    return [c for c in plan.columns if c.shown(config.options)]


def envelope(plan: M.Plan, program: M.Program) -> dict[str, str]:
    """The constant part of a JSON row's envelope. `probe` names the emitting probe; where
    several emit the same event (which does not record which), their names joined by ','."""
    import socket

    probes = ",".join(p.name for p in program.probes if p.emits)
    return {"host": socket.gethostname(), "spec": plan.name, "probe": probes}


class EventLoop:
    """Polls the Program's runtime sinks (engine.runtime.loop): events become the chosen
    columns, printed in batches; aggregations print at each interval and at the end."""

    def __init__(
        self,
        plan: M.Plan,
        config: RunConfig,
        session: Session,
        columns: list[M.Column],
        out: TextIO,
        stop: signals.Stop,
    ) -> None:
        self.config = config
        self.session = session
        self.out = out
        self.stop = stop
        # text cells exact where the format escapes them itself (JSON); tables/CSV: escaped
        self.state = decoders.State(exact_text=RENDERERS[config.fmt].exact_text)
        stack_map = session.resources.stacks
        self.user_stacks = user_stack_places(session.program)  # their pids, read while alive
        if stack_map is not None:
            self.state.stacks = StackReader(session.bpf[stack_map.name])
        fields = {f.name: f for f in plan.fields}
        # --envelope: the constant part every JSON row leads with; each row adds its own
        # container and pod (RowMaker.row)
        self.envelope = envelope(plan, session.program) if config.envelope else None
        self.printer = Printer(
            config.fmt,
            [
                (c.field, c.header, c.width, decoders.REGISTRY[fields[c.field].decoder].decimal)
                for c in columns
            ],
            out,
            self.envelope,
        )
        self.rows = RowMaker(plan, plan.event, columns, self.state, names=config.envelope)
        aggregates = AggregatePrinter(
            session.program, config.fmt, out, self.state, sort=config.sort, top=config.top,
            intervals=config.interval > 0, clock=config.clock,
        )  # fmt: skip
        self.sinks = runtime_sinks(session, self.on_event, aggregates, config.clear, say)
        self.events = [s for s in self.sinks if isinstance(s, BufferEvents)]
        self.errors_seen = [0] * len(session.program.errors)
        self.evicted_seen = [0] * len(session.program.states)
        self.broken = False
        self.reader_gone = closed_pipe_watch(out)

    def open(self) -> None:
        """Open every buffer: before "Tracing", so nothing sent after it is lost."""
        for sink in self.sinks:
            sink.open()

    def run(self) -> int:
        deadline = time.monotonic() + self.config.duration if self.config.duration else None
        next_report = (time.monotonic() + self.config.interval) if self.config.interval else None
        waits = any(s.waits for s in self.sinks)
        next_remember = time.monotonic()
        try:
            if self.events:
                self.printer.header()
                self.flush()
            while not self.stop.requested and not self.broken:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if self.reader_gone():  # `| head -1` with no event: the write would never come
                    self.broken = True
                    break
                for sink in self.sinks:
                    sink.poll(now)
                if self.user_stacks and now >= next_remember:
                    self.state.stacks.remember(self.session.bpf, self.user_stacks)
                    next_remember = now + REMEMBER_EVERY
                if not waits:
                    time.sleep(POLL_MS / 1000)
                self.flush()
                if next_report is not None and now >= next_report:
                    self.report()
                    next_report = now + self.config.interval
            if not self.broken:
                for sink in self.sinks:
                    sink.finish()  # what is still buffered; the aggregations' last print
                self.flush()
        except BrokenPipeError:
            self.broken = True
        for events in self.events:
            events.check_lost(final=True)
        self.check_errors()
        if self.state.stacks is not None and self.state.stacks.report():
            say(self.state.stacks.report())
        if self.broken:
            stop_writing(self.out)
        return 0

    def on_event(self, raw: bytes) -> None:
        """Per event: unpack, format; written later in one batch."""
        self.printer.row(*self.rows.row(raw))

    def report(self) -> None:
        """An interval's end: each sink's report, then what the kernel counted as failed."""
        for sink in self.sinks:
            sink.report()
        self.check_errors()

    def flush(self) -> None:
        try:
            self.printer.flush()
        except BrokenPipeError:
            self.broken = True
            self.stop.requested = True

    def check_errors(self) -> None:
        """Failed state updates, keys an LRU state map evicted (each an event that will find
        nothing to pair with) and dropped aggregation keys, once each, with their cause."""
        counts = self.session.errors()
        for i, (n, seen) in enumerate(zip(counts, self.errors_seen)):
            if n > seen:
                say(f"{self.session.program.errors[i]}: {n - seen}")
                self.errors_seen[i] = n
        states = self.session.program.states
        for i, (n, seen) in enumerate(zip(self.session.evicted(), self.evicted_seen)):
            if n > seen:
                st = states[i]
                say(f"state '{st.name}': keys evicted (LRU map full, size {st.size}): {n - seen}")
                self.evicted_seen[i] = n


def closed_pipe_watch(out: TextIO) -> Callable[[], bool]:
    """A check that stdout's reader went away, for a pipe or socket (a pipe whose reader
    closed reports POLLERR on the write end); other outputs are never "gone" before a write."""
    try:
        fd = out.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        return lambda: False
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return lambda: False
    watch = select.poll()
    watch.register(fd, 0)  # POLLERR and POLLHUP are always reported
    return lambda: bool(watch.poll(0))
