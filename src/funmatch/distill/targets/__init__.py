"""Stored teacher targets: the teacher runs once per (example, view); every later student reads its outputs.

Function matching pays a teacher forward pass on every training step. Here the teacher is paid once:
for every training example i and view v < K, the function-matching view is a pure function of
(seed, i, v), the teacher's output on it is stored, and the student's input pipeline regenerates the
very same mixed view at the student's resolution and pairs it with the stored target. Several students,
the modes that fit and every tuning trial then share one store; a student step costs what a
label-training step costs (Apple's "dataset reinforcement", ImageNet+, 2023, for the paper's recipe).

The view of (i, v) (`mode="function_matching"`; records in their on-disk order, i = position 0..N-1):

    rng(i, v)   = fold_in(fold_in((seed, SALT), v), i)               stateless, as every pp op's seed
    own view    = spec(resolution)(record i, rng(i, v))              e.g. decode, inception crop, flip, [-1, 1]
    partner     = j = (i + s_v) mod N, s_v in [1, N-1] seeded per view (stored in the card)
    partner view= spec(resolution)(record j, rng(j, v))              example j's own view v
    coefficient = a = max(u, 1 - u), u ~ Beta(p, p) from rng(i, v)  (one per example and view)
    mixed view  = a · own view + (1 - a) · partner view

The crop window of a view depends on the record and the seed only, never on the output size, so the
teacher (at its resolution) and the student (at its own) see the same window resized, as in online
function matching. From format 2 on (`FORMAT`), the crop is cut from the fully decoded image (`decode|
inception_crop(...)`), so one decode serves every view of an image; format 1 cropped while decoding the
JPEG (`decode_jpeg_and_inception_crop`, different pixels at the window's border on about a third of the
crops). A format-1 store is read with its own views, bit for bit: its card holds its pp spec, and the
run's template is compared in the store's terms (`template_in_format`). Partners come from a second sequential read of the same records, started s_v
records later, so no random access is needed at any scale. Online function matching draws one
coefficient per batch and pairs each image with its batch neighbour; here each example has its own
coefficient and a partner drawn over the whole split: the same distributions (another example of the
data; folded Beta(p, p)) per example, without tying an example's view to the batch it lands in.
`mode="consistent"` is the same with p = 0 (no mixup, no partner). `mode="fixed_teacher"` stores one
target per example (K = 1) from a fixed teacher view (the eval crop); the student's own view stays the
mode's fresh augmentation at every pass.

Store layout (`TARGETS_DIR`):

    targets.json                      the card (`load_card`; complete == true once every file is written)
    view-00003/train-00002.npy        targets of view 3 for the examples of record file 2, in record order
    timing-p0000.json                 generation seconds of each process (summed into the card)

Each `.npy` holds log-probabilities at temperature 1 (log_softmax of the teacher's logits; KL at any T
is unchanged, since softmax(z/T) is invariant to adding a constant to z):

* `num_classes <= 128` ("full"): float16 [n, C], every class.
* otherwise ("top_k"): a structured array [n] with fields `index` (uint16 [k]) and `value`
  (float16 [k]), the k largest log-probabilities. The rule for the rest of the mass: the probability
  the top k leave, 1 − Σ exp(value), is spread uniformly over the other C − k classes (each gets
  log((1 − Σ) / (C − k)), floored at 1e-8 / (C − k)). No class outside the top k gets more than the
  smallest one in it (their mean is at most the k-th probability), so the ranking is kept.

The files are plain `.npy` with fixed-size rows, so training reads them sequentially with
`tf.data.FixedLengthRecordDataset` (no Python in the input pipeline). Generation works unit by unit
(one view of one record file), each written to a temporary file and renamed into place, so a killed
run resumes at the first missing unit; processes split the units (unit u goes to process
u mod process_count) and the teacher's forward pass uses all local devices.

Training reads epoch e (one pass over the data) from view σ_c(e mod K), σ_c a seeded permutation of the
K views for cycle c = e // K: no view repeats before all K were used. Pairs (record, partner record,
target row) are shuffled before decoding, so the training order is free, and the stream is a pure
function of (seed, position): `start_step` resumes it exactly. Memory: that shuffle holds at most 1 GiB
of undecoded pairs (`stream.shuffle_buffer_plan`: ~4,900 pairs at ImageNet's ~110 KB records, where
its recipe's 250,000 would hold ~55 GB); with the view cache only example indices are shuffled.

Every view of a pass is needed twice (as an example's own view and as another's partner). When three
passes of views fit under a cap (1 GiB by default; `view_cache_plan` decides and says why), training
makes each view once per pass and mixes from memory: the same bits, about a quarter less host CPU per
mixed view here. With format 2 and every decoded image under a second cap (1 GiB; `decoded.py`), each
image is decoded once for the whole run and every pass's views are cut from memory; and when the run makes
more passes than there are views (the demo: 78 passes over 16 views) and all K·N views fit under the view
cache's cap (`every_view_plan`; the demo's take 0.6 GB), every view is made once for the whole run and a pass
is a gather and a mix (`train_dataset(steps=...)`; `funmatch distill` passes its steps). Generation decodes
every image once for all of its K views and partners the same way (the pass's view cache,
`generate(view_cache_max_bytes=...)`, is off by default there, as the teacher's forward pass dominates).

Per-batch mixup (`generate(mixup="per_batch")`, `funmatch targets --mixup per-batch`) stores the batches
of a run instead: one coefficient per batch and the batch neighbour as partner, as online function
matching mixes; `batches` says how, and what is the same as online and what is not.

The code: `store` (the card, its checks, the rows, the record files), `views` (`ViewMaker`, partners and
coefficients, the view cache, generation's views), `decoded` (the decoded-image cache), `batches` (per-batch
mixup stores), `generation` (`generate`) and `stream` (`train_dataset`);
everything public is re-exported here.
"""

