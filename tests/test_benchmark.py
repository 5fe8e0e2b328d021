"""`catalog benchmark` (timm's results columns, sane values, one-sentence errors) and docs/models.md's currency."""

import csv
import json

import pytest

import catalog
from catalog import benchmark as bench
from catalog import registry
from catalog.cli import main

TIMM_COLUMNS = ("model", "infer_img_size", "infer_batch_size", "infer_samples_per_sec", "infer_step_time",
                "infer_latency_b1", "param_count", "infer_gmacs", "train_samples_per_sec", "train_step_time",
                "train_batch_size", "train_img_size")


def test_cli_writes_timm_columns(tmp_path, capsys):
    from catalog.flops import count_macs

    out, out_json = tmp_path / "out.csv", tmp_path / "out.json"
    code = main(["benchmark", "resnet20", "mobilenet_v2", "--image-size", "64", "--csv", str(out),
                 "--json", str(out_json), "--batch-size", "2", "--repeats", "2", "--warmup", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "[1/2] resnet20 @ 64 px" in printed and "[2/2] mobilenet_v2 @ 64 px" in printed
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert set(TIMM_COLUMNS) <= set(reader.fieldnames)
        assert reader.fieldnames[:4] == ["model", "infer_img_size", "infer_batch_size", "infer_samples_per_sec"]
        rows = list(reader)
    assert [r["model"] for r in rows] == ["resnet20", "mobilenet_v2"]
    for row in rows:
        card = catalog.model_info(row["model"])
        assert int(row["infer_img_size"]) == 64 and int(row["infer_batch_size"]) == 2
        for key in ("infer_step_time", "infer_latency_b1", "infer_samples_per_sec", "compile_s", "peak_rss_mb"):
            assert float(row[key]) > 0, key
        assert float(row["infer_step_time_min"]) <= float(row["infer_step_time"]) <= float(row["infer_step_time_max"])
        assert float(row["infer_samples_per_sec"]) == pytest.approx(2000 / float(row["infer_step_time"]), rel=1e-2)
        assert float(row["param_count"]) == pytest.approx(card.params / 1e6, abs=1e-6)
        macs = count_macs(catalog.create_model(row["model"], input_shape=(64, 64, 3)))
        assert float(row["infer_gmacs"]) == pytest.approx(macs / 1e9, abs=1e-6)
        assert row["train_step_time"] == "" and row["train_samples_per_sec"] == ""  # mode infer
        assert (row["backend"], row["device"], row["jit"], row["precision"]) == ("tensorflow", "cpu", "off", "float32")
    report = json.loads(out_json.read_text())
    assert {"platform", "processor", "cpu_count", "python", "keras", "backend"} <= set(report["machine"])
    assert report["settings"]["image_size"] == 64 and len(report["rows"]) == 2


def test_train_mode_classifier_and_task_model():
    rows = catalog.benchmark(["resnet20", "espcn"], image_size=16, batch_size=2, mode="train", repeats=1, warmup=0,
                             verbose=0)
    for row in rows:
        assert row["train_step_time"] > 0 and row["train_samples_per_sec"] > 0 and row["train_compile_s"] > 0
        assert (row["train_batch_size"], row["train_img_size"]) == (2, 16)
        assert row["infer_step_time"] is None and row["note"] == ""


def test_csv_keeps_each_finished_model_and_append_adds_to_it(tmp_path, monkeypatch):
    out = tmp_path / "bench.csv"
    settings = dict(image_size=32, batch_size=2, repeats=1, warmup=0, verbose=0, csv=str(out))
    measure = bench._one

    def fail_on_lenet5(entry, *args):
        if entry.name == "lenet5":
            raise RuntimeError("interrupted")
        return measure(entry, *args)

    monkeypatch.setattr(bench, "_one", fail_on_lenet5)
    with pytest.raises(RuntimeError):
        bench.benchmark(["resnet20", "lenet5"], **settings)
    assert list(bench.read_csv(str(out))) == ["resnet20"]  # the finished model is on disk
    monkeypatch.setattr(bench, "_one", measure)
    bench.benchmark(["lenet5"], append=True, **settings)
    with open(out, newline="") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["resnet20", "lenet5"]
    bench.benchmark(["lenet5"], **settings)  # without append: a new file
    assert list(bench.read_csv(str(out))) == ["lenet5"]
    other = tmp_path / "other.csv"
    other.write_text("model,seconds\nresnet20,1\n")
    with pytest.raises(ValueError, match=f"csv {other} has other columns than catalog benchmark writes"):
        bench.benchmark(["lenet5"], append=True, **{**settings, "csv": str(other)})


def test_a_video_model_times_clips():
    row, = catalog.benchmark(["r3d_18"], image_size=32, batch_size=2, mode="both", repeats=1, warmup=0, verbose=0)
    assert row["infer_step_time"] > 0 and row["train_step_time"] > 0 and row["note"] == ""
    macs = catalog.flops.count_macs(catalog.create_model("r3d_18", input_shape=(16, 32, 32, 3)))
    assert row["infer_gmacs"] == pytest.approx(macs / 1e9, abs=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(names=["resnet2O"]), "Unknown model name 'resnet2O'"),
    (dict(names=["resnet20"], mode="fast"), "mode must be one of infer, train, both; got 'fast'."),
    (dict(names=["resnet20"], jit="yes"), "jit must be one of auto, on, off; got 'yes'."),
    (dict(names=["resnet20"], batch_size=0), "batch_size must be a positive integer; got 0."),
    (dict(names=["mobilenet_v2"], image_size=16), "image_size 16 is below mobilenet_v2's minimum input size 32."),
    (dict(names=[]), "benchmark needs at least one registered model name"),
])
def test_bad_arguments_raise_one_sentence(kwargs, message):
    with pytest.raises(ValueError) as err:
        bench.benchmark(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("argv, message", [
    (["benchmark", "resnet2O"], "Unknown model name 'resnet2O'"),
    (["benchmark", "resnet20", "--mode", "fast"], "mode must be one of infer, train, both; got 'fast'."),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("catalog benchmark: error: ") and message in err


def test_models_md_is_current(monkeypatch):
    # Reads the shipped cards only: building any of the 100+ models here is a failure.
    def no_builds(name):
        raise AssertionError(f"{name} is missing from the shipped cards; run python -m catalog.registry --write-cards")

    monkeypatch.setattr(registry, "measure_card", no_builds)
    with open(bench.MODELS_MD, encoding="utf-8") as f:
        shipped = f.read()
    assert shipped == bench.models_markdown(bench.CPU_CSV), (
        "docs/models.md is out of date: run python -m catalog.benchmark --write-models-md")
    for name in registry.list_models():
        assert f"| {name} |" in shipped
    timed = bench.read_csv(bench.CPU_CSV)
    assert timed and all(f"| {name} |" in shipped for name in timed)
    with open(bench.README, encoding="utf-8") as f:
        readme = f.read()
    assert readme == bench.readme_with_architectures(readme), (
        "README.md's architecture table is out of date: run python -m catalog.benchmark --write-models-md")
    table = readme[readme.index(bench.README_MARKERS[0]):readme.index(bench.README_MARKERS[1])]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and " | " in line]
    listed = [name for row in rows[1:] for name in row[2].split(", ")]  # past the header
    assert sorted(listed) == registry.list_models()


def test_the_layer_profile_adds_up_to_the_card_and_times_every_group(capsys):
    model = catalog.create_model("resnet20", width=8, depths=(1, 1, 1))
    profile = bench.layer_profile(model, latency=True, repeats=2, warmup=0)
    from catalog.flops import count_macs

    assert profile["total"]["params"] == model.count_params()  # trainable and BatchNorm statistics
    assert profile["total"]["macs"] == count_macs(model)
    assert [g["group"] for g in profile["groups"]] == ["stem", "stage1", "stage2", "stage3", "head", "predictions"]
    stem = profile["layers"][0]
    assert stem["output_shape"] == (32, 32, 8) and stem["macs"] == 3 * 3 * 3 * 8 * 32 * 32
    assert stem["activation_bytes"] == 4 * 32 * 32 * 8
    assert all(g["latency_ms"] >= 0 for g in profile["groups"]) and profile["total"]["latency_ms"] > 0
    assert main(["info", "resnet20", "--layers"]) == 0
    out = capsys.readouterr().out
    assert "stage3_block1_conv1_conv" in out and out.rstrip().splitlines()[-1].startswith("total")
    assert main(["info", "resnet20", "--latency"]) == 1
