"""The generated shapes data as a tensorflow-datasets builder, prepared and cached like any TFDS dataset.

    from catalog.datasets import tfds_shapes
    builder = tfds_shapes.prepare_shapes("/data/tfds", config="small")   # generates, no download
    ds = builder.as_dataset(split="train")

Importing this module registers the builder under the name ``catalog_shapes`` (so
``tfds.builder("catalog_shapes/small", data_dir=...)`` and ``catalog.datasets.load("tfds:catalog_shapes")``
find it). Configs: ``small`` / ``default`` hold images with labels, boxes and masks; ``restoration`` holds
clean, noisy and low-resolution versions of the same images.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from catalog.datasets.shapes import SHAPE_CLASSES, make_restoration_pairs, make_shapes


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    """Sizes of one shapes config: images per split, image side, objects per image, restoration pairs."""

    image_size: int = 32
    max_objects: int = 3
    num_train: int = 2000
    num_test: int = 500
    restoration: bool = False
    scale: int = 2
    noise_std: float = 15.0


class CatalogShapes(tfds.core.GeneratorBasedBuilder):
    """Circles, squares, triangles, crosses and stars on textured backgrounds (catalog.datasets.shapes)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        ShapesConfig(name="small", description="32x32, 1-3 shapes, 256 train / 64 test images.",
                     num_train=256, num_test=64),
        ShapesConfig(name="default", description="64x64, 1-3 shapes, 4000 train / 1000 test images.",
                     image_size=64, num_train=4000, num_test=1000),
        ShapesConfig(name="restoration", description="64x64 clean / noisy (sigma 15) / 2x low-res triples.",
                     image_size=64, num_train=512, num_test=128, restoration=True),
    ]
    DEFAULT_CONFIG_NAME = "small"
    # The package-dir mapping (catalog.datasets -> datasets/) defeats TFDS's search for the module file.
    pkg_dir_path = epath.Path(os.path.dirname(os.path.abspath(__file__)))

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(os.path.abspath(__file__))
    # Seeds per split, so train and test never share images.
    SPLIT_SEEDS = {"train": 0, "test": 1}

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        s = c.image_size
        if c.restoration:
            features = tfds.features.FeaturesDict({
                "clean": tfds.features.Image(shape=(s, s, 3)),
                "noisy": tfds.features.Image(shape=(s, s, 3)),
                "low_res": tfds.features.Image(shape=(s // c.scale, s // c.scale, 3)),
            })
            supervised = ("noisy", "clean")
        else:
            features = tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(s, s, 3)),
                "label": tfds.features.ClassLabel(names=list(SHAPE_CLASSES)),
                "objects": tfds.features.Sequence({
                    "bbox": tfds.features.BBoxFeature(),
                    "label": tfds.features.ClassLabel(names=list(SHAPE_CLASSES)),
                }),
                "segmentation_mask": tfds.features.Image(shape=(s, s, 1)),
            })
            supervised = ("image", "label")
        # DatasetInfo directly: dataset_info_from_configs would look for metadata files beside a module
        # path that the package-dir mapping does not have.
        return tfds.core.DatasetInfo(builder=self, description=c.description, features=features,
                                     supervised_keys=supervised)

    def _split_generators(self, dl_manager):
        del dl_manager  # generated: nothing to download
        sizes = {"train": self.builder_config.num_train, "test": self.builder_config.num_test}
        return {split: self._generate_examples(split, n) for split, n in sizes.items()}

    def _generate_examples(self, split: str, num_images: int):
        c = self.builder_config
        seed = self.SPLIT_SEEDS[split]
        if c.restoration:
            data = make_restoration_pairs(num_images, c.image_size, scale=c.scale, noise_std=c.noise_std,
                                          seed=seed, max_objects=c.max_objects)
            for i in range(num_images):
                yield i, {k: data[k][i] for k in ("clean", "noisy", "low_res")}
            return
        data = make_shapes(num_images, c.image_size, seed=seed, max_objects=c.max_objects)
        s = float(c.image_size)
        for i in range(num_images):
            x0, y0, x1, y1 = (data["boxes"][i] / s).T  # BBoxFeature: normalized (ymin, xmin, ymax, xmax)
            bbox = np.stack([y0, x0, y1, x1], axis=-1).astype(np.float32)
            yield i, {"image": data["images"][i], "label": int(data["labels"][i]),
                      "objects": {"bbox": bbox, "label": data["box_labels"][i].astype(np.int64)},
                      "segmentation_mask": data["masks"][i][..., None]}


def prepare_shapes(data_dir: str, config: str = "small") -> tfds.core.DatasetBuilder:
    """Generate and write the ``catalog_shapes/<config>`` TFDS dataset into ``data_dir`` (once).

    Returns the prepared builder."""
    names = [c.name for c in CatalogShapes.BUILDER_CONFIGS]
    if config not in names:
        raise ValueError(f"config must be one of {', '.join(names)}; got {config!r}.")
    builder = CatalogShapes(config=config, data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    return builder
