"""The corruption suite: invariants of every registered corruption at every severity, then each one's
mechanism against what its docstring says (known answers on tiny clips)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from robench.corruptions import SEVERITIES, Corruption
from robench.corruptions import video as video_mod
from robench.corruptions.rgb import disk_kernel, motion_kernel
from robench.corruptions.skeleton import LEFT_JOINTS, LEFT_RIGHT_PERMUTATION, RIGHT_JOINTS, resample, swap_left_right
from robench.registry import CORRUPTIONS, load_builtins

load_builtins()
BUILTINS = [n for n in CORRUPTIONS.names() if CORRUPTIONS.entry(n).source == "builtin"]
#: the corruptions that draw from the per-clip generator (the others must ignore the seed)
RANDOM = {"gaussian-noise", "shot-noise", "motion-blur", "occlusion", "frame-drop", "joint-jitter", "missing-joints",
          "missing-frames", "left-right-swap", "temporal-resample"}
FAMILIES = {"noise", "blur", "digital", "video", "occlusion", "pose", "timing", "persons", "missing"}
EXPECTED = {"gaussian-noise", "shot-noise", "motion-blur", "defocus-blur", "brightness", "contrast", "occlusion",
            "h264", "frame-drop", "frame-rate", "joint-jitter", "missing-joints", "missing-frames", "truncated-body",
            "left-right-swap", "temporal-resample", "second-person-swap", "second-person-missing", "rgb-missing",
            "rgb-blank", "skeleton-missing"}

# -- tiny clips ----------------------------------------------------------------------------------------

#: a standing person facing the camera, joint offsets from the base of the spine in metres (x, y)
_POSE = {0: (0.0, 0.0), 1: (0.0, 0.3), 2: (0.0, 0.6), 3: (0.0, 0.75), 20: (0.0, 0.55),
         4: (-0.18, 0.55), 5: (-0.25, 0.3), 6: (-0.28, 0.05), 7: (-0.29, -0.02), 21: (-0.3, -0.1), 22: (-0.26, -0.05),
         12: (-0.1, -0.05), 13: (-0.1, -0.5), 14: (-0.1, -0.9), 15: (-0.1, -0.95)}
for _left, _right in zip(LEFT_JOINTS, RIGHT_JOINTS):
    _POSE[_right] = (-_POSE[_left][0], _POSE[_left][1])


def skeleton_clip(t: int = 16, persons: int = 2, seed: int = 0) -> torch.Tensor:
    """``[3, t, 25, 2]``: standing bodies waving their right arm, 3 m from the camera (body 1 absent if
    ``persons == 1``); no coordinate is exactly zero."""
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros(3, 25)
    for j, (x, y) in _POSE.items():
        base[:, j] = torch.tensor([x + 0.013, y + 0.1, 3.0])
    frames = base.unsqueeze(1).repeat(1, t, 1).clone()
    wave = torch.sin(torch.arange(t) * 0.6) * 0.15
    for j in (9, 10, 11, 23, 24):
        frames[0, :, j] += wave
        frames[1, :, j] += 0.4 * wave.abs()
    frames = frames + 0.003 * torch.randn(frames.shape, generator=g)
    clip = torch.zeros(3, t, 25, 2)
    clip[..., 0] = frames
    if persons == 2:
        clip[..., 1] = frames + torch.tensor([0.9, 0.02, 0.4]).view(3, 1, 1)
    return clip


def rgb_clip(t: int = 8, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """``[3, t, h, w]`` in [0, 1]: a moving smooth texture with a little noise, different in every frame."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    frames = []
    for k in range(t):
        b = 0.5 + 0.2 * torch.sin(12 * (xx + 0.03 * k)) * torch.cos(9 * yy) + 0.2 * (
            (xx - 0.3 - 0.05 * k) ** 2 + (yy - 0.5) ** 2 < 0.05).float()
        frames.append(torch.stack([b, b.flip(1), 1 - b]))
    x = torch.stack(frames, 1)
    return (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def batch() -> dict[str, torch.Tensor]:
    """Two clips: RGB, and a two-person then a one-person skeleton."""
    return {"rgb": torch.stack([rgb_clip(seed=1), rgb_clip(seed=2)]),
            "skeleton": torch.stack([skeleton_clip(persons=2), skeleton_clip(persons=1, seed=3)])}


def run(name: str, x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """One clip through ``Corruption.__call__`` (with the other modality alongside)."""
    c = CORRUPTIONS.build(name)
    other = {"rgb": skeleton_clip(), "skeleton": rgb_clip()}  # any tensor: only passed through
    inputs = {c.modality: x.unsqueeze(0), "skeleton" if c.modality == "rgb" else "rgb": other[c.modality][None]}
    return c(inputs, severity, torch.tensor([seed]))[c.modality][0]


# -- every corruption, every severity --------------------------------------------------------------------

def test_the_builtins_are_registered() -> None:
    assert set(BUILTINS) == EXPECTED
    assert RANDOM <= EXPECTED


@pytest.mark.parametrize("name", BUILTINS)
def test_declares_what_it_is(name: str) -> None:
    cls = CORRUPTIONS.get(name)
    c = CORRUPTIONS.build(name)
    assert isinstance(c, Corruption)
    assert cls.registry_name == name and isinstance(cls.version, int) and cls.version >= 1
    assert cls.modality in ("rgb", "skeleton")
    assert cls.family in FAMILIES
    assert cls.unit
    assert len(cls.levels) == len(SEVERITIES) == 5
    assert all(isinstance(v, float) and math.isfinite(v) for v in cls.levels)
    assert CORRUPTIONS.describe(name)
    assert len(cls.__doc__ or "") > 150, "the docstring says what it does, its unit and its source"


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", BUILTINS)
def test_contract(name: str, severity: int) -> None:
    c = CORRUPTIONS.build(name)
    inputs = batch()
    before = {k: v.clone() for k, v in inputs.items()}
    seeds = torch.tensor([5, 6])
    out = c(inputs, severity, seeds)
    again = c(inputs, severity, seeds)
    for k in inputs:
        assert torch.equal(inputs[k], before[k]), "the inputs were changed in place"
    y = out[c.modality]
    assert y.shape == inputs[c.modality].shape and y.dtype == inputs[c.modality].dtype
    assert torch.isfinite(y).all()
    if c.modality == "rgb":
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    else:  # the one-person clip's absent body stays zero, bit for bit (no -0.0 either)
        assert not y[1, ..., 1].contiguous().view(torch.int32).any()
    other = "skeleton" if c.modality == "rgb" else "rgb"
    assert torch.equal(out[other], inputs[other])
    assert torch.equal(y, again[c.modality]), "not deterministic for the same seed"


@pytest.mark.parametrize("name", BUILTINS)
def test_seed(name: str) -> None:
    c = CORRUPTIONS.build(name)
    inputs = batch()
    outs = [c(inputs, 3, torch.tensor([s, s]))[c.modality] for s in range(6)]
    distinct = {tuple(o.flatten().tolist()) for o in outs}
    if name in RANDOM:
        assert len(distinct) > 1, "different seeds should corrupt differently"
    else:
        assert len(distinct) == 1, "a corruption without randomness must not depend on the seed"


@pytest.mark.parametrize("name", BUILTINS)
def test_mixed_precision_does_not_change_it(name: str) -> None:
    """Evaluation runs corruptions inside the forward pass's autocast (bfloat16 under --amp)."""
    c = CORRUPTIONS.build(name)
    inputs, seeds = batch(), torch.tensor([1, 2])
    plain = c(inputs, 3, seeds)[c.modality]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(c(inputs, 3, seeds)[c.modality], plain)


@pytest.mark.parametrize("name", BUILTINS)
def test_severity_out_of_range(name: str) -> None:
    c = CORRUPTIONS.build(name)
    for bad in (0, 6, -1):
        with pytest.raises(ValueError, match="severity"):
            c(batch(), bad, torch.tensor([0, 1]))


# -- RGB: known answers ------------------------------------------------------------------------------------

def test_gaussian_noise_std() -> None:
    x = torch.full((3, 8, 32, 32), 0.5)
    for s, sigma in zip(SEVERITIES, CORRUPTIONS.get("gaussian-noise").levels):
        std = float((run("gaussian-noise", x, s) - x).std())
        tol = 0.05 if s < 5 else 0.08  # level 5 clips a little at 0 and 1
        assert std == pytest.approx(sigma / 255, rel=tol)


def test_shot_noise_is_poisson() -> None:
    x = torch.full((3, 8, 32, 32), 0.5)
    for s, photons in ((1, 60.0), (2, 25.0)):
        y = run("shot-noise", x, s)
        assert float(y.mean()) == pytest.approx(0.5, abs=0.01)
        assert float(y.var()) == pytest.approx(0.5 / photons, rel=0.08)
        assert torch.allclose(y * photons, (y * photons).round(), atol=1e-4)  # whole photon counts


@pytest.mark.parametrize("name", ["motion-blur", "defocus-blur"])
def test_blur_keeps_a_constant_clip_and_spreads_a_point(name: str) -> None:
    flat = torch.full((3, 4, 32, 32), 0.3)
    point = torch.zeros(3, 2, 64, 64)
    point[:, :, 32, 32] = 1.0
    spread = []
    for s in SEVERITIES:
        assert torch.allclose(run(name, flat, s), flat, atol=1e-6)
        y = run(name, point, s)
        assert float(y.sum()) == pytest.approx(float(point.sum()), rel=1e-5)  # a normalised kernel
        assert float(y.max()) < 1.0
        spread.append(int((y[0, 0] > 1e-6).sum()))
    assert spread == sorted(spread) and spread[-1] > spread[0]


def test_blur_kernels() -> None:
    k = motion_kernel(6.0, 0.0)
    assert float(k.sum()) == pytest.approx(1.0)
    c = k.shape[0] // 2
    assert float(k[c].sum()) == pytest.approx(1.0) and torch.allclose(k, k.flip(1))  # horizontal, centred
    assert torch.allclose(motion_kernel(6.0, math.pi / 2), k.T, atol=1e-6)
    d = disk_kernel(2.5)
    assert float(d.sum()) == pytest.approx(1.0)
    assert torch.allclose(d, d.T) and torch.allclose(d, d.flip(0)) and float(d[0, 0]) == 0.0
    assert motion_kernel(0.5, 0.3).shape == (3, 3)


def test_brightness_of_a_constant_clip() -> None:
    for s, shift in zip(SEVERITIES, (0.1, 0.2, 0.3, 0.4, 0.5)):
        y = run("brightness", torch.full((3, 2, 8, 8), 0.3), s)
        assert torch.allclose(y, torch.full_like(y, 0.3 + shift))
        if shift >= 0.3:  # clipped at full scale
            assert torch.equal(run("brightness", torch.full((3, 2, 8, 8), 0.8), s), torch.ones(3, 2, 8, 8))


def test_contrast() -> None:
    flat = torch.full((3, 2, 8, 8), 0.7)
    x = rgb_clip()
    for s, factor in zip(SEVERITIES, CORRUPTIONS.get("contrast").levels):
        assert torch.allclose(run("contrast", flat, s), flat)
        y = run("contrast", x, s)
        assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6)  # each frame's mean kept
        assert torch.allclose(y.std(dim=(2, 3)), factor * x.std(dim=(2, 3)), atol=1e-5)


def test_occlusion_covers_its_share_in_every_frame() -> None:
    x = torch.rand(3, 4, 40, 40, generator=torch.Generator().manual_seed(0)) * 0.4  # never 0.5
    for s, share in zip(SEVERITIES, CORRUPTIONS.get("occlusion").levels):
        grey = (run("occlusion", x, s) == 0.5).all(dim=0)  # [T, H, W]
        assert all(torch.equal(grey[0], g) for g in grey)  # static
        assert float(grey[0].float().mean()) == pytest.approx(share, abs=0.03)
    placed = {tuple((run("occlusion", x, 1, seed) == 0.5).all(0)[0].nonzero()[0].tolist()) for seed in range(6)}
    assert len(placed) > 1


# -- video: known answers ------------------------------------------------------------------------------------

def test_h264_error_grows_as_the_bitrate_drops() -> None:
    x = rgb_clip(t=8, h=64, w=64)
    errors = [float((run("h264", x, s) - x).pow(2).mean().sqrt()) for s in SEVERITIES]
    assert all(b >= a - 1e-4 for a, b in itertools.pairwise(errors)), errors
    assert errors[4] > errors[2] > errors[0] > 0


def test_h264_is_bit_identical_twice_and_keeps_odd_sizes() -> None:
    x = rgb_clip(t=5, h=31, w=33)
    a, b = run("h264", x, 2), run("h264", x, 2, seed=9)
    assert a.shape == x.shape and torch.equal(a, b)


def test_h264_without_an_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_mod, "H264_ENCODERS", ("no-such-encoder",))
    monkeypatch.setattr(video_mod, "_encoder_name", None)
    with pytest.raises(RuntimeError, match=r"H\.264 encoder"):
        run("h264", rgb_clip(t=2), 1)


