"""A CPU-bound C program the sampling tests build with gcc: main -> hot_outer -> hot_a (about
two thirds of the time) and hot_outer -> hot_b (one third), each a loop of known length, until
killed. Built with frame pointers everywhere (gcc 12 drops the leaf's at -O1 and above unless
-mno-omit-leaf-frame-pointer; -O0 keeps every frame), so user stacks unwind to main.

    spin
prints its pid, then spins.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import procs
import pytest

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
__attribute__((noinline)) void hot_a(void) { for (int i = 0; i < 2000; i++) sink += i; }
__attribute__((noinline)) void hot_b(void) { for (int i = 0; i < 1000; i++) sink += i; }
__attribute__((noinline)) void hot_outer(void) { hot_a(); hot_b(); }

int main(int argc, char **argv)
{
    /* with an argument: exits after that many seconds of CPU time */
    clock_t end = argc > 1 ? clock() + atoi(argv[1]) * CLOCKS_PER_SEC : 0;
    printf("%d\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        hot_outer();
        if (end && clock() >= end)
            return 0;
    }
}
"""
CFLAGS = ("-O0", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer")
FUNCTIONS = ("hot_a", "hot_b", "hot_outer", "main")


def build(folder: Path, name: str = "spin") -> Path:
    return _build(folder, name, SOURCE)


def start_pinned(prog: Path, *args: str) -> subprocess.Popen[str]:
    """The spinner on one CPU (the last this test may use), once it has printed its pid."""
    cpu = max(os.sched_getaffinity(0))
    child = procs.spawn(
        [str(prog), *args], stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )  # fmt: skip
    assert child.stdout is not None
    assert int(child.stdout.readline()) == child.pid
    return child


FORKER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

__attribute__((noinline)) void spawn_one(void)
{
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    waitpid(p, 0, 0);
}

__attribute__((noinline)) void spawn_many(int n) { for (int i = 0; i < n; i++) spawn_one(); }

int main(int argc, char **argv)
{
    char line[16];
    printf("%d\n", (int)getpid());
    fflush(stdout);
    if (argc != 2 || !fgets(line, sizeof line, stdin))
        return 1;
    spawn_many(atoi(argv[1]));
    printf("done\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))  /* held until told: bpftrace names its frames late */
        return 1;
    return 0;
}
"""


def build_forker(folder: Path) -> Path:
    """`forker N`: prints its pid, forks N children (each exits at once) from spawn_one()
    when a line arrives, prints "done", exits at the next line."""
    return _build(folder, "forker", FORKER)


SLEEPER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) void nap(int n, long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    for (int i = 0; i < n; i++)
        nanosleep(&ts, 0);
}

__attribute__((noinline)) void wait_pipe(void)
{
    char c;
    if (read(0, &c, 1) != 1)  /* blocks until the test writes */
        exit(1);
}

int main(int argc, char **argv)
{
    char line[16];
    printf("%d\n", (int)getpid());
    fflush(stdout);
    if (argc != 3 || !fgets(line, sizeof line, stdin))
        return 1;
    nap(atoi(argv[1]), atol(argv[2]));
    printf("napped\n");
    fflush(stdout);
    wait_pipe();
    printf("done\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    return 0;
}
"""


def build_sleeper(folder: Path) -> Path:
    """`sleeper N MS`: prints its pid, at a line sleeps N times MS ms in nap() (nanosleep),
    prints "napped", blocks in wait_pipe() (read of stdin) until a byte arrives, prints "done",
    exits at the next line."""
    return _build(folder, "sleeper", SLEEPER)


def _build(folder: Path, name: str, source: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is missing: scripts/setup.sh installs it")
    src = folder / f"{name}.c"
    src.write_text(source)
    out = folder / name
    subprocess.run([gcc, *CFLAGS, "-o", str(out), str(src)], check=True, timeout=120)
    return out
