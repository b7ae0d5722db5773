"""The errors of the model zoo: each fault of a download is one :class:`~robench.errors.RobenchError` subclass,
with a message that names the file or URL, what was found and what to do (exit status 2 from the command line)."""

from __future__ import annotations

from robench.errors import RobenchError


class ZooError(RobenchError):
    """A zoo entry or its weights cannot be used (unknown entry, a manifest that is not valid, a model that does not
    fit its architecture)."""


class DigestMismatch(ZooError):
    """The bytes fetched are not the file the zoo names: their SHA-256 is another (nothing was deserialised)."""


class TruncatedDownload(ZooError):
    """A download ended early: fewer bytes than the server announced (Content-Length) or than the zoo expects."""


class WebPageNotWeights(ZooError):
    """A URL answered with a web page (HTML), not the weights file: a file-sharing or login page, typically."""


class Offline(ZooError):
    """The source cannot be reached (no network, the host unknown or refusing) and the cache has no copy."""


class HubUnavailable(ZooError):
    """An ``hf://`` source needs the optional ``huggingface_hub`` package (``pip install robench[hub]``)."""
