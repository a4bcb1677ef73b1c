"""CPU-scale recipe on EuroSAT RGB (64 px, 10 classes): a small BiT teacher trained from scratch, distilled
into a much cheaper student with function matching. Progress is visible in minutes on a laptop CPU.

Cost per image (`funmatch models`, 10 classes): the student, tiny_cnn at 48 px, 5.8 MFLOPs; the teacher,
bit_r26x0.25, 88.9 MFLOPs at 112 px (the resolution the shipped EuroSAT teacher is served at: the student
is 15.3× cheaper), 61.9 MFLOPs at 96 px (10.7×) and 27.5 MFLOPs at this recipe's default teacher_resolution
of 64 px (4.7×). The student sees the
teacher's crop resized to 48 px; evaluation resizes the whole 64 px tile (resize_small = the resolution).

Run (the shared copy has train/ and test/ folders; validation is carved from train)::

    funmatch prepare folder:/path/to/eurosat_rgb --val-fraction 0.05 --out data/eurosat
    funmatch teacher --config eurosat --data data/eurosat --workdir runs/eurosat_teacher
    funmatch distill --config eurosat --data data/eurosat \
        --teacher runs/eurosat_teacher/teacher.keras --workdir runs/eurosat_fm

The shipped teacher (`funmatch/assets/teachers/`, 96.1 % on the 5,400 EuroSAT test images) is this recipe's
teacher trained in four stages, the last at teacher_resolution=96, then served at 112 px, the resolution that
scored best on validation (`funmatch models resolution`; its card has the commands and times); with it, distil
with `eurosat:teacher_resolution=112`. `funmatch demo` runs this recipe on 1,000 labelled + 3,900
unlabelled images the teacher never trained on (figures in the README).
"""

from funmatch.configs import common


def get_config(arg: str = "") -> common.Config:
    overrides = common.parse_overrides(arg)
    config = common.Config(
        recipe="eurosat",
        variant="cpu",
        dataset="eurosat_rgb",
        source="folder:eurosat_rgb",
        num_train_examples=0,  # from the dataset card
        student="tiny_cnn",
        teacher="bit_r26x0.25",
        student_resolution=48,
        teacher_resolution=64,
        resize_small=48,  # eval: the whole tile at each model's resolution (crop fraction 48 / 48)
        batch_size=128,
        epochs=30,
        warmup_steps=200,
        learning_rate=0.003,
        weight_decay=1e-4,
        temperature=1.0,
        mixup_p=1.0,
        teacher_from_scratch=True,
        teacher_optimizer="adam",
        teacher_learning_rate=0.003,
        teacher_weight_decay=5e-5,
        teacher_batch_size=128,
        teacher_steps=4000,
        teacher_crop_area_min=30.0,
        teacher_augment="flip_ud|rot90",  # with flip_lr: the 8 symmetries of a satellite tile
        teacher_warmup_steps=200,
        teacher_mixup_p=0.0,
        checkpoint_every=200,
        eval_every=1000,
        eval_batch_size=256,
        log_every=20,
    )
    return common.finish(config, overrides, recipe="eurosat")
