"""timm's logits for a BiT `.npz` (run as a subprocess by test_timm_crosscheck.py).

    python timm_reference.py CKPT.npz IMAGES_NHWC.npy OUT.npy DEPTH_UNITS(e.g. 3,4,6,3) WIDTH NUM_CLASSES

A separate process because importing torch/triton after TensorFlow crashes the interpreter
(segmentation fault while loading triton), and the TensorFlow test pass imports TensorFlow first.
Uses timm's own ResNet-V2 (`stem_type="fixed"`, StdConv2d eps 1e-8, as timm's `resnetv2_*_bit`)
and timm's own `.npz` loader `_load_weights`.
"""

import functools
import sys

import numpy as np
import torch
from timm.layers import StdConv2d
from timm.models import resnetv2


def main(checkpoint, images_path, out_path, units, width, num_classes):
    model = resnetv2.ResNetV2(
        layers=[int(unit) for unit in units.split(",")],
        width_factor=int(width),
        num_classes=int(num_classes),
        stem_type="fixed",
        conv_layer=functools.partial(StdConv2d, eps=1e-8),
    )
    resnetv2._load_weights(model, checkpoint)
    model.eval()
    # timm skips a head whose shape differs, silently; make sure ours really loaded.
    head = np.load(checkpoint)["resnet/head/conv2d/kernel"][0, 0]
    np.testing.assert_array_equal(model.head.fc.weight.detach().numpy()[:, :, 0, 0].T, head)
    images = np.load(images_path)
    with torch.no_grad():
        logits = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))  # NHWC -> NCHW
    np.save(out_path, logits.numpy())


if __name__ == "__main__":
    main(*sys.argv[1:])
