"""kernel: what the kernel offers: BTF types, tracefs formats, feature probes."""
