"""Tests of the built-in synthetic dataset (tiny sizes; the whole file runs in seconds)."""

from __future__ import annotations

import inspect
import re
from dataclasses import replace
from functools import cache

import pytest
import torch

from conftest import linear_probe
from robench.data.base import TensorClipDataset
from robench.data.synthetic import (
    ACTION_NAMES,
    ACTIONS,
    SyntheticConfig,
    SyntheticDataset,
    generate_split,
    save_preview,
)
from robench.data.synthetic import skeleton as sk
from robench.data.synthetic.render import project
from robench.errors import RobenchError
from robench.registry import DATASETS

# 16 classes x 2 train clips (all actions, one- and two-person), small frames
TINY = dict(classes=16, train_clips_per_class=2, test_clips_per_class=1, frames_rgb=6, frames_skeleton=8,
            resolution=32, train_performers=4, test_performers=3)
EXACT = dict(joint_noise=0.0, drop_rate=0.0)  # noise-free skeleton, for geometric checks


@cache
def _split(split: str = "train", **kw: object) -> TensorClipDataset:
    params = {**TINY, **kw}
    return SyntheticDataset(**params).split(split)  # type: ignore[arg-type]


def _persons() -> torch.Tensor:
    return torch.tensor([a.persons for a in ACTIONS])


# --- interface ---------------------------------------------------------------------------------------
def test_registered_and_signature_documented() -> None:
    assert DATASETS.get("synthetic") is SyntheticDataset
    sig = inspect.signature(SyntheticDataset.__init__)
    doc = inspect.getdoc(SyntheticDataset) or ""
    defaults = SyntheticConfig()
    for name, p in list(sig.parameters.items())[1:]:
        assert p.default is not inspect.Parameter.empty, name
        assert re.search(rf"^\s+{name}:", doc, re.M), f"{name} not described in the docstring"
        if name == "cache_dir":
            continue
        assert p.annotation in (int, float, bool, str), (name, p.annotation)
        assert isinstance(p.default, p.annotation), name
        assert getattr(defaults, name) == p.default, f"{name}: provider and SyntheticConfig defaults differ"


def test_library_has_16_named_actions_and_rejects_more() -> None:
    assert len(ACTIONS) == 16 and len(set(ACTION_NAMES)) == 16
    assert all(a.persons in (1, 2) for a in ACTIONS)
    with pytest.raises(RobenchError, match="classes"):
        SyntheticDataset(classes=len(ACTIONS) + 1)
    with pytest.raises(RobenchError, match="split"):
        SyntheticDataset(classes=2).split("val")


def test_shapes_dtypes_ranges() -> None:
    ds = SyntheticDataset(**TINY, width=40)  # type: ignore[arg-type]
    assert ds.num_classes == 16
    assert ds.input_shapes() == {"rgb": (3, 6, 32, 40), "skeleton": (3, 8, 25, 2)}
    for split, per_class in (("train", 2), ("test", 1)):
        s = ds.split(split)
        n = 16 * per_class
        assert s.rgb.dtype == torch.uint8 and s.rgb.shape == (n, 3, 6, 32, 40)
        assert s.skeleton.dtype == torch.float32 and s.skeleton.shape == (n, 3, 8, 25, 2)
        assert s.label.dtype == torch.int64 and s.label.shape == (n,)
        assert s.class_names == list(ACTION_NAMES)
        assert s.meta["subject"].dtype == torch.int64 and s.meta["subject"].shape == (n,)
        assert s.meta["camera"].shape == (n, 4)
        assert torch.isfinite(s.skeleton).all()
        assert s.rgb.float().std() > 20  # textured, not flat
    batch = ds.split("train").get_batch(torch.tensor([0, 3]))
    assert batch["rgb"].shape[0] == 2 and set(batch) == {"rgb", "skeleton", "label"}


