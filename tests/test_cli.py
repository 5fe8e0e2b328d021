"""The CLI run as a subprocess: outputs, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "catalog", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_list_prints_registered_names():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert "lenet5" in result.stdout.split()


def test_list_with_pattern_and_task():
    result = run_cli("list", "lenet*", "--task", "classification", "-v")
    assert result.returncode == 0
    assert result.stdout.split() == ["lenet5", "classification", "lenet"]


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
    assert 0.0 <= report["metrics"]["top1"] <= 1.0
    assert (out / "report.md").exists() and (out / "model.keras").exists()
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4  # confusion matrix, PR, ROC, samples
    assert report["metrics"]["top1"] == report["metrics"]["top_k"]["top1"]
