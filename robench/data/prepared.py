"""Prepared datasets: real RGB+skeleton data decoded once into fixed-size arrays on disk.

``robench prepare`` (see :mod:`robench.data.prepare`) writes a folder in this format; the
``ntu60``, ``ntu120`` and ``imigue`` datasets (and ``manifest``, for any other dataset) read it.
Training and attacks then never decode video: a batch is one read per clip from these files, and
memory stays flat whatever the dataset's size.

Layout of a prepared folder (format 1)::

    robench-dataset.json   what is inside: dataset, class names, clip count, array shapes, shards,
                           preparation counts (written / skipped / failed)
    clips.csv              one row per prepared clip: clip, label, metadata (subject, camera, setup,
                           replication, split, ...), frames (source length), bodies, row (its array row)
    skeleton.npy           float32 [N, 3, T_s, V, M], metres
    labels.npy             int64 [N] (-1 for rows whose clip failed to prepare)
    rgb-00000.npy ...      uint8 [n_k, 3, T, H, W] shards of consecutive rows

The RGB frame count and resolution are fixed at preparation time, so a folder serves protocols
that ask for exactly those sizes; :meth:`PreparedDataset.check_available` says which ``prepare``
command makes a matching folder.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from robench.data.base import Batch, ClipDataset, DatasetProvider
from robench.errors import DataError

FORMAT = 1
MANIFEST = "robench-dataset.json"


def data_root(name: str, root: str | None) -> Path:
    """Where a dataset's prepared folder is: ``root`` if given, else ``$ROBENCH_DATA/<name>``, else ``data/<name>``."""
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("ROBENCH_DATA", "data")).expanduser() / name


