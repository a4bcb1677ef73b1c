"""CPU-scale Flowers102 recipe (official splits, 1,020 training images, 102 classes) at 64–96 px: a small
BiT teacher and a ≥ 10× cheaper student, so that the paper's "patience" shows on a CPU in an hour.

Cost per image (`funmatch models`, 102 classes): the teacher, bit_r26x0.25 at 96 px, 62.0 MFLOPs; the
student, tiny_cnn_w12 (widths 12-12-24-48) at 64 px, 6.0 MFLOPs: 10.4× cheaper.

Run::

    funmatch prepare folder:/path/to/flowers102 --shorter-side 112 --out data/flowers102_cpu
    funmatch teacher --config flowers102_cpu --data data/flowers102_cpu --workdir runs/flowers_teacher
    funmatch distill --config flowers102_cpu --data data/flowers102_cpu \
        --teacher runs/flowers_teacher/teacher.keras --workdir runs/flowers_fm

Measured: not yet (no accuracy figure for this recipe has been taken).
"""

from funmatch.configs import common


def get_config(arg: str = "") -> common.Config:
    overrides = common.parse_overrides(arg)
    config = common.Config(
        recipe="flowers102_cpu",
        variant="cpu",
        dataset="oxford_flowers102",
        source="tfds:oxford_flowers102",
        num_train_examples=1_020,
        student="tiny_cnn_w12",
        teacher="bit_r26x0.25",
        student_resolution=64,
        teacher_resolution=96,
        resize_small=110,
        batch_size=64,
        epochs=300,
        warmup_steps=200,
        learning_rate=0.003,
        weight_decay=1e-4,
        temperature=5.0,
        mixup_p=1.0,
        teacher_from_scratch=True,
        teacher_optimizer="adam",
        teacher_learning_rate=0.003,
        teacher_weight_decay=1e-4,
        teacher_batch_size=64,
        teacher_steps=3000,
        teacher_warmup_steps=200,
        teacher_mixup_p=0.1,
        checkpoint_every=200,
        eval_every=1000,
        eval_batch_size=256,
        log_every=20,
    )
    return common.finish(config, overrides, recipe="flowers102_cpu")
