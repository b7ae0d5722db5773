"""External evaluations: ``robench leaderboard challenge RECORD --adversarial FILE``.

Anyone with a stronger attack than the track's can submit its adversarial inputs for an entry's evaluated clips.
robench checks every one against the track's threat model exactly as it checks the outputs of its own attacks
(:func:`robench.attacks.base.check_adversarial`: inside each attacked modality's ball around the clean clip, the
track's eps times the modality's threat scale, in the track's norm; in the valid range; finite; within the
plausible-skeleton limits on a plausible track; the modality the scenario does not attack bit-identical to the clean
clip), runs the entry's model on them (the one its record was evaluated on, in eval mode, fp32) and records which
clips they fool.

**The file** is safetensors (read from its bytes after their SHA-256 is taken; never a pickle):

- ``clip_ids``: int64 ``[N]``, distinct positions in the track's evaluated clip list (``0 .. count-1``, the order
  of ``robench.dataset(track, split="test")`` and of a record's per-clip results);
- ``rgb``: float32 ``[N, 3, T, H, W]`` in [0, 1], and/or ``skeleton``: float32 ``[N, 3, T, 25, M]`` in metres,
  each clip the same shape as the track's; a modality the scenario attacks must be there, one it does not attack
  may be left out (the clean clip is used) or must equal the clean clip bit for bit;
- metadata (strings): ``scenario`` (``R``, ``S`` or ``RS``: the modalities attacked), ``author`` and ``attack``
  (what it was, e.g. ``APGD-DLR, 100 steps, 5 restarts``).

**What it changes.** A clip counts as *broken* when it is robust in the record's worst case on the scenario (no
attack of the track, and no challenge accepted before, fooled it) and the model misclassifies its adversarial
input. A challenge that breaks at least one clip is accepted: the record keeps it (``challenges``: author, attack,
date, the file's SHA-256, scenario, how many clips the file held, the clips it broke, the robench and device that
checked it; :mod:`robench.leaderboard.record`), and from then on those clips count as not robust in the record's
worst case on that scenario (its column, ``worst`` when it is the track's ranking scenario, and ``avg``), so the
entry may move down the board; its page shows the number before and after, with a note naming the challenge. An
input of XR (the skeleton untouched) lies inside the XRS ball too: submit it with ``scenario: RS`` to count on XRS.

**What changes nothing.** A file that breaks a rule (its format, a clip id, one clip outside the threat model, a
value that is not finite, ...) is refused with one error naming the clip and the rule (exit status 2), and nothing
is written. A valid file that breaks no clip (every clip it fools was already not robust), or one accepted before
(by its SHA-256), is not recorded either: the record stays byte for byte as it was, and the command says why
(exit status 1). The record holds what changed its numbers; a failed attempt leaves it, its seal and its
verification stamp alone.

The adversarial file is not kept: the record holds its SHA-256, so the same file can be checked again by anyone
who has it. ``robench leaderboard verify`` re-evaluates robench's own attacks and keeps the challenges as they are
(it cannot re-check them without their files); ``robench leaderboard add`` of the same model carries them over to
the new record (clips that robench's own attacks now fool need no challenge and are dropped from it).
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robench import __version__
from robench.errors import AttackCheckError, RobenchError
from robench.leaderboard.challenged import possessive
from robench.leaderboard.record import (
    CORRUPTION_KIND,
    apply_challenges,
    bits_of,
    columns_of,
    kind_of,
    read_record,
    results_from_bits,
    write_record,
)
from robench.leaderboard.tracks import SCENARIO_LABELS, Track, load_track
from robench.store.results import utc_now

#: the tensors a challenge file may hold
TENSORS = ("rgb", "skeleton", "clip_ids")
#: the metadata a challenge file must hold
METADATA = ("scenario", "author", "attack")
#: the longest ``author`` and ``attack`` accepted (they are shown on the pages)
MAX_TEXT = 200
#: the modalities each scenario attacks
ATTACKED = {"R": ("rgb",), "S": ("skeleton",), "RS": ("rgb", "skeleton")}
#: room for the header of a file, beyond its tensors' bytes
HEADER_ROOM = 1 << 20


class ChallengeError(RobenchError):
    """A challenge file breaks a rule (its format, a clip id, the threat model): nothing is written."""


@dataclass(frozen=True)
class Submission:
    """A challenge file as read (:func:`read_submission`): its digest, metadata and tensors."""

    sha256: str
    scenario: str
    author: str
    attack: str
    clip_ids: list[int]
    inputs: dict[str, Tensor]


@dataclass
class Outcome:
    """What a challenge did: ``accepted`` (recorded) or why nothing changed (``reason``); the clips the file held,
    those it fools and those it broke; the scenario's and the ranking column's accuracy before and after."""

    record: Path
    accepted: bool
    scenario: str
    clips: int
    fooled: list[int]
    broken: list[int]
    before: float
    after: float
    rank_by: str
    worst_before: float
    worst_after: float
    reason: str = ""

    def lines(self) -> list[str]:
        """What the command prints."""
        label = SCENARIO_LABELS.get(self.scenario, self.scenario)
        if not self.accepted:
            return [f"unchanged {self.record}: {self.reason}"]
        shown = ", ".join(map(str, self.broken[:20])) + (", …" if len(self.broken) > 20 else "")
        said = [f"accepted: it breaks {len(self.broken)} clip{'s' if len(self.broken) != 1 else ''} on {label} (of the "
                f"file's {self.clips}: clips {shown}); {label} {self.before:.2f} → {self.after:.2f}"]
        if self.rank_by != self.scenario:
            said[0] += f" (the ranking column, {SCENARIO_LABELS.get(self.rank_by, self.rank_by)}, is unchanged)"
        said.append(f"wrote {self.record}; render the board again (robench leaderboard render) to show it")
        return said


# -- the file --------------------------------------------------------------------------------------------

def _fail(path: Path | str, said: str) -> ChallengeError:
    return ChallengeError(f"challenge file {path}: {said}; nothing was recorded")


def _header(data: bytes, path: Path | str) -> dict[str, Any]:
    """The JSON header of safetensors bytes (8 bytes of little-endian length, then the JSON), checked for form."""
    if len(data) < 8:
        raise _fail(path, "not a safetensors file (shorter than its 8-byte header length)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8 or size > HEADER_ROOM:
        raise _fail(path, "not a safetensors file (its header length exceeds the file)")
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(path, "not a safetensors file (its header is not JSON); the format is safetensors, never a "
                    "pickle") from None
    if not isinstance(header, dict):
        raise _fail(path, "not a safetensors file (its header is not a JSON object)")
    return header


def read_submission(path: str | Path, max_bytes: int | None = None) -> Submission:
    """Read a challenge file (see the module docstring): its bytes once, their SHA-256, then its header and tensors
    from those bytes (safetensors: nothing in it can run). Checks the format: the tensor names, dtypes and ranks,
    ``N`` the same everywhere, the clip ids distinct, and the metadata; the shapes and clip ids against the track's
    are checked by :func:`check_submission`. Any fault is a :class:`ChallengeError` naming the rule."""
    path = Path(path)
    if not path.is_file():
        raise ChallengeError(f"challenge file {path} does not exist")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise _fail(path, f"{path.stat().st_size} bytes, more than the {max_bytes} that every clip of the track in "
                    "float32 takes")
    data = path.read_bytes()
    sha = "sha256:" + hashlib.sha256(data).hexdigest()
    header = _header(data, path)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise _fail(path, "its metadata is not a mapping of strings")
    if unknown := sorted(set(header) - set(TENSORS)):
        raise _fail(path, f"unknown tensor '{unknown[0]}'; allowed: {', '.join(TENSORS)}")
    dtypes = {"rgb": "F32", "skeleton": "F32", "clip_ids": "I64"}
    for name, info in header.items():
        if not isinstance(info, dict) or info.get("dtype") != dtypes[name]:
            found = info.get("dtype") if isinstance(info, dict) else info
            raise _fail(path, f"tensor '{name}' is {found}; allowed: {dtypes[name]} "
                        f"({'int64' if name == 'clip_ids' else 'float32'})")
    try:
        from safetensors.torch import load as load_safetensors

        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own SafetensorError (and others) on malformed input
        raise _fail(path, f"not a readable safetensors file ({str(exc).strip()[:200] or type(exc).__name__})"
                    ) from None
    if "clip_ids" not in tensors:
        raise _fail(path, "no tensor 'clip_ids' (int64 [N]: the positions of its clips in the track's evaluated "
                    "clip list)")
    ids = tensors["clip_ids"]
    if ids.dim() != 1 or ids.numel() == 0:
        raise _fail(path, f"'clip_ids' has shape {list(ids.shape)}; allowed: [N], N >= 1")
    n = int(ids.numel())
    inputs: dict[str, Tensor] = {m: tensors[m] for m in ("rgb", "skeleton") if m in tensors}
    for m, x in inputs.items():
        if x.dim() != 5 or int(x.shape[0]) != n:
            raise _fail(path, f"'{m}' has shape {list(x.shape)}; allowed: [N, 3, T, ...] with N = {n} (one per clip "
                        "id)")
    clip_ids = [int(c) for c in ids.tolist()]
    seen: dict[int, int] = {}
    for i, c in enumerate(clip_ids):
        if c in seen:
            raise _fail(path, f"clip {c} appears twice (clip_ids[{seen[c]}] and clip_ids[{i}]); each clip once")
        seen[c] = i
    for key in METADATA:
        value = meta.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _fail(path, f"metadata '{key}' is {'missing' if value is None else repr(value)}; allowed: "
                        + ("R, S or RS (the modalities attacked)" if key == "scenario" else "a non-empty string"))
        if any(ord(ch) < 32 for ch in value) or len(value) > MAX_TEXT:
            raise _fail(path, f"metadata '{key}' has control characters or more than {MAX_TEXT} characters")
    scenario = str(meta["scenario"])
    if scenario not in ATTACKED:
        raise _fail(path, f"metadata 'scenario' is {scenario!r}; allowed: R, S or RS (the modalities attacked)")
    for m in ATTACKED[scenario]:
        if m not in inputs:
            raise _fail(path, f"scenario {scenario} attacks {' and '.join(ATTACKED[scenario])}, and the file has no "
                        f"'{m}' tensor")
    return Submission(sha, scenario, " ".join(meta["author"].split()), " ".join(meta["attack"].split()), clip_ids,
                      inputs)


def check_submission(sub: Submission, clean: dict[str, Tensor], count: int, threat: Any,
                     path: Path | str = "") -> dict[str, Tensor]:
    """Check every clip of ``sub`` against the threat model, as robench checks its own attacks' outputs, and return
    the adversarial inputs of every modality (the clean clip where the file leaves one out).

    ``clean``: the track's clean clips at ``sub.clip_ids`` (both modalities, float32); ``count``: how many clips the
    track evaluates; ``threat``: an :class:`~robench.attacks.base.Attack` of the track on the scenario's
    modalities, built as the track's evaluation builds its attacks, whose ``eps``, ``bounds``, ``plausible`` and
    ``norm`` are the checks' (:func:`robench.attacks.base.check_adversarial`). The first clip that fails is a
    :class:`ChallengeError` naming it and the rule."""
    from robench.attacks.base import check_adversarial

    for i, c in enumerate(sub.clip_ids):
        if not 0 <= c < count:
            raise _fail(path, f"clip_ids[{i}] is {c}; the track evaluates {count} clips, positions 0 to {count - 1} "
                        "in its evaluated clip list")
    adv = {}
    for m, x in clean.items():
        given = sub.inputs.get(m)
        if given is None:
            adv[m] = x
            continue
        if tuple(given.shape[1:]) != tuple(x.shape[1:]):
            raise _fail(path, f"'{m}' holds clips of shape {list(given.shape[1:])}; the track's {m} clips are "
                        f"{list(x.shape[1:])}")
        adv[m] = given
    label = SCENARIO_LABELS.get(sub.scenario, sub.scenario)
    for i, c in enumerate(sub.clip_ids):
        one = {m: x[i:i + 1] for m, x in clean.items()}
        try:
            check_adversarial(one, {m: x[i:i + 1] for m, x in adv.items()}, threat.eps, threat.bounds,
                              attack=f"clip {c} (clip_ids[{i}]) on {label}", plausible=threat.plausible,
                              norm=threat.norm)
        except AttackCheckError as exc:
            untouched = [m for m in clean if m not in threat.eps]
            rule = (f" (scenario {sub.scenario} leaves {' and '.join(untouched)} untouched: leave it out of the file, "
                    "or give the clean clip bit for bit)") if untouched and "not attacked" in str(exc) else ""
            raise _fail(path, f"{exc}{rule}: outside the threat model of the track") from None
    return adv


# -- the model -------------------------------------------------------------------------------------------

def entry_model(record: dict[str, Any], path: Path, track: Track, cache: Path, device: torch.device,
                progress: str = "quiet") -> Any:
    """The model a record was evaluated on, in eval mode, fp32: from the model zoo when it lists the entry's model
    (:func:`robench.zoo.load.zoo_for`), else built the way ``robench leaderboard verify`` builds it (the entry file
    the record names, the leaderboard's protocol, the model cache; trained if it is missing). Its model id must be
    one the record lists (``provenance.model_ids``)."""
    from robench.leaderboard.commands import changed_files, entry_of
    from robench.leaderboard.entry import load_entry
    from robench.leaderboard.evaluate import entry_protocol, model_code_errors
    from robench.plan import make_plan
    from robench.progress import Progress
    from robench.runner import Runner
    from robench.runtime import RuntimeOptions
    from robench.store import ResultsStore
    from robench.train.cache import ModelCache
    from robench.zoo.load import load_zoo_model, zoo_for

    model_ids = list(record["provenance"].get("model_ids") or [])
    entry_id = str(record["entry"]["id"])
    if path.parent.name == track.name:
        found = zoo_for(track.name, entry_id, True, path.parent.parent)
        if found is not None and found.model_id in model_ids:
            return load_zoo_model(track.name, found, device=device, cache=cache)
    entry = load_entry(entry_of(record, path))
    if changed := changed_files(record, entry):
        raise ChallengeError(f"record {path}: the entry's files are not the ones it was evaluated with "
                             f"({'; '.join(changed)}): a challenge is judged on the record's model only")
    with model_code_errors(entry):
        plan = make_plan(entry_protocol(entry, track))
        jobs = [job for job in plan.models.values() if entry.id in job.defense_ids]
        if len(jobs) != 1 or jobs[0].id not in model_ids:
            raise ChallengeError(f"record {path}: robench builds model {jobs[0].id if jobs else '(none)'} for its "
                                 f"entry now, and the record was evaluated on {', '.join(model_ids)}: add the entry "
                                 "again before challenging it")
        runtime = RuntimeOptions.for_device(device, amp="off", tf32="off")
        with tempfile.TemporaryDirectory(prefix="robench-challenge-") as tmp, Progress(progress) as bar:
            runner = Runner(ResultsStore(Path(tmp) / "challenge.sqlite"), ModelCache(cache), device, bar,
                            cache / "data", runtime)
            model = runner.model_of(plan, jobs[0]).model
    return model.eval()


def predictions(model: Any, inputs: dict[str, Tensor], batch_size: int, device: torch.device,
                what: str, clip_ids: list[int]) -> Tensor:
    """The model's predicted classes for ``inputs`` (no gradients, fp32, ``batch_size`` at a time); logits that are
    not finite are a :class:`ChallengeError` naming the clips (the argmax of a NaN row would pass for a class)."""
    from robench.runtime import configure

    configure(device, tf32=False)
    modalities = tuple(getattr(model, "modalities", ("rgb", "skeleton")))
    n = len(clip_ids)
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = {m: x[start:start + batch_size].to(device) for m, x in inputs.items() if m in modalities}
            logits = model(batch)
            bad = ~torch.isfinite(logits).reshape(len(logits), -1).all(1)
            if bool(bad.any()):
                clips = [clip_ids[start + int(i)] for i in torch.nonzero(bad).flatten().tolist()]
                raise ChallengeError(f"the model's outputs are not finite on {what} of clip(s) "
                                     f"{', '.join(map(str, clips[:10]))}: robench cannot say what it predicts there "
                                     "(the argmax of a NaN row is class 0); nothing was recorded")
            out.append(logits.argmax(1).cpu())
    return torch.cat(out)


# -- the command -----------------------------------------------------------------------------------------

def challenge(record_file: str | Path, adversarial: str | Path, cache: Path, device: torch.device,
              track_file: str | None = None, progress: str = "quiet") -> Outcome:
    """Check a challenge file against a record's entry and record the clips it breaks (see the module docstring).

    Everything is checked before anything is written: the record (read and validated), its track (the bundled one
    it names, or ``track_file``, with the record's digest), the file's format and every clip against the threat
    model; then the entry's model (:func:`entry_model`) must give the record's clean results on the file's clips,
    and classifies the adversarial inputs. A :class:`ChallengeError` (or another :class:`RobenchError`) leaves the
    record untouched; so does an :class:`Outcome` that is not ``accepted``."""
    from robench.api import dataset
    from robench.data.base import to_model_inputs
    from robench.leaderboard.commands import entry_of
    from robench.leaderboard.entry import load_entry
    from robench.leaderboard.evaluate import clips_digest, entry_protocol, model_code_errors
    from robench.registry import ATTACKS

    path = Path(record_file).resolve()
    record = read_record(path)
    original = path.read_bytes()
    where = str(path)
    if record["status"] != "verified" or kind_of(record) == CORRUPTION_KIND:
        kind = "unverified (reported numbers only)" if record["status"] != "verified" else \
            "of a corruption track (no attacks)"
        raise ChallengeError(f"record {path} is {kind}: there is no worst case under attack to challenge")
    if str(record["entry"].get("source") or "").startswith("python object "):
        raise ChallengeError(f"record {path} is of a model object handed to robench.evaluate: robench cannot run its "
                             "model again, so it cannot judge a challenge; evaluate the object with a stronger attack "
                             "yourself")
    track = load_track(track_file or record["track"]["name"])
    if track.name != record["track"]["name"] or track.digest != record["track"]["digest"]:
        raise ChallengeError(f"record {path} was made for track {record['track']['name']} v{record['track']['version']}"
                             f", not {track.name} v{track.version} (another digest): add the entry again first")
    count = int(record["results"]["clean"]["n"])

    # the track's clean clips, the way the leaderboard evaluates them
    clips = dataset(track.path, split=str(track.data["evaluation"]["split"]), cache=cache / "data")
    if len(clips) != count:
        raise ChallengeError(f"record {path} evaluated {count} clips, the track's data here has {len(clips)}")
    first = to_model_inputs(clips.clips.get_batch(clips.indices[:1]), "cpu")
    per_clip = sum(4 * int(x[0].numel()) for x in first.values()) + 8
    sub = read_submission(adversarial, max_bytes=count * per_clip + HEADER_ROOM)
    if sub.scenario not in track.attacked:
        raise _fail(adversarial, f"scenario {sub.scenario}: the track attacks {', '.join(track.attacked)} only")
    for earlier in record.get("challenges") or []:
        if earlier["sha256"] == sub.sha256:
            return _unchanged(path, record, sub, [], f"this file ({sub.sha256[:19]}…) was accepted on "
                              f"{earlier['date'][:10]} ({possessive(earlier['author'])} {earlier['attack']}); each "
                              "file counts once")
    entry = load_entry(entry_of(record, path))
    if (digest := record["track"]["clips"].get("digest")) and clips_digest(entry_protocol(entry, track))[1] != digest:
        raise ChallengeError(f"record {path}: the track's clips here (their digest) are not the ones the record was "
                             "evaluated on: the data differs")
    for i, c in enumerate(sub.clip_ids):
        if not 0 <= c < count:
            raise _fail(adversarial, f"clip_ids[{i}] is {c}; the track evaluates {count} clips, positions 0 to "
                        f"{count - 1} in its evaluated clip list")
    batch = clips.clips.get_batch(clips.indices[torch.tensor(sub.clip_ids, dtype=torch.int64)])
    clean = to_model_inputs(batch, "cpu")
    labels = batch["label"].to(torch.int64)

    # the threat model: an attack of the track on the scenario's modalities, built as the evaluation builds it
    protocol = entry_protocol(entry, track)
    variant = next(iter(protocol.variants.values()))
    first_attack = next(iter(variant.attacks.values())).attack
    threat = ATTACKS.build(first_attack.type, **variant.threat.attack_kwargs(first_attack, list(ATTACKED[sub.scenario]),
                                                                             track.eps))
    adv = check_submission(sub, clean, count, threat, adversarial)

    # the model: the record's clean results on these clips, then the adversarial inputs
    model = entry_model(record, path, track, cache, device, progress)
    batch_size = int(track.data["evaluation"].get("batch_size") or 32)
    own_clean = bits_of(record, where)[0]
    with model_code_errors(entry):  # (an exception in an outside model's plugin code: one line naming it)
        correct_clean = (predictions(model, clean, batch_size, device, "the clean inputs", sub.clip_ids)
                         == labels).numpy()
        predicted = predictions(model, adv, batch_size, device, "the adversarial inputs", sub.clip_ids)
    if differ := [c for c, ok in zip(sub.clip_ids, correct_clean) if bool(ok) != bool(own_clean[c])]:
        raise ChallengeError(f"record {path}: the entry's model, run here ({device}), does not give the record's clean "
                             f"results on clip(s) {', '.join(map(str, differ[:10]))}: a challenge is judged only where "
                             "the record reproduces (bits may differ across CPU types and devices: robench leaderboard "
                             "verify says whether it does here); nothing was recorded")
    fooled_mask = (predicted != labels).numpy()
    fooled = [c for c, f in zip(sub.clip_ids, fooled_mask) if f]
    columns = apply_challenges(columns_of(*bits_of(record, where)[:2]), list(record.get("challenges") or []), where)
    robust = columns[sub.scenario]
    broken = sorted(c for c in fooled if robust[c])
    label = SCENARIO_LABELS.get(sub.scenario, sub.scenario)
    if not broken:
        robust_given = sum(1 for c in sub.clip_ids if robust[c])
        return _unchanged(path, record, sub, fooled,
                          f"the file is valid (all {len(sub.clip_ids)} clips inside the threat model on {label}), but "
                          f"it breaks no clip: the model classifies all {robust_given} of its clips that are robust in "
                          f"the record's worst case on {label} correctly"
                          + (f" (the {len(fooled)} clip(s) it fools were already not robust)" if fooled else ""))
    found = {"author": sub.author, "attack": sub.attack, "date": utc_now(), "sha256": sub.sha256,
             "scenario": sub.scenario, "clips": len(sub.clip_ids), "clips_broken": broken, "robench": __version__,
             "device": _device(device)}
    updated = with_challenges(record, [*(record.get("challenges") or []), found], track)
    if path.read_bytes() != original:  # (another command wrote it meanwhile: its change must not be lost)
        raise ChallengeError(f"record {path} changed while the challenge was judged; run the command again")
    write_record(path, updated)
    rank_by = str(record["track"]["rank_by"])
    return Outcome(path, True, sub.scenario, len(sub.clip_ids), fooled, broken,
                   float(record["results"][sub.scenario]["accuracy"]), float(updated["results"][sub.scenario]
                                                                             ["accuracy"]),
                   rank_by, float(record["results"]["worst"]["accuracy"]), float(updated["results"]["worst"]
                                                                                 ["accuracy"]))


def _device(device: torch.device) -> str:
    from robench.runtime import device_name

    return device_name(device)


def _unchanged(path: Path, record: dict[str, Any], sub: Submission, fooled: list[int], reason: str) -> Outcome:
    worst = float(record["results"]["worst"]["accuracy"])
    now = float(record["results"][sub.scenario]["accuracy"])
    return Outcome(path, False, sub.scenario, len(sub.clip_ids), fooled, [], now, now,
                   str(record["track"]["rank_by"]), worst, worst, reason + "; the record is unchanged")


# -- records -----------------------------------------------------------------------------------------------

def with_challenges(record: dict[str, Any], challenges: list[dict[str, Any]], track: Track | None = None,
                    where: str = "") -> dict[str, Any]:
    """``record`` with ``challenges`` (all of them, in order; none: the key removed) and its attacked columns,
    ``worst`` and ``avg`` recomputed from its per-clip results and the challenges; ``ri`` moves with ``avg`` (the
    baseline's own stays 0); ``by_attack`` and ``per_sample`` are robench's attacks' and stay. Not sealed."""
    clean, attacks, members = bits_of(record, where)
    columns = apply_challenges(columns_of(clean, attacks), challenges, where)
    labels = {a: str(v.get("label", a)) for a, v in record["results"]["by_attack"].items()}
    fresh = results_from_bits(clean, attacks, members, str(record["track"]["rank_by"]), labels, columns)
    old = record["results"]
    results = {k: fresh.get(k, v) for k, v in old.items()} | {k: v for k, v in fresh.items() if k not in old}
    baseline = track.baseline if track is not None else None
    if old.get("ri") is not None and record["entry"]["id"] != baseline and old.get("avg") is not None:
        results["ri"] = float(old["ri"]) + (float(results["avg"]) - float(old["avg"]))
    out = {k: (results if k == "results" else v) for k, v in record.items() if k not in ("challenges", "seal")}
    if challenges:
        out["challenges"] = challenges
    out["seal"] = record.get("seal", {})
    return out


def carry_over(target: Path, record: dict[str, Any], track: Track | None = None) -> dict[str, Any]:
    """``robench leaderboard add``: a new record of an entry keeps the challenges of the record it replaces when it
    is of the same model on the same track version and clips (each challenge's clips that robench's own attacks now
    fool are dropped from it, and a challenge left with none is dropped); otherwise they do not apply, and a warning
    says so. ``record`` unchanged when there is nothing to carry over."""
    if not target.is_file() or record.get("status") != "verified" or kind_of(record) == CORRUPTION_KIND:
        return record
    try:
        old = read_record(target)
    except RobenchError:
        return record
    challenges = list(old.get("challenges") or [])
    if not challenges:
        return record
    same = (old["track"]["digest"] == record["track"]["digest"] and old["track"]["clips"] == record["track"]["clips"]
            and sorted(old["provenance"].get("model_ids") or []) == sorted(record["provenance"].get("model_ids") or []))
    if not same:
        warnings.warn(f"record {target}: its {len(challenges)} challenge(s) were accepted for another model, track "
                      "version or clips than the new record's; the new record starts without them", stacklevel=2)
        return record
    columns = columns_of(*bits_of(record, str(target))[:2])
    kept = []
    for found in challenges:
        column = columns[found["scenario"]]
        still = [int(c) for c in found["clips_broken"] if column[int(c)]]
        if still:
            column[still] = False
            kept.append({**found, "clips_broken": still})
    if (dropped := sum(len(c["clips_broken"]) for c in challenges) - sum(len(c["clips_broken"]) for c in kept)):
        warnings.warn(f"record {target}: robench's own attacks now fool {dropped} clip(s) that challenges had broken; "
                      "they are no longer counted as the challenges'", stacklevel=2)
    return with_challenges(record, kept, track, str(target))
