"""The model zoo (robench.zoo): weights fetched once from a path, an http(s) URL or a Hub repository, verified before
they are read, and loaded into the model the leaderboard evaluated.

Everything runs locally: an ``http.server`` in a thread serves the right file, a wrong one, a truncated one and web
pages; a closed port stands for an offline machine; a folder stands for the Hugging Face Hub (a stand-in
``huggingface_hub`` module). Never the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import sys
import threading
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import robench
from conftest import REPO
from robench.cli import main
from robench.zoo import (
    DigestMismatch,
    HubUnavailable,
    Offline,
    TruncatedDownload,
    WebPageNotWeights,
    WeightsSpec,
    ZooError,
    fetch,
    read_manifest,
)
from robench.zoo.fetch import cache_path
from robench.zoo.manifest import bundled_manifest, zoo_entry
from robench.zoo.weights import read_verified, safetensors_bytes

SHIPPED = REPO / "robench" / "zoo" / "weights" / "synthetic"
PAGE = b"<!DOCTYPE html>\n<html><head><title>Download - FileShare</title></head><body>Click here</body></html>\n"


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"layer.weight": torch.randn(64, 32, generator=g), "layer.bias": torch.randn(64, generator=g),
            "bn.num_batches_tracked": torch.tensor(7)}


GOOD = safetensors_bytes(_state(0))
OTHER = safetensors_bytes(_state(1))
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


class _Server:
    """A local HTTP server in a thread; ``routes`` maps a path to (status, content type, body, bytes actually sent)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.routes: dict[str, tuple[int, str, bytes, int | None]] = {
            "/good.safetensors": (200, "application/octet-stream", GOOD, None),
            "/wrong.safetensors": (200, "application/octet-stream", OTHER, None),
            "/truncated.safetensors": (200, "application/octet-stream", GOOD, len(GOOD) // 3),
            "/share/page": (200, "text/html; charset=utf-8", PAGE, None),
            "/page.safetensors": (200, "application/octet-stream", PAGE, None),
        }
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                if self.path not in server.routes:
                    self.send_error(404, "Not Found")
                    return
                status, kind, body, sent = server.routes[self.path]
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if sent is None else body[:sent])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    try:
        yield s
    finally:
        s.stop()


class Payload:
    """An object whose unpickling needs this module's code: what ``weights_only`` refuses."""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spec(source: str, sha: str = GOOD_SHA, size: int | None = len(GOOD)) -> WeightsSpec:
    return WeightsSpec(sha, "safetensors", source, size)


def _leftovers(cache: Path) -> list[Path]:
    folder = cache / "zoo" / "sha256"
    return sorted(folder.iterdir()) if folder.is_dir() else []


# -- http(s) --------------------------------------------------------------------------------------

def test_a_download_is_verified_cached_once_and_reused_offline(server: _Server, tmp_path: Path) -> None:
    spec = _spec(f"{server.url}/good.safetensors")
    path = fetch(spec, tmp_path)
    assert path == tmp_path / "zoo" / "sha256" / f"{GOOD_SHA}.safetensors" == cache_path(tmp_path, spec)
    assert _leftovers(tmp_path) == [path]  # no temporary file left beside it
    state = read_verified(path, GOOD_SHA, "safetensors")
    assert all(torch.equal(state[k], v) for k, v in _state(0).items()) and state.keys() == _state(0).keys()
    server.stop()  # offline now: the cache answers
    assert fetch(spec, tmp_path) == path
    assert server.hits["/good.safetensors"] == 1


def test_a_damaged_cached_copy_is_fetched_again(server: _Server, tmp_path: Path) -> None:
    spec = _spec(f"{server.url}/good.safetensors")
    path = fetch(spec, tmp_path)
    path.write_bytes(GOOD[:-1] + b"\0")
    assert fetch(spec, tmp_path).read_bytes() == GOOD
    assert server.hits["/good.safetensors"] == 2


def test_a_wrong_file_is_a_digest_error_and_nothing_is_kept(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DigestMismatch) as exc:
        fetch(_spec(f"{server.url}/wrong.safetensors"), tmp_path)
    text = str(exc.value)
    assert f"expected sha256:{GOOD_SHA}" in text and f"got sha256:{hashlib.sha256(OTHER).hexdigest()}" in text
    assert "/wrong.safetensors" in text and _leftovers(tmp_path) == []


def test_a_truncated_download_is_its_own_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(TruncatedDownload) as exc:
        fetch(_spec(f"{server.url}/truncated.safetensors"), tmp_path)
    assert f"got {len(GOOD) // 3} of the {len(GOOD)} bytes" in str(exc.value)
    assert _leftovers(tmp_path) == []


