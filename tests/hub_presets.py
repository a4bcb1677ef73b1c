"""Small keras-hub presets saved locally from random initialisations (no network): built once per session
(the `hub_presets` fixture of tests/models; tests/engine runs its students on the MobileNet alone).

    resnet     ResNetImageClassifier, 10 classes, converter 64 px, ImageNet mean/std (a teacher)
    mobilenet  MobileNetImageClassifier, 10 classes, converter 32 px, [0, 1], antialiased resize (a student)
    efficientnet, vit   image classifiers, 10 classes, 32 px ([0, 1]; [-1, 1])
    bert       a text backbone (not an image model)
"""

from __future__ import annotations

import pathlib

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


ALL = ("resnet", "mobilenet", "efficientnet", "vit", "bert")


def build_presets(root: pathlib.Path, names=ALL) -> dict[str, pathlib.Path]:
    """The presets `names` (of those above), each in `root / NAME`."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    models, layers = keras_hub.models, keras_hub.layers
    out = {}

    def save(name, task):
        out[name] = root / name
        task.save_to_preset(str(out[name]))

    if "resnet" in names:
        resnet = models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
            stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
            use_pre_activation=False, image_shape=(None, None, 3))
        converter = layers.ResNetImageConverter(
            image_size=(64, 64), scale=[1 / (255 * s) for s in STD], offset=[-m / s for m, s in zip(MEAN, STD)])
        save("resnet", models.ResNetImageClassifier(
            backbone=resnet, num_classes=10,
            preprocessor=models.ResNetImageClassifierPreprocessor(image_converter=converter)))

    if "mobilenet" in names:
        mobilenet = models.MobileNetBackbone(
            stackwise_expansion=[[16], [32, 32]], stackwise_num_blocks=[1, 2], stackwise_num_filters=[[8], [16, 16]],
            stackwise_kernel_size=[[3], [3, 3]], stackwise_num_strides=[[2], [2, 1]],
            stackwise_se_ratio=[[None], [0.25, 0.25]], stackwise_activation=[["relu"], ["hard_swish", "hard_swish"]],
            stackwise_padding=[[1], [1, 1]], output_num_filters=32, depthwise_filters=8, depthwise_stride=1,
            depthwise_residual=False, last_layer_filter=32, squeeze_and_excite=0.5, input_num_filters=8,
            image_shape=(None, None, 3))
        converter = layers.MobileNetImageConverter(image_size=(32, 32), scale=1 / 255.0, offset=0.0, antialias=True)
        save("mobilenet", models.MobileNetImageClassifier(
            backbone=mobilenet, num_classes=10,
            preprocessor=models.MobileNetImageClassifierPreprocessor(image_converter=converter)))

    if "efficientnet" in names:
        efficientnet = models.EfficientNetBackbone(
            stackwise_kernel_sizes=[3, 3], stackwise_num_repeats=[1, 1], stackwise_input_filters=[8, 8],
            stackwise_output_filters=[8, 16], stackwise_expansion_ratios=[1, 2],
            stackwise_squeeze_and_excite_ratios=[0.0, 0.25],
            stackwise_strides=[1, 2], stackwise_block_types=["fused", "unfused"], width_coefficient=1.0,
            depth_coefficient=1.0, image_shape=(None, None, 3))
        converter = layers.EfficientNetImageConverter(image_size=(32, 32), scale=1 / 255.0, offset=0.0)
        save("efficientnet", models.EfficientNetImageClassifier(
            backbone=efficientnet, num_classes=10,
            preprocessor=models.EfficientNetImageClassifierPreprocessor(image_converter=converter)))

    if "vit" in names:
        vit = models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=1, num_heads=2, hidden_dim=16,
                                 mlp_dim=32)
        converter = layers.ViTImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1.0)
        save("vit", models.ViTImageClassifier(
            backbone=vit, num_classes=10,
            preprocessor=models.ViTImageClassifierPreprocessor(image_converter=converter)))

    if "bert" in names:
        bert = models.BertBackbone(vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=8,
                                   max_sequence_length=8)
        out["bert"] = root / "bert"
        bert.save_to_preset(str(out["bert"]))
    return out
