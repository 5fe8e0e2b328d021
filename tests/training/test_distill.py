"""Knowledge distillation: Hinton et al.'s loss on hand-computed cases, and a student trained through catalog.train."""

import keras
import numpy as np
import pytest

import catalog
from catalog.training.loop import CHECKPOINT
from catalog.training.distill import DistillationLoss, distillation_model, student_accuracy

TINY = dict(data="shapes", num_images=64, batch_size=32, image_size=32, verbose=0)
STUDENT = {"width": 4, "depths": [1, 1, 1]}


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.jax
def test_loss_equals_hintons_formula_by_hand():
    s = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
    t = np.array([[1.0, 1.5, 0.0], [3.0, -2.0, 0.5]], np.float32)
    y = np.array([0, 2])
    temperature, alpha = 2.0, 0.3
    hard = -np.log(_softmax(s)[np.arange(2), y])
    p_t, p_s = _softmax(t / temperature), _softmax(s / temperature)
    soft = (p_t * (np.log(p_t) - np.log(p_s))).sum(-1) * temperature ** 2
    expected = np.mean(alpha * hard + (1 - alpha) * soft)
    loss = DistillationLoss(temperature, alpha)(y, np.concatenate([s, t], -1))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # alpha = 1 is the plain cross-entropy; a teacher given as probabilities teaches as its logits do
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, s)
    assert float(DistillationLoss(temperature, 1.0)(y, np.concatenate([s, t], -1))) == pytest.approx(float(plain))
    as_probabilities = DistillationLoss(temperature, alpha, teacher_logits=False)(
        y, np.concatenate([s, _softmax(t)], -1))
    assert float(as_probabilities) == pytest.approx(expected, rel=1e-5)
    # a student that equals its teacher pays only the hard term
    same = DistillationLoss(temperature, alpha)(y, np.concatenate([s, s], -1))
    assert float(same) == pytest.approx(np.mean(alpha * hard), rel=1e-5)
    scores = np.concatenate([s, t], -1)
    np.testing.assert_array_equal(np.asarray(student_accuracy(y, scores)), [1.0, 1.0])


def test_bad_settings_and_mismatched_networks_fail_in_one_sentence():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DistillationLoss(0.0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        DistillationLoss(alpha=1.5)
    student = catalog.create_model("resnet20", num_classes=3, input_shape=(32, 32, 3), **STUDENT)
    teacher = catalog.create_model("resnet20", num_classes=4, input_shape=(32, 32, 3), **STUDENT, name="teacher")
    with pytest.raises(ValueError, match="the teacher predicts 4 classes but the student 3"):
        distillation_model(student, teacher)
    with pytest.raises(ValueError, match="drop mixup, cutmix and label_smoothing"):
        catalog.train("resnet20", teacher="t.keras", mixup=0.2, **TINY)


def test_a_student_trains_from_a_teacher_file_and_the_run_saves_the_student_alone(tmp_path):
    teacher_run = catalog.train("resnet20", model_options={"width": 8, "depths": [1, 1, 1], "name": "teacher"},
                                epochs=1, val_split="none", out_dir=str(tmp_path / "teacher"), **TINY)
    teacher_file = str(tmp_path / "teacher" / "model.keras")
    frozen = [np.array(w) for w in teacher_run.model.weights]
    run = catalog.train("resnet20", model_options=STUDENT, teacher=teacher_file, distill_temperature=3.0,
                        epochs=2, out_dir=str(tmp_path / "student"), **TINY)
    assert run.model.name == "resnet20" and run.model.count_params() < teacher_run.model.count_params()
    saved = keras.saving.load_model(str(tmp_path / "student" / "model.keras"))
    assert [layer.name for layer in saved.layers] == [layer.name for layer in run.model.layers]  # no teacher inside
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(saved.predict_on_batch(x), run.model.predict_on_batch(x), atol=1e-5)
    losses = [row["loss"] for row in run.history]
    assert len(losses) == 2 and np.isfinite(losses).all() and losses[1] < losses[0]
    assert "student_accuracy" in run.history[0]
    wrapper = keras.saving.load_model(str(tmp_path / "student" / CHECKPOINT))  # what fit trained, at its end
    inside = [layer for layer in wrapper.layers if isinstance(layer, keras.Model) and not layer.trainable][0]
    for before, after in zip(frozen, inside.weights):  # the teacher, moving statistics too, never moved
        np.testing.assert_array_equal(before, np.asarray(after))
    with open(tmp_path / "student" / "report.md") as f:
        assert "distilled from the teacher" in f.read()

    # resume: the checkpoint holds the wrapper (student + frozen teacher); one more epoch continues from it
    resumed = catalog.train(resume=str(tmp_path / "student"), epochs=3, verbose=0)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3] and np.isfinite(resumed.history[2]["loss"])
    assert [layer.name for layer in resumed.model.layers] == [layer.name for layer in run.model.layers]
    wrapper = keras.saving.load_model(str(tmp_path / "student" / CHECKPOINT))
    inside = [layer for layer in wrapper.layers if isinstance(layer, keras.Model) and not layer.trainable][0]
    for before, after in zip(frozen, inside.weights):
        np.testing.assert_array_equal(before, np.asarray(after))
