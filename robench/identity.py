"""Identity: what makes two trained models, or two evaluated cells, the same result.

robench reuses a cached model or a stored cell only when its identity, a content hash of
everything that determines it, is equal. The rule is the same for every component (defense,
attack, dataset, backbone):

* its **registered name**;
* its **parameters**: the constructor's named, typed arguments as validated from the protocol,
  with every default filled in (but ``optional_params`` at their default, added after results
  were stored), read from the signature (:func:`robench.params.full_params`; a
  dataclass's field values after its own checks); parameters naming a file (``file_params``) by
  the file's SHA-256, parameters saying only where data lives (``location_params``) left out;
* its **code**: a built-in's ``version`` (``tests/test_identity.py`` fails when a built-in's
  source changes and its version does not), anything else by the SHA-256 of the file that
  defines it: a plugin file, a test module, an installed package's module.

A model's identity adds the training settings, the seed and the training precision; a cell's
adds its model, scenario, evaluation set and evaluation precision (:class:`Precision`).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from robench.errors import ProtocolError, RobenchError
from robench.models.weights import weights_path
from robench.params import full_params, signature_params
from robench.protocol.check import Component
from robench.registry import PLUGIN_DIGESTS, Registrable, Registry


@dataclass(frozen=True)
class Precision:
    """The numeric precision a model is trained or evaluated in.

    Attributes:
        autocast: ``"bf16"`` when forward passes run under bfloat16 autocast, else None (fp32).
        tf32: TF32 tensor-core matmuls and convolutions (CUDA only; changes fp32 results).
    """

    autocast: str | None = None
    tf32: bool = False

    def identity(self) -> str:
        """A short name: ``fp32``, ``fp32+tf32``, ``bf16-autocast`` or ``bf16-autocast+tf32``."""
        name = "fp32" if self.autocast is None else f"{self.autocast}-autocast"
        return name + ("+tf32" if self.tf32 else "")


FP32 = Precision()


@lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's content (cached while its size and modification time stay the same)."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return _file_digest(str(p), st.st_mtime_ns, st.st_size)


def code_identity(cls: type) -> str:
    """The code part of a component class's identity.

    ``v<version>`` for robench's own classes; for a class defined elsewhere, followed by
    ``+<module>:<sha256>`` of the file of each class of its MRO above robench's (a plugin file's
    digest is the one taken from the bytes that were imported).
    """
    if not issubclass(cls, Registrable):
        raise RobenchError(f"{cls.__qualname__} is not a robench component (Registrable)")
    parts = [f"v{cls.version}"]
    for klass in cls.__mro__:
        module = klass.__module__
        if module.startswith("robench.") or module == "robench":
            break
        if module in PLUGIN_DIGESTS:
            parts.append(f"{module}:{PLUGIN_DIGESTS[module]}")
            continue
        source = inspect.getsourcefile(klass)
        if source is None or not Path(source).is_file():
            raise RobenchError(f"component {klass.__qualname__} (module {module}) has no source file robench can "
                               "hash for its identity; define it in a .py file (a plugin file or a package)")
        parts.append(f"{module}:{file_digest(source)}")
    return "+".join(parts)


def identity_params(cls: type[Registrable], params: dict[str, Any], *, where: str = "",
                    key: str = "") -> dict[str, Any]:
    """A component's parameters as they determine results: defaults filled, files by content, locations out.

    For a dataclass component (every defense) the values are its fields after construction, so
    that its own ``__post_init__`` normalisation counts (AT's ``modalities`` in canonical order).
    """
    if dataclasses.is_dataclass(cls):
        built = cls(**params)
        out = {f.name: getattr(built, f.name) for f in dataclasses.fields(built)
               if f.init and f.name not in cls.location_params}
    else:
        out = full_params(cls, params, exclude=cls.location_params)
    for name in cls.optional_params:
        if name in out and out[name] == signature_params(cls)[name].default:
            del out[name]
    for name in cls.file_params:
        value = out.get(name)
        if value is None or value == "":
            continue
        try:
            path = weights_path(str(value))
        except RobenchError as exc:
            raise ProtocolError(where or None, f"{key}.{name}" if key else name, str(value),
                                str(exc).partition("available: ")[2]) from None
        if not path.is_file():
            raise ProtocolError(where or None, f"{key}.{name}" if key else name, str(value), "an existing file")
        out[name] = file_digest(path)
    return out


def component_identity(registry: Registry[Any], comp: Component, *, where: str = "", key: str = "") -> dict[str, Any]:
    """``{"type", "params", "code"}``: the identity of a registered component with its parameters."""
    cls = registry.get(comp.type)
    return {"type": comp.type, "params": identity_params(cls, comp.params, where=where, key=key),
            "code": code_identity(cls)}


def _normalised_source(path: Path) -> str:
    """A module's code without docstrings, comments or formatting (``ast.dump`` of its parse tree)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def _package_imports(module: str, tree: ast.Module) -> set[str]:
    """The modules of ``module``'s own package that it imports (absolute or relative)."""
    mod = sys.modules[module]
    package = module if hasattr(mod, "__path__") else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        found.update(n for n in names if n.startswith(package + ".") and n in sys.modules)
    return found


def source_modules(cls: type) -> list[str]:
    """The robench modules whose code determines a built-in component: the modules of its robench
    classes (MRO) and, transitively, the modules of their own package that they import."""
    todo = [k.__module__ for k in cls.__mro__ if k.__module__.startswith("robench.") and k is not Registrable]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        file = inspect.getsourcefile(sys.modules[module])
        if file is not None:
            todo.extend(_package_imports(module, ast.parse(Path(file).read_text(encoding="utf-8"))))
    return sorted(seen)


def source_digest(cls: type) -> str:
    """SHA-256 of the normalised code of :func:`source_modules` (docstrings and comments do not count)."""
    digest = hashlib.sha256()
    for module in source_modules(cls):
        file = inspect.getsourcefile(sys.modules[module])
        if file is None:
            continue
        digest.update(module.encode() + b"\0" + _normalised_source(Path(file)).encode() + b"\0")
    return digest.hexdigest()[:16]
