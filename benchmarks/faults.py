"""Fault table: bad inputs and faults thrown at the real command line, one row per case.

    python benchmarks/faults.py                     # the installed funmatch
    python benchmarks/faults.py --src /other/src    # another checkout's source tree (PYTHONPATH)
    python benchmarks/faults.py --only lock,nan     # cases whose name contains one of these words
    python benchmarks/faults.py --histogram         # also the class histogram of a first batch

Every case runs `python -m funmatch.cli ...` in a fresh temporary folder on tiny data made here
(4 classes of 32×32 JPEGs, a random tiny teacher) and prints `case | command | outcome | detail`.
Outcomes:

    ok            the right result (a resume, a fallback that says so, a file listed in the card)
    clear line    refused with one line that names the file / key / flag and the cause
    misleading    one line that names the wrong thing or hides the cause, or a refusal where the
                  command should have worked (a fallback, a resume, a corrected rerun)
    silent wrong  exit 0 (or a refusal missing) where the result is wrong
    traceback     a Python traceback reached the user
    hung          did not finish within its time limit

The closing line counts every outcome. Takes ~25 minutes with --jobs 6 on a busy 2-core machine
(most of it is TensorFlow start-up in ~45 processes), about an hour one case at a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import json
import os
import pathlib
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

PY = sys.executable
SMOKE = "eurosat:smoke=true"
CLASSES = ["c0", "c1", "c2", "c3"]


@dataclasses.dataclass
class Result:
    rc: int | None
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.text

    @property
    def last_line(self) -> str:
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


@dataclasses.dataclass
class Row:
    case: str
    command: str
    outcome: str
    detail: str


class Env:
    """The temp folder, environment and shared fixtures (data, teacher, a finished run)."""

    def __init__(self, root: pathlib.Path, src: str | None):
        self.root = root
        self.env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        self.env.pop("XLA_FLAGS", None)
        if src:
            self.env["PYTHONPATH"] = src + os.pathsep + self.env.get("PYTHONPATH", "")
        self._base_run = None

    def cli(self, *args, timeout=1800, env=None, fsize=None, background=False, cwd=None):
        """Runs `funmatch ARGS` (in the temp folder, or `cwd`); returns a Result (or the Popen with background=True)."""
        command = [PY, "-m", "funmatch.cli", *map(str, args)]

        def limit():
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        kwargs = dict(cwd=cwd or self.root, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                      preexec_fn=limit)
        if background:
            return subprocess.Popen(command, start_new_session=True, **kwargs)
        try:
            done = subprocess.run(command, timeout=timeout, **kwargs)
            return Result(done.returncode, done.stdout, done.stderr)
        except subprocess.TimeoutExpired as expired:
            return Result(None, expired.stdout or "", expired.stderr or "")

    def python(self, code: str, timeout=1800, env=None) -> Result:
        done = subprocess.run([PY, "-c", code], cwd=self.root, env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)
        return Result(done.returncode, done.stdout, done.stderr)

    # --- fixtures ----------------------------------------------------------------------------

    def images(self, folder: pathlib.Path, counts: dict[str, dict[str, int]], size=32) -> pathlib.Path:
        from PIL import Image

        rng = np.random.default_rng(len(str(folder)))
        for split, classes in counts.items():
            for class_name, count in classes.items():
                target = folder / split / class_name if split else folder / class_name
                target.mkdir(parents=True, exist_ok=True)
                for k in range(count):
                    base = np.full((size, size, 3), 40 * CLASSES.index(class_name) + 20, np.uint8)
                    noise = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
                    buffer = io.BytesIO()
                    Image.fromarray(base + noise).save(buffer, format="JPEG", quality=90)
                    (target / f"img_{k}.jpg").write_bytes(buffer.getvalue())
        return folder

    def source(self, name="src", train=12, validation=3, test=5) -> pathlib.Path:
        counts = {"train": dict.fromkeys(CLASSES, train), "test": dict.fromkeys(CLASSES, test)}
        if validation:
            counts["validation"] = dict.fromkeys(CLASSES, validation)
        return self.images(self.root / name, counts)

    def data(self) -> pathlib.Path:
        out = self.root / "data"
        if not out.exists():
            result = self.cli("prepare", f"folder:{self.source()}", "--out", out, "--examples-per-shard", "16",
                              "--no-progress")
            if result.rc != 0:
                raise SystemExit(f"setup: prepare failed:\n{result.text}")
        return out

    def teacher(self, name="teacher.keras", seed=0) -> pathlib.Path:
        path = self.root / name
        code = (
            "import numpy as np; from funmatch import models\n"
            "m = models.create('tiny_cnn_w8', num_classes=4, resolution=64)\n"
            f"rng = np.random.default_rng({seed})\n"
            "[v.assign(rng.normal(0, 0.3, v.shape).astype('float32')) for v in m.trainable_variables]\n"
            f"m.save({str(path)!r})\n"
        )
        result = self.python(code)
        if result.rc != 0:
            raise SystemExit(f"setup: teacher failed:\n{result.text}")
        return path

    def distill_args(self, workdir, config=SMOKE, data=None, teacher=None):
        return ["distill", "--config", config, "--data", data or self.data(), "--teacher", teacher or self.base_teacher,
                "--workdir", workdir, "--no-progress"]

    def base_run(self) -> pathlib.Path:
        """A finished smoke distillation (4 steps, checkpoints at 2 and 4) to copy and damage."""
        if self._base_run is None:
            self.base_teacher = self.teacher()
            workdir = self.root / "base_run"
            result = self.cli(*self.distill_args(workdir, f"{SMOKE},total_steps=4"))
            if result.rc != 0:
                raise SystemExit(f"setup: base distill failed:\n{result.text}")
            self._base_run = workdir
        return self._base_run

    def copy_run(self, name: str) -> pathlib.Path:
        target = self.root / name
        shutil.copytree(self.base_run(), target)
        return target


def short(args) -> str:
    text = " ".join(str(a) for a in args)
    text = re.sub(r"/tmp/[^ ]*?/(?=[^/ ]+)", "", text)
    return text.replace(PY, "python")


def expect_error(result: Result, pattern: str) -> tuple[str, str]:
    """A refusal is expected: its last line must match `pattern`."""
    if result.rc is None:
        return "hung", ""
    if result.traceback:
        return "traceback", _exception_line(result)
    if result.rc == 0:
        return "silent wrong", "exit 0"
    line = result.last_line
    return ("clear line" if re.search(pattern, line, re.I) else "misleading"), line


def expect_success(result: Result, check) -> tuple[str, str]:
    """Success is expected; `check()` returns (ok, detail)."""
    if result.rc is None:
        return "hung", ""
    if result.traceback:
        return "traceback", _exception_line(result)
    if result.rc != 0:  # refused where it should have worked (a fallback, a resume, a corrected rerun)
        return "misleading", "refused: " + result.last_line
    ok, detail = check()
    return ("ok" if ok else "silent wrong"), detail


def _exception_line(result: Result) -> str:
    lines = [line for line in result.text.splitlines() if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (lines[-1] if lines else result.last_line)[:160]


# ------------------------------------------------------------------------------------------------
# Cases. Each returns (command args, (outcome, detail)).


def case_recipe_n_vs_card(env: Env):
    args = env.distill_args(env.root / "w_n", "flowers102_cpu:batch=8,epochs=0.05,warmup_steps=1,checkpoint_every=3,"
                            "eval_every=3,eval_batch_size=8,eval_max_examples=8,shuffle_buffer=16", teacher=env.teacher("t_n.keras"))
    return args, expect_error(env.cli(*args), r"num_train_examples")


def _edited_data(env: Env, name: str) -> pathlib.Path:
    target = env.root / name
    shutil.copytree(env.data(), target)
    return target


def case_card_count_edited(env: Env):
    data = _edited_data(env, "data_edited")
    card = json.loads((data / "dataset.json").read_text())
    card["splits"]["train"]["num_examples"] = 40
    (data / "dataset.json").write_text(json.dumps(card))
    env.base_run()
    args = env.distill_args(env.root / "w_edit", data=data)
    return args, expect_error(env.cli(*args), r"dataset\.json|record")


def case_truncated_shard(env: Env):
    data = _edited_data(env, "data_truncated")
    shard = sorted(data.glob("train-*.tfrecord"))[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    env.base_run()
    args = env.distill_args(env.root / "w_trunc", data=data)
    return args, expect_error(env.cli(*args), re.escape(shard.name))


def _prepare(env: Env, source: pathlib.Path, out: str, *extra):
    args = ["prepare", f"folder:{source}", "--out", env.root / out, "--no-progress", *extra]
    return args, env.cli(*args)


def case_val_and_validation(env: Env):
    source = env.source("src_valval")
    env.images(source, {"val": dict.fromkeys(CLASSES, 2)})
    args, result = _prepare(env, source, "out_valval")
    return args, expect_error(result, r"val.*validation|validation.*val")


def case_train_and_Train(env: Env):
    source = env.source("src_Train")
    env.images(source, {"Train": dict.fromkeys(CLASSES, 2)})
    args, result = _prepare(env, source, "out_Train")
    return args, expect_error(result, r"Train.*train|train.*Train")


def _listed_in_card(env: Env, name: str, make_file):
    source = env.source(f"src_{name}")
    make_file(source)
    args, result = _prepare(env, source, f"out_{name}")

    def check():
        card = env.root / f"out_{name}" / "dataset.json"
        listed = card.exists() and json.dumps(json.loads(card.read_text()).get("ignored", [])).count("/") > 0
        return listed, "listed in dataset.json" if listed else "not in the card: silently left out"

    return args, expect_success(result, check)


def case_dangling_symlink(env: Env):
    return _listed_in_card(env, "link", lambda source: (source / "train" / "c1" / "gone.jpg").symlink_to(
        env.root / "does_not_exist.jpg"))


def case_other_file(env: Env):
    return _listed_in_card(env, "other", lambda source: (source / "train" / "c2" / "notes.txt").write_text("x"))


def case_skip_bad_empties_class(env: Env):
    source = env.source("src_badclass")
    for path in (source / "test" / "c3").iterdir():
        path.write_bytes(b"not a jpeg")
    args, result = _prepare(env, source, "out_badclass", "--skip-bad")
    return args, expect_error(result, r"c3")


def case_no_validation_split(env: Env):
    source = env.source("src_noval", validation=0)
    _prepare(env, source, "data_noval")
    env.base_run()
    args = env.distill_args(env.root / "w_noval", data=env.root / "data_noval")
    return args, expect_error(env.cli(*args), r"--val-fraction")


def case_teacher_replaced(env: Env):
    env.base_run()
    teacher = env.teacher("t_replaced.keras", seed=1)
    args = env.distill_args(env.root / "w_replaced", teacher=teacher)
    first = env.cli(*args)
    if first.rc != 0:
        return args, ("traceback" if first.traceback else "clear line", "first run failed: " + first.last_line)
    env.teacher("t_replaced.keras", seed=7)  # another teacher at the same path
    return args, expect_error(env.cli(*args), r"teacher")


def case_evaluate_view(env: Env):
    workdir = env.root / "w_teacher"
    first = env.cli("teacher", "--config", SMOKE, "--data", env.data(), "--workdir", workdir, "--no-progress")
    if first.rc != 0:
        return ["teacher", "..."], ("traceback" if first.traceback else "clear line", first.last_line)
    report = env.root / "eval_view.json"
    args = ["evaluate", "--student", workdir / "teacher.keras", "--data", env.data(), "--no-latency", "--json", report]
    result = env.cli(*args)

    def check():
        spec = json.loads(report.read_text())["student"]["eval_pp"]
        # The eurosat recipe evaluates at resize_small(64)|central_crop(64).
        return "resize_small(64)" in spec, re.search(r"resize_small\(\d+\)", spec).group(0) + " (training: resize_small(64))"

    return args, expect_success(result, check)


def case_teacher_warmup_key(env: Env):
    args = ["teacher", "--config", f"{SMOKE},teacher_warmup_steps=-1", "--data", env.data(), "--workdir",
            env.root / "w_warm", "--no-progress"]
    return args, expect_error(env.cli(*args), r"teacher_warmup_steps")


def case_readonly_workdir(env: Env):
    env.base_run()
    args = env.distill_args("/sys/funmatch_faults_run")
    return args, expect_error(env.cli(*args), r"/sys/funmatch_faults_run")


def case_workdir_under_file(env: Env):
    env.base_run()
    (env.root / "a_file").write_text("x")
    args = env.distill_args(env.root / "a_file" / "run")
    return args, expect_error(env.cli(*args), r"a_file")


def case_disk_full_json(env: Env):
    run = env.base_run()
    args = ["evaluate", "--student", run / "student.keras", "--data", env.data(), "--no-latency", "--json", "/dev/full"]
    return args, expect_error(env.cli(*args), r"/dev/full")


def case_disk_full_checkpoint(env: Env):
    env.base_run()
    workdir = env.root / "w_full"
    args = env.distill_args(workdir)
    result = env.cli(*args, fsize=300_000)
    outcome = expect_error(result, r"ckpt|checkpoint")
    return ["(file size limit 300 kB)", *args], outcome


def case_disk_full_prepare(env: Env):
    args = ["prepare", f"folder:{env.source('src_full')}", "--out", env.root / "out_full", "--no-progress"]
    result = env.cli(*args, fsize=8_000)
    return ["(file size limit 8 kB)", *args], expect_error(result, r"out_full|tfrecord")


def _rerun(env: Env, workdir: pathlib.Path):
    for name in ("student.keras", "metrics.json"):
        (workdir / name).unlink(missing_ok=True)
    args = env.distill_args(workdir, f"{SMOKE},total_steps=4")
    return args, env.cli(*args)


def _fell_back(result: Result, workdir: pathlib.Path):
    said = bool(re.search(r"damaged|falling back|fell back", result.text, re.I))
    done = (workdir / "student.keras").exists()
    return said and done, ("resumed from the previous checkpoint and said so" if said and done
                           else f"said so: {said}, finished: {done}")


def case_truncated_checkpoint(env: Env):
    workdir = env.copy_run("w_ckpt_trunc")
    state = workdir / "checkpoints" / "ckpt-000000004" / "state.npz"
    state.write_bytes(state.read_bytes()[:100])
    args, result = _rerun(env, workdir)
    return args, expect_success(result, lambda: _fell_back(result, workdir))


def case_damaged_meta(env: Env):
    workdir = env.copy_run("w_ckpt_meta")
    (workdir / "checkpoints" / "ckpt-000000004" / "meta.json").write_text('{"step": 4, "lay')
    args, result = _rerun(env, workdir)
    return args, expect_success(result, lambda: _fell_back(result, workdir))


def case_all_checkpoints_damaged(env: Env):
    workdir = env.copy_run("w_ckpt_all")
    for state in (workdir / "checkpoints").glob("ckpt-*/state.npz"):
        state.write_bytes(b"PK\x03\x04garbage")
    args, result = _rerun(env, workdir)
    return args, expect_error(result, r"ckpt-|checkpoint")


def case_damaged_logits_cache(env: Env):
    workdir = env.copy_run("w_cache")
    caches = sorted(workdir.rglob("teacher*logits*.npy"))
    for cache in caches:
        cache.write_bytes(cache.read_bytes()[:60])
    args, result = _rerun(env, workdir)
    return args, expect_success(result, lambda: ((workdir / "metrics.json").exists(), f"{len(caches)} cache file(s) damaged; run finished"))


def case_random_bytes_keras(env: Env):
    path = env.root / "random.keras"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    args = ["evaluate", "--student", path, "--data", env.data(), "--no-latency"]
    return args, expect_error(env.cli(*args), r"random\.keras: not a \.keras file")


def case_truncated_teacher(env: Env):
    env.base_run()
    path = env.root / "truncated.keras"
    path.write_bytes(env.base_teacher.read_bytes()[:2000])
    args = env.distill_args(env.root / "w_badteacher", teacher=path)
    return args, expect_error(env.cli(*args), r"truncated\.keras")


def case_os_system_activation(env: Env):
    path = env.root / "evil.keras"
    code = (
        "import json, zipfile, keras\n"
        "x = keras.Input((4,)); m = keras.Model(x, keras.layers.Dense(2, activation='relu')(x))\n"
        f"m.save({str(env.root / 'plain.keras')!r})\n"
        f"z = zipfile.ZipFile({str(env.root / 'plain.keras')!r}); files = {{n: z.read(n) for n in z.namelist()}}\n"
        "text = files['config.json'].decode().replace('\"activation\": \"relu\"', "
        "'\"activation\": {\"module\": \"os\", \"class_name\": \"function\", \"config\": \"system\", \"registered_name\": \"function\"}')\n"
        "files['config.json'] = text.encode()\n"
        f"out = zipfile.ZipFile({str(path)!r}, 'w'); [out.writestr(n, b) for n, b in files.items()]; out.close()\n"
    )
    made = env.python(code)
    if made.rc != 0:
        raise SystemExit(made.text)
    args = ["evaluate", "--student", path, "--data", env.data(), "--no-latency"]
    return args, expect_error(env.cli(*args), r"os\.system|'system'")


def case_damaged_card(env: Env):
    data = _edited_data(env, "data_badcard")
    (data / "dataset.json").write_text('{"name": "x", ')
    env.base_run()
    args = env.distill_args(env.root / "w_badcard", data=data)
    return args, expect_error(env.cli(*args), r"dataset\.json")


def _long_args(env: Env, workdir):
    return env.distill_args(workdir, f"{SMOKE},total_steps=100000,checkpoint_every=100,eval_every=100000")


def _wait_for(path: pathlib.Path, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if path.exists():
            return True
        time.sleep(0.5)
    return False


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def case_second_run_same_workdir(env: Env):
    env.base_run()
    workdir = env.root / "w_lock"
    args = _long_args(env, workdir)
    first = env.cli(*args, background=True)
    try:
        if not _wait_for(workdir / "checkpoints" / "ckpt-000000100", 1500):
            return args, ("hung", "the first run did not reach step 100")
        # Refused at start-up, or training alongside the first (their records interleave) until stopped.
        result = env.cli(*args, timeout=1500)
        if result.rc is None or result.rc == 0:
            return args, ("silent wrong", "the second run trained alongside the first")
        return args, expect_error(result, r"in use|running|lock")
    finally:
        _stop(first)


def case_stale_lock(env: Env):
    env.base_run()
    workdir = env.root / "w_stale"
    args = _long_args(env, workdir)
    first = env.cli(*args, background=True)
    reached = _wait_for(workdir / "checkpoints" / "ckpt-000000100", 1500)
    _stop(first)  # SIGKILL: no clean-up ran
    if not reached:
        return args, ("hung", "the first run did not reach step 100")
    args = _long_args(env, workdir)  # the same command: it must resume, not be refused
    second = env.cli(*args, background=True)
    try:
        resumed = _wait_for(workdir / "checkpoints" / "ckpt-000000300", 1500)
        return args, (("ok" if resumed else "clear line" if second.poll() else "hung"),
                      "resumed after SIGKILL" if resumed else (second.stderr.read() if second.poll() is not None else "")[-160:])
    finally:
        _stop(second)


def case_metrics_after_kill_window(env: Env):
    workdir = env.copy_run("w_metrics")
    shutil.rmtree(workdir / "checkpoints" / "ckpt-000000004")  # killed after the record, before the checkpoint
    args, result = _rerun(env, workdir)

    def check():
        steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        return len(steps) == len(set(steps)), f"metrics.jsonl steps {steps}"

    return args, expect_success(result, check)


def case_killed_prepare(env: Env):
    source = env.source("src_kill", train=150)
    out = env.root / "out_kill"
    args = ["prepare", f"folder:{source}", "--out", out, "--no-progress", "--workers", "1"]
    first = env.cli(*args, background=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(env.root.glob(".out_kill.partial-*/*")):
        time.sleep(0.1)
    _stop(first)
    result = env.cli(*args)

    def check():
        left = [p.name for p in env.root.glob(".out_kill*")]
        return not left, f"left behind: {left}" if left else "no hidden partial folders"

    return args, expect_success(result, check)


def _config_case(env: Env, name: str, override: str, pattern: str):
    env.base_run()
    args = env.distill_args(env.root / name, f"{SMOKE},{override}")
    return args, expect_error(env.cli(*args), pattern)


def case_checkpoint_every_zero(env: Env):
    return _config_case(env, "w_ck0", "checkpoint_every=0", r"checkpoint_every")


def case_checkpoint_every_negative(env: Env):
    return _config_case(env, "w_ckneg", "checkpoint_every=-1", r"checkpoint_every")


def case_lr_nan(env: Env):
    return _config_case(env, "w_nan", "lr=nan", r"(?<!base_)learning_rate|\blr\b")


def case_invalid_then_corrected(env: Env):
    env.base_run()
    workdir = env.root / "w_fix"
    env.cli(*env.distill_args(workdir, f"{SMOKE},lr=nan"))
    args = env.distill_args(workdir, f"{SMOKE},lr=0.001")
    result = env.cli(*args)
    return args, expect_success(result, lambda: ((workdir / "student.keras").exists(), "the corrected rerun trained"))


def case_divergence(env: Env):
    return _config_case(env, "w_div", "lr=1e30", r"diverg|step \d+")


def case_nan_npz(env: Env):
    """An official-layout BiT checkpoint (big_transfer keys, BiT-R14x0.25) with one NaN weight."""
    npz = env.root / "nan_bit.npz"
    tests = pathlib.Path(__file__).resolve().parents[1] / "tests" / "models"
    code = (
        f"import sys, numpy as np; sys.path.insert(0, {str(tests)!r})\n"
        "from model_helpers import big_transfer_arrays\n"
        "arrays = big_transfer_arrays((1, 1, 1, 1), 0.25, 4)\n"
        "arrays['resnet/root_block/standardized_conv2d/kernel'][0, 0, 0, 0] = np.nan\n"
        f"np.savez({str(npz)!r}, **arrays)\n"
    )
    made = env.python(code)
    if made.rc != 0:
        return ["models", "convert"], ("case error", made.last_line[:120])
    args = ["models", "convert", "--npz", npz, "--arch", "bit_r14x0.25", "--num-classes", "4", "--out",
            env.root / "nan_bit.keras"]
    return args, expect_error(env.cli(*args), r"nan|finite")


def _jax_env(env: Env):
    return dict(env.env, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")


def case_distill_two_jax_devices(env: Env):
    env.base_run()
    workdir = env.root / "w_jax2"
    args = env.distill_args(workdir)
    result = env.cli(*args, env=_jax_env(env))
    return ["KERAS_BACKEND=jax (2 devices)", *args], expect_success(
        result, lambda: ((workdir / "student.keras").exists(), "trained on 2 devices"))


def case_teacher_two_jax_devices(env: Env):
    workdir = env.root / "w_jax2_teacher"
    args = ["teacher", "--config", SMOKE, "--data", env.data(), "--workdir", workdir, "--no-progress"]
    result = env.cli(*args, env=_jax_env(env))
    return ["KERAS_BACKEND=jax (2 devices)", *args], expect_success(
        result, lambda: ((workdir / "teacher.keras").exists(), "trained on 2 devices"))


def case_label_run_name(env: Env):
    code = (
        "from funmatch.configs import get_config\n"
        "try:\n    from funmatch.training.labels import train_teacher\n"
        "except ImportError:\n    from funmatch.distill.teacher import train_teacher\n"
        f"train_teacher(get_config({SMOKE!r}), {str(env.data())!r}, {str(env.root / 'w_labels')!r}, output_name='student')\n"
    )
    result = env.python(code)
    line = next((l for l in result.out.splitlines() if l.startswith("funmatch") and "accuracy" in l), result.last_line)
    if result.rc != 0:
        return ["python -c train_teacher(output_name='student')"], ("traceback" if result.traceback else "clear line", line)
    wrong = "funmatch teacher (student)" in line
    return ["train_teacher(..., output_name='student') (the demo's label run)"], (
        "misleading" if wrong else "ok", line[:120])


# --- overwrite guards and prepare's sources (nothing funmatch did not write is ever deleted) ---------------


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _untouched(result: Result, folder: pathlib.Path, before: dict[str, bytes], pattern: str) -> tuple[str, str]:
    """A refusal that leaves `folder` exactly as it was."""
    outcome, detail = expect_error(result, pattern)
    if not folder.exists() or _snapshot(folder) != before:
        return "silent wrong", f"{folder.name} changed: files lost or replaced ({detail})"
    return outcome, detail


def case_export_overwrite_cwd(env: Env):
    home = env.root / "export_home"
    home.mkdir(exist_ok=True)
    shutil.copy(env.teacher(), home / "student.keras")
    (home / "notes.txt").write_text("keep")
    before = _snapshot(home)
    args = ["export", "student.keras", "--format", "savedmodel", "--out", ".", "--overwrite"]
    return ["(cd home)", *args], _untouched(env.cli(*args, cwd=home), home, before, r"--out \.: is the current folder")


def _prepare_guard(env: Env, name: str, out_of, pattern: str, cwd_of=None):
    source = env.source(f"{name}_home/src")  # the source and a file beside it, in a folder of their own
    (source.parent / "notes.txt").write_text("keep")
    before = _snapshot(source.parent)
    out = out_of(source)
    args = ["prepare", f"folder:{source}", "--out", out, "--overwrite", "--no-progress"]
    result = env.cli(*args, cwd=cwd_of(source) if cwd_of else None)
    return args, _untouched(result, source.parent, before, pattern)


def case_prepare_out_is_source(env: Env):
    return _prepare_guard(env, "guard_same", lambda source: source, r"is the input SOURCE")


def case_prepare_out_is_source_parent(env: Env):
    return _prepare_guard(env, "guard_parent", lambda source: source.parent, r"holds the input SOURCE")


def case_prepare_out_is_cwd(env: Env):
    return _prepare_guard(env, "guard_cwd", lambda source: ".", r"is the current folder", cwd_of=lambda source: source)


def case_prepare_overwrite_foreign(env: Env):
    source = env.source("src_guard_foreign")
    foreign = env.root / "someones_folder"
    foreign.mkdir(exist_ok=True)
    (foreign / "thesis.tex").write_text("years of work")
    before = _snapshot(foreign)
    args = ["prepare", f"folder:{source}", "--out", foreign, "--overwrite", "--no-progress"]
    return args, _untouched(env.cli(*args), foreign, before, r"funmatch did not write")


def case_prepare_link_out_of_source(env: Env):
    outside = env.images(env.root / "outside_images", {"": {"c0": 1}})
    source = env.source("src_outlink")
    for split in ("train", "test"):
        (source / split / "c0" / "outside.jpg").symlink_to(outside / "c0" / "img_0.jpg")
    args, result = _prepare(env, source, "out_outlink")

    def check():
        card = json.loads((env.root / "out_outlink" / "dataset.json").read_text())
        counts = {split: card["splits"][split]["num_examples"] for split in ("train", "test")}
        skipped = "link out of the source" in json.dumps(card.get("ignored", []))
        return skipped and counts == {"train": 48, "test": 20}, f"not followed, listed in the card: {skipped}; {counts}"

    return args, expect_success(result, check)


def case_prepare_val_fraction_too_large(env: Env):
    source = env.images(env.root / "src_split_val", {"train": dict.fromkeys(CLASSES, 3)})
    args, result = _prepare(env, source, "out_val99", "--val-fraction", "0.99")
    outcome, detail = expect_error(result, r"too few images.*--val-fraction 0\.99")
    named = detail.split(": ")[-2].split()[-1] if ": " in detail else ""
    if outcome == "clear line" and not os.path.isdir(named):
        return args, ("misleading", f"names {named}, which does not exist")
    return args, (outcome, detail)


def case_prepare_tfrecord_not_records(env: Env):
    folder = env.root / "confs"
    folder.mkdir(exist_ok=True)
    (folder / "a.conf").write_text("key = value\n" * 30)
    args = ["prepare", f"tfrecord:{folder}/*.conf", "--out", env.root / "out_conf", "--no-progress"]
    return args, expect_error(env.cli(*args), r"a\.conf is not a TFRecord file")
# --- runtime: the launch and the run's precision (issue 23) ----------------------------------------------


def case_unreachable_coordinator(env: Env):
    """A worker whose --coordinator nobody answers (the default wait, FUNMATCH_COORDINATOR_TIMEOUT unset)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    teacher = env.teacher("coordinator_teacher.keras")
    args = [*env.distill_args(env.root / "w_coordinator", teacher=teacher), "--coordinator", f"127.0.0.1:{port}",
            "--num-processes", "2", "--process-id", "1"]
    result = env.cli(*args, timeout=300, env=dict(env.env, KERAS_BACKEND="jax"))  # several processes: JAX
    return ["KERAS_BACKEND=jax", *args], expect_error(result, rf"--coordinator 127\.0\.0\.1:{port}.*within \d+ s")


