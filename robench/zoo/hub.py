"""``hf://owner/repo/path/in/repo@revision``: a file of a Hugging Face Hub model repository.

The file is fetched with ``huggingface_hub.hf_hub_download`` (the optional extra ``pip install robench[hub]``;
imported only when an ``hf://`` source is fetched), which keeps its own cache and honours ``HF_HUB_OFFLINE``,
``HF_ENDPOINT`` and ``HF_TOKEN``. :func:`robench.zoo.fetch.fetch` then copies it into robench's cache, checking its
digest. The hub's exceptions become robench's: unreachable or offline (:class:`~robench.zoo.errors.Offline`), no such
repository, revision or file (:class:`~robench.zoo.errors.ZooError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robench.zoo.errors import HubUnavailable, Offline, ZooError

HUB = "hf://"
#: the revision of an address that names none
DEFAULT_REVISION = "main"
#: exception class names (anywhere in the exception's class hierarchy) that mean "not reachable now"
_OFFLINE = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError", "ConnectTimeout",
            "ReadTimeout", "Timeout", "TimeoutException", "NetworkError", "TimeoutError"}
#: ... and "there is no such thing"
_MISSING = {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError",
            "GatedRepoError", "DisabledRepoError"}


@dataclass(frozen=True)
class HubAddress:
    """``repo_id`` (``owner/repo``), ``filename`` (a path inside the repository) and ``revision``."""

    repo_id: str
    filename: str
    revision: str


def parse(source: str) -> HubAddress:
    """Split ``hf://owner/repo/path/in/repo@revision`` (a :class:`ZooError` naming the form otherwise)."""
    if not source.startswith(HUB):
        raise ZooError(f"{source!r} is not a hub address (hf://owner/repo/path/in/repo@revision)")
    rest = source[len(HUB):]
    path, at, revision = rest.rpartition("@") if "@" in rest else (rest, "", DEFAULT_REVISION)
    parts = path.split("/")
    if len(parts) < 3 or not all(parts) or (at and not revision) or ".." in parts:
        raise ZooError(f"hub address {source!r}: allowed: hf://owner/repo/path/in/repo@revision (the revision, a "
                       "branch, tag or commit, defaults to main)")
    return HubAddress(f"{parts[0]}/{parts[1]}", "/".join(parts[2:]), revision)


def hub_file(source: str, cache: Path) -> Path:
    """The local file of an ``hf://`` source, fetched by ``huggingface_hub`` (see the module docstring)."""
    address = parse(source)
    try:
        import huggingface_hub
    except ImportError:
        raise HubUnavailable(f"weights {source} are on the Hugging Face Hub, which needs the huggingface_hub package: "
                             "pip install robench[hub] (or pip install 'huggingface_hub>=0.23')") from None
    try:
        found = huggingface_hub.hf_hub_download(repo_id=address.repo_id, filename=address.filename,
                                                revision=address.revision)
    except Exception as exc:  # the hub's own exception classes move between versions: matched by name below
        names = {cls.__name__ for cls in type(exc).__mro__}
        said = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if names & _OFFLINE or isinstance(exc, (ConnectionError, TimeoutError)):
            raise Offline(f"cannot reach the Hugging Face Hub for {source} ({type(exc).__name__}: {said}), and "
                          f"neither the hub's cache nor robench's ({cache}) has a copy: connect to the network once "
                          "(later calls use the cache)") from None
        if names & _MISSING:
            raise ZooError(f"{source}: the hub has no such repository, revision or file ({type(exc).__name__}: "
                           f"{said})") from None
        raise ZooError(f"{source}: the hub download failed ({type(exc).__name__}: {said})") from None
    return Path(str(found))
