"""`engine` with bench-only knobs, without touching the engine's code.

    python -m bench.engine_wrap [--profile OUT.prof] -- run SPEC [flags]

--profile        cProfile the reader loop only (EventLoop.run: poll, decode, print), not
                 start-up; the stats are written to OUT.prof when the engine exits.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("usage: python -m bench.engine_wrap [options] -- run SPEC ...", file=sys.stderr)
        return 2
    split = args.index("--")
    p = argparse.ArgumentParser(prog="python -m bench.engine_wrap")
    p.add_argument("--profile", metavar="OUT")
    opts = p.parse_args(args[:split])
    engine_argv = args[split + 1 :]

    from engine import cli
    from engine.runtime import runner

    if opts.profile:
        real_loop = runner.EventLoop.run
        out = opts.profile

        def profiled(self: Any) -> int:
            prof = cProfile.Profile()
            prof.enable()
            try:
                return real_loop(self)
            finally:
                prof.disable()
                prof.dump_stats(out)

        runner.EventLoop.run = profiled  # type: ignore[method-assign]

    return cli.main(engine_argv)


if __name__ == "__main__":
    sys.exit(main())
