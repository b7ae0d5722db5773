"""``robench leaderboard get TRACK ENTRY [--out FILE]``: fetch and verify an entry's weights, say where they are and
how to load them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robench.zoo.fetch import copy_out
from robench.zoo.load import fetch_entry
from robench.zoo.manifest import ZooEntry, zoo_entry


@dataclass(frozen=True)
class Fetched:
    """A zoo entry's verified weights file (``path``), and the copy ``--out`` asked for (``copy``)."""

    entry: ZooEntry
    path: Path
    copy: Path | None = None

    def lines(self) -> list[str]:
        """What the command prints: where the weights are and how to load them."""
        e, w = self.entry, self.entry.weights
        model = e.model
        args = [f"protocol={model.protocol!r}", f"defense={model.defense!r}"]
        args += [f"{k}={v!r}" for k, v in (("profile", model.profile), ("dataset_id", model.dataset)) if v]
        where = self.copy or self.path
        loader = (f"from safetensors.torch import load_file; state = load_file({str(where)!r})"
                  if w.format == "safetensors" else f"state = torch.load({str(where)!r}, weights_only=True)")
        return [
            f"{e.track}/{e.id} ({e.name}): model {e.model_id}, {w.format}, {self.path.stat().st_size} bytes, "
            f"sha256:{w.sha256} (verified)",
            f"weights: {where}" + (f" (copied from {self.path})" if self.copy is not None else ""),
            f"load it:  model = robench.load_model({e.track!r}, {e.id!r}, device='cpu')   # the evaluated model, "
            "in eval mode",
            f"by hand:  {loader}",
            f"          model = robench.build_model({', '.join(args)}); model.load_state_dict(state); model.eval()",
        ]


def get(track: str, entry: str, cache: Path, out: Path | None = None, manifest: str | Path | None = None) -> Fetched:
    """Fetch (once, into ``cache``) and verify the weights of ``entry`` of ``track``; copy them to ``out`` if given."""
    found = zoo_entry(track, entry, manifest)
    path = fetch_entry(found, cache)
    return Fetched(found, path, copy_out(path, out) if out is not None else None)
