"""The paper's ImageNet recipe: BiT-R50x1 student from BiT-M-R152x2 teacher, 1200 epochs, 224 px.

Batch 4096, lr 0.03, weight decay 3e-4, T = 1, 5000 warmup steps, mixup p = 1, inception crop 224 + flip
shared by both models; eval `resize_small(256)|central_crop(224)`. Splits are the official distillation
config's (big_vision `configs/proj/distill/bit_i1k.py`): train = `train[:98%]`, validation ("minival") =
`train[98%:]`, test = the official `validation` split. Shuffle buffer 250,000 records (as there), and the
training split (~140 GB of JPEGs) is streamed from its shards, not cached in memory.
The published 82.8 % student used a 384 px teacher view of the same crop: `teacher_resolution=384`.

Run::

    funmatch prepare tfds:imagenet2012 --out data/imagenet      # needs the manually downloaded archives
    funmatch distill --config imagenet --data data/imagenet --teacher teacher_r152x2.keras --workdir runs/in1k

Time and accuracy: not measured by funmatch (no accelerator here). Paper: 82.8 % (224 px student).
"""

from funmatch.configs import common

NUM_TRAIN = 1_255_544  # train[:98%] of 1,281,167 (tfds rounds the 98 % boundary to the closest example)


def get_config(arg: str = "") -> common.Config:
    overrides = common.parse_overrides(arg)
    config = common.Config(
        recipe="imagenet",
        variant="paper",
        dataset="imagenet2012",
        source="tfds:imagenet2012:train=train[:98%],validation=train[98%:],test=validation",
        num_train_examples=NUM_TRAIN,
        student="bit_r50x1",
        teacher="bit_r152x2",
        student_resolution=224,
        teacher_resolution=224,
        resize_small=256,
        batch_size=4096,
        epochs=1200,
        warmup_steps=5000,
        learning_rate=0.03,
        weight_decay=3e-4,
        temperature=1.0,
        mixup_p=1.0,
        checkpoint_every=2000,
        eval_every=10_000,
        shuffle_buffer=250_000,
    )
    return common.finish(config, overrides, recipe="imagenet")
