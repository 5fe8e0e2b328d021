"""What every generation family shares: the training recipe, the per-epoch sample grids and the scoring job.

Output format (what ``catalog evaluate --task generation`` reads): the model (a :class:`catalog.training.gan.GAN`,
or a bare generator) maps noise (B, noise_dim), or ``[noise, labels]`` when conditional, to images (B, H, W, C)
in [-1, 1] (the catalog's ``tf`` preprocessing).

Scores (:func:`evaluate_generation`): the Inception Score (Salimans et al. 2016) of the generated images and of
real ones, and FID (Heusel et al. 2017) between them, from a classifier the caller names: a trained ``.keras``
file, a keras.Model, or a registered name with a local weights file. Trained on the same data, a small
classifier stands in for the Inception network of the papers, so the numbers compare runs on that data with
that classifier only (and the real images' score is the ceiling to read them against).
"""

from __future__ import annotations

import glob
import os
import time

import numpy as np

from catalog.evaluation.report import image_grid
from catalog.registry import TrainingRecipe

GRID_IMAGES = 64  # images in a per-epoch sample grid (8 x 8)


def generator_of(model):
    """The generator of a GAN (its ``generator``), or ``model`` itself when it is one."""
    return getattr(model, "generator", model)


def sample_images(model, num_images: int, seed: int = 0, batch_size: int = 64, num_classes: int | None = None):
    """``num_images`` images of the generator of ``model`` from seeded noise (labels 0, 1, 2, ... cycling over
    the classes when it is conditional): (images (N, H, W, C) in [-1, 1], labels or None)."""
    generator = generator_of(model)
    noise_dim = int(generator.inputs[0].shape[-1])
    noise = np.random.default_rng(seed).standard_normal((num_images, noise_dim)).astype("float32")
    labels = None
    if len(generator.inputs) == 2:
        if num_classes is None:
            embedding = next((l for l in generator.layers if l.name == "label_embedding"), None)
            num_classes = int(embedding.input_dim) if embedding is not None else 1
        labels = (np.arange(num_images) % num_classes).astype("int32")
    out = []
    for i in range(0, num_images, batch_size):
        inputs = noise[i:i + batch_size] if labels is None else [noise[i:i + batch_size], labels[i:i + batch_size]]
        out.append(np.asarray(generator.predict_on_batch(inputs), np.float32))
    return np.concatenate(out), labels


def write_grid(path, images, columns: int = 8) -> str:
    """Write :func:`image_grid` of ``images`` to the PNG ``path``; return the path."""
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(image_grid(images, columns)).save(path)
    return path


def sample_grid_callback(run_dir, num_images: int = GRID_IMAGES, seed: int = 0):
    """A Keras callback writing ``samples/epoch_NNN.png`` into ``run_dir`` after every epoch: a grid of the
    generator's images from the same seeded noise each time (so the grids show one set of samples evolve)."""
    import keras

    class SampleGrid(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            images, _ = sample_images(self.model, num_images, seed=seed)
            write_grid(os.path.join(run_dir, "samples", f"epoch_{epoch + 1:03d}.png"), images)

    return SampleGrid()


def generation_recipe(model, loss: str = "non_saturating") -> TrainingRecipe:
    """Training recipe of a GAN: ``loss`` one of ``catalog.training.gan.LOSSES``, a sample grid per epoch, the
    Inception Score and FID as its scoring job (:func:`evaluate_generation`).

    The data are classification batches (images in [-1, 1], the entries' ``tf`` preprocessing; labels used only
    by a conditional model). The optimizer ``catalog.train`` makes trains both networks (one iteration per
    batch); the DCGAN paper trains with Adam, learning rate 0.0002, beta_1 0.5, batch 128, no schedule.
    """
    from catalog.training.gan import GAN, LOSSES

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}.")
    if not isinstance(model, GAN):
        raise ValueError(f"model {getattr(model, 'name', model)!r} is not a GAN (catalog.training.gan.GAN); "
                         f"train a registered GAN such as dcgan.")
    notes = [f"GAN training, {loss} loss: one discriminator and one generator step per batch, one optimizer "
             f"holding both networks' state; the DCGAN paper uses Adam (lr 0.0002, beta_1 0.5: optimizer='adam', "
             f"lr=2e-4, beta_1=0.5), batch 128.",
             "the sample grids samples/epoch_NNN.png show the same seeded noise after every epoch.",
             "with augment (catalog.train's default) the generator learns the augmented images (crops, colour "
             "jitter); pass augment=False to learn the data as it is."]
    return TrainingRecipe(task="classification", loss=loss, num_classes=None, notes=notes,
                          callbacks=lambda run_dir: [sample_grid_callback(run_dir)], evaluate=evaluate_generation)


