"""Run-time options (mixed precision, channels-last, loader workers, pinned memory) exercised on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_PROTOCOL, tiny_inputs, tiny_model
from robench.cli import main
from robench.data.base import TensorClipDataset, batch_indices
from robench.errors import RobenchError
from robench.runtime import RuntimeOptions
from robench.store import ResultsStore


def test_defaults_per_device() -> None:
    cpu = RuntimeOptions.for_device(torch.device("cpu"))
    assert cpu == RuntimeOptions(amp=False, channels_last=True, workers=0, pin_memory=False)
    assert not RuntimeOptions.for_device(torch.device("cpu"), channels_last="off").channels_last
    forced = RuntimeOptions.for_device(torch.device("cpu"), amp="on", channels_last="on", workers=2)
    assert forced.amp and forced.channels_last and forced.workers == 2
    with pytest.raises(RobenchError):
        RuntimeOptions.for_device(torch.device("cpu"), amp="maybe")


def test_bf16_autocast_training_step_on_cpu() -> None:
    model = tiny_model().train()
    runtime = RuntimeOptions(amp=True)
    x, y = tiny_inputs(4), torch.tensor([0, 1, 2, 3])
    with runtime.autocast(torch.device("cpu")):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32


def test_channels_last_gives_the_same_outputs() -> None:
    model, x = tiny_model(), tiny_inputs(3)
    with torch.no_grad():
        before = model(x)
        RuntimeOptions(channels_last=True).prepare_model(model)
        after = model(x)
    conv = model.backbones["rgb"].stages["Conv3d_1a_7x7"].conv3d.weight
    assert conv.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize("runtime", [RuntimeOptions(workers=2), RuntimeOptions(workers=0, pin_memory=True)])
def test_loader_yields_the_same_batches(runtime: RuntimeOptions) -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorClipDataset(torch.randint(0, 256, (10, 3, 2, 4, 4), dtype=torch.uint8, generator=g),
                             torch.randn(10, 3, 4, 25, 2, generator=g), torch.arange(10), [str(i) for i in range(10)])
    index = batch_indices(10, 4, shuffle=True, generator=torch.Generator().manual_seed(1))
    inline = list(RuntimeOptions().batches(data, index))
    loaded = list(runtime.batches(data, index))
    assert len(loaded) == len(inline) == 3
    for a, b in zip(inline, loaded):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_with_every_option_forced_on(tmp_path) -> None:
    """The CUDA-default code paths (bf16 autocast, channels-last, workers) run end to end on the CPU."""
    store = tmp_path / "r.sqlite"
    assert main(["run", str(TINY_PROTOCOL), "--store", str(store), "--progress", "quiet", "--amp", "on",
                 "--channels-last", "on", "--workers", "2", "--set", "training.epochs=1"]) == 0
    df = ResultsStore(store).dataframe()
    assert len(df) == 8 and df["accuracy"].between(0, 1).all()
