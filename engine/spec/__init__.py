"""spec: YAML with locations, the JSON Schema check, the expression parser."""