class RowFile:
    """A ``.npy`` array file (an RGB shard, uint8 ``[n, 3, T, H, W]``, or the skeletons, float32
    ``[N, 3, T, V, M]``) read and written row by row with plain file reads and writes.

    Rows go through the page cache straight into the batch's own array, not through a memory map:
    mapped pages would count towards the process's resident memory as an epoch sweeps the dataset,
    whereas plain reads keep it at one batch whatever the dataset's size (measured in
    ``benchmarks/loader_throughput.py --big-gb``). The files stay ordinary ``.npy`` arrays that
    ``np.load(..., mmap_mode="r")`` opens.
    """

    def __init__(self, path: Path, expected: type[np.generic], writable: bool = False) -> None:
        self.path = path
        self.file = open(path, "r+b" if writable else "rb", buffering=0)  # kept open for row reads; closed in __del__
        version = np.lib.format.read_magic(self.file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise DataError(f"{path}: .npy format version {version} is not one robench writes")
        shape, fortran, dtype = read_header[version](self.file)
        self.dtype = np.dtype(expected)
        if dtype != self.dtype or fortran or len(shape) != 5:
            raise DataError(f"{path}: expected a C-ordered {self.dtype} array of 5 dimensions, found {dtype} {shape}")
        self.offset, self.rows, self.row_shape = self.file.tell(), shape[0], tuple(shape[1:])
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize

    def read_row(self, row: int, out: np.ndarray) -> None:
        """Copy row ``row`` into ``out`` (a C-contiguous array of :attr:`dtype` and :attr:`row_shape`)."""
        if not 0 <= row < self.rows:
            raise IndexError(f"{self.path}: row {row} of {self.rows}")
        self.file.seek(self.offset + row * self.row_bytes)
        view = out.data.cast("B")  # memoryview(out); numpy's stubs declare the buffer protocol for 3.12+ only
        got = 0
        while got < self.row_bytes:  # raw reads may return less than asked
            n = self.file.readinto(view[got:])
            if not n:
                raise DataError(f"{self.path} ends inside row {row} (truncated file)")
            got += n

    def write_row(self, row: int, value: np.ndarray) -> None:
        """Write ``value`` (of :attr:`row_shape`, cast to :attr:`dtype`) as row ``row``."""
        if not 0 <= row < self.rows:
            raise IndexError(f"{self.path}: row {row} of {self.rows}")
        if tuple(value.shape) != self.row_shape:
            raise ValueError(f"{self.path}: row of shape {tuple(value.shape)}, expected {self.row_shape}")
        data = np.ascontiguousarray(value, dtype=self.dtype)
        self.file.seek(self.offset + row * self.row_bytes)
        view = data.data.cast("B")
        done = 0
        while done < self.row_bytes:
            done += self.file.write(view[done:])

    def __del__(self) -> None:
        file = getattr(self, "file", None)
        if file is not None:
            file.close()


class PreparedSplit(ClipDataset):
    """The clips ``indices`` of a prepared folder, read row by row (see :class:`RowFile`)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], indices: np.ndarray, class_names: list[str]) -> None:
        self.folder, self.manifest, self.indices = folder, manifest, np.asarray(indices, dtype=np.int64)
        self.class_names = class_names
        self._files: tuple[list[RowFile], RowFile] | None = None
        self._files_pid = 0

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for DataLoader workers that are spawned) without open files or maps; reopened there."""
        state = dict(self.__dict__)
        state.pop("_labels", None)
        state["_files"] = None
        return state

    @cached_property
    def _labels(self) -> np.ndarray:
        return np.load(self.folder / self.manifest["labels"], mmap_mode="r")

    @cached_property
    def _shard_starts(self) -> np.ndarray:
        sizes = self.manifest["rgb"]["shard_sizes"]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def _open(self) -> tuple[list[RowFile], RowFile]:
        """The RGB shards and the skeleton file, opened once per process (DataLoader workers open their own)."""
        if self._files is None or self._files_pid != os.getpid():
            self._files = ([RowFile(self.folder / f, np.uint8) for f in self.manifest["rgb"]["shards"]],
                           RowFile(self.folder / self.manifest["skeleton"]["file"], np.float32))
            self._files_pid = os.getpid()
        return self._files

    @property
    def labels(self) -> Tensor:
        return torch.from_numpy(np.asarray(self._labels[self.indices], dtype=np.int64))

    def get_batch(self, indices: Tensor) -> Batch:
        rows = self.indices[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")  # read in file order, return in the order asked
        sorted_rows = rows[order]
        starts = self._shard_starts
        shard_of = np.searchsorted(starts, sorted_rows, side="right") - 1
        shards, skeletons = self._open()
        rgb = np.empty((len(rows), *shards[0].row_shape) if shards else (len(rows), 0), dtype=np.uint8)
        skel = np.empty((len(rows), *skeletons.row_shape), dtype=np.float32)
        for dest, row, k in zip(order, sorted_rows, shard_of):
            shards[k].read_row(int(row - starts[k]), rgb[dest])
            skeletons.read_row(int(row), skel[dest])
        return {"rgb": torch.from_numpy(rgb), "skeleton": torch.from_numpy(skel),
                "label": torch.from_numpy(np.asarray(self._labels[rows], dtype=np.int64))}


class PreparedDataset(DatasetProvider):
    """A dataset read from a prepared folder; subclasses define the name, classes and splits.

    Subclasses set :attr:`dataset`, :attr:`class_names` and implement :meth:`split_indices`.
    """

    #: the dataset's name in prepared folders' manifests ("ntu60")
    dataset: ClassVar[str] = ""
    #: class names, index = label (a subclass's fixed tuple, or set per instance, e.g. by ManifestDataset)
    class_names: Sequence[str] = ()
    location_params: ClassVar[tuple[str, ...]] = ("cache_dir", "root")
    #: the official clip counts (``{"train": N, "test": M}`` or ``{"total": N}``), shown by reports
    expected_clips: ClassVar[dict[str, int]] = {}

    def __init__(self, root: str | None, frames_rgb: int, resolution: int, frames_skeleton: int,
                 cache_dir: Path | None = None) -> None:
        super().__init__(cache_dir)
        self.root_param = root
        self.folder = data_root(self.dataset, root)
        self.frames_rgb, self.resolution, self.frames_skeleton = frames_rgb, resolution, frames_skeleton

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"rgb": (3, self.frames_rgb, self.resolution, self.resolution),
                "skeleton": (3, self.frames_skeleton, 25, 2)}

    def prepare_command(self) -> str:
        return (f"robench prepare {self.dataset} --root <folder with the raw {self.dataset} files> "
                f"--out {self.folder} --frames-rgb {self.frames_rgb} --resolution {self.resolution} "
                f"--frames-skeleton {self.frames_skeleton}")

    @cached_property
    def manifest(self) -> dict[str, Any]:
        self.check_available()
        return json.loads((self.folder / MANIFEST).read_text())

    def check_available(self) -> None:
        where = self.folder.resolve()
        how = ("the dataset.root parameter" if self.root_param else
               f"$ROBENCH_DATA/{self.dataset}" if os.environ.get("ROBENCH_DATA") else
               f"data/{self.dataset}, the default")
        if not (where / MANIFEST).is_file():
            raise DataError(f"dataset '{self.dataset}' is not prepared: no {MANIFEST} in {where} (from {how}). "
                            f"Make it with: {self.prepare_command()}")
        redo = (f"move {where} away and prepare it again (a resumed preparation keeps damaged files): "
                f"{self.prepare_command()}")
        try:
            meta = json.loads((where / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"dataset '{self.dataset}': cannot read {where / MANIFEST}: {exc}; {redo}") from None
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k, {}), dict) for k in ("rgb", "skeleton")):
            raise DataError(f"dataset '{self.dataset}': {where / MANIFEST} is not a robench dataset manifest "
                            f"(found {type(meta).__name__}: {str(meta)[:60]}); {redo}")
        problems = []
        if meta.get("format") != FORMAT:
            problems.append(f"format {meta.get('format')} (this robench reads {FORMAT})")
        if meta.get("dataset") != self.dataset:
            problems.append(f"it holds '{meta.get('dataset')}', not '{self.dataset}'")
        got = (meta.get("rgb", {}).get("frames"), meta.get("rgb", {}).get("height"),
               meta.get("skeleton", {}).get("frames"))
        want = (self.frames_rgb, self.resolution, self.frames_skeleton)
        if got != want:
            problems.append(f"it was prepared for {got[0]} RGB frames at {got[1]} px and {got[2]} skeleton frames, "
                            f"the protocol asks for {want[0]} at {want[1]} px and {want[2]}")
        files = [meta.get("skeleton", {}).get("file", "skeleton.npy"), meta.get("labels", "labels.npy"),
                 meta.get("index", "clips.csv"), *meta.get("rgb", {}).get("shards", [])]
        missing = [f for f in files if not isinstance(f, str) or not (where / f).is_file()]
        if missing:
            problems.append(f"missing files {', '.join(map(str, missing[:3]))}" + (" ..." if len(missing) > 3 else ""))
        if problems:
            raise DataError(f"dataset '{self.dataset}' in {where} cannot be used: {'; '.join(problems)}. "
                            f"Make a matching folder with: {self.prepare_command()}")
        damaged = folder_problems(where, meta)
        if damaged:
            raise DataError(f"dataset '{self.dataset}' in {where} is damaged: {'; '.join(damaged[:3])}"
                            f"{' ...' if len(damaged) > 3 else ''}. To fix it, {redo}")

    @cached_property
    def clips(self) -> list[dict[str, str]]:
        """The rows of ``clips.csv`` (one per clip, in array order)."""
        with open(self.folder / self.manifest["index"], newline="") as fh:
            return list(csv.DictReader(fh))

    def split_indices(self, name: str) -> np.ndarray:
        """Positions in :attr:`clips` of the clips of split ``name``."""
        raise NotImplementedError

    @cached_property
    def rows(self) -> np.ndarray:
        """Array row of each entry of :attr:`clips` (rows of clips that failed to prepare are not listed)."""
        return np.array([int(c["row"]) for c in self.clips], dtype=np.int64)

    def split(self, name: str) -> ClipDataset:
        if name not in self.split_names:
            raise DataError(f"dataset '{self.dataset}' has splits {', '.join(self.split_names)}, not '{name}'")
        positions = self.split_indices(name)
        if len(positions) == 0:
            raise DataError(f"dataset '{self.dataset}' in {self.folder}: split '{name}' has no clips")
        return PreparedSplit(self.folder, self.manifest, self.rows[positions], list(self.class_names))

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"classes": self.num_classes, "folder": str(self.folder),
                                "rgb": f"3x{self.frames_rgb}x{self.resolution}x{self.resolution} uint8",
                                "skeleton": f"3x{self.frames_skeleton}x25x2 float32 (metres)"}
        if self.expected_clips:
            info["clips"] = dict(self.expected_clips)
        return info


