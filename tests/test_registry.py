"""The generic registry: registration, lookup errors with suggestions, entry points, plugin files."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from robench.errors import RobenchError, UnknownNameError
from robench.registry import REGISTRIES, Registry, load_builtins, load_plugin_file

load_builtins()


class Base:
    """Base of test components."""


def test_register_and_get() -> None:
    reg: Registry = Registry("widget", "robench.test-widgets", base=Base)

    @reg.register("spinner", aliases=("spin",))
    class Spinner(Base):
        """Spins. Second sentence."""

    assert reg.get("spinner") is Spinner
    assert reg.get("spin") is Spinner
    assert reg.describe("spinner") == "Spins. Second sentence."
    assert "spinner" in reg and "nope" not in reg
    assert reg.names() == ["spinner"]
    assert reg.names("sp*") == ["spinner"] and reg.names("x*") == []
    assert Spinner.registry_name == "spinner"


def test_unknown_name_lists_valid_and_suggests() -> None:
    reg: Registry = Registry("widget", "robench.test-widgets")
    for name in ("pgd", "fgsm", "cw"):
        reg.add(name, object())
    with pytest.raises(UnknownNameError) as info:
        reg.get("pdg")
    msg = str(info.value)
    assert "unknown widget 'pdg'" in msg
    assert "valid: cw, fgsm, pgd" in msg
    assert "did you mean 'pgd'" in msg


def test_duplicate_name_is_an_error_base_class_enforced() -> None:
    reg: Registry = Registry("widget", "robench.test-widgets", base=Base)
    reg.add("a", type("A", (Base,), {}))
    with pytest.raises(RobenchError, match="already registered"):
        reg.add("a", type("B", (Base,), {}))
    with pytest.raises(TypeError, match="must subclass Base"):
        reg.add("c", type("C", (), {}))
    with pytest.raises(ValueError, match="invalid"):
        reg.add("bad name!", object())


def test_lazy_entries_load_on_first_use() -> None:
    reg: Registry = Registry("widget", "robench.test-widgets")
    reg.add("path_join", "os.path:join", description="joins paths")
    import os.path

    assert reg.get("path_join") is os.path.join


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_builtins_have_descriptions(kind: str) -> None:
    registry = REGISTRIES[kind]
    assert registry.names(), f"no built-in {kind}"
    for name in registry.names():
        assert registry.describe(name), f"{kind} '{name}' has no one-line description"


def test_entry_points_register_third_party_components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution installed with an entry point in group robench.attacks is picked up."""
    pkg = tmp_path / "thirdparty_attack.py"
    pkg.write_text(textwrap.dedent('''
        from robench.attacks.iterative import IterativeAttack

        class Nudge(IterativeAttack):
            """Third-party test attack."""
            def __init__(self, modalities, eps, bounds=None):
                super().__init__(modalities, eps, eps, 1, False, bounds=bounds)
    '''))
    dist = tmp_path / "thirdparty_attack-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-attack\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[robench.test-attacks]\nnudge = thirdparty_attack:Nudge\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("attack", "robench.test-attacks")
    assert "nudge" in reg.names()
    assert reg.entry("nudge").source == "entry-point:thirdparty-attack"
    assert reg.get("nudge").__name__ == "Nudge"


def test_plugin_file_registers_through_decorator(tmp_path: Path) -> None:
    plugin = tmp_path / "my_backbone.py"
    plugin.write_text(textwrap.dedent('''
        from robench import register_backbone
        from robench.models.hcn import HCN

        @register_backbone("hcn_test_plugin")
        class MyHCN(HCN):
            """HCN registered from a plugin file."""
    '''))
    load_plugin_file(plugin)
    load_plugin_file(plugin)  # idempotent
    from robench.registry import BACKBONES

    assert BACKBONES.get("hcn_test_plugin").__name__ == "MyHCN"


def test_broken_plugin_file_reports_the_file(tmp_path: Path) -> None:
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(RobenchError, match=r"broken\.py failed to import: RuntimeError: boom"):
        load_plugin_file(plugin)
    with pytest.raises(RobenchError, match="not found"):
        load_plugin_file(tmp_path / "missing.py")
    assert not any(getattr(m, "__file__", None) == str(plugin) for m in list(sys.modules.values()))
