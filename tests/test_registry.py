"""The registry and the third-party plugin path through the `benchmarks.baselines` entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from benchmarks.plugins import registry as registry_module
from benchmarks.plugins.contract import Baseline
from benchmarks.plugins.registry import (
    BASELINES,
    ENTRY_POINT_GROUP,
    FAMILIES,
    SUITE_DISTRIBUTION,
    Registry,
    UnknownNameError,
    load_plugins,
)

REPO = Path(__file__).resolve().parent.parent


class _A(Baseline):
    pass


class _B(Baseline):
    pass


def test_registry_decorator_refuses_clash_and_suggests() -> None:
    registry: Registry = Registry("method", Baseline)
    registry.register("patchcore")(_A)
    registry.register("patchcore")(_A)  # re-import of the same class is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register("patchcore")(_B)
    with pytest.raises(TypeError, match="subclass of Baseline"):
        registry.add("nope", object)
    with pytest.raises(UnknownNameError, match="did you mean patchcore"):
        registry.get("patchcor")
    registry.clear()
    assert registry.names() == []


def test_builtins_register_through_the_projects_own_entry_points() -> None:
    load_plugins()
    ours = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == SUITE_DISTRIBUTION}
    assert set(ours) == {"patchcore", "winclip", "dino-knn", "anomalygpt", "ltfm"}
    for name, value in ours.items():
        module, _, attribute = value.partition(":")
        cls = BASELINES.get(name)
        assert (cls.__module__, cls.__name__, cls.meta.name) == (module, attribute, name)
    assert FAMILIES["anomalib"].prefix == "anomalib" and BASELINES.get("anomalib:Padim").meta.name == "anomalib:Padim"
    for source in (REPO / "baselines").glob("*.py"):  # one way to register: no plugin calls the registry
        assert "BASELINES" not in source.read_text(), source.name


def test_a_suite_without_its_entry_points_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [])
    with pytest.raises(RuntimeError, match="pip install -e"):
        load_plugins()


def test_registered_name_must_match_the_meta_name() -> None:
    from benchmarks.plugins.contract import MethodMeta, Protocol, VariantSpec

    class Named(Baseline):
        meta = MethodMeta(name="one-name", paper="", backbone="", weights_id="", input_size=0,
                          variants={"default": VariantSpec(Protocol.FULL_SHOT)})

    registry: Registry = Registry("method", Baseline)
    with pytest.raises(ValueError, match="names itself 'one-name'"):
        registry.register("another-name")(Named)
    registry.register("one-name")(Named)
    assert registry.get("one-name") is Named


def _readme_plugin() -> str:
    text = (REPO / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory):
    """Install the README's example plugin as a real package, then uninstall it."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "my_detector").mkdir()
    (root / "my_detector" / "__init__.py").write_text(_readme_plugin())
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "my-detector-test-plugin"\nversion = "0.0.1"\n'
        '[tool.setuptools]\npackages = ["my_detector"]\n'
        '[project.entry-points."benchmarks.baselines"]\ncolour-distance = "my_detector:ColourDistance"\n'
    )
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(root)]
    subprocess.run(pip, check=True, capture_output=True)
    yield root
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "my-detector-test-plugin"],
                   check=False, capture_output=True)


def test_third_party_plugin_runs_end_to_end(installed_plugin: Path, tiny_manifest: Path, tmp_path: Path) -> None:
    listing = subprocess.run([sys.executable, "-m", "benchmarks", "list", "methods"], capture_output=True,
                             text=True, check=True)
    assert "colour-distance" in listing.stdout
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--methods", "colour-distance", "--datasets",
         f"manifest:{tiny_manifest}", "--preset", "smoke", "--out", str(out), "--no-report"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((out / "runs.jsonl").read_text().splitlines()[0])
    assert record["method"] == "colour-distance" and record["status"] == "ok", record["error"]
    assert record["metrics"]["image_auroc"] is not None
    assert record["latency"]["batch1_p50_ms"] > 0
