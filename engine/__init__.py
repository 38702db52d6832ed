"""A declarative, YAML-driven eBPF probe engine.

Pipeline (one module per stage): loader -> schema -> planner (semantics against BTF)
-> render (Jinja: BPF C + ctypes decoder) -> runner (bcc: load, attach, poll, print).
"""

__version__ = "0.1.0"