def case_unknown_backend(env: Env):
    args = ["labels", "--config", SMOKE, "--data", env.data(), "--workdir", env.root / "w_backend", "--no-progress"]
    result = env.cli(*args, env=dict(env.env, KERAS_BACKEND="nonsense"))
    return ["KERAS_BACKEND=nonsense", *args], expect_error(result, r"KERAS_BACKEND=nonsense: funmatch runs on")


def case_resume_other_precision(env: Env):
    workdir = env.copy_run("w_precision")  # a float32 run (auto on CPU)
    args = [*env.distill_args(workdir, f"{SMOKE},total_steps=6"), "--precision", "bfloat16"]
    return args, expect_error(env.cli(*args), r"computed in float32, this one computes in bfloat16.*--precision float32")


def case_nan_teacher(env: Env):
    teacher = env.teacher("nan_teacher.keras")
    poison = (f"from funmatch import models\nm = models.load({str(teacher)!r})\nimport numpy as np\n"
              "v = m.trainable_variables[0]; w = np.array(v.numpy()); w.flat[0] = np.nan; v.assign(w)\n"
              f"m.save({str(teacher)!r})\n")
    made = env.python(poison)
    if made.rc != 0:
        return ["distill --teacher nan_teacher.keras"], ("case error", made.last_line[:120])
    env.base_run()
    args = env.distill_args(env.root / "w_nan_teacher", teacher=teacher)
    return args, expect_error(env.cli(*args), r"--teacher .*nan_teacher\.keras: the teacher's weight .* NaN")


