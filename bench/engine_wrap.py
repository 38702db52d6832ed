"""`engine` with bench-only knobs, without touching the engine's code.

    python -m bench.engine_wrap [--ringbuf-pages N] [--profile OUT.prof] -- run SPEC [flags]

--ringbuf-pages  size the ring buffer (the CLI has no flag for it): a deliberately tiny
                 buffer (1 page) proves that lost events are still counted and reported.
--profile        cProfile the reader loop only (EventLoop.run: poll, decode, print), not
                 start-up; the stats are written to OUT.prof when the engine exits.
--fix-lost       replace Session.lost() with the fix proposed in docs/performance.md: it reads
                 `v.value` from the per-CPU array, whose items are ints, so the AttributeError
                 is swallowed and it always returns 0 (no lost event is ever reported).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("usage: python -m bench.engine_wrap [options] -- run SPEC ...", file=sys.stderr)
        return 2
    split = args.index("--")
    p = argparse.ArgumentParser(prog="python -m bench.engine_wrap")
    p.add_argument("--ringbuf-pages", type=int, default=0)
    p.add_argument("--profile", metavar="OUT")
    p.add_argument("--fix-lost", action="store_true")
    opts = p.parse_args(args[:split])
    engine_argv = args[split + 1 :]

    from engine import cli, runner

    if opts.ringbuf_pages:
        real_run = runner.run

        def run_small(plan: Any, config: runner.RunConfig, *a: Any, **k: Any) -> int:
            config = dataclasses.replace(config, ringbuf_pages=opts.ringbuf_pages)
            return real_run(plan, config, *a, **k)

        runner.run = run_small  # cli looks runner.run up at call time

    if opts.fix_lost:

        def lost(self: Any) -> int:
            return int(sum(self.bpf["lost"][0]))  # per-CPU values are plain ints

        runner.Session.lost = lost  # type: ignore[method-assign]

    if opts.profile:
        real_loop = runner.EventLoop.run
        out = opts.profile

        def profiled(self: Any, mode: str) -> int:
            prof = cProfile.Profile()
            prof.enable()
            try:
                return real_loop(self, mode)
            finally:
                prof.disable()
                prof.dump_stats(out)

        runner.EventLoop.run = profiled  # type: ignore[method-assign]

    return cli.main(engine_argv)


if __name__ == "__main__":
    sys.exit(main())
