"""Stored teacher targets in a search: the store checked once before the first trial, and which trials it serves.

`funmatch tune --targets DIR` (the store written by `funmatch targets`):

* Before any trial, every worker (and a single-process search) checks what no trial can change: the
  store is complete, was computed by this teacher (file hash) on this data (dataset card hash) and
  split, with the data's classes, at the recipe's teacher resolution. A mismatch is one line naming
  `--targets` and each difference; no trial starts.
* Per trial (`online_reason`), the store serves the trial when its views are the trial's (mode, pp
  spec, mixup p), the teacher resolution is the trial's and its targets are exact at the trial's
  temperature. Full stores (up to 128 classes) hold every log-probability, exact at any T. Top-k
  stores are exact only at the temperature they were stored at (the card's `temperature`, 1 when
  absent): the mass outside the top k is spread by a rule fixed at that T. Any other trial runs online
  (the teacher in every step) and prints one line saying why; it stays in the search.
"""

from __future__ import annotations

import pathlib
from typing import Any

from funmatch.configs import Config
from funmatch.errors import FunmatchError


def stored_temperature(card: dict[str, Any]) -> float:
    """The temperature the store's targets are exact at (top-k): the store's own rule's."""
    from funmatch.distill.targets import STORED_TEMPERATURE

    return float(card.get("temperature", STORED_TEMPERATURE))


def check_store(targets_dir, config: Config, axes: dict | None = None, *, teacher_path, data_dir) -> dict[str, Any]:
    """The store's card when it fits every trial of the search on what trials cannot change; else a
    FunmatchError in one line. `axes` (the search space) adds a note when no trial can use the store."""
    from funmatch.data import tfrecords
    from funmatch.distill import targets as store

    card = store.load_card(targets_dir)
    where = f"--targets {targets_dir}"
    try:
        problems = store.identity_problems(
            card, teacher_path=teacher_path, data_dir=data_dir, split=config.train_split,
            num_classes=int(tfrecords.load_card(data_dir)["num_classes"]),
            teacher_resolution=config.teacher_resolution, who="the recipe")
    except (KeyError, TypeError, ValueError) as e:
        raise FunmatchError(f"{where}: targets.json lacks or garbles a field ({e}); re-run `funmatch targets`") from None
    if problems:
        raise FunmatchError(f"{where}: does not fit this search: " + "; ".join(problems))
    if card.get("storage") == "top_k":
        other = _other_temperatures(axes, config.temperature, stored_temperature(card))
        if other:
            print(f"funmatch tune: {where} holds the top-{card.get('top_k')} of {card['num_classes']} classes, exact "
                  f"only at T={stored_temperature(card):g}: trials at T={other} run online (the teacher in every step)",
                  flush=True)
    return card


def _other_temperatures(axes: dict | None, default: float, stored: float) -> str:
    """The searched temperatures other than `stored`, as text ("" when none)."""
    axis = (axes or {}).get("temperature")
    if axis is not None and axis.is_range:
        return f"{axis.low:g}..{axis.high:g} other than {stored:g}"
    values = axis.values if axis is not None else (default,)
    return ",".join(f"{float(t):g}" for t in values if float(t) != stored)


def online_reason(targets_dir, config: Config) -> str | None:
    """None when the store serves the trial `config`; else why the trial runs online (a short clause)."""
    from funmatch.distill import targets as store
    from funmatch.training import targets as stored_targets

    card = store.load_card(targets_dir)
    if not store.store_serves_temperature(card, config.temperature):  # before fits(), which also refuses it
        return (f"T={float(config.temperature):g}: top-k targets are exact only at the store's "
                f"T={stored_temperature(card):g}")
    if not stored_targets.fits(targets_dir, config):
        return "its views (mode, pp spec or mixup p) are not the store's"
    if int(card["teacher"]["resolution"]) != int(config.teacher_resolution):
        return f"teacher resolution {config.teacher_resolution}, the store's is {card['teacher']['resolution']}"
    return None


def stored_or_online(targets_dir, config: Config, trial_name: str) -> pathlib.Path | None:
    """`targets_dir` when it serves the trial; else None, after one line saying why the trial runs online."""
    if targets_dir is None:
        return None
    reason = online_reason(targets_dir, config)
    if reason is None:
        return pathlib.Path(targets_dir)
    print(f"funmatch tune: trial {trial_name} runs online ({reason})", flush=True)
    return None


__all__ = ["check_store", "online_reason", "stored_or_online", "stored_temperature"]
