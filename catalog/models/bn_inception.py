"""BN-Inception (Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by Reducing
Internal Covariate Shift", ICML), also called Inception v2: the network of the paper's Figure 5.

GoogLeNet with BatchNorm after every conv and each 5x5 conv replaced by two 3x3 convs: 7x7/2 conv (64) ->
3x3/2 max pool -> 1x1 (64) -> 3x3 (192) -> 3x3/2 max pool -> inception 3a, 3b (28x28 at 224) -> 3c, a
stride-2 pass-through module -> 4a..4d (14x14) -> 4e, stride 2 -> 5a, 5b (7x7) -> global average pool ->
FC. The modules (:func:`~catalog.blocks.inception.inception_bn`) take the table's columns: #1x1, #3x3
reduce, #3x3, double #3x3 reduce, double #3x3 and the pool (average, or max in 3c, 4e and 5b) with its
1x1 projection or, in 3c and 4e, the pooled input passed through.

Which source: the paper's table and the reference implementation, Cadene's pretrainedmodels
``bninception`` (a port of the Caffe model of Xiong et al., the weights everyone uses), agree in every
filter count, so this follows both; where the paper is silent the reference decides: the second conv of
the stride-2 double-3x3 branch is the strided one, the pools of the modules' pool branches are 3x3/1
(3x3/2 in 3c and 4e), the stride-1 average pools count their zero padding (Caffe), and the head has no
dropout (the paper's BN networks drop GoogLeNet's dropout, Section 4.2.1). The reference's convs carry a bias
before BatchNorm; here they do not (a weights loader folds it into the BatchNorm moving mean), so this
model has 11,285,224 trainable parameters, the reference's 11,295,240 less its 10,016 conv biases.
Max pools and stride-2 convs pad as Caffe's ``ceil_mode`` pools and ``pad: 1`` convs do on even maps
(every map at 224); on odd maps the pools pad like "same" pooling, so any input of 32 pixels or more works
(the reference fails where a stride-2 module meets an odd map). Inputs as the port's weights expect them:
BGR in [0, 255] less the channel means, preprocessing "caffe" (the port subtracts 104, 117, 128).
"""

from keras import layers

from catalog.blocks.inception import inception_bn
from catalog.blocks.layers import conv_bn_act
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

# Figure 5 of the paper: name -> (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, proj,
# stride); proj 0 is a pass-through.
MODULES = {
    "inception3a": (64, 64, 64, 64, 96, "avg", 32, 1),
    "inception3b": (64, 64, 96, 64, 96, "avg", 64, 1),
    "inception3c": (0, 128, 160, 64, 96, "max", 0, 2),
    "inception4a": (224, 64, 96, 96, 128, "avg", 128, 1),
    "inception4b": (192, 96, 128, 96, 128, "avg", 128, 1),
    "inception4c": (160, 128, 160, 128, 160, "avg", 128, 1),
    "inception4d": (96, 128, 192, 160, 192, "avg", 128, 1),
    "inception4e": (0, 128, 192, 192, 256, "max", 0, 2),
    "inception5a": (352, 192, 320, 160, 224, "avg", 128, 1),
    "inception5b": (352, 192, 320, 192, 224, "max", 128, 1),
}
# The last map of each resolution, strides 2, 4, 8, 16, 32 (as googlenet reports its stages).
FEATURES = ("conv1", "conv3", "inception3b", "inception4d", "inception5b")

REFERENCE_PARAMS = 11_295_240  # Cadene's bninception, conv biases included
REFERENCE_CONV_BIASES = 10_016  # its conv biases before BatchNorm, left out here


def bn_inception(dropout: float = 0.0, **kwargs):
    """BN-Inception (Ioffe & Szegedy 2015, Figure 5): GoogLeNet with BatchNorm and double-3x3 branches.

    Structure: 7x7/2 conv -> max pool -> 1x1 + 3x3 convs -> max pool -> modules 3a-3c (28x28 at 224),
    4a-4e (14x14), 5a-5b (7x7) -> global average pool -> FC, where 3c and 4e are the stride-2
    pass-through modules; 11,285,224 parameters (the module docstring gives the choices the paper leaves
    open).

    Args:
        dropout: dropout rate before the FC; 0 as in the paper's BN networks and the reference
            (GoogLeNet has 0.4).
    """
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}.")

    def backbone(x):
        x = conv_bn_act(x, 64, 7, 2, padding="symmetric", name="conv1")
        stages = [x]
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
        x = conv_bn_act(x, 64, 1, name="conv2")
        x = conv_bn_act(x, 192, 3, name="conv3")
        stages.append(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
        for name, (*filters, strides) in MODULES.items():
            x = inception_bn(x, *filters, strides=strides, name=name)
            if name in FEATURES:
                stages.append(x)
        return x, stages

    return build_classifier(backbone, dropout=dropout, **kwargs)


register_model(bn_inception, name="bn_inception", family="bn_inception",
               paper="Ioffe & Szegedy 2015, Batch Normalization: Accelerating Deep Network Training by "
                     "Reducing Internal Covariate Shift, ICML",
               input_shape=(224, 224, 3), reference_params=REFERENCE_PARAMS,
               reference_params_source="Cadene pretrainedmodels bninception (11,295,240); its 10,016 conv "
                                       "biases before BatchNorm are left out here (exact in "
                                       "tests/models/test_bn_inception.py)",
               reference_params_rtol=(REFERENCE_CONV_BIASES + 1) / REFERENCE_PARAMS,
               reference_macs=2.03e9,
               reference_macs_source="Hu et al. 2018, Squeeze-and-Excitation Networks, Table 2: BN-Inception "
                                     "2.03 GFLOPs (= MACs) at 224x224",
               min_input_size=32, preprocessing="caffe")