def test_a_web_page_is_named_as_one(server: _Server, tmp_path: Path) -> None:
    for route in ("/share/page", "/page.safetensors"):  # said by Content-Type, or seen in the bytes
        with pytest.raises(WebPageNotWeights) as exc:
            fetch(_spec(f"{server.url}{route}"), tmp_path)
        assert f"{server.url}{route}" in str(exc.value) and "web page" in str(exc.value)
        assert "not the weights file" in str(exc.value)
    assert _leftovers(tmp_path) == []


def test_an_unreachable_host_is_offline_and_says_the_cache_has_no_copy(tmp_path: Path) -> None:
    with pytest.raises(Offline) as exc:
        fetch(_spec(f"http://127.0.0.1:{_closed_port()}/good.safetensors"), tmp_path)
    assert "cannot reach 127.0.0.1" in str(exc.value) and "has no copy" in str(exc.value)


def test_an_http_error_names_the_status(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(ZooError, match="HTTP 404"):
        fetch(_spec(f"{server.url}/missing.safetensors"), tmp_path)


# -- the Hub --------------------------------------------------------------------------------------

def _fake_hub(root: Path, calls: list[tuple[str, str, str | None]]) -> types.ModuleType:
    """A stand-in ``huggingface_hub``: ``hf_hub_download`` answers from ``root/<owner>/<repo>/<revision>/<file>``."""
    hub = types.ModuleType("huggingface_hub")

    class LocalEntryNotFoundError(FileNotFoundError):
        pass

    class RepositoryNotFoundError(Exception):
        pass

    def hf_hub_download(repo_id: str, filename: str, *, revision: str | None = None, **_: Any) -> str:
        calls.append((repo_id, filename, revision))
        if not (root / repo_id).is_dir():
            raise RepositoryNotFoundError(f"404 Client Error: Repository Not Found for url: {repo_id}")
        found = root / repo_id / str(revision) / filename
        if not found.is_file():
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic "
                                          "has been disabled")
        return str(found)

    hub.hf_hub_download = hf_hub_download  # type: ignore[attr-defined]
    return hub


