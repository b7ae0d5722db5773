"""Protocols: YAML files that say what to train, attack and report (load -> validate -> Protocol)."""

from robench.protocol.load import RawProtocol, bundled_protocols, load_raw
from robench.protocol.schema import (
    COLUMNS,
    SCENARIOS,
    AttackEntry,
    Component,
    DefenseEntry,
    EvaluationConfig,
    Protocol,
    TableSpec,
    ThreatConfig,
    TrainingConfig,
    Variant,
    load_protocol,
    validate,
)

__all__ = [
    "COLUMNS", "SCENARIOS", "AttackEntry", "Component", "DefenseEntry", "EvaluationConfig", "Protocol",
    "RawProtocol", "TableSpec", "ThreatConfig", "TrainingConfig", "Variant", "bundled_protocols", "load_protocol",
    "load_raw", "validate",
]
