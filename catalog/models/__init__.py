"""Every architecture of the catalog, one module per family.

Classification families (``resnet``, ``mobilenet``, ...) assemble their stages with the shared
:mod:`catalog.models.classifier`, which owns the keras.applications and timm keywords. Task models
(detection, segmentation, restoration, generation, ...) live here too, on ``features_only`` backbones.
Each module registers its names with :func:`catalog.registry.register_model`; the registry imports
every module of this package on its first query, so adding a family is adding a file here.
Imports go one way: ``catalog.models`` imports ``catalog.blocks`` and the registry, nothing else of ours.
"""