def test_a_hub_file_is_fetched_through_huggingface_hub_and_cached(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    hub_root = tmp_path / "hub"
    (hub_root / "owner" / "repo" / "v1" / "weights").mkdir(parents=True)
    (hub_root / "owner" / "repo" / "v1" / "weights" / "model.safetensors").write_bytes(GOOD)
    calls: list[tuple[str, str, str | None]] = []
    monkeypatch.setitem(sys.modules, "huggingface_hub", _fake_hub(hub_root, calls))
    cache = tmp_path / "cache"
    spec = _spec("hf://owner/repo/weights/model.safetensors@v1")
    path = fetch(spec, cache)
    assert path == cache_path(cache, spec) and path.read_bytes() == GOOD
    assert calls == [("owner/repo", "weights/model.safetensors", "v1")]
    assert fetch(spec, cache) == path and len(calls) == 1  # the cache answers
    with pytest.raises(Offline, match="cannot reach the Hugging Face Hub"):
        fetch(_spec("hf://owner/repo/weights/model.safetensors@v2", sha="a" * 64), cache)
    with pytest.raises(ZooError, match="no such repository"):
        fetch(_spec("hf://owner/other/model.safetensors", sha="b" * 64), cache)
    assert calls[-1] == ("owner/other", "model.safetensors", "main")
    with pytest.raises(DigestMismatch):
        fetch(_spec("hf://owner/repo/weights/model.safetensors@v1", sha="c" * 64), cache)
    with pytest.raises(ZooError, match="hf://owner/repo/path/in/repo@revision"):
        fetch(_spec("hf://owner/model.safetensors", sha="d" * 64), cache)


def test_the_hub_without_huggingface_hub_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(HubUnavailable, match=r"pip install robench\[hub\]"):
        fetch(_spec("hf://owner/repo/model.safetensors@main"), tmp_path)


# -- local files, formats -------------------------------------------------------------------------

def test_local_files_are_checked_where_they_lie(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(GOOD)
    assert fetch(_spec("w.safetensors"), tmp_path / "cache", base=tmp_path) == tmp_path / "w.safetensors"
    assert not (tmp_path / "cache").exists()  # nothing copied
    (tmp_path / "bad.safetensors").write_bytes(OTHER)
    with pytest.raises(DigestMismatch, match=r"bad\.safetensors"):
        fetch(_spec("bad.safetensors"), tmp_path, base=tmp_path)
    (tmp_path / "saved.html").write_bytes(PAGE)
    with pytest.raises(WebPageNotWeights):
        fetch(_spec("saved.html"), tmp_path, base=tmp_path)
    with pytest.raises(ZooError, match="does not exist"):
        fetch(_spec("nope.safetensors"), tmp_path, base=tmp_path)
    with pytest.raises(ZooError, match="allowed: a path, an http"):
        fetch(_spec("ftp://host/w.safetensors"), tmp_path)


def test_torch_files_are_read_weights_only_and_a_code_pickle_is_refused(tmp_path: Path) -> None:
    torch.save(_state(0), tmp_path / "w.pt")
    sha = hashlib.sha256((tmp_path / "w.pt").read_bytes()).hexdigest()
    state = read_verified(tmp_path / "w.pt", sha, "torch")
    assert torch.equal(state["layer.weight"], _state(0)["layer.weight"])
    torch.save({"x": Payload()}, tmp_path / "code.pt")  # unpickling it would call this module's code: refused
    sha = hashlib.sha256((tmp_path / "code.pt").read_bytes()).hexdigest()
    with pytest.raises(ZooError, match="cannot be read safely"):
        read_verified(tmp_path / "code.pt", sha, "torch")
    with pytest.raises(DigestMismatch):  # checked before anything is parsed
        read_verified(tmp_path / "code.pt", "0" * 64, "torch")


def test_a_manifest_names_the_bad_key(tmp_path: Path) -> None:
    entry = {"name": "X", "weights": {"sha256": "xyz", "format": "safetensors", "source": "x.safetensors"},
             "model": {"protocol": "synthetic/defenses", "defense": "amr"}, "model_id": "89fbdfff05fbd897"}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"schema": 1, "track": "synthetic", "entries": {"x": entry}}))
    with pytest.raises(ZooError, match=r"key 'entries.x.weights.sha256'"):
        read_manifest(path)
    entry["weights"] = {**entry["weights"], "sha256": GOOD_SHA, "format": "onnx"}  # type: ignore[dict-item]
    path.write_text(json.dumps({"schema": 1, "track": "synthetic", "entries": {"x": entry}}))
    with pytest.raises(ZooError, match=r"key 'entries.x.weights.format'"):
        read_manifest(path)
    with pytest.raises(ZooError, match=r"has no entry 'nope'.*entries: amr, at-r"):
        zoo_entry("synthetic", "nope")
    with pytest.raises(ZooError, match="ships no weights for track 'imigue'"):
        zoo_entry("imigue", "amr")


# -- the shipped weights --------------------------------------------------------------------------

shipped = pytest.mark.skipif(bundled_manifest("synthetic") is None, reason="the shipped zoo weights are absent")


@shipped
def test_the_shipped_manifest_matches_the_committed_records() -> None:
    entries = read_manifest(SHIPPED / "manifest.json")
    assert sorted(entries) == ["amr", "at-r", "at-rs", "at-s", "exfmem", "minsim", "minsim-exfmem", "none"]
    total = 0
    for entry_id, entry in entries.items():
        file = SHIPPED / entry.weights.source
        total += file.stat().st_size
        assert entry.weights.format == "safetensors" and entry.weights.size == file.stat().st_size
        record_file = REPO / "leaderboard" / "synthetic" / f"{entry_id}.json"
        if record_file.is_file():
            assert entry.model_id in json.loads(record_file.read_text())["provenance"]["model_ids"], entry_id
    assert total < 20e6


@shipped
@pytest.mark.parametrize("track", ["synthetic-plausible", "synthetic-corruptions"])
def test_the_synthetic_tracks_share_one_set_of_files(track: str) -> None:
    """The plausible-skeleton and corruption tracks evaluate the synthetic track's models: their manifests name the
    synthetic track's files (no copies), and each model is the one their records were evaluated on."""
    ours, theirs = read_manifest(SHIPPED / "manifest.json"), read_manifest(SHIPPED.parent / track / "manifest.json")
    assert sorted(theirs) == sorted(ours) and not list((SHIPPED.parent / track).glob("*.safetensors"))
    for entry_id, entry in theirs.items():
        assert entry.weights.source == f"../synthetic/{ours[entry_id].weights.source}"
        assert (entry.weights, entry.model_id) == (
            WeightsSpec(ours[entry_id].weights.sha256, "safetensors", entry.weights.source,
                        ours[entry_id].weights.size), ours[entry_id].model_id)
        record = json.loads((REPO / "leaderboard" / track / f"{entry_id}.json").read_text())
        assert entry.model_id in record["provenance"]["model_ids"], entry_id