RUNTIME_CASES = [
    ("unreachable --coordinator", case_unreachable_coordinator),
    ("KERAS_BACKEND=nonsense", case_unknown_backend),
    ("resume in another --precision", case_resume_other_precision),
    ("teacher with a NaN weight", case_nan_teacher),
]
# --- end of the runtime rows -------------------------------------------------------------------------------
# --- Stored targets that know what they are (issue 23: card digest, the run's resolution; issue 22: top-k T) ---


def _targets(env: Env, out: str, *extra, teacher=None, config=SMOKE):
    args = ["targets", "--teacher", teacher or env.base_teacher, "--data", env.data(), "--config", config,
            "--views", "1", "--out", env.root / out, "--no-progress", *extra]
    return args, env.cli(*args)


def _edited_targets_card(env: Env, name: str, edit):
    env.base_run()
    made_args, made = _targets(env, f"targets_{name}")
    if made.rc != 0:
        return made_args, ("traceback" if made.traceback else "misleading", "targets failed: " + made.last_line)
    card_path = env.root / f"targets_{name}" / "targets.json"
    card_path.write_text(json.dumps(edit(json.loads(card_path.read_text()))))
    args = [*env.distill_args(env.root / f"w_{name}"), "--targets", env.root / f"targets_{name}"]
    return args, expect_error(env.cli(*args), r"targets\.json: .*changed after the targets were computed")


