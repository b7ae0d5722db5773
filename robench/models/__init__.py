"""Backbones (I3D, HCN) and the two-stream fusion model."""

from robench.models.adapters import TwoInputs
from robench.models.backbone import Backbone
from robench.models.hcn import HCN
from robench.models.i3d import I3D
from robench.models.provided import ProvidedBranch, ProvidedModel
from robench.models.two_stream import ModelOutput, TwoStreamModel

__all__ = ["HCN", "I3D", "Backbone", "ModelOutput", "ProvidedBranch", "ProvidedModel", "TwoInputs", "TwoStreamModel"]