@shipped
def test_load_model_gives_the_evaluated_model(tmp_path: Path) -> None:
    """load_model("synthetic", "amr") from the shipped files: the model its record was evaluated on (its clean
    per-clip results on the track's clips), equal to the cached model it was exported from where that is here."""
    from robench.leaderboard.record import bits_of
    from robench.zoo.load import model_job

    model = robench.load_model("synthetic", "amr", device="cpu", cache=tmp_path / "cache", leaderboard=tmp_path)
    assert isinstance(model, robench.TwoStreamModel) and not model.training
    assert not (tmp_path / "cache").exists()  # shipped: read where it lies, nothing downloaded
    record = json.loads((REPO / "leaderboard" / "synthetic" / "amr.json").read_text())
    data = REPO / "results" / "cache" / "data"
    clips = robench.dataset("synthetic", split="test", cache=data if data.is_dir() else tmp_path / "data")
    correct = []
    with torch.no_grad():
        for inputs, labels in clips.batches(80):
            correct += (model(inputs).argmax(1) == labels).tolist()
    assert correct == bits_of(record)[0].tolist()  # all 160 clips, the wrong ones included
    cached = REPO / "results" / "cache" / "models" / model_job(zoo_entry("synthetic", "amr")).id / "model.pt"
    if cached.is_file():
        exported = torch.load(cached, map_location="cpu", weights_only=True)
        state = model.state_dict()
        assert state.keys() == exported.keys() and all(torch.equal(state[k], exported[k]) for k in state)


@shipped
def test_a_manifest_with_an_http_source_downloads_then_loads(server: _Server, tmp_path: Path) -> None:
    shipped_entry = zoo_entry("synthetic", "none")
    body = (SHIPPED / shipped_entry.weights.source).read_bytes()
    server.routes["/zoo/none.safetensors"] = (200, "application/octet-stream", body, None)
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    entry = manifest["entries"]["none"]
    entry["weights"]["source"] = f"{server.url}/zoo/none.safetensors"
    path = tmp_path / "zoo.json"
    path.write_text(json.dumps({**manifest, "entries": {"none": entry}}))
    model = robench.load_model("synthetic", "none", device="cpu", cache=tmp_path / "cache", zoo=path)
    assert cache_path(tmp_path / "cache", shipped_entry.weights).read_bytes() == body
    state = read_verified(SHIPPED / shipped_entry.weights.source, shipped_entry.weights.sha256, "safetensors")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    server.stop()
    robench.load_model("synthetic", "none", device="cpu", cache=tmp_path / "cache", zoo=path)  # from the cache
    entry["weights"]["sha256"] = hashlib.sha256(b"another").hexdigest()
    path.write_text(json.dumps({**manifest, "entries": {"none": entry}}))
    with pytest.raises(Offline):
        robench.load_model("synthetic", "none", device="cpu", cache=tmp_path / "cache", zoo=path)


@shipped
def test_a_record_of_another_model_under_that_id_is_not_served_from_the_zoo(tmp_path: Path) -> None:
    from robench.leaderboard.record import sealed
    from robench.zoo.load import zoo_for

    assert zoo_for("synthetic", "amr", True, tmp_path) is not None  # no record there: the zoo
    assert zoo_for("synthetic", "amr", True, REPO / "leaderboard") is not None  # the record of the same model
    record = json.loads((REPO / "leaderboard" / "synthetic" / "amr.json").read_text())
    record["provenance"]["model_ids"] = ["0123456789abcdef"]
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "amr.json").write_text(json.dumps(sealed(record)))
    assert zoo_for("synthetic", "amr", True, tmp_path) is None
    assert zoo_for("synthetic", "amr", False, None) is None


@shipped
def test_leaderboard_get_prints_where_and_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "amr.safetensors"
    assert main(["leaderboard", "get", "synthetic", "amr", "--cache", str(tmp_path / "cache"), "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    sha = zoo_entry("synthetic", "amr").weights.sha256
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha
    assert f"sha256:{sha} (verified)" in text and str(out) in text and "robench.load_model('synthetic', 'amr'" in text
    assert main(["leaderboard", "get", "synthetic", "nope"]) == 2
    assert "has no entry 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(SHIPPED / "manifest.json", bad / "manifest.json")
    (bad / "amr.safetensors").write_bytes(GOOD)  # another file under the name the manifest gives
    assert main(["leaderboard", "get", "synthetic", "amr", "--zoo", str(bad / "manifest.json")]) == 2
    assert "SHA-256 mismatch" in capsys.readouterr().err