def case_negated_logits_cache(env: Env):
    workdir = env.copy_run("w_negated")
    caches = sorted(workdir.rglob("teacher*logits*.npy"))
    for cache in caches:
        np.save(cache, -np.load(cache))
    args, result = _rerun(env, workdir)
    return args, expect_success(result, lambda: ("digest does not match" in result.err and (workdir / "metrics.json").exists(),
                                                 f"{len(caches)} cache file(s) negated; said so and recomputed: "
                                                 f"{'digest does not match' in result.err}"))


def case_targets_card_seed_edited(env: Env):
    return _edited_targets_card(env, "seed", lambda card: {**card, "seed": card["seed"] + 1})


def case_targets_card_partner_shifts_edited(env: Env):
    return _edited_targets_card(env, "shifts", lambda card: {**card, "partner_shifts": [s + 1 for s in card["partner_shifts"]]})


def case_targets_teacher_at_another_resolution(env: Env):
    """A teacher made at 96 px, a recipe at 64 px: the store is made at the run's 64 px and then fits the run."""
    env.base_run()
    teacher = env.root / "t96.keras"
    made = env.python("from funmatch import models\n"
                      f"models.create('tiny_cnn_w8', num_classes=4, resolution=96).save({str(teacher)!r})\n")
    if made.rc != 0:
        return ["(teacher at 96 px)"], ("case error", made.last_line)
    _, stored = _targets(env, "targets_96", teacher=teacher)
    args = [*env.distill_args(env.root / "w_96", f"{SMOKE},total_steps=2", teacher=teacher), "--targets",
            env.root / "targets_96"]
    if stored.rc != 0:
        return args, expect_error(stored, r"resolution")
    result = env.cli(*args)
    card = json.loads((env.root / "targets_96" / "targets.json").read_text())
    return args, expect_success(result, lambda: (card["teacher"]["resolution"] == 64,
                                                 f"store at {card['teacher']['resolution']} px, the run's 64 px"))