def part_recipe(model):
    """A generator or discriminator alone has no training recipe: it trains inside its GAN."""
    raise ValueError(f"{model.name} trains inside a GAN: train dcgan (or dcgan_32), which holds a generator and a "
                     f"discriminator, and take its .generator.")


# ------------------------------------------------------------------------------------------ scoring
def _classifier(classifier, classifier_weights, image_shape, num_classes, preprocessing):
    """(probability model, feature model, preprocessing, name, notes) of the scoring classifier."""
    import keras

    from catalog.registry import create_model, get_entry, list_models
    from catalog.saving import load_model, read_record
    from catalog.scoring import _is_path, input_settings

    record, notes = None, []
    if isinstance(classifier, keras.Model):
        net, name = classifier, classifier.name
    elif isinstance(classifier, (str, os.PathLike)) and _is_path(classifier):
        path = os.path.expanduser(os.fspath(classifier))
        record = read_record(path)
        net = load_model(path)
        name = (record or {}).get("model_name") or os.path.basename(path)
    elif isinstance(classifier, str) and classifier in list_models():
        if classifier_weights is None:
            raise ValueError(f"classifier {classifier!r} needs classifier_weights (a local weights file): a "
                             f"classifier with random weights gives a meaningless score.")
        channels = get_entry(classifier).input_shape[-1]  # the card's: the weights were trained with them
        kwargs = {"weights": classifier_weights, "input_shape": (*image_shape[:2], channels)}
        if num_classes:
            kwargs["num_classes"] = num_classes
        net, name = create_model(classifier, **kwargs), classifier
        record = {"model_name": classifier}
    else:
        raise ValueError(f"classifier must be a .keras file, a keras.Model or a registered name with "
                         f"classifier_weights; got {classifier!r}.")
    preprocessing, _, settings_notes = input_settings(net, record, preprocessing, None)
    notes += [f"classifier {note}" for note in settings_notes]
    head = net.layers[-1]
    probabilities = getattr(getattr(head, "activation", None), "__name__", "") == "softmax" or isinstance(
        head, keras.layers.Softmax)
    probs = net if probabilities else keras.Model(
        net.inputs, keras.layers.Softmax(name="scoring_softmax")(net.outputs[0]), name=f"{net.name}_probs")
    dense = next((l for l in reversed(net.layers) if isinstance(l, keras.layers.Dense)), None)
    if dense is None:
        raise ValueError(f"classifier {name!r} has no Dense head whose input could serve as FID features; pass a "
                         f"classifier ending in a Dense layer.")
    features = keras.Model(net.inputs, dense.input, name=f"{net.name}_features")
    return probs, features, preprocessing, name, dense.name, notes


def _to_classifier(images, preprocessing, net):
    """Images in [-1, 1] to ``net``'s input: its size (bilinear), its channels (RGB to BT.601 luminance or gray to
    RGB) and its ``preprocessing`` of [0, 255] pixels."""
    from keras import ops

    from catalog.datasets.transforms import normalize

    size = tuple(net.input_shape[1:3])
    x = np.asarray(images, np.float32)
    if all(size) and tuple(x.shape[1:3]) != size:
        x = np.asarray(ops.image.resize(x, size, interpolation="bilinear"), np.float32)
    channels = net.input_shape[-1]
    pixels = (x + 1.0) * 127.5
    if channels == 1 and x.shape[-1] == 3:  # luminance, ITU-R BT.601, as catalog.datasets makes 1-channel images
        pixels = pixels @ np.array([[0.2989], [0.5870], [0.1140]], np.float32)
    elif channels == 3 and x.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.asarray(normalize(pixels, preprocessing), np.float32)