def test_frame_drop_only_repeats_earlier_frames() -> None:
    x = torch.arange(20, dtype=torch.float32).view(1, 20, 1, 1).expand(3, 20, 4, 4) / 20  # frame t has value t/20
    for s, share in zip(SEVERITIES, CORRUPTIONS.get("frame-drop").levels):
        source = (run("frame-drop", x, s)[0, :, 0, 0] * 20).round().long()
        assert int(source[0]) == 0  # the first frame is kept
        assert bool((source[1:] >= source[:-1]).all()) and bool((source <= torch.arange(20)).all())
        assert 20 - len(set(source.tolist())) == round(share * 20)


def test_frame_rate_holds_every_kth_frame() -> None:
    x = rgb_clip(t=16)
    for s, k in zip(SEVERITIES, (2, 3, 4, 6, 8)):
        y = run("frame-rate", x, s)
        for t in range(16):
            assert torch.equal(y[:, t], x[:, (t // k) * k])


# -- skeleton: known answers ---------------------------------------------------------------------------------

def test_joint_jitter_std_in_metres() -> None:
    x = skeleton_clip(t=64)
    for s, cm in zip(SEVERITIES, (0.5, 1.0, 2.0, 4.0, 8.0)):
        d = run("joint-jitter", x, s, seed=s) - x
        assert float(d.std()) == pytest.approx(cm / 100, rel=0.06)
    one = skeleton_clip(persons=1)
    one[:, 3, 7, 0] = 0  # a joint the estimator lost stays lost
    y = run("joint-jitter", one, 5)
    assert not y[..., 1].any() and not y[:, 3, 7, 0].any()


def test_missing_joints_probability() -> None:
    x = skeleton_clip(t=200)
    for s, p in zip(SEVERITIES, CORRUPTIONS.get("missing-joints").levels):
        y = run("missing-joints", x, s)
        lost = (y == 0).all(dim=0)  # [T, J, M]
        assert float(lost.float().mean()) == pytest.approx(p, abs=0.015)
        kept = ~lost
        assert torch.equal(y[:, kept], x[:, kept])  # the others untouched


def test_missing_frames_empties_a_share_of_frames() -> None:
    x = skeleton_clip(t=20)
    for s, share in zip(SEVERITIES, CORRUPTIONS.get("missing-frames").levels):
        y = run("missing-frames", x, s)
        empty = ~y.flatten(2).any(dim=(0, 2))
        assert int(empty.sum()) == round(share * 20)
        assert torch.equal(y[:, ~empty], x[:, ~empty])


def test_truncated_body_cuts_from_the_feet_up() -> None:
    x = skeleton_clip(persons=1)
    remaining = []
    for s in SEVERITIES:
        y = run("truncated-body", x, s)
        present = y.ne(0).any(dim=0)[..., 0]  # [T, J]
        assert not present[:, [15, 19]].any()  # feet go first
        assert present[:, [2, 3, 20]].all()  # neck, head and shoulders stay
        assert not y[..., 1].any()
        remaining.append(int(present.sum()))
        kept = present.unsqueeze(0).unsqueeze(-1).expand_as(y)[..., :1]
        assert torch.equal(y[..., :1][kept], x[..., :1][kept])
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] < remaining[0]
    y = run("truncated-body", x, 4)[..., 0]  # half the height: knees and below gone, hips and up kept
    assert not y[:, :, [13, 14, 17, 18]].any() and y[:, :, [1, 4, 8]].ne(0).all()


def test_left_right_swap() -> None:
    perm = LEFT_RIGHT_PERMUTATION
    assert sorted(perm) == list(range(25)) and all(perm[perm[j]] == j for j in range(25))
    assert [perm[j] for j in (4, 7, 12, 19, 21, 22, 0, 3, 20)] == [8, 11, 16, 15, 23, 24, 0, 3, 20]
    x = skeleton_clip()
    assert torch.equal(swap_left_right(swap_left_right(x)), x)
    for s, share in zip(SEVERITIES, CORRUPTIONS.get("left-right-swap").levels):
        y = run("left-right-swap", x, s)
        changed = (y != x).flatten(2).any(dim=(0, 2))
        assert int(changed.sum()) == round(share * 16)
        assert torch.equal(y[:, changed], swap_left_right(x)[:, changed])


def test_temporal_resample() -> None:
    x = skeleton_clip(t=16)
    assert torch.equal(resample(x, 1.0), x)
    fast = resample(x, 2.0)
    for t in range(16):
        assert torch.equal(fast[:, t], x[:, min(2 * t, 15)])
    slow = resample(x, 0.5)
    assert torch.allclose(slow[:, 1], (x[:, 0] + x[:, 1]) / 2) and torch.equal(slow[:, 2], x[:, 1])
    holed = x.clone()
    holed[:, 1, 5, 0] = 0  # a joint missing in one of the two frames: the nearer frame's value, no blend to zero
    y = resample(holed, 0.4)  # frame 2 sits at 0.8 (nearer 1), frame 1 at 0.4 (nearer 0)
    assert not y[:, 2, 5, 0].any() and torch.equal(y[:, 1, 5, 0], holed[:, 0, 5, 0])
    speeds = set()
    for seed in range(8):  # the corruption plays the clip faster or slower
        y = run("temporal-resample", x, 5, seed)
        speeds.add("fast" if torch.equal(y[:, -1], x[:, -1]) else "slow")
        assert torch.equal(y[:, 0], x[:, 0])
    assert speeds == {"fast", "slow"}


def test_second_person_swap_and_missing() -> None:
    two, one = skeleton_clip(persons=2), skeleton_clip(persons=1)
    y = run("second-person-swap", two, 1)
    assert torch.equal(y[..., 0], two[..., 1]) and torch.equal(y[..., 1], two[..., 0])
    assert torch.equal(run("second-person-swap", one, 1), one)
    y = run("second-person-missing", two, 1)
    assert torch.equal(y[..., 0], two[..., 0]) and not y[..., 1].any()


def test_missing_modalities() -> None:
    assert not run("rgb-missing", rgb_clip(), 1).any()
    assert torch.equal(run("rgb-blank", rgb_clip(), 1), torch.full((3, 8, 32, 32), 0.5))
    assert not run("skeleton-missing", skeleton_clip(), 1).any()