def case_targets_top_k_other_temperature(env: Env):
    env.base_run()
    made_args, made = _targets(env, "targets_top2", "--top-k", "2")
    if made.rc != 0:
        return made_args, ("traceback" if made.traceback else "misleading", "targets failed: " + made.last_line)
    args = [*env.distill_args(env.root / "w_top2", f"{SMOKE},temperature=2"), "--targets", env.root / "targets_top2"]
    return args, expect_error(env.cli(*args), r"top-2 targets are exact only at temperature 1, the run's is 2")


CASES = [
    ("recipe N differs from the card", case_recipe_n_vs_card),
    ("card count hand-edited", case_card_count_edited),
    ("truncated train shard", case_truncated_shard),
    ("val/ and validation/ folders", case_val_and_validation),
    ("Train/ and train/ folders", case_train_and_Train),
    ("dangling symlink in a class folder", case_dangling_symlink),
    ("non-image file in a class folder", case_other_file),
    ("--skip-bad empties a class", case_skip_bad_empties_class),
    ("no validation split", case_no_validation_split),
    ("teacher replaced at the same path", case_teacher_replaced),
    ("evaluate without --config (eval view)", case_evaluate_view),
    ("invalid teacher_warmup_steps", case_teacher_warmup_key),
    ("workdir on a read-only file system", case_readonly_workdir),
    ("workdir under a regular file", case_workdir_under_file),
    ("disk full writing the evaluate report", case_disk_full_json),
    ("disk full writing a checkpoint", case_disk_full_checkpoint),
    ("disk full while prepare writes shards", case_disk_full_prepare),
    ("truncated latest checkpoint (state.npz)", case_truncated_checkpoint),
    ("damaged latest checkpoint (meta.json)", case_damaged_meta),
    ("every checkpoint damaged", case_all_checkpoints_damaged),
    ("damaged teacher-logits cache", case_damaged_logits_cache),
    ("random bytes as a .keras", case_random_bytes_keras),
    ("truncated teacher .keras", case_truncated_teacher),
    (".keras asking for os.system", case_os_system_activation),
    ("damaged dataset.json", case_damaged_card),
    ("second run on a running workdir", case_second_run_same_workdir),
    ("rerun after SIGKILL (stale lock)", case_stale_lock),
    ("kill between metrics record and checkpoint", case_metrics_after_kill_window),
    ("prepare killed, then rerun", case_killed_prepare),
    ("checkpoint_every=0", case_checkpoint_every_zero),
    ("checkpoint_every=-1", case_checkpoint_every_negative),
    ("lr=nan", case_lr_nan),
    ("invalid config, then corrected rerun", case_invalid_then_corrected),
    ("lr=1e30 (divergence)", case_divergence),
    ("BiT .npz with a NaN weight", case_nan_npz),
    ("distill on 2 JAX devices", case_distill_two_jax_devices),
    ("teacher on 2 JAX devices", case_teacher_two_jax_devices),
    ("label run's summary line", case_label_run_name),
    ("export --out . --overwrite", case_export_overwrite_cwd),
    ("prepare --out SRC --overwrite", case_prepare_out_is_source),
    ("prepare --out (SRC's parent) --overwrite", case_prepare_out_is_source_parent),
    ("prepare --out . (in SRC) --overwrite", case_prepare_out_is_cwd),
    ("prepare --overwrite on someone's folder", case_prepare_overwrite_foreign),
    ("prepare: a link out of the source", case_prepare_link_out_of_source),
    ("prepare --val-fraction 0.99", case_prepare_val_fraction_too_large),
    ("prepare 'tfrecord:DIR/*.conf'", case_prepare_tfrecord_not_records),
]

