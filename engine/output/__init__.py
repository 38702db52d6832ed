"""Output values and their renderers (filled in by the outputs work of issue 18)."""