from funmatch.distill.targets.batches import MIXUP_MODES, batch_coefficient, batch_views
from funmatch.distill.targets.generation import generate
from funmatch.distill.targets.store import (
    CARD_NAME,
    DEFAULT_TOP_K,
    FORMAT,
    FORMAT_1,
    FORMATS,
    FULL_MAX_CLASSES,
    MODES,
    REST_FLOOR,
    STORED_TEMPERATURE,
    _tf_topk_to_log_probs,  # noqa: F401 (tests)
    card_digest,
    check_card,
    identity_problems,
    dataset_card_sha256,
    decode_rows,
    encode_rows,
    file_sha256,
    fill_spec,
    load_card,
    log_softmax,
    partner_shifts,
    read_targets,
    record_files,
    row_dtype,
    storage_kind,
    store_serves_temperature,
    template_in_format,
    topk_to_log_probs,
    unit_path,
    view_spec,
)
from funmatch.distill.targets.stream import train_dataset, view_of_epoch
from funmatch.distill.targets.views import (
    VIEW_CACHE_MAX_BYTES,
    ViewMaker,
    _parse,  # noqa: F401 (tests)
    _records_from,  # noqa: F401 (tests)
    every_view_plan,
    folded_beta,
    partner_and_coefficient,
    view_cache_plan,
    views_dataset,
)

__all__ = [
    "CARD_NAME",
    "DEFAULT_TOP_K",
    "FORMAT",
    "FORMAT_1",
    "FORMATS",
    "FULL_MAX_CLASSES",
    "MIXUP_MODES",
    "MODES",
    "REST_FLOOR",
    "STORED_TEMPERATURE",
    "ViewMaker",
    "batch_coefficient",
    "batch_views",
    "card_digest",
    "check_card",
    "identity_problems",
    "dataset_card_sha256",
    "decode_rows",
    "encode_rows",
    "every_view_plan",
    "file_sha256",
    "fill_spec",
    "folded_beta",
    "generate",
    "load_card",
    "log_softmax",
    "partner_and_coefficient",
    "partner_shifts",
    "read_targets",
    "record_files",
    "row_dtype",
    "storage_kind",
    "store_serves_temperature",
    "template_in_format",
    "topk_to_log_probs",
    "train_dataset",
    "unit_path",
    "views_dataset",
    "view_cache_plan",
    "view_of_epoch",
    "view_spec",
    "VIEW_CACHE_MAX_BYTES",
]