# --- The distributed search (issue 23) and tune's stored-target checks (issue 22): one block. -------------

_ORACLE_CLIENT = """
import json, os, sys, grpc
from keras_tuner.src import protos
from keras_tuner.src.engine.trial import Trial
address, token_path, holder, reporter = sys.argv[1:5]
channel = grpc.insecure_channel(address)
grpc.channel_ready_future(channel).result(timeout=900)
token = open(token_path).read().strip() if os.path.exists(token_path) else None  # written before the chief serves
service, stub, out = protos.get_service(), protos.get_service_grpc().OracleStub(channel), {}
def md(tuner):
    return (("funmatch-token", token), ("funmatch-tuner-id", tuner)) if token else None
def call(name, fn):
    try:
        value = fn(); out[name] = "accepted"; return value
    except grpc.RpcError as e:
        out[name] = e.code().name
trial = call("CreateTrial", lambda: Trial.from_proto(stub.CreateTrial(
    service.CreateTrialRequest(tuner_id=holder), timeout=60, metadata=md(holder)).trial))
if trial is not None and trial.status == "RUNNING":
    call("UpdateTrial", lambda: stub.UpdateTrial(service.UpdateTrialRequest(
        trial_id=trial.trial_id, metrics={"val_accuracy": 0.999}), timeout=60, metadata=md(reporter)))
    trial.status = "COMPLETED"
    call("EndTrial", lambda: stub.EndTrial(service.EndTrialRequest(trial=trial.to_proto()), timeout=60,
                                           metadata=md(reporter)))
    out["score"] = call("GetTrial", lambda: Trial.from_proto(stub.GetTrial(service.GetTrialRequest(
        trial_id=trial.trial_id), timeout=60, metadata=md(holder)).trial).score)
print(json.dumps(out))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _oracle_calls(env: Env, name: str, holder: str, reporter: str, with_token: bool):
    """A chief (`tune --role chief` on 127.0.0.1), then keras-tuner's own stubs (with the token the chief wrote,
    or none): `holder` takes a trial and `reporter` reports val_accuracy=0.999 for it. Returns (chief args,
    the calls' outcomes, the chief's output)."""
    search_dir = env.root / name
    address = f"127.0.0.1:{_free_port()}"
    args = ["tune", "--role", "chief", "--chief", address, "--config", SMOKE, "--dir", search_dir,
            "--space", "lr=0.001,0.01", "--axes", "lr", "--max-trials", "2"]
    chief = env.cli(*args, background=True)
    try:
        token = search_dir / "tune-token" if with_token else env.root / "no-such-token"
        done = subprocess.run([PY, "-c", _ORACLE_CLIENT, address, str(token), holder, reporter],
                              cwd=env.root, env=env.env, capture_output=True, text=True, timeout=1200)
    finally:
        _stop(chief)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    calls = json.loads(lines[-1]) if lines else {"client": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return args, calls, chief.stdout.read()


def case_tune_rogue_without_token(env: Env):
    args, calls, chief_out = _oracle_calls(env, "tune_rogue", "rogue", "rogue", with_token=False)
    shown = ", ".join(f"{k} {v}" for k, v in calls.items())
    if (calls.get("score") or 0) > 0.99:
        return args, ("silent wrong", f"a client without credentials: {shown}")
    refused = calls.get("CreateTrial") == "UNAUTHENTICATED" and "refused CreateTrial" in chief_out
    return args, (("ok" if refused else "silent wrong"), f"keras-tuner stubs, no token: {shown}")


def case_tune_stolen_trial(env: Env):
    args, calls, _ = _oracle_calls(env, "tune_stolen", "w1", "rogue", with_token=True)
    shown = ", ".join(f"{k} {v}" for k, v in calls.items())
    refused = calls.get("UpdateTrial") == calls.get("EndTrial") == "PERMISSION_DENIED" and calls.get("score") is None
    return args, (("ok" if refused else "silent wrong"), f"w1 holds the trial, rogue (with the token) reports: {shown}")


_HOSTILE_CHIEF = """
import sys, time, grpc
from concurrent import futures
from keras_tuner.src import protos
from keras_tuner.src.engine import hyperparameters, trial
class Servicer(protos.get_service_grpc().OracleServicer):
    def CreateTrial(self, request, context):
        hp = hyperparameters.HyperParameters(); hp.Fixed("learning_rate", 0.001)
        return protos.get_service().CreateTrialResponse(trial=trial.Trial(hp, trial_id="../../x", status="RUNNING").to_proto())
    def GetTrial(self, request, context):
        hp = hyperparameters.HyperParameters(); hp.Fixed("learning_rate", 0.001)
        return protos.get_service().GetTrialResponse(trial=trial.Trial(hp, trial_id=request.trial_id, status="RUNNING").to_proto())
