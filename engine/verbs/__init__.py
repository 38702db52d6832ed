"""verbs: validate, verify (--compile), explain, doctor."""
