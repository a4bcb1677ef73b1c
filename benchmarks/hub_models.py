"""Models from elsewhere: import and export times of a keras-hub preset, and the cost of a hub student.

    nice -n 10 python benchmarks/hub_models.py [--resolution 224] [--student-resolution 48]

No network: the "zoo" preset is a keras-hub MobileNetV3-Small-style backbone (the configuration of
keras-hub's MobileNetBackbone docstring) with a 1000-class head and an ImageNet mean/std image converter,
randomly initialised and saved locally; the times are those of a preset of that size (files on local disk).

Prints, side by side: what the `hub` extra adds to the environment (`extra_install`: keras-hub and the
packages its extra pulls in that funmatch's other requirements do not, installed bytes); preset size; `funmatch models import` (load + contract + check + write) process CPU
seconds and wall seconds; a hub student built from the preset (`hub:PRESET`, new 10-class head) at the
student resolution against `tiny_cnn` (parameters, MFLOPs per image); `funmatch export --format keras-hub`
(write + reload through `ImageClassifier.from_preset` + check) CPU and wall seconds. Quote `uptime`'s load
with the figures.

Measured (2026-12-07, TensorFlow backend, `taskset -c 1`, the other core idle, load 0.5-0.6): preset 6.8 MB;
import 1.3 s CPU (1.3 s wall); export 5.6 s CPU (6.6 s wall), max |preset - keras| 2.5e-14. Again at load
1.7: import 1.5 s, export 6.1 s CPU; the extra adds 70.2 MB of installed files (17 packages).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def zoo_preset(folder: pathlib.Path, resolution: int) -> None:
    import keras_hub

    backbone = keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144, 144], [72, 72], [144, 288, 288]],
        stackwise_num_blocks=[2, 3, 2, 3],
        stackwise_num_filters=[[16, 16], [24, 24, 24], [24, 24], [48, 48, 48]],
        stackwise_kernel_size=[[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25, 0.25], [0.3, 0.3], [0.3, 0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish"] * 3, ["hard_swish"] * 2, ["hard_swish"] * 3],
        stackwise_padding=[[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
        output_num_filters=288, input_activation="hard_swish", output_activation="hard_swish",
        input_num_filters=16, image_shape=(None, None, 3), depthwise_filters=8, squeeze_and_excite=0.5,
        depthwise_stride=2, depthwise_residual=False, last_layer_filter=288)
    converter = keras_hub.layers.MobileNetImageConverter(
        image_size=(resolution, resolution), scale=[1 / (255 * s) for s in STD],
        offset=[-m / s for m, s in zip(MEAN, STD)])
    task = keras_hub.models.MobileNetImageClassifier(
        backbone=backbone, num_classes=1000,
        preprocessor=keras_hub.models.MobileNetImageClassifierPreprocessor(image_converter=converter))
    task.save_to_preset(str(folder))


def timed(function):
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def extra_install() -> list[tuple[str, str, int]]:
    """(name, version, bytes of installed files) of what the `hub` extra adds to this environment: keras-hub
    itself (installed without its dependencies) and the distributions the extra's requirements pull in that
    funmatch's other requirements (base, `cpu`, `test`) do not."""
    import importlib.metadata as metadata
    import re

    from packaging.requirements import Requirement

    def canonical(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    def requirements(distribution, extras):
        out = []
        for text in metadata.distribution(distribution).requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in extras):
                out.append(canonical(requirement.name))
        return out

    def closure(roots):
        seen, stack = set(), list(roots)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue  # a requirement for another platform or Python
            seen.add(name)
            stack += requirements(name, ("",))
        return seen

    others = requirements("funmatch", ("", "cpu", "test"))
    hub = set(requirements("funmatch", ("hub",))) - set(others)
    added = ({"keras-hub"} | closure(hub)) - closure(others)
    rows = []
    for name in sorted(added):
        distribution = metadata.distribution(name)
        size = sum(os.path.getsize(path) for path in map(distribution.locate_file, distribution.files or [])
                   if os.path.isfile(path))
        rows.append((name, distribution.version, size))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--student-resolution", type=int, default=48)
    args = parser.parse_args()

    from funmatch import models
    from funmatch.export import export_model
    from funmatch.models.importer import import_model, save_atomic

    print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    added = extra_install()
    print(f"the hub extra adds {sum(size for *_, size in added) / 1e6:.1f} MB of installed files: "
          + ", ".join(f"{name} {version} ({size / 1e6:.1f} MB)" for name, version, size in added))
    with tempfile.TemporaryDirectory() as directory:
        root = pathlib.Path(directory)
        zoo_preset(root / "preset", args.resolution)
        size = sum(path.stat().st_size for path in (root / "preset").iterdir())
        print(f"preset: MobileNetV3-Small-style, 1000 classes, {size / 1e6:.1f} MB on disk")

        def do_import():
            model = import_model(str(root / "preset"))
            save_atomic(model, root / "teacher.keras")
            return model

        teacher, cpu, wall = timed(do_import)
        print(f"{'funmatch models import':<34}{cpu:>8.1f} s CPU{wall:>8.1f} s wall   "
              f"({models.count_params(teacher):,} params, {teacher.resolution} px)")

        student = models.create(f"hub:{root / 'preset'}", num_classes=10, resolution=args.student_resolution)
        tiny = models.create("tiny_cnn", num_classes=10, resolution=args.student_resolution)
        print(f"{'student (10 classes)':<34}{'params':>14}{'MFLOPs/image':>14}   at {args.student_resolution} px")
        for name, model in ((f"hub:PRESET (MobileNet)", student), ("tiny_cnn", tiny)):
            print(f"{name:<34}{models.count_params(model):>14,}"
                  f"{models.count_flops(model, args.student_resolution) / 1e6:>14.1f}")
        models.save(student, root / "student.keras")
        result, cpu, wall = timed(lambda: export_model(str(root / "student.keras"), root / "exported", "keras-hub"))
        print(f"{'funmatch export --format keras-hub':<34}{cpu:>8.1f} s CPU{wall:>8.1f} s wall   "
              f"(max |preset - keras| {result['max_abs_diff']:.2g})")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
