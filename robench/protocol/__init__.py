"""Protocols: YAML files that say what to train, attack and report (load -> validate -> Protocol)."""

from robench.protocol.check import Component
from robench.protocol.layout import CLAIMS, ClaimSpec, ColumnSpec, FigureSpec, RowSpec, TableSpec
from robench.protocol.load import RawProtocol, bundled_protocols, load_raw
from robench.protocol.schema import (
    COLUMNS,
    SCENARIOS,
    AttackEntry,
    DefenseEntry,
    EvaluationConfig,
    Protocol,
    ThreatConfig,
    TrainingConfig,
    Variant,
    load_protocol,
    validate,
)

__all__ = [
    "CLAIMS", "COLUMNS", "SCENARIOS", "AttackEntry", "ClaimSpec", "ColumnSpec", "Component", "DefenseEntry",
    "EvaluationConfig", "FigureSpec", "Protocol", "RawProtocol", "RowSpec", "TableSpec", "ThreatConfig",
    "TrainingConfig", "Variant", "bundled_protocols", "load_protocol", "load_raw", "validate",
]
