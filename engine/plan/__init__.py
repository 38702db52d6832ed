"""plan: spec + BTF -> Plan (resolved, typed), and bind: Plan + a run's choices -> Program."""
