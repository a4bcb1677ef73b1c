"""The paper's transfer recipes: Flowers102, Pets37, Food101 and SUN397 (Beyer et al. 2022, Table/Fig. data).

Values are those of the official big_vision configs (see DESIGN.md): batch 512, student BiT-R50x1 from
scratch, teacher BiT-M-R152x2 fine-tuned at 128 px, inception crop 128 + flip shared by both models, mixup
p = 1, T²·KL, clip 1.0, Adam + decoupled weight decay, 1500 warmup steps then cosine.

Run (prepare once, fine-tune a teacher, then distill)::

    funmatch prepare tfds:oxford_flowers102 --out data/flowers102
    funmatch teacher --config flowers102 --data data/flowers102 --workdir runs/teacher --init BiT-M-R152x2.npz
    funmatch distill --config flowers102:variant=fast --data data/flowers102 \
        --teacher runs/teacher/teacher.keras --workdir runs/fm_flowers_fast

Time and accuracy: not measured by funmatch (no accelerator here). The paper reports, for the `long`
variants, R50x1 students within ~1 % of the R152x2 teachers (Flowers102 ~97 %, Pets37 ~91 %; Fig. 6).
"""

from funmatch.configs import common

# dataset -> (tfds name, {split: tfds split}, N train)
DATASETS = {
    "flowers102": ("oxford_flowers102", {"train": "train", "validation": "validation", "test": "test"}, 1_020),
    "pets37": ("oxford_iiit_pet", {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}, 3_312),
    "food101": ("food101", {"train": "train[:90%]", "validation": "train[90%:]", "test": "validation"}, 68_175),
    "sun397": ("sun397", {"train": "train", "validation": "validation", "test": "test"}, 76_128),
}

# dataset -> variant -> (epochs, learning rate, weight decay, temperature)
RECIPES = {
    "flowers102": {"fast": (10_000, 0.003, 3e-4, 10), "medium": (100_000, 0.001, 1e-4, 1), "long": (1_000_000, 0.0003, 1e-5, 1)},
    "pets37": {"fast": (1_000, 0.01, 1e-3, 5), "medium": (3_000, 0.003, 3e-4, 10), "long": (30_000, 0.003, 1e-5, 2)},
    "food101": {"fast": (100, 0.01, 1e-3, 10), "medium": (1_000, 0.001, 3e-4, 10), "long": (3_000, 0.01, 1e-4, 5)},
    "sun397": {"fast": (100, 0.01, 1e-3, 10), "medium": (1_000, 0.001, 1e-4, 10), "long": (3_000, 0.01, 3e-5, 10)},
}


def tfds_source(dataset: str) -> str:
    """The `funmatch prepare` source string for `dataset`, with the paper's splits."""
    name, splits, _ = DATASETS[dataset]
    return f"tfds:{name}:" + ",".join(f"{k}={v}" for k, v in splits.items())


def get_config(arg: str = "") -> common.Config:
    overrides = common.parse_overrides(arg)
    dataset = common.pop_selector(overrides, "data", "flowers102", tuple(DATASETS))
    variant = common.pop_selector(overrides, "variant", "fast", ("fast", "medium", "long"))
    epochs, learning_rate, weight_decay, temperature = RECIPES[dataset][variant]
    config = common.Config(
        recipe=dataset,
        variant=variant,
        dataset=dataset,
        source=tfds_source(dataset),
        num_train_examples=DATASETS[dataset][2],
        student="bit_r50x1",
        teacher="bit_r152x2",
        student_resolution=128,
        teacher_resolution=128,
        resize_small=160,
        batch_size=512,
        epochs=epochs,
        warmup_steps=1500,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        temperature=float(temperature),
        mixup_p=1.0,
        checkpoint_every=1000,
        eval_every=5000,
        keep_checkpoints=3,
        shuffle_buffer=50_000,  # the official configs' buffer; Food101 and SUN397 are larger than it
    )
    return common.finish(config, overrides, recipe=dataset)