def npy_shape(path: Path) -> tuple[tuple[int, ...] | None, str]:
    """The shape of a ``.npy`` file and ``""``, or ``None`` and why it is not a complete array file.

    Reads only the header and the file's size: a file cut short (a copy or preparation that
    stopped) is found without reading its data.
    """
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                return None, f"{path.name}: .npy format version {version} is not one robench writes"
            shape, _, dtype = read_header[version](fh)
            need = fh.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            size = os.fstat(fh.fileno()).st_size
    except (OSError, ValueError, EOFError, SyntaxError, TypeError) as exc:
        return None, f"{path.name}: not a readable .npy array ({exc})"
    if size < need:
        return None, f"{path.name} is cut short ({size} of {need} bytes)"
    return tuple(shape), ""


def folder_problems(folder: Path, meta: dict[str, Any]) -> list[str]:
    """What is damaged in a prepared folder whose manifest is ``meta``: array files cut short or of the
    wrong shape, an unreadable ``clips.csv`` (empty if the folder is sound)."""
    problems: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    skeleton, labels = meta.get("skeleton", {}).get("file", "skeleton.npy"), meta.get("labels", "labels.npy")
    shards = list(meta.get("rgb", {}).get("shards", []))
    for name in (skeleton, labels, *shards):
        shape, why = npy_shape(folder / name)
        if shape is None:
            problems.append(why)
        else:
            shapes[name] = shape
    if problems:
        return problems
    rows = {name: shape[0] if shape else 0 for name, shape in shapes.items()}
    n = rows[labels]
    sizes = meta.get("rgb", {}).get("shard_sizes", [])
    if rows[skeleton] != n:
        problems.append(f"{skeleton} has {rows[skeleton]} rows, {labels} {n}")
    if [rows[f] for f in shards] != list(sizes) or sum(rows[f] for f in shards) != n:
        problems.append(f"RGB shards of {[rows[f] for f in shards]} rows, the manifest says {sizes} ({n} clips)")
    index = folder / meta.get("index", "clips.csv")
    try:
        with open(index, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            lacking = {"clip", "label", "row"} - set(reader.fieldnames or [])
            if lacking:
                problems.append(f"{index.name} lacks the columns {', '.join(sorted(lacking))}")
            else:
                for line, rec in enumerate(reader, start=2):
                    if not (rec["row"] or "").isdigit() or int(rec["row"]) >= n:
                        problems.append(f"{index.name} line {line}: row {rec['row']!r} is not a row of the {n} arrays")
                        break
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{index.name}: {exc}")
    return problems


def column_indices(clips: Sequence[dict[str, str]], column: str, values: set[str]) -> np.ndarray:
    """Positions of the clips whose ``column`` is one of ``values``."""
    return np.array([i for i, c in enumerate(clips) if c.get(column, "") in values], dtype=np.int64)
