"""Preparing real datasets: the NTU fixtures, test-written trees (broken files included), resume, loading, training."""

from __future__ import annotations

import csv
import json
import pickle
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import REPO
from robench.cli import main
from robench.data.imigue import IMiGUE
from robench.data.manifest import ManifestDataset
from robench.data.ntu import NTU60, parse_name, split_of
from robench.data.prepare import Settings, prepare
from robench.data.prepare.ntu import read_skeleton
from robench.data.prepare.video import decode, sample_indices, square_box
from robench.errors import DataError

FIXTURES = REPO.parent / "shared" / "fixtures" / "ntu"
NAME = "S001C001P001R001A001"
SMALL = Settings(frames_rgb=4, resolution=32, frames_skeleton=16, crop="person", shard_size=3)

needs_fixtures = pytest.mark.skipif(not (FIXTURES / f"{NAME}.skeleton").is_file(), reason="NTU fixtures not found")


# -- the real fixture files -----------------------------------------------------------------------

@needs_fixtures
def test_real_skeleton_parses() -> None:
    skel = read_skeleton(FIXTURES / f"{NAME}.skeleton")
    assert skel.frames == 103 and len(skel.xyz) == 1
    (body,) = skel.xyz
    assert body == "72057594037931101"
    assert skel.xyz[body].shape == (103, 25, 3) and skel.present[body].all()
    z = skel.xyz[body][..., 2]
    assert 3.0 < z.mean() < 4.5  # metres from the camera
    first = skel.xyz[body][0, 0]
    assert np.allclose(first, [0.2181153, 0.1725972, 3.785547])
    x0, y0, x1, y1 = skel.color_box()
    assert 0 <= x0 < x1 <= 1920 and 0 <= y0 < y1 <= 1080
    arr = skel.to_array(2)
    assert arr.shape == (3, 103, 25, 2) and np.all(arr[..., 1] == 0)


@needs_fixtures
def test_real_video_lines_up_with_skeleton() -> None:
    frames, total = decode(FIXTURES / f"{NAME}_rgb.avi")
    assert total == 103 and frames.shape == (103, 1080, 1920, 3) and frames.dtype == np.uint8
    assert read_skeleton(FIXTURES / f"{NAME}.skeleton").frames == total  # one skeleton frame per video frame
    picked, _ = decode(FIXTURES / f"{NAME}_rgb.avi", wanted=8)
    assert np.array_equal(picked, frames[sample_indices(103, 8)])


@needs_fixtures
def test_crlf_and_truncated_skeletons(tmp_path: Path) -> None:
    text = (FIXTURES / f"{NAME}.skeleton").read_text()
    crlf = tmp_path / f"{NAME}.skeleton"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    a, b = read_skeleton(crlf), read_skeleton(FIXTURES / f"{NAME}.skeleton")
    assert all(np.array_equal(a.xyz[k], b.xyz[k]) for k in a.xyz)
    cut = tmp_path / "S001C001P001R001A002.skeleton"
    cut.write_text("\n".join(text.splitlines()[:500]))
    with pytest.raises(ValueError, match=r"S001C001P001R001A002.skeleton.*(truncated|line)"):
        read_skeleton(cut)


def test_names_splits_and_sampling() -> None:
    meta = parse_name("S012C003P025R002A044")
    assert meta == {"setup": 12, "camera": 3, "subject": 25, "replication": 2, "action": 44}
    assert split_of(meta, "xsub") == "train" and split_of(meta, "xview") == "train"
    assert split_of({**meta, "subject": 3, "camera": 1}, "xsub") == "test"
    assert split_of({**meta, "camera": 1}, "xview") == "test"
    assert split_of({**meta, "setup": 18}, "xset") == "train" and split_of({**meta, "setup": 19}, "xset") == "test"
    assert sample_indices(103, 4).tolist() == [12, 38, 64, 90] and sample_indices(3, 5).tolist() == [0, 0, 1, 2, 2]
    assert square_box(1920, 1080, "center") == (420, 0, 1080)
    left, top, side = square_box(1920, 1080, "person", (100.0, 200.0, 300.0, 700.0))
    assert side == int(500 * 1.3) and 0 <= left and left + side <= 1920 and top + side <= 1080


