"""Layout: one `catalog` namespace; no top-level `datasets`/`blocks`/`evaluation` packages of ours."""

import importlib.util
import os

import catalog


def test_subpackages_live_under_catalog():
    import catalog.blocks
    import catalog.datasets
    import catalog.evaluation

    root = os.path.dirname(os.path.dirname(os.path.abspath(catalog.__file__)))
    assert catalog.blocks.__file__.startswith(os.path.join(root, "blocks"))
    assert catalog.datasets.__file__.startswith(os.path.join(root, "datasets"))
    assert catalog.evaluation.__file__.startswith(os.path.join(root, "evaluation"))


def test_top_level_datasets_is_not_ours(tmp_path, monkeypatch):
    # Run from a neutral directory so the repository root is not on sys.path.
    monkeypatch.chdir(tmp_path)
    import sys

    saved = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(
            os.path.dirname(os.path.abspath(catalog.__file__)))]
        for name in ("datasets", "blocks", "evaluation"):
            spec = importlib.util.find_spec(name)
            if spec is not None:  # e.g. Hugging Face `datasets` installed by the user: not ours.
                assert "catalog" not in (spec.origin or ""), f"{name} resolves into this project"
                assert not (spec.origin or "").startswith(os.path.dirname(os.path.dirname(catalog.__file__)))
    finally:
        sys.path[:] = saved


def test_wheel_installs_everything_under_catalog(tmp_path):
    import subprocess
    import sys
    import zipfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(catalog.__file__)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", root, "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("catalog-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"catalog", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for sub in ("blocks", "datasets", "evaluation"):
        assert f"catalog/{sub}/__init__.py" in names