server = grpc.server(futures.ThreadPoolExecutor(2))
protos.get_service_grpc().add_OracleServicer_to_server(Servicer(), server)
server.add_insecure_port(sys.argv[1]); server.start(); time.sleep(3600)
"""


def case_tune_hostile_trial_id(env: Env):
    env.base_run()
    box = env.root / "tune_box"
    address = f"127.0.0.1:{_free_port()}"
    chief = subprocess.Popen([PY, "-c", _HOSTILE_CHIEF, address], cwd=env.root, env=env.env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    args = ["tune", "--role", "worker", "--chief", address, "--tuner-id", "w1", "--config", SMOKE, "--data", env.data(),
            "--teacher", env.base_teacher, "--dir", box / "search", "--space", "lr=0.001", "--axes", "lr",
            "--connect-timeout", "600"]
    try:
        result = env.cli(*args, env=dict(env.env, FUNMATCH_TUNE_TOKEN="a-shared-token-for-the-fault-table"))
    finally:
        _stop(chief)
    outside = sorted(p.name for p in box.iterdir() if p.name != "search") if box.is_dir() else []
    if outside:
        return ["(a chief handing out ../../x)", *args], ("silent wrong", f"wrote outside --dir: {outside}")
    return ["(a chief handing out ../../x)", *args], expect_error(result, r"\.\./\.\./x.*not a trial id")


def case_tune_targets_other_teacher(env: Env):
    env.base_run()
    store = env.root / "tune_store"
    made = env.cli("targets", "--config", SMOKE, "--data", env.data(), "--teacher", env.base_teacher, "--views", "1",
                   "--out", store, "--no-progress")
    if made.rc != 0:
        return ["targets ..."], ("case error", made.last_line[:120])
    args = ["tune", "--config", SMOKE, "--data", env.data(), "--teacher", env.teacher("t_tune_other.keras", seed=3),
            "--targets", store, "--dir", env.root / "tune_other", "--space", "lr=0.001", "--axes", "lr",
            "--max-trials", "1"]
    return args, expect_error(env.cli(*args), r"--targets .*another teacher")


def case_tune_top_k_other_temperature(env: Env):
    env.base_run()
    store = env.root / "tune_topk"
    made = env.cli("targets", "--config", SMOKE, "--data", env.data(), "--teacher", env.base_teacher, "--views", "1",
                   "--top-k", "2", "--out", store, "--no-progress")
    if made.rc != 0:
        return ["targets --top-k 2 ..."], ("case error", made.last_line[:120])
    args = ["tune", "--config", f"{SMOKE},total_steps=2", "--data", env.data(), "--teacher", env.base_teacher,
            "--targets", store, "--dir", env.root / "tune_topk_search", "--space", "T=2", "--axes", "T",
            "--max-trials", "1"]
    result = env.cli(*args)

    def check():
        said = re.search(r"trial \S+ runs online \(T=2", result.out)
        return bool(said), said.group(0) if said else "a top-k store served a trial at T=2 without a word"

    return args, expect_success(result, check)


CASES += [
    ("tune chief: a client without the token", case_tune_rogue_without_token),
    ("tune chief: a report on a trial leased to another", case_tune_stolen_trial),
    ("tune worker: a chief hands out ../../x", case_tune_hostile_trial_id),
    ("tune --targets of another teacher", case_tune_targets_other_teacher),
    ("tune --targets top-k, a trial at T=2", case_tune_top_k_other_temperature),
    *RUNTIME_CASES,
    ("negated teacher-logits cache", case_negated_logits_cache),
    ("targets card: seed edited", case_targets_card_seed_edited),
    ("targets card: partner_shifts edited", case_targets_card_partner_shifts_edited),
    ("targets with a teacher at another resolution", case_targets_teacher_at_another_resolution),
    ("top-k targets at another temperature", case_targets_top_k_other_temperature),
]


def first_batch_histogram(env: Env) -> str:
    """Class histogram of the first training batch of a class-sorted source with more examples than the buffer."""
    source = env.images(env.root / "src_sorted", {"train": dict.fromkeys(CLASSES, 64), "test": dict.fromkeys(CLASSES, 2)},
                        size=16)
    out = env.root / "data_sorted"
    result = env.cli("prepare", f"folder:{source}", "--out", out, "--examples-per-shard", "32", "--no-progress")
    if result.rc != 0:
        return "prepare failed: " + result.last_line
    code = (
        "import numpy as np; from funmatch.data import pipeline\n"
        f"ds = pipeline.train_dataset({str(out)!r}, 'train', 'keep(\"label\")', 64, seed=0, shuffle_buffer=32)\n"
        "labels = next(iter(ds))['label'].numpy()\n"
        "print(np.bincount(labels, minlength=4).tolist())\n"
    )
    made = env.python(code)
    return (f"256 class-sorted images (4 × 64), shuffle buffer 32, batch 64: first-batch classes "
            f"{made.out.strip() or made.last_line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=None, help="a source tree to put first on PYTHONPATH")
    parser.add_argument("--only", default=None, help="comma-separated words; run cases whose name contains one")
    parser.add_argument("--histogram", action="store_true", help="also print the first-batch class histogram")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--jobs", type=int, default=1, help="cases run side by side (default 1)")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="funmatch_faults_"))
    env = Env(root, args.src)
    words = [w.strip().lower() for w in args.only.split(",")] if args.only else None
    print("case | command | outcome | detail", flush=True)

    def run(named):
        name, case = named
        started = time.time()
        try:
            command, (outcome, detail) = case(env)
        except Exception as error:  # a broken case must not hide the others
            command, outcome, detail = ["(case failed)"], "case error", f"{type(error).__name__}: {error}"
        row = Row(name, short(command), outcome, " ".join(str(detail).split())[:200])
        print(f"{row.case} | {row.command} | {row.outcome} | {row.detail} ({time.time() - started:.0f} s)", flush=True)
        return row

    chosen = [(n, c) for n, c in CASES if not words or any(w in n.lower() for w in words)]
    try:
        if args.jobs > 1:
            env.base_run()  # the shared fixtures first, then the cases side by side
            with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
                rows = list(pool.map(run, chosen))
        else:
            rows = [run(named) for named in chosen]
        if args.histogram:
            print(first_batch_histogram(env), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    counts = {kind: sum(r.outcome == kind for r in rows) for kind in
              ("traceback", "silent wrong", "misleading", "hung", "clear line", "ok", "case error")}
    print("totals: " + ", ".join(f"{kind} {count}" for kind, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
