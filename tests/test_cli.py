"""The CLI run as a subprocess: outputs, exit codes, one-line errors."""

import json
import subprocess
import sys

import pytest

from helpers import run_cli


def test_list_prints_registered_names():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert "lenet5" in result.stdout.split()


def test_list_with_pattern_and_task():
    result = run_cli("list", "lenet*", "--task", "classification", "-v")
    assert result.returncode == 0
    header, row = result.stdout.strip().splitlines()
    assert header.split() == ["name", "task", "family", "params", "MACs", "input", "preprocessing"]
    assert row.split() == ["lenet5", "classification", "lenet", "0.1M", "0.4M", "32x32x1", "unit"]


@pytest.mark.parametrize("argv", [["--help"], ["list", "-v"], ["info", "resnet50"], ["evaluate", "--help"]])
def test_help_list_and_info_do_not_import_tensorflow(argv):
    # Issue 11.13: `catalog --help` took 6 s importing TensorFlow; list/info read the shipped cards.
    code = ("import sys\nfrom catalog.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules)\n"
            "assert not heavy, heavy\n" % argv)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_info_shows_preprocessing_and_crop():
    result = run_cli("info", "resnet50")
    assert result.returncode == 0, result.stderr
    assert "25,557,032" in result.stdout and "torch" in result.stdout and "0.875" in result.stdout
    assert "initialization:      he_normal_fan_out" in result.stdout


def test_unknown_task_and_family_are_one_sentence():
    result = run_cli("list", "--task", "nope")
    assert result.returncode == 1 and "--task must be one of" in result.stderr


def test_info_prints_parameter_count():
    result = run_cli("info", "lenet5")
    assert result.returncode == 0, result.stderr
    assert "61,706" in result.stdout and "LeCun" in result.stdout


def test_info_unknown_name_is_one_line_exit_1():
    result = run_cli("info", "nosuchnet")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "Unknown model name 'nosuchnet'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2():
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("summary", "lenet5", "--input-shape", "32x32").returncode == 2


def test_summary():
    result = run_cli("summary", "lenet5", "--num-classes", "3")
    assert result.returncode == 0, result.stderr
    assert "c3_conv" in result.stdout and "head_fc" in result.stdout


def test_demo_writes_a_report(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), "--epochs", "1", "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    report = json.loads((out / "report.json").read_text())
    top1 = report["metrics"]["top_k"]["top1"]
    assert 0.0 <= top1 <= 1.0
    assert (out / "report.md").exists() and (out / "model.keras").exists() and (out / "history.csv").exists()
    page = (out / "report.html").read_text()
    wrong = report["misclassified"]
    assert wrong["evaluated"] == report["dataset"]["examples"] == 500
    assert wrong["total"] == round((1 - top1) * wrong["evaluated"])
    assert wrong["shown"] == min(wrong["total"], 16) == len(wrong["examples"])
    assert ("No misclassified examples" in page) == (wrong["total"] == 0)
    assert 'id="training"' in page and len(report["history"]["loss"]) == 1  # curves: the demo trains via train
    assert report["dataset"]["spec"] == "shapes:hard" and len(report["class_names"]) == 10

    from catalog.saving import read_record

    record = read_record(out / "model.keras")
    assert record["preprocessing"] == "unit" and record["crop_fraction"] == 1.0
    assert record["trained_by"] == "catalog.train" and record["model_name"] == "resnet20"
    assert record["class_names"] == report["class_names"]

    # Issue 11.1: evaluating the demo's model the documented way gives the demo's own top-1.
    result = run_cli("evaluate", "--model", str(out / "model.keras"), "--data", "shapes:hard",
                     "--out", str(tmp_path / "eval"), "--quiet")
    assert result.returncode == 0, result.stderr
    again = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert again["settings"]["preprocessing"] == "unit" and again["settings"]["crop_fraction"] == 1.0
    assert again["dataset"]["examples"] == report["dataset"]["examples"]
    assert abs(again["metrics"]["top_k"]["top1"] - top1) <= 0.005
