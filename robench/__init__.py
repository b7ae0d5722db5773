"""robench: adversarial-robustness benchmark for RGB-video + skeleton action recognition.

Public API (imported lazily, so ``import robench`` stays cheap)::

    from robench import register_defense, register_attack, register_dataset, register_backbone
    from robench import Defense, LossOutput, TrainContext          # write a defense
    from robench import Attack, EngineAttack, IterativeAttack       # write an attack
    from robench import TwoStreamModel, Backbone                    # the model interface
    from robench import DatasetProvider, ClipDataset                # write a dataset
    from robench import ResultsStore, load_protocol                 # read results, protocols
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "register_defense": "robench.registry",
    "register_attack": "robench.registry",
    "register_dataset": "robench.registry",
    "register_backbone": "robench.registry",
    "DEFENSES": "robench.registry",
    "ATTACKS": "robench.registry",
    "DATASETS": "robench.registry",
    "BACKBONES": "robench.registry",
    "Defense": "robench.defenses.base",
    "LossOutput": "robench.defenses.base",
    "TrainContext": "robench.train.context",
    "Attack": "robench.attacks.base",
    "IterativeAttack": "robench.attacks.iterative",
    "EngineAttack": "robench.attacks.engine",
    "TwoStreamModel": "robench.models.two_stream",
    "ModelOutput": "robench.models.two_stream",
    "Backbone": "robench.models.backbone",
    "DatasetProvider": "robench.data.base",
    "ClipDataset": "robench.data.base",
    "TensorClipDataset": "robench.data.base",
    "ResultsStore": "robench.store",
    "load_protocol": "robench.protocol",
    "RobenchError": "robench.errors",
    "attack": "robench.api",
    "dataset": "robench.api",
    "build_model": "robench.api",
    "load_model": "robench.api",
    "evaluate": "robench.api",
    "evaluate_protocol": "robench.api",
    "run": "robench.api",
    "render_report": "robench.api",
    "load_track": "robench.leaderboard.tracks",
    "TrackResult": "robench.api",
    "CellOutcome": "robench.api",
    "ClipTorchDataset": "robench.api",
    "TwoInputs": "robench.models.adapters",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robench' has no attribute {name!r}")
