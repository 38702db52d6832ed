"""codegen: Program -> BPF C and the Python decoder, through templates/."""
