"""Registry-driven tests: every registered classification model, through one set of checks.

New families need no edits here; a family with a width knob may add a width-reduced setting to SMALL
so CI stays small.
"""

import json
import re

import numpy as np
import pytest

import catalog
from catalog.registry import feature_reduction, get_entry, measure_card, shipped_cards
from helpers import assert_all_gradients, keras_round_trip, random_input, reference_case

CLASSIFIERS = catalog.list_models(task="classification")

# Width-reduced keywords for the smoke tests, by family or by name (name wins).
SMALL: dict[str, dict] = {
    "mobilenet_v1": dict(alpha=0.25), "mobilenet_v2": dict(alpha=0.35), "mobilenet_v3": dict(alpha=0.5),
    "shufflenet_v1": dict(scale=0.5), "shufflenet_v2": dict(scale=0.5), "efficientnet": dict(width=0.5, depth=0.5),
    "octresnet": dict(width=16, depths=(1, 1, 1, 1)),
    "sknet": dict(width=16, depths=(1, 1, 1, 1)),
    "big_little": dict(width=16, depths=(2, 2, 2, 1)),
    **dict.fromkeys(("resnet", "resnet_v2", "resnet_cifar", "senet", "cbam"), dict(width=16, depths=(2, 1, 1))),
    "senet154": dict(groups=8, base_width=16),
    # every non-local weight gets a gradient at 32 px: no 2x2 pooling of res4's 2x2 map, no zero-init gamma
    "nonlocal": dict(width=16, depths=(1, 2, 2), non_local_sub_sample=False, non_local_zero_init=False),
    "dpn": dict(k_sec=(1, 1, 1, 1), k_r=32, groups=8),
    "densenet": dict(blocks=(2, 2, 2, 2), growth_rate=8),
    # drop-path off: at batch 2 it can leave a whole column without gradient (tests/models/test_fractalnet.py)
    "fractalnet": dict(columns=3, blocks=2, filters=(8, 16), drop_path_rate=0.0, global_drop_fraction=0.0),
    "residual_attention": dict(width=8),
}


def small_kwargs(name):
    entry = get_entry(name)
    return {**SMALL.get(entry.family, {}), **SMALL.get(name, {})}


def small_shape(name):
    entry = get_entry(name)
    size = max(32, entry.min_input_size or 32)
    return (size, size, entry.input_shape[2])


@pytest.mark.parametrize("name", [reference_case(n) for n in CLASSIFIERS if get_entry(n).reference_params])
def test_reference_parameter_count(name):
    # measure_card builds the model at its defaults once per process; the flops, features and card tests
    # of the same name run in the same xdist group and reuse it.
    entry = get_entry(name)
    count = measure_card(name)["params"]
    if entry.reference_params_rtol:
        assert abs(count - entry.reference_params) <= entry.reference_params_rtol * entry.reference_params, (
            count, entry.reference_params)
    else:
        assert count == entry.reference_params


def test_shipped_cards_cover_the_registry():
    assert sorted(shipped_cards()) == catalog.list_models(), "run `python -m catalog.registry --write-cards`"


@pytest.mark.parametrize("name", [reference_case(n) for n in catalog.list_models()])
def test_shipped_card_is_current(name):
    # The CLI and model_info read models/cards.json without building; it must equal what is measured.
    measured = json.loads(json.dumps(catalog.model_info(name, measure=True).to_dict(), default=repr))
    stale = {k: (v, measured[k]) for k, v in shipped_cards()[name].items() if measured.get(k) != v}
    assert not stale, f"stale card fields {stale}: run `python -m catalog.registry --write-cards {name}`"
    assert catalog.model_info(name) == catalog.model_info(name, measure=True)


def _distinct_small_models():
    """The names whose width-reduced model differs: two names of one builder whose settings the family's SMALL
    keywords override (mobilenet_v2_0_35 .. _1_4 all at alpha 0.35) would build the same network twice."""
    seen, names = set(), []
    for n in CLASSIFIERS:
        entry = get_entry(n)
        settings = {k: v for k, v in {**entry.defaults, **small_kwargs(n)}.items() if k != "name"}
        key = (entry.builder, repr(sorted(settings.items())), small_shape(n))
        if key not in seen:
            seen.add(key)
            names.append(n)
    return names


@pytest.mark.parametrize("name", _distinct_small_models())
def test_forward_backward_small_input(name):
    shape = small_shape(name)
    model = catalog.create_model(name, num_classes=7, input_shape=shape, **small_kwargs(name))
    out = assert_all_gradients(model, random_input(shape))
    assert np.asarray(out).shape == (2, 7)
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("name", [n for n in CLASSIFIERS if (get_entry(n).min_input_size or 0) > 32])
def test_too_small_input_names_the_minimum(name):
    entry = get_entry(name)
    with pytest.raises(ValueError, match=f"at least {entry.min_input_size}"):
        catalog.create_model(name, input_shape=(32, 32, entry.input_shape[2]))


@pytest.mark.parametrize("name", [reference_case(n) for n in CLASSIFIERS
                                  if "features_only" in catalog.registry.accepted_kwargs(n)])
def test_features_only_matches_card(name):
    entry = get_entry(name)
    size = -(-max(64, entry.min_input_size or 0) // 32) * 32
    feats = catalog.create_model(name, features_only=True, input_shape=(size, size, entry.input_shape[2]),
                                 **small_kwargs(name))
    channels = [int(t.shape[-1]) for t in feats.outputs]
    if small_kwargs(name):  # the card describes the full width: compare with the reduced net at default size
        default = catalog.create_model(name, features_only=True, **small_kwargs(name)).outputs
        expected = [int(t.shape[-1]) for t in default]
        reductions = [feature_reduction(entry.input_shape[0], t.shape[1]) for t in default]
    else:
        card = measure_card(name)
        expected, reductions = list(card["feature_channels"]), list(card["feature_reductions"])
    assert channels == expected
    assert reductions == sorted(reductions), "stages go from shallow to deep"


_AUTO_NAME = re.compile(r"^(conv2d|dense|batch_normalization|re_lu|relu|add|concatenate|activation|"
                        r"dropout|max_pooling2d|average_pooling2d|global_average_pooling2d|zero_padding2d|"
                        r"depthwise_conv2d|multiply|reshape|flatten|lambda|functional)(_\d+)?$")


@pytest.mark.parametrize("name", _distinct_small_models())
def test_layer_names_are_stable_and_meaningful(name):
    shape = small_shape(name)
    names = [layer.name for layer in catalog.create_model(name, input_shape=shape, **small_kwargs(name)).layers]
    auto = [n for n in names if _AUTO_NAME.match(n)]
    assert not auto, f"auto-generated layer names: {auto[:5]}"
    again = [layer.name for layer in catalog.create_model(name, input_shape=shape, **small_kwargs(name)).layers]
    assert names == again


def _smallest_per_family():
    families = {}
    for n in CLASSIFIERS:
        families.setdefault(get_entry(n).family, []).append(n)
    return sorted(min(names, key=lambda n: (len(n), n)) for names in families.values())


@pytest.mark.parametrize("name", _smallest_per_family())
def test_keras_round_trip_one_per_family(name):
    shape = small_shape(name)
    model = catalog.create_model(name, num_classes=3, input_shape=shape, **small_kwargs(name))
    keras_round_trip(model, random_input(shape))
