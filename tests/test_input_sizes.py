"""Registry-driven input-size rule: every registered model works at every input size at or above its minimum
(``min_input_size``, 32 when None), or declares its size rule and rejects other sizes with a one-sentence
ValueError that names ``input_shape`` and what is accepted, never a raw shape error from inside the graph.

Each model is built at full width at an odd size just above its minimum: min + 13 rounded up to odd (45 for
a minimum of 32), whose halvings give odd map sides at several stages whether a network rounds up (45, 23,
12, 6, 3) or down (45, 22, 11, 5, 2), so two paths of a block that round differently meet at odd sides.
"""

import re

import numpy as np
import pytest

import catalog
from catalog.registry import get_entry
from helpers import HEAVY_PARAMS

NAMES = catalog.list_models()


def odd_size(name: str) -> int:
    """The smallest odd size at least 13 above the model's minimum."""
    size = (get_entry(name).min_input_size or 32) + 13
    return size + 1 - size % 2


def _family_representatives():
    """The smallest name (fewest parameters on its card) of each family and builder: the names of one builder
    share its size rule."""
    smallest = {}
    for name in NAMES:
        entry, params = get_entry(name), catalog.model_info(name).params
        key = (entry.family, entry.builder)
        if key not in smallest or params < smallest[key][1]:
            smallest[key] = (name, params)
    return {name for name, _ in smallest.values()}


REPRESENTATIVES = _family_representatives()


def _case(name):
    # one xdist group per name, as helpers.reference_case, so a name's builds stay on one worker; CI builds one
    # name per family and builder, the other names (the same builder with other settings) run under -m slow
    marks = [pytest.mark.xdist_group(name)] + ([] if name in REPRESENTATIVES else [pytest.mark.slow])
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_case(n) for n in NAMES])
def test_odd_input_size_above_minimum_builds_and_runs(name):
    entry = get_entry(name)
    size = odd_size(name)
    shape = (*entry.input_shape[:-3], size, size, entry.input_shape[-1])  # video clips keep their frames
    # Over HEAVY_PARAMS (VGG's fully connected head, wide_resnet101_2): the backbone alone, where sizes bite.
    heavy = (entry.reference_params or 0) > HEAVY_PARAMS and entry.task == "classification"
    kwargs = dict(include_top=False, pooling="avg") if heavy else dict(num_classes=3)
    if entry.task == "restoration":  # no classes: an image at the input size times the model's scale
        kwargs = {}
    try:
        model = catalog.create_model(name, input_shape=shape, **kwargs)
    except ValueError as err:  # a declared size rule: one sentence naming input_shape and what it accepts
        message = str(err)
        assert re.fullmatch(r"input_shape [^\n]+\.", message) and ". " not in message, message
        catalog.create_model(name, input_shape=entry.input_shape, **kwargs)  # the rule accepts the default
        return
    batch = 2 if entry.task == "embedding" else 1  # a siamese network pairs image i with image i + B/2
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype("float32")
    out = model.predict_on_batch(x)  # in a graph, as predict and fit run it
    out = np.asarray(out[-1] if isinstance(out, (list, tuple)) else out)  # early exits: the final one
    expected = (1, size, size, 3) if entry.task == "segmentation" else (1, 3)  # logits at the input size
    if entry.task == "restoration":
        scale = out.shape[1] // size
        expected = (1, size * scale, size * scale, shape[-1])
    if entry.task == "embedding":  # a pair distance, or an embedding per image
        expected = (1,) if len(model.output.shape) == 1 else (2, int(model.output.shape[-1]))
    assert out.shape == ((1, int(model.output.shape[-1])) if heavy else expected)
    assert np.all(np.isfinite(out))
