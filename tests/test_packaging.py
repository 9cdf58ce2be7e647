"""pip and conda users get the same pins."""
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def test_environment_yml_pins_equal_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = {p.replace(" ", "") for p in pip if not p.startswith("-e")}
    assert conda_pins == {p.replace(" ", "") for p in project["dependencies"]}


def test_the_pins_that_matter_here():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    # physics and rendering change between mujoco releases: exactly the tested one
    assert "mujoco==3.17.0" in deps and "dm_control==1.0.50" in deps
    assert any(d.startswith("pandas") and "<3" in d for d in deps)


def test_meta_json_records_the_simulator_versions():
    import importlib.metadata

    from drm.cell import provenance

    versions = provenance.versions()
    for name in ("mujoco", "dm_control", "torch"):
        assert versions[name] == importlib.metadata.version(name)
