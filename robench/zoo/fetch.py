"""Fetching a zoo entry's weights file: from a path, an http(s) URL or a Hugging Face Hub repository, once.

A source is one of:

- a path, relative to the manifest that names it (the weights shipped inside robench) or absolute: used where it
  is, after its digest is checked;
- ``https://host/path`` (or ``http://``): downloaded into the cache;
- ``hf://owner/repo/path/in/repo@revision``: fetched with ``huggingface_hub`` (the optional extra
  ``pip install robench[hub]``; the revision defaults to ``main``), then copied into the cache.

The cache is content-addressed: ``<cache>/zoo/sha256/<hex>.<ext>``. A download is streamed into a temporary file in
that folder and hashed while it is written; the byte count is compared with what the server announced and what the
zoo expects, a web page is recognised as one, the digest is compared, and only a file that passes all of it is
renamed (atomically) to its content address. A second call finds it there and uses no network; a cached copy
whose content no longer matches its address is removed and fetched again. Every fault is one error
(:mod:`robench.zoo.errors`); nothing is deserialised here (:func:`robench.zoo.weights.read_verified` does that, after
checking the digest once more).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from robench import __version__
from robench.zoo.errors import Offline, TruncatedDownload, WebPageNotWeights, ZooError
from robench.zoo.hub import HUB, hub_file
from robench.zoo.weights import FORMATS, check_digest, sha256_file

#: bytes read at a time
CHUNK = 1 << 20
#: seconds a connection may stay silent before the download is given up
TIMEOUT = 30.0
SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: what a web page starts with (after a byte-order mark and white space), lower-cased
_PAGE_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<!--", b"<?xml")


@dataclass(frozen=True)
class WeightsSpec:
    """Which weights file: its ``sha256`` (hex), ``format`` (``safetensors`` or ``torch``), ``source`` (a path, an
    http(s) URL or an ``hf://`` address; see the module docstring) and, when known, its ``size`` in bytes."""

    sha256: str
    format: str
    source: str
    size: int | None = None

    @property
    def kind(self) -> str:
        """``"hub"``, ``"http"`` or ``"path"``."""
        return source_kind(self.source)


def source_kind(source: str) -> str:
    """The kind of a source: ``hub`` (``hf://``), ``http`` (http:// or https://) or ``path``."""
    if source.startswith(HUB):
        return "hub"
    if re.match(r"^https?://", source, re.IGNORECASE):
        return "http"
    if re.match(r"^[a-z][a-z0-9+.-]*://", source, re.IGNORECASE):
        raise ZooError(f"weights source {source!r}: allowed: a path, an http(s):// URL or hf://owner/repo/file@revision")
    return "path"


def cache_path(cache: Path, spec: WeightsSpec) -> Path:
    """Where the cache keeps a file of this digest: ``<cache>/zoo/sha256/<hex>.<ext>``."""
    return Path(cache) / "zoo" / "sha256" / f"{spec.sha256}.{FORMATS.get(spec.format, 'bin')}"


def fetch(spec: WeightsSpec, cache: Path, base: Path | None = None) -> Path:
    """The verified weights file of ``spec`` (see the module docstring): a local path as it is, anything else from
    the cache, downloaded first when the cache has no copy. ``base`` is the folder relative paths start from."""
    if not SHA256.fullmatch(spec.sha256):
        raise ZooError(f"weights {spec.source}: sha256 {spec.sha256!r}: allowed: 64 lower-case hex digits")
    if spec.kind == "path":
        path = Path(spec.source).expanduser()
        path = path if path.is_absolute() or base is None else base / path
        if not path.is_file():
            raise ZooError(f"weights file {path} does not exist (source {spec.source!r}"
                           + (f", relative to {base})" if base is not None and not Path(spec.source).is_absolute()
                              else ")"))
        verify_file(path, spec, f"weights file {path}")
        return path
    target = cache_path(cache, spec)
    if target.is_file():
        try:
            verify_file(target, spec, f"cached copy {target}")
            return target
        except ZooError:  # damaged since it was stored: fetch it again
            with contextlib.suppress(OSError):
                target.unlink()
    if spec.kind == "http":
        return _download(spec, target, cache)
    local = hub_file(spec.source, cache)
    with open(local, "rb") as fh:
        return receive(_chunks(fh, spec.source), None, spec, target, spec.source)


def verify_file(path: Path, spec: WeightsSpec, what: str) -> None:
    """Check a local file against ``spec``: a web page saved in its place, then its digest."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if looks_like_html(head):
        raise WebPageNotWeights(f"{what} is a web page (HTML), not a weights file; a page saved instead of the file "
                                "it links to? Download the file itself")
    check_digest(sha256_file(path), spec.sha256, what)


def looks_like_html(head: bytes) -> bool:
    """True if the first bytes of a file are those of a web page (see :data:`_PAGE_STARTS`)."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    return text.startswith(_PAGE_STARTS) or (text.startswith(b"<") and b"<html" in text)


def _chunks(stream: BinaryIO | http.client.HTTPResponse, where: str) -> Iterator[bytes]:
    """The bytes of a stream, :data:`CHUNK` at a time; a connection that breaks is a :class:`TruncatedDownload`."""
    while True:
        try:
            chunk = stream.read(CHUNK)
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            raise TruncatedDownload(f"{where}: the connection broke during the download ({type(exc).__name__}); "
                                    "run the command again (nothing was kept)") from None
        if not chunk:
            return
        yield chunk


def receive(chunks: Iterator[bytes], announced: int | None, spec: WeightsSpec, target: Path, where: str) -> Path:
    """Stream ``chunks`` into a temporary file beside ``target``, hashing as they come; check (in this order) the
    count against ``announced`` (Content-Length), a web page, the count against ``spec.size``, the digest; then
    rename the file to ``target``. On any fault the temporary file is removed and ``target`` is left as it was."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.sha256[:16]}.", suffix=".part")
    except OSError as exc:
        raise ZooError(f"cannot write into the cache {target.parent}: {exc.strerror or exc}; pass another cache "
                       "folder (--cache, $ROBENCH_CACHE)") from None
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        count = 0
        head = b""
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                if len(head) < 1024:
                    head += chunk[: 1024 - len(head)]
                h.update(chunk)
                out.write(chunk)
                count += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if announced is not None and count < announced:
            raise TruncatedDownload(f"{where}: truncated download: got {count} of the {announced} bytes the server "
                                    "announced (Content-Length); run the command again (nothing was kept)")
        if looks_like_html(head):
            raise WebPageNotWeights(f"{where} is a web page (HTML), not the weights file: a file-sharing or login "
                                    "page, typically; give the URL of the file itself (a direct download link)")
        if spec.size is not None and count < spec.size:
            raise TruncatedDownload(f"{where}: truncated download: got {count} of the {spec.size} bytes the zoo "
                                    "expects; run the command again (nothing was kept)")
        check_digest(h.hexdigest(), spec.sha256, where)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def _download(spec: WeightsSpec, target: Path, cache: Path) -> Path:
    url = spec.source
    host = urlsplit(url).hostname or url
    request = urllib.request.Request(url, headers={"User-Agent": f"robench/{__version__}",
                                                   "Accept": "application/octet-stream, */*;q=0.5"})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        raise ZooError(f"{url}: the server answered HTTP {exc.code} {exc.reason}; check the URL") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Offline(f"cannot reach {host} to download {url} ({_reason(reason)}), and the cache {cache} has no copy "
                      f"of sha256:{spec.sha256[:16]}…: connect to the network once (later calls use the cache), or "
                      "download the file elsewhere and give its path") from None
    with response:
        final = response.geturl() or url
        where = url if final == url else f"{url} (redirected to {final})"
        if response.headers.get_content_type() in ("text/html", "application/xhtml+xml"):
            raise WebPageNotWeights(f"{where} is a web page (Content-Type {response.headers.get_content_type()}), "
                                    "not the weights file: a file-sharing or login page, typically; give the URL of "
                                    "the file itself (a direct download link)")
        length = response.headers.get("Content-Length")
        announced = int(length) if length is not None and length.strip().isdigit() else None
        return receive(_chunks(response, where), announced, spec, target, where)


def _reason(reason: object) -> str:
    text = str(reason).strip()
    return f"{type(reason).__name__}: {text}" if isinstance(reason, BaseException) else text


def copy_out(path: Path, out: Path) -> Path:
    """Copy a verified weights file to ``out`` (atomically; its folder created); returns ``out``."""
    from robench.files import atomic_file

    with atomic_file(out) as tmp:
        shutil.copyfile(path, tmp)
    return out