def test_skeleton_is_metric_camera_space_and_second_body_convention() -> None:
    s = _split()
    two = _persons()[s.label] == 2
    body2 = s.skeleton[..., 1].flatten(1).abs().amax(1)
    assert (body2[~two] == 0).all(), "one-person clips must have an all-zero second body"
    assert (body2[two] > 0).all()
    assert torch.equal(s.meta["persons"], torch.where(two, 2, 1))
    for m in range(2):
        present = two if m else torch.ones_like(two)
        z = s.skeleton[present, 2, :, :, m]
        assert z.min() > 1.5 and z.max() < 5.0, (z.min(), z.max())
        # head-to-ankle bone chain + ~0.15 m (top of the head, ankle height) = standing height
        chain = [(sk.HEAD, sk.NECK), (sk.NECK, sk.SPINE_SHOULDER), (sk.SPINE_SHOULDER, sk.SPINE_MID),
                 (sk.SPINE_MID, sk.SPINE_BASE), (sk.SPINE_BASE, sk.L_HIP), (sk.L_HIP, sk.L_KNEE),
                 (sk.L_KNEE, sk.L_ANKLE)]
        x = s.skeleton[present, :, 0, :, m]
        height = sum((x[:, :, a] - x[:, :, b]).norm(dim=1) for a, b in chain) + 0.15
        assert height.min() > 1.3 and height.max() < 2.1, (height.min(), height.max())


def test_bones_keep_their_length() -> None:
    s = _split(**EXACT)
    bones = torch.tensor(sk.BONES)
    for m in range(2):
        present = s.skeleton[..., m].flatten(1).abs().amax(1) > 0
        x = s.skeleton[present, :, :, :, m]  # [N, 3, T, 25]
        length = (x[:, :, :, bones[:, 0]] - x[:, :, :, bones[:, 1]]).norm(dim=1)  # [N, T, 24]
        assert length.min() > 0.01
        assert (length - length[:, :1]).abs().max() < 1e-4  # rigid bones: forward kinematics
    # with Kinect-like noise (1 cm) and stale joints, bones still vary only by a few centimetres
    noisy = _split()
    x = noisy.skeleton[..., 0]
    length = (x[:, :, :, bones[:, 0]] - x[:, :, :, bones[:, 1]]).norm(dim=1)
    assert (length - length.median(dim=1, keepdim=True).values).abs().median() < 0.02


def test_noise_and_dropped_joints() -> None:
    clean = _split(**EXACT)
    noisy = _split(joint_noise=0.01, drop_rate=0.0)
    d = (noisy.skeleton - clean.skeleton)[..., 0]
    assert 0.007 < d.std() < 0.013  # ~1 cm Gaussian
    held = _split(joint_noise=0.0, drop_rate=0.2).skeleton[..., 0]
    same = (held[:, :, 1:] == held[:, :, :-1]).all(dim=1)  # joint-frames equal to the previous frame
    moving = (clean.skeleton[:, :, 1:, :, 0] != clean.skeleton[:, :, :-1, :, 0]).any(dim=1)
    frac = (same & moving).float().sum() / moving.float().sum()
    assert 0.1 < frac < 0.3  # about drop_rate of the joint-frames keep a stale position


# --- determinism and caching ------------------------------------------------------------------------
def test_deterministic_and_seeded() -> None:
    a = SyntheticDataset(**{**TINY, "classes": 3}).split("test")  # type: ignore[arg-type]
    b = SyntheticDataset(**{**TINY, "classes": 3}).split("test")  # type: ignore[arg-type]
    c = SyntheticDataset(**{**TINY, "classes": 3, "seed": 1}).split("test")  # type: ignore[arg-type]
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.skeleton, b.skeleton) and torch.equal(a.label, b.label)
    assert all(torch.equal(a.meta[k], b.meta[k]) for k in a.meta)
    assert not torch.equal(a.rgb, c.rgb) and not torch.equal(a.skeleton, c.skeleton)