# -- test-written NTU trees ------------------------------------------------------------------------

def write_video(path: Path, frames: int = 12, width: int = 96, height: int = 64, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            img = np.full((height, width, 3), 40 + 10 * t % 200, dtype=np.uint8)
            img[:, :, 1] = rng.integers(0, 255, (height, width), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_skeleton(path: Path, frames: int = 12, bodies: int = 1, seed: int = 0, crlf: bool = False) -> None:
    rng = np.random.default_rng(seed)
    lines = [str(frames)]
    for t in range(frames):
        lines.append(str(bodies))
        for b in range(bodies):
            lines.append(f"{72057594037930000 + b} 0 1 1 1 1 0 0.02 0.05 2")
            lines.append("25")
            for j in range(25):
                x, y, z = 0.1 * b + 0.01 * j + 0.02 * np.sin(t + b), 0.05 * j, 3.0 + rng.normal(0, 0.01)
                lines.append(f"{x:.5f} {y:.5f} {z:.5f} 250 200 {40 + j} {10 + 2 * j} 0 0 0 1 2")
    path.write_text(("\r\n" if crlf else "\n").join(lines) + "\n")


def ntu_tree(root: Path) -> dict[str, str]:
    """Raw NTU files: 7 good clips (subjects 1/3, cameras 1/2), plus every kind of trouble."""
    root.mkdir(parents=True, exist_ok=True)
    good = ["S001C001P001R001A001", "S001C002P001R001A002", "S001C001P003R001A003", "S002C002P003R002A001",
            "S002C001P001R002A002", "S003C003P003R001A003", "S003C002P001R002A001"]
    for i, name in enumerate(good):
        write_skeleton(root / f"{name}.skeleton", bodies=1 + (i == 2), seed=i, crlf=i % 2 == 1)
        write_video(root / f"{name}_rgb.avi", seed=i)
    trouble = {"S001C001P001R001A010": "broken video", "S001C001P001R001A011": "truncated skeleton",
               "S001C001P001R001A012": "no body", "S001C001P001R001A013": "listed missing",
               "S001C001P001R001A014": "no video", "S018C001P001R001A001": "NTU-120 setup"}
    for name, what in trouble.items():
        write_skeleton(root / f"{name}.skeleton", seed=7)
        if what != "no video":
            write_video(root / f"{name}_rgb.avi", seed=7)
    (root / "S001C001P001R001A010_rgb.avi").write_bytes(b"\x00not a video" * 100)
    text = (root / "S001C001P001R001A011.skeleton").read_text().splitlines()
    (root / "S001C001P001R001A011.skeleton").write_text("\n".join(text[:100]))
    (root / "S001C001P001R001A012.skeleton").write_text("3\n0\n0\n0\n")
    (root / "missing.txt").write_text("header\nheader\n\nS001C001P001R001A013\n")
    return {"good": ",".join(good)}


@pytest.fixture(scope="module")
def ntu_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw") / "nturaw"
    ntu_tree(root)
    return root


def test_prepare_ntu_tree_counts_and_names_failures(ntu_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ntu60"
    summary = prepare("ntu60", out, SMALL, workers=2, root=ntu_raw, missing_skeletons=ntu_raw / "missing.txt")
    assert summary.written == 7
    assert summary.skipped == {"listed as missing skeleton": 1, "no _rgb.avi video": 1}
    with open(out / "prepare-skipped.csv", newline="") as fh:
        assert list(csv.reader(fh)) == [["clip", "reason"], ["S001C001P001R001A013", "listed as missing skeleton"],
                                        ["S001C001P001R001A014", "no _rgb.avi video"]]
    failed = dict(summary.failed)
    assert set(failed) == {"S001C001P001R001A010", "S001C001P001R001A011", "S001C001P001R001A012"}
    assert "S001C001P001R001A010_rgb.avi" in failed["S001C001P001R001A010"]
    assert "S001C001P001R001A011.skeleton" in failed["S001C001P001R001A011"]
    assert "no body" in failed["S001C001P001R001A012"]
    manifest = json.loads((out / "robench-dataset.json").read_text())
    assert manifest["counts"] == {"written": 7, "skipped": summary.skipped, "failed": 3}
    assert manifest["rgb"]["shard_sizes"] == [3, 3, 3, 1]  # 10 rows (7 good + 3 failed) in shards of 3
    with open(out / "clips.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["clip"] for r in rows] == sorted(r["clip"] for r in rows) and len(rows) == 7
    assert {r["bodies"] for r in rows} == {"1", "2"}


def test_prepared_ntu_loads_with_splits(ntu_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ntu60"
    prepare("ntu60", out, SMALL, workers=1, root=ntu_raw, missing_skeletons=ntu_raw / "missing.txt")
    ds = NTU60(root=str(out), frames_rgb=4, resolution=32, frames_skeleton=16)
    ds.check_available()
    train, test = ds.split("train"), ds.split("test")
    assert len(train) == 4 and len(test) == 3  # subject 1 trains, subject 3 tests (X-Sub)
    batch = test.get_batch(torch.tensor([2, 0]))
    assert batch["rgb"].dtype == torch.uint8 and batch["rgb"].shape == (2, 3, 4, 32, 32)
    assert batch["skeleton"].shape == (2, 3, 16, 25, 2) and batch["skeleton"].dtype == torch.float32
    assert batch["label"].tolist() == [test.labels[2].item(), test.labels[0].item()]
    assert abs(float(batch["skeleton"][:, 2].mean()) - 1.5) < 1.6  # z around 3 m, second body zeros
    xview = NTU60(root=str(out), benchmark="xview", frames_rgb=4, resolution=32, frames_skeleton=16)
    assert len(xview.split("train")) + len(xview.split("test")) == 7
    with pytest.raises(DataError, match="prepared for 4 RGB frames at 32 px"):
        NTU60(root=str(out), frames_rgb=8, resolution=32, frames_skeleton=16).check_available()
    with pytest.raises(DataError, match="robench prepare ntu60"):
        NTU60(root=str(tmp_path / "nowhere")).check_available()


def test_batches_read_the_rows_asked_in_the_order_asked(ntu_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ntu60"
    prepare("ntu60", out, SMALL, workers=1, root=ntu_raw)
    split = NTU60(root=str(out), frames_rgb=4, resolution=32, frames_skeleton=16).split("train")
    whole = np.concatenate([np.load(out / f"rgb-{k:05d}.npy") for k in range(3)])  # shards of 3 rows
    skeleton = np.load(out / "skeleton.npy")
    ask = torch.tensor([3, 0, 2, 0, 1])  # out of order, across shards, with a repeat
    batch = split.get_batch(ask)
    rows = split.indices[ask.numpy()]
    assert np.array_equal(batch["rgb"].numpy(), whole[rows])
    assert np.array_equal(batch["skeleton"].numpy(), skeleton[rows])
    copy = pickle.loads(pickle.dumps(split))  # what a spawned DataLoader worker receives
    assert np.array_equal(copy.get_batch(ask)["rgb"].numpy(), whole[rows])
    position = int(np.flatnonzero((split.indices >= 3) & (split.indices < 6))[0])  # a training clip in shard 1
    in_shard = int(split.indices[position]) - 3
    shard, row_bytes = out / "rgb-00001.npy", 3 * 4 * 32 * 32
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - (3 - in_shard) * row_bytes + 10])  # cut inside that row
    with pytest.raises(DataError, match=r"rgb-00001.npy is cut short .*prepare it again"):  # found before any work
        NTU60(root=str(out), frames_rgb=4, resolution=32, frames_skeleton=16).split("train")
    with pytest.raises(DataError, match=f"rgb-00001.npy ends inside row {in_shard}"):  # cut while in use
        split.get_batch(torch.tensor([position]))


def test_interrupted_preparation_resumes(ntu_raw: Path, tmp_path: Path) -> None:
    calls = {"n": 0}

    def stop_after_four(done: int, total: int) -> None:
        calls["n"] += 1
        if done >= 4:
            raise KeyboardInterrupt

    out, ref = tmp_path / "killed", tmp_path / "ref"
    with pytest.raises(KeyboardInterrupt):
        prepare("ntu60", out, SMALL, workers=1, root=ntu_raw, progress=stop_after_four)
    assert not (out / "robench-dataset.json").exists()  # not ready until finished
    summary = prepare("ntu60", out, SMALL, workers=1, root=ntu_raw)
    assert summary.resumed == 4
    prepare("ntu60", ref, SMALL, workers=1, root=ntu_raw)
    for name in ("skeleton.npy", "labels.npy", "rgb-00000.npy", "rgb-00003.npy", "clips.csv"):
        a, b = (out / name).read_bytes(), (ref / name).read_bytes()
        assert a == b, name
    with pytest.raises(DataError, match="other clips or settings"):
        prepare("ntu60", out, Settings(frames_rgb=8, resolution=32, frames_skeleton=16), root=ntu_raw)
    (out / "skeleton.npy").write_bytes((out / "skeleton.npy").read_bytes()[:1000])  # damaged after the fact
    with pytest.raises(DataError, match=r"cannot resume .*skeleton.npy is cut short"):
        prepare("ntu60", out, SMALL, workers=1, root=ntu_raw)


# -- iMiGUE, PYSKL and manifests -------------------------------------------------------------------

def test_prepare_imigue_layout(tmp_path: Path) -> None:
    root = tmp_path / "imigue"
    for d in ("labels", "skeletons", "videos"):
        (root / d).mkdir(parents=True)
    rows = ["video,subject"]
    for v, subject in (("vid_a", 2), ("vid_b", 3)):
        rows.append(f"{v},{subject}")
        write_video(root / "videos" / f"{v}.mp4", frames=30, width=80, height=60)
        (root / "labels" / f"{v}.csv").write_text("4,0,9\n17,10,29\n")
        with open(root / "skeletons" / f"{v}.csv", "w") as fh:
            for t in range(30):
                fh.write(",".join([str(t)] + [f"{20 + j:.1f},{10 + j:.1f},0.9" for j in range(35)]) + "\n")
    (root / "subjects.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "prepared"
    summary = prepare("imigue", out, SMALL, root=root)
    assert summary.written == 4 and not summary.failed
    ds = IMiGUE(root=str(out), frames_rgb=4, resolution=32, frames_skeleton=16)
    train, test = ds.split("train"), ds.split("test")
    assert len(train) == 2 and len(test) == 2  # subject 2 trains, 3 tests
    batch = train.get_batch(torch.arange(2))
    assert batch["label"].tolist() == [4, 17]
    skel = batch["skeleton"][0, :, 0, :, 0]  # [3, 25] first frame
    assert torch.allclose(skel[0, 2], torch.tensor(21 / 60))  # NTU neck <- BODY_25 neck (x / frame height)
    assert float(skel[2].abs().max()) == 0.0  # 2D: z = 0


def test_prepare_pyskl_pickle(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    annotations = []
    for i, name in enumerate(["S001C001P001R001A001", "S001C002P003R001A002"]):
        write_video(videos / f"{name}_rgb.avi", seed=i)
        kp = np.random.default_rng(i).normal(size=(1, 20, 25, 3)).astype(np.float16)
        annotations.append({"frame_dir": name, "label": i, "total_frames": 20, "keypoint": kp})
    with open(tmp_path / "ntu.pkl", "wb") as fh:
        pickle.dump({"split": {"xsub_train": ["S001C001P001R001A001"], "xsub_val": ["S001C002P003R001A002"]},
                     "annotations": annotations}, fh)
    out = tmp_path / "prepared"
    summary = prepare("pyskl", out, SMALL, pickle=tmp_path / "ntu.pkl", videos=videos, dataset="ntu60")
    assert summary.written == 2
    ds = NTU60(root=str(out), frames_rgb=4, resolution=32, frames_skeleton=16)
    assert len(ds.split("train")) == 1 and len(ds.split("test")) == 1
    generic = ManifestDataset(root=str(out), classes=2, train_split="xsub_train", test_split="xsub_val", frames_rgb=4,
                              resolution=32, frames_skeleton=16)
    assert generic.dataset == "manifest"
    with pytest.raises(DataError):  # prepared as ntu60, not as a manifest dataset
        generic.check_available()


def test_prepare_manifest(tmp_path: Path) -> None:
    rows = ["clip,label,split,video,skeleton"]
    for i in range(3):
        write_video(tmp_path / f"c{i}.avi", seed=i)
        np.save(tmp_path / f"c{i}.npy", np.random.default_rng(i).normal(size=(10, 25, 3)).astype(np.float32))
        rows.append(f"c{i},{i % 2},{'train' if i < 2 else 'test'},c{i}.avi,c{i}.npy")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "prepared"
    assert prepare("manifest", out, SMALL, manifest=tmp_path / "m.csv").written == 3
    ds = ManifestDataset(root=str(out), classes=2, frames_rgb=4, resolution=32, frames_skeleton=16)
    assert len(ds.split("train")) == 2 and len(ds.split("test")) == 1
    assert ds.split("test").get_batch(torch.tensor([0]))["skeleton"].shape == (1, 3, 16, 25, 2)


def test_prepare_cli_reports_counts(ntu_raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["prepare", "ntu60", "--root", str(ntu_raw), "--out", str(out), "--frames-rgb", "4", "--resolution",
                 "32", "--frames-skeleton", "16", "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "8 clips written, 1 skipped (1 no _rgb.avi video), 3 failed" in text
    assert f"skipped clips are named in {out / 'prepare-skipped.csv'}" in text
    assert "S001C001P001R001A010" in text
    with open(out / "prepare-skipped.csv", newline="") as fh:
        assert {r["clip"]: r["reason"] for r in csv.DictReader(fh)} == {"S001C001P001R001A014": "no _rgb.avi video"}
    assert main(["prepare", "imigue", "--root", str(tmp_path / "none"), "--out", str(out / "x")]) == 2


# -- end to end: prepared NTU tree -> robench run with full-size backbones ---------------------------

@needs_fixtures
def test_prepared_tree_trains_one_step_with_full_size_backbones(ntu_raw: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in ntu_raw.glob("S00[12]*"):  # test-written clips ...
        (raw / f.name).write_bytes(f.read_bytes())
    for suffix in (".skeleton", "_rgb.avi"):  # ... and the real fixture
        (raw / f"{NAME}{suffix}").write_bytes((FIXTURES / f"{NAME}{suffix}").read_bytes())
    data = tmp_path / "prepared"
    assert main(["prepare", "ntu60", "--root", str(raw), "--out", str(data), "--frames-rgb", "8", "--resolution", "112",
                 "--frames-skeleton", "32", "--workers", "2"]) == 0
    protocol = tmp_path / "real.yaml"
    protocol.write_text(textwrap.dedent(f"""
        name: real-ntu-one-step
        dataset: {{name: ntu60, root: {data}, frames_rgb: 8, resolution: 112, frames_skeleton: 32}}
        model:
          rgb: {{backbone: i3d, width: 1.0}}
          skeleton: {{backbone: hcn, width: 1.0}}
        training: {{epochs: 1, batch_size: 2, max_steps_per_epoch: 1}}
        defenses: {{none: {{label: None}}}}
        scenarios: [clean]
        evaluation: {{max_samples: 2, batch_size: 2}}
    """))
    store = tmp_path / "r.sqlite"
    assert main(["run", str(protocol), "--store", str(store), "--progress", "quiet"]) == 0
    from robench.store import ResultsStore

    results = ResultsStore(store)
    (model,) = results.models().values()
    assert model["history"][0]["steps"] == 1
    assert model["spec"]["model"]["rgb"]["params"]["width"] == 1.0
    assert model["spec"]["dataset"]["params"].get("root") is None  # where the data is is not what it is
    (cell,) = results.cells().values()
    assert cell["n"] == 2 and cell["scenario"] == "clean"
