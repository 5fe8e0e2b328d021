"""Layout: one `catalog` namespace (models, blocks, datasets, evaluation under it), a small `catalog/`
of jobs, and no top-level `datasets`/`blocks`/`evaluation` packages of ours."""

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
    for sub in ("models", "blocks", "datasets", "evaluation"):
        assert f"catalog/{sub}/__init__.py" in names
    assert "catalog/models/resnet.py" in names


def test_catalog_holds_the_public_surface_and_jobs_only():
    folder = os.path.dirname(os.path.abspath(catalog.__file__))
    modules = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    assert len(modules) <= 12, modules
    assert "registry.py" in modules and "cli.py" in modules


def test_every_registered_builder_lives_in_catalog_models():
    from catalog.registry import _REGISTRY, list_models

    names = list_models()
    assert len(names) >= 77
    outside = sorted(n for n in names if not _REGISTRY[n].builder.__module__.startswith("catalog.models."))
    assert outside == []


def test_evaluate_job_is_public_and_lazy():
    import subprocess
    import sys

    code = ("import sys, catalog; assert 'tensorflow' not in sys.modules; "
            "from catalog.scoring import evaluate; assert catalog.evaluate is evaluate")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_model_registers_every_custom_object_module():
    # catalog.saving.load_model imports these before loading; a module that registers a Keras object and
    # is missing here would make its models unloadable in a fresh process.
    import glob

    from catalog.saving import CUSTOM_OBJECT_MODULES

    root = os.path.dirname(os.path.dirname(os.path.abspath(catalog.__file__)))
    folders = {"blocks": "catalog.blocks", "datasets": "catalog.datasets", "evaluation": "catalog.evaluation",
               "catalog": "catalog"}
    registering = set()
    for path in glob.glob(os.path.join(root, "*", "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, root)
        top = rel.split(os.sep)[0]
        if top in folders and "register_keras_serializable(" in open(path, encoding="utf-8").read():
            module = folders[top] + "." + ".".join(rel[:-3].split(os.sep)[1:])
            registering.add(module)
    assert registering == set(CUSTOM_OBJECT_MODULES)
