"""Knowledge distillation (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network").

A student classifier learns from the hard labels and from a frozen teacher's softened class distribution:
``alpha * CE(labels, softmax(s)) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))``, with ``s`` and ``t``
the student's and the teacher's logits and ``T`` the temperature (the T^2 keeps the soft term's gradients on the
scale of the hard one's as T changes, as the paper notes).

:func:`distillation_model` wraps both networks in one functional model whose output concatenates the student's
and the teacher's scores, (B, 2C); :class:`DistillationLoss` reads the two halves. So distillation is an ordinary
``model.fit`` (TensorFlow and JAX alike): the teacher is frozen (``trainable=False``, which also runs its
BatchNorm in inference mode), and only the student's weights move. ``catalog.train(student, data,
teacher="teacher.keras")`` builds this wrapper, trains it, and saves the student alone.
"""

from __future__ import annotations

import keras
from keras import ops


def _log_probabilities(scores, from_logits: bool):
    """Log-softmax of logits, or the log of probabilities: either is a valid logit vector (softmax of it
    gives back the distribution), so a network ending in softmax can teach or learn too."""
    if from_logits:
        return ops.log_softmax(scores, axis=-1)
    return ops.log(ops.clip(scores, 1e-7, 1.0))


@keras.saving.register_keras_serializable(package="catalog")
class DistillationLoss(keras.losses.Loss):
    """Hinton et al.'s loss on ``y_pred`` = concat(student scores, teacher scores) (B, 2C) and integer labels.

    Args:
        temperature: T > 0 (the paper uses 1..20; 4 is common for CIFAR-size networks).
        alpha: weight of the hard-label cross-entropy in [0, 1]; 1 - alpha weights the soft term.
        student_logits, teacher_logits: whether each half holds logits (else softmax probabilities).
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5, student_logits: bool = True,
                 teacher_logits: bool = True, name: str = "distillation", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}.")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (the weight of the hard-label term); got {alpha!r}.")
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.student_logits, self.teacher_logits = bool(student_logits), bool(teacher_logits)

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1] // 2
        student = _log_probabilities(y_pred[..., :classes], self.student_logits)
        teacher = _log_probabilities(y_pred[..., classes:], self.teacher_logits)
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        hard = -ops.sum(ops.one_hot(labels, classes, dtype=student.dtype) * student, axis=-1)
        t = self.temperature
        soft_student = ops.log_softmax(student / t, axis=-1)
        soft_teacher = ops.log_softmax(ops.stop_gradient(teacher) / t, axis=-1)
        kl = ops.sum(ops.exp(soft_teacher) * (soft_teacher - soft_student), axis=-1)
        return self.alpha * hard + (1.0 - self.alpha) * (t * t) * kl

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "alpha": self.alpha,
                "student_logits": self.student_logits, "teacher_logits": self.teacher_logits}


@keras.saving.register_keras_serializable(package="catalog")
def student_accuracy(y_true, y_pred):
    """Top-1 accuracy of the student half of a :func:`distillation_model` output."""
    classes = y_pred.shape[-1] // 2
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    return ops.cast(ops.equal(ops.argmax(y_pred[..., :classes], axis=-1), labels), "float32")


def distillation_model(student, teacher, name: str = "distillation"):
    """One functional model: ``x -> concat(student(x), teacher(x))`` (B, 2C) with the teacher frozen.

    Both are classifiers of the same C classes on the same input; the student keeps its own name as the
    nested model ``student`` is looked up by it (``wrapper.get_layer(student.name)``).
    """
    s_shape, t_shape = tuple(student.input_shape[1:]), tuple(teacher.input_shape[1:])
    if len(s_shape) != len(t_shape) or any(a is not None and b is not None and a != b
                                           for a, b in zip(s_shape, t_shape)):
        raise ValueError(f"the teacher takes inputs {t_shape} but the student {s_shape}; train the student at the "
                         f"teacher's input size (image_size) or pick a teacher of this size.")
    s_classes, t_classes = int(student.output_shape[-1]), int(teacher.output_shape[-1])
    if s_classes != t_classes:
        raise ValueError(f"the teacher predicts {t_classes} classes but the student {s_classes}; distil from a "
                         f"teacher trained on the same classes.")
    if student.name == teacher.name:
        raise ValueError(f"the teacher and the student are both named {student.name!r}; rename one "
                         f"(keras.Model(..., name=...)) so the saved wrapper can tell them apart.")
    teacher.trainable = False
    inputs = keras.Input(shape=s_shape, name="image")
    scores = keras.layers.Concatenate(axis=-1, name="student_teacher_scores", dtype="float32")(
        [student(inputs), teacher(inputs)])
    return keras.Model(inputs, scores, name=name)