def test_cache_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    params = {**TINY, "classes": 3}
    first = SyntheticDataset(**params, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert first.cache_path is not None and not first.cache_path.exists()
    tr = first.split("train")
    assert first.source == "generated" and first.cache_path.is_file()
    assert first.cache_path.name.startswith("synthetic-") and first.cache_path.suffix == ".pt"
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_path.name]  # no temp files left

    second = SyntheticDataset(**params, cache_dir=tmp_path)  # type: ignore[arg-type]
    tr2 = second.split("train")
    assert second.source == "cache"
    assert torch.equal(tr.rgb, tr2.rgb) and torch.equal(tr.skeleton, tr2.skeleton) and torch.equal(tr.label, tr2.label)
    assert tr.class_names == tr2.class_names and all(torch.equal(tr.meta[k], tr2.meta[k]) for k in tr.meta)
    assert torch.equal(first.split("test").rgb, second.split("test").rgb)

    other = SyntheticDataset(**{**params, "seed": 5}, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert other.cache_path != first.cache_path
    in_memory = SyntheticDataset(**params)  # type: ignore[arg-type]
    assert in_memory.cache_path is None and torch.equal(in_memory.split("train").rgb, tr.rgb)

    first.cache_path.write_bytes(b"corrupt")  # an unreadable cache is regenerated, with a warning
    with pytest.warns(UserWarning, match="unreadable"):
        third = SyntheticDataset(**params, cache_dir=tmp_path)  # type: ignore[arg-type]
        assert torch.equal(third.split("train").rgb, tr.rgb)


# --- splits -----------------------------------------------------------------------------------------
def test_cross_subject_and_balance() -> None:
    tr, te = _split("train"), _split("test")
    ids_tr = set(tr.meta["subject"].tolist()) | set(tr.meta["subject2"][tr.meta["subject2"] >= 0].tolist())
    ids_te = set(te.meta["subject"].tolist()) | set(te.meta["subject2"][te.meta["subject2"] >= 0].tolist())
    assert ids_tr and ids_te and not ids_tr & ids_te
    assert ids_tr <= set(range(4)) and ids_te <= set(range(4, 7))
    two = tr.meta["persons"] == 2
    assert (tr.meta["subject2"][two] != tr.meta["subject"][two]).all()
    assert torch.equal(tr.label.bincount(minlength=16), torch.full((16,), 2))
    assert torch.equal(te.label.bincount(minlength=16), torch.ones(16, dtype=torch.long))


# --- RGB and skeleton agree; appearance ignores the label -------------------------------------------
def test_rgb_and_skeleton_line_up() -> None:
    cfg = SyntheticConfig(**{**TINY, **EXACT, "frames_skeleton": TINY["frames_rgb"], "resolution": 48})  # type: ignore[arg-type]
    full = generate_split(cfg, "train")
    empty = generate_split(cfg, "train", draw_bodies=False)
    body = (full.rgb != empty.rgb).any(dim=1)  # [N, T, H, W] pixels covered by a body
    n, t, h, w = body.shape
    pts = full.skeleton[..., 0].permute(0, 2, 3, 1)  # body 1, same time points as the RGB frames
    uv = project(pts.reshape(n, -1, 3), full.meta["camera"]).reshape(n, t, 25, 2)
    u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    clips, frames = torch.arange(n)[:, None, None].expand_as(u), torch.arange(t)[None, :, None].expand_as(u)
    hits = body[clips[inside], frames[inside], v[inside], u[inside]]
    assert inside.float().mean() > 0.9
    assert hits.float().mean() > 0.9, hits.float().mean()
    assert body.float().mean() < 0.3  # chance level of landing on the body
    assert 0.05 < body[:, :, :, :].float().mean(dim=(1, 2, 3)).min(), "every clip shows a visible body"


def test_body_fills_a_good_part_of_the_frame_at_32px() -> None:
    cfg = SyntheticConfig(**{**TINY, "classes": 12})  # type: ignore[arg-type]
    body = (generate_split(cfg, "train").rgb != generate_split(cfg, "train", draw_bodies=False).rgb).any(dim=1)
    rows = body.any(dim=-1)  # [N, T, H]
    idx = torch.arange(rows.shape[-1])
    top = torch.where(rows, idx, 10**6).amin(-1)
    bottom = torch.where(rows, idx, -1).amax(-1)
    extent = (bottom - top + 1).float() / rows.shape[-1]
    assert extent.median() > 0.55, extent.median()


@pytest.mark.parametrize("scenes", [0, 3])
def test_appearance_does_not_depend_on_the_label(scenes: int) -> None:
    cfg = SyntheticConfig(**TINY, scenes=scenes)  # type: ignore[arg-type]
    base = generate_split(cfg, "train")
    forced = (base.label + 1) % cfg.classes
    other = generate_split(cfg, "train", labels=forced)
    assert torch.equal(other.label, forced)
    # backgrounds, lighting and sensor noise: identical bit for bit
    assert torch.equal(generate_split(cfg, "train", draw_bodies=False).rgb,
                      generate_split(cfg, "train", labels=forced, draw_bodies=False).rgb)
    # performers, camera and view: identical; pixels differ only where a body is
    for k in ("subject", "camera", "view_yaw"):
        assert torch.equal(base.meta[k], other.meta[k]), k
    empty = generate_split(cfg, "train", draw_bodies=False).rgb
    changed = (base.rgb != other.rgb)
    assert not (changed & (base.rgb == empty) & (other.rgb == empty)).any()
    assert changed.any()


def test_motion_carries_the_class_and_colour_does_not() -> None:
    params = dict(classes=8, train_clips_per_class=8, test_clips_per_class=6, frames_rgb=8, frames_skeleton=16,
                  resolution=24, train_performers=4, test_performers=3)
    ds = SyntheticDataset(**params)  # type: ignore[arg-type]
    tr, te = ds.split("train"), ds.split("test")

    def motion(s: torch.Tensor) -> torch.Tensor:  # per-joint temporal std of body-centred coordinates
        return (s - s[:, :, :, :1]).std(dim=2).flatten(1)

    def colour(r: torch.Tensor) -> torch.Tensor:
        return r.float().mean(dim=(2, 3, 4))

    def nearest_centroid(a: torch.Tensor, b: torch.Tensor) -> float:
        mu, sd = a.mean(0), a.std(0) + 1e-6
        a, b = (a - mu) / sd, (b - mu) / sd
        cent = torch.stack([a[tr.label == c].mean(0) for c in range(ds.num_classes)])
        return (torch.cdist(b, cent).argmin(1) == te.label).float().mean().item()

    chance = 1 / ds.num_classes
    assert nearest_centroid(motion(tr.skeleton), motion(te.skeleton)) > 0.7
    assert nearest_centroid(colour(tr.rgb), colour(te.rgb)) < chance + 0.15


def test_scenes_are_rooms_shared_by_both_splits() -> None:
    from robench.data.synthetic.generate import draw_clips

    cfg = SyntheticConfig(**TINY, scenes=3)  # type: ignore[arg-type]
    rooms = {split: {tuple(p.flatten().tolist()) for p in draw_clips(cfg, split, 40).background.palette}
             for split in ("train", "test")}
    assert len(rooms["train"]) == 3 and rooms["train"] == rooms["test"]
    assert len({tuple(p.flatten().tolist()) for p in draw_clips(replace(cfg, scenes=0), "train", 40)
                .background.palette}) == 40  # scenes 0: a background of its own for every clip
    # rooms change backgrounds (and the lighting drawn after them), never the motion
    one, other = generate_split(cfg, "train"), generate_split(replace(cfg, scenes=0), "train")
    assert torch.equal(one.skeleton, other.skeleton) and torch.equal(one.label, other.label)
    assert not torch.equal(one.rgb, other.rgb)
    with pytest.raises(RobenchError, match="scenes"):
        SyntheticDataset(scenes=-1)


def _motion_probe(train: TensorClipDataset, test: TensorClipDataset, classes: int) -> float:
    """Test accuracy of a linear RGB model on where and how much each pixel changes over the clip and
    on the mean frame (:func:`conftest.linear_probe`)."""
    def features(rgb: torch.Tensor) -> torch.Tensor:
        grey = rgb.double().mean(dim=1) / 255  # [N, T, H, W]
        return torch.cat([grey.std(dim=1).flatten(1), grey.mean(dim=1).flatten(1)], dim=1)

    return linear_probe(features(train.rgb), train.label, features(test.rgb), test.label, classes)


@pytest.mark.parametrize("scenes", [0, 17])
def test_an_rgb_model_is_at_chance_without_bodies(scenes: int) -> None:
    """Backgrounds, lighting and sensor noise alone carry no class: the same RGB model that learns the
    class from the clips is at chance on the same clips with the bodies removed."""
    cfg = SyntheticConfig(classes=8, train_clips_per_class=24, test_clips_per_class=16, frames_rgb=8,
                          frames_skeleton=16, resolution=24, scenes=scenes)
    with_bodies = _motion_probe(generate_split(cfg, "train"), generate_split(cfg, "test"), cfg.classes)
    without = _motion_probe(generate_split(cfg, "train", draw_bodies=False),
                            generate_split(cfg, "test", draw_bodies=False), cfg.classes)
    # 128 test clips, chance 1/8: 29 or more right (> 0.22) happens by luck with probability 0.1% (binomial)
    assert without < 0.22, without
    assert with_bodies > 0.28, with_bodies


def test_save_preview(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = save_preview(_split(), tmp_path / "sheet.png", clips=3, frames=2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_replace_changes_hash() -> None:
    from robench.data.synthetic.generate import content_hash

    cfg = SyntheticConfig()
    assert content_hash(cfg) == content_hash(SyntheticConfig())
    assert len({content_hash(replace(cfg, **{k: v})) for k, v in
                (("seed", 1), ("resolution", 48), ("joint_noise", 0.02), ("classes", 5))}) == 4
