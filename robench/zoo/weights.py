"""Reading and writing weights files: safetensors (the safe format), and ``torch.save`` files read with
``torch.load(weights_only=True)``. Neither can run code when read.

:func:`read_verified` reads a file's bytes once, checks their SHA-256 against the expected digest and only then
deserialises those same bytes: no byte of a file that is not the expected one reaches a parser, and the file cannot
change between the check and the read.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch
from torch import Tensor

from robench.files import atomic_write
from robench.zoo.errors import DigestMismatch, ZooError

#: the formats a zoo entry's weights may have, and the file extension of each in the cache
FORMATS = {"safetensors": "safetensors", "torch": "pt"}


def sha256_file(path: Path) -> str:
    """The SHA-256 (hex) of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_digest(got: str, expected: str, what: str) -> None:
    """Raise :class:`DigestMismatch` naming ``what`` with both digests when they differ."""
    if got != expected:
        raise DigestMismatch(f"{what}: SHA-256 mismatch: expected sha256:{expected}, got sha256:{got}; these are not "
                             "the weights the zoo names (another or a damaged file); nothing was loaded")


def read_verified(path: Path, sha256: str, fmt: str, what: str | None = None) -> dict[str, Tensor]:
    """The tensors of the weights file ``path`` after its bytes were checked against ``sha256`` (see the module
    docstring); ``fmt`` is ``safetensors`` or ``torch``. Raises :class:`DigestMismatch` or :class:`ZooError`."""
    where = what or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ZooError(f"cannot read the weights file {path}: {exc.strerror or exc}") from None
    check_digest(hashlib.sha256(data).hexdigest(), sha256, where)
    return deserialise(data, fmt, where)


def deserialise(data: bytes, fmt: str, what: str) -> dict[str, Tensor]:
    """A flat mapping of names to tensors from a weights file's bytes, or a :class:`ZooError` naming ``what``."""
    if fmt == "safetensors":
        try:
            from safetensors.torch import load as load_safetensors
        except ImportError:
            raise ZooError(f"{what} is a safetensors file and the safetensors package is not installed: "
                           "pip install safetensors") from None
        try:
            state = load_safetensors(data)
        except Exception as exc:  # safetensors raises its own SafetensorError (and others) on malformed input
            raise ZooError(f"{what} is not a readable safetensors file ({_first_line(exc)})") from None
    elif fmt == "torch":
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # an unpickling error, a pickle that would run code, a damaged archive
            raise ZooError(f"{what} cannot be read safely with torch.load(weights_only=True) ({_first_line(exc)})"
                           ) from None
    else:
        raise ZooError(f"{what}: unknown weights format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ZooError(f"{what} does not hold a flat mapping of names to tensors (a model's state_dict())")
    return state


def safetensors_bytes(state: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A state dict as safetensors bytes (each tensor copied: safetensors refuses tensors that share memory), the same
    bytes for the same input: ``metadata`` is stored as one key, ``robench``, holding it as sorted JSON (safetensors
    writes several metadata keys in an order that changes from run to run)."""
    from safetensors.torch import save as save_safetensors

    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in sorted(state.items())}
    header = {"robench": json.dumps(metadata, sort_keys=True, separators=(",", ":"))} if metadata else None
    return bytes(save_safetensors(tensors, metadata=header))


def write_safetensors(path: Path, state: dict[str, Tensor], metadata: dict[str, str] | None = None) -> str:
    """Write ``state`` to ``path`` as safetensors, atomically; returns the file's SHA-256 (hex)."""
    data = safetensors_bytes(state, metadata)
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
