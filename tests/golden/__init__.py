"""Golden files: the rendered C and decoders of specs/*.yaml (see regenerate.py)."""