def _real_images(data, split, num_images, size, channels, batch_size, seed, load_kwargs):
    """Up to ``num_images`` real images in [-1, 1] and the class names of ``data`` (a spec or (x, y) batches)."""
    if isinstance(data, str):
        from catalog import datasets

        split = split or datasets.evaluation_split(data, data_dir=load_kwargs.get("data_dir"))
        ds, info = datasets.load(data, split=split, task="classification", image_size=size, batch_size=batch_size,
                                 preprocessing="tf", channels=channels, shuffle=True, seed=seed, epochs=1,
                                 **load_kwargs)  # epochs: the stateless stream, the same order in every process
        names = list(info["class_names"])
    else:
        ds, names = data, []
    images, count = [], 0
    for batch in ds:
        x = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch, np.float32)
        images.append(x)
        count += len(x)
        if count >= num_images:
            break
    if not images:
        raise ValueError(f"data {data!r} gave no images for split {split!r}.")
    return np.concatenate(images)[:num_images], names, split


def evaluate_generation(model, data, *, out_dir, classifier=None, classifier_weights=None, num_images: int = 500,
                        splits: int = 10, classifier_preprocessing=None, record=None, card=None, split=None,
                        image_size=None, batch_size: int = 32, preprocessing=None, max_batches=None,
                        num_samples: int = GRID_IMAGES, allow_random_weights: bool = False, seed: int = 0,
                        history=None, title=None, verbose: int = 1, notes=None, **load_kwargs) -> str:
    """Score a generator: ``num_images`` samples from seeded noise, a sample grid, and with a ``classifier``
    the Inception Score of the samples and of as many real images of ``data``, FID between the two sets
    (features: the input of the classifier's last Dense layer, its pooled or flattened features) and the share
    of each class the classifier sees among them; writes report.json/md/html into ``out_dir`` and returns it.

    Args:
        model: a GAN or a generator (images in [-1, 1]).
        data: a dataset spec (or (images, labels) batches in [-1, 1]): the real images.
        classifier: a ``.keras`` file (its record says its preprocessing), a keras.Model, or a registered name
            built with ``classifier_weights`` (a local weights file) at the images' size, its card's channels and
            the data's classes; None: no scores, the report says so.
        classifier_weights: the weights file of a registered ``classifier`` name.
        num_images: samples (and real images) scored; the Inception Score is the mean over ``splits`` parts.
        classifier_preprocessing: the classifier's pixel scaling, when neither its record nor its card says it.
        seed: the noise of the samples and the order of the real images.
        num_samples: images in the report's sample grid.
        record, card, split, image_size, batch_size, history, title, verbose, notes, load_kwargs: as
            ``catalog.evaluate`` passes them (``preprocessing`` and ``max_batches`` do not apply: samples are in
            [-1, 1] and their number is ``num_images``).
    """
    from catalog.evaluation.report import write_report
    from catalog.scoring import fid_of_images, inception_score_of_images, report_card

    for value, argument in ((num_images, "num_images"), (splits, "splits"), (num_samples, "num_samples")):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{argument} must be a positive integer; got {value!r}.")
    if splits > num_images:
        raise ValueError(f"splits must be at most num_images ({num_images}); got {splits}.")
    notes = list(notes or [])
    start = time.time()
    generator = generator_of(model)
    image_shape = tuple(int(d) for d in generator.outputs[0].shape[1:])
    size = image_shape[:2] if image_size is None else ((image_size,) * 2 if isinstance(image_size, int)
                                                        else tuple(image_size))
    card = report_card(model, card, notes, "its samples are noise")
    samples, labels = sample_images(model, num_images, seed=seed, batch_size=max(batch_size, 1))
    metrics = {"num_images": num_images, "image_shape": list(image_shape), "seed": seed,
               "sample_mean": float(samples.mean()), "sample_std": float(samples.std())}
    class_names, data_split = [], split
    if classifier is not None:
        real, class_names, data_split = _real_images(data, split, num_images, size, image_shape[-1], batch_size,
                                                     seed, load_kwargs)
        if tuple(real.shape[1:3]) != tuple(samples.shape[1:3]):
            raise ValueError(f"the real images are {real.shape[1]}x{real.shape[2]} but the generator makes "
                             f"{samples.shape[1]}x{samples.shape[2]}; drop image_size or match it.")
        probs_net, feature_net, pre, name, feature_layer, classifier_notes = _classifier(
            classifier, classifier_weights, image_shape, len(class_names) or None, classifier_preprocessing)
        notes += classifier_notes
        fake_in, real_in = _to_classifier(samples, pre, probs_net), _to_classifier(real, pre, probs_net)
        parts = min(splits, len(real_in))
        score, spread = inception_score_of_images(fake_in, model=probs_net, splits=splits, batch_size=batch_size)
        real_score, real_spread = inception_score_of_images(real_in, model=probs_net, splits=parts,
                                                            batch_size=batch_size)
        fid = fid_of_images(fake_in, real_in, model=feature_net, batch_size=batch_size)
        predicted = [np.bincount(np.argmax(np.asarray(probs_net.predict(x, batch_size=batch_size, verbose=0)), 1),
                                 minlength=int(probs_net.outputs[0].shape[-1])) for x in (fake_in, real_in)]
        metrics.update(inception_score=score, inception_score_std=spread, real_inception_score=real_score,
                       real_inception_score_std=real_spread, fid=fid, real_images=len(real_in), splits=splits,
                       classifier=name, classifier_preprocessing=pre, feature_layer=f"input of {feature_layer}",
                       sample_class_share=predicted[0] / max(1, len(fake_in)),
                       real_class_share=predicted[1] / max(1, len(real_in)))
        if len(class_names) != len(predicted[0]):
            class_names = [str(i) for i in range(len(predicted[0]))]
        notes.append(f"Inception Score and FID from the classifier {name} (not Inception v3): comparable only "
                     f"between runs scored with the same classifier on the same data; the real images' score "
                     f"({real_score:.3f}) is the ceiling.")
    else:
        notes.append("no Inception Score or FID: no classifier was named (pass classifier, a .keras file or a "
                     "registered name with classifier_weights, e.g. --task-options '{\"classifier\": "
                     "\"runs/clf/model.keras\"}').")
    grids = sorted(glob.glob(os.path.join(out_dir, "samples", "epoch_*.png")))
    write_grid(os.path.join(out_dir, "samples", "final.png"), samples[:num_samples])
    settings = {"num_images": num_images, "seed": seed, "batch_size": batch_size, "split": data_split,
                "notes": notes}
    dataset = {"spec": data if isinstance(data, str) else type(data).__name__, "split": data_split,
               "real_images": metrics.get("real_images", 0)}
    shown = {"images": samples[:num_samples], "labels": None if labels is None else labels[:num_samples],
             "epoch_grids": grids}
    write_report(out_dir, "generation", metrics, class_names, samples=shown, settings=settings, model=card,
                 dataset=dataset, seconds=round(time.time() - start, 3), history=history, notes=notes,
                 title=title or f"{card.get('name', 'model')}: generation scored on {dataset['spec']}")
    if verbose:
        for note in notes:
            print(f"note: {note}")
        if "inception_score" in metrics:
            print(f"Inception Score {metrics['inception_score']:.3f} (real images {metrics['real_inception_score']:.3f}"
                  f"), FID {metrics['fid']:.3f}; report in {out_dir}")
    return out_dir
