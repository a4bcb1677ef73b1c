"""Where a command may write, and how it replaces what is there: the overwrite guard of every command.

The rule (one for every command that writes an output file or folder):
- never the current folder, one of its parents, the home folder or a file system's root;
- never a path that is, holds, or lies inside one of the command's inputs (a source folder, a data folder,
  a model file): `prepare folder:SRC --out SRC --overwrite` must not delete the images it reads;
- an existing folder is replaced (`--overwrite`) only when funmatch wrote it: it carries the marker file
  `.funmatch` (written into every output folder), or it is empty;
- everything is written beside the destination first (`.NAME.partial-HOST-PID`) and swapped in by renames,
  so a failure, a kill or a full disk leaves the old output as it was.

`check_output` says whether a path may be written, in one line naming the flag and the path; `staged`
writes through a temporary sibling and swaps it in at the end.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shutil
import socket
from collections.abc import Iterator, Mapping

from funmatch.errors import FunmatchError

MARKER = ".funmatch"


def _resolved(path) -> pathlib.Path:
    return pathlib.Path(os.path.expanduser(str(path))).resolve()


def _within(inner: pathlib.Path, outer: pathlib.Path) -> bool:
    return inner == outer or outer in inner.parents


def is_funmatch_folder(folder) -> bool:
    """True when `folder` carries the marker that funmatch writes into every output folder."""
    return (pathlib.Path(folder) / MARKER).is_file()


def check_output(out, *, flag: str = "--out", kind: str = "folder", overwrite: bool | None = False,
                 inputs: Mapping[str, object] | None = None) -> pathlib.Path:
    """Checks that `out` may be written (and, with `overwrite`, replaced); returns it as an absolute path.

    Args:
      out: the output path as the user gave it.
      flag: the flag that named it, for the message (`--out`, `--json`, ...).
      kind: "folder" or "file".
      overwrite: whether an existing output may be replaced; None: the caller takes an existing output over
        itself (a workdir or a store that resumes), so only the place is checked.
      inputs: {flag: path} of what the command reads; `out` may neither be, hold nor lie inside any of them.

    Raises FunmatchError with one line naming `flag` and the path.
    """
    given = str(out)
    target = _resolved(out)
    cwd = pathlib.Path.cwd().resolve()
    home = _resolved("~")
    if _within(cwd, target):
        where = "the current folder" if target == cwd else f"a parent of the current folder ({cwd})"
        raise FunmatchError(f"{flag} {given}: is {where}; name a new folder for the output")
    if target == home or target == pathlib.Path(target.anchor):
        raise FunmatchError(f"{flag} {given}: is {'the home folder' if target == home else 'the root folder'}; "
                            "name a new folder for the output")
    for input_flag, path in (inputs or {}).items():
        if path is None:
            continue
        source = _resolved(path)
        if _within(source, target):
            relation = "is" if source == target else "holds"
            raise FunmatchError(f"{flag} {given}: {relation} the input {input_flag} {path}; "
                                "name another place for the output")
        if _within(target, source) and source.is_dir():
            raise FunmatchError(f"{flag} {given}: lies inside the input {input_flag} {path}; "
                                "name a place outside it for the output")
    if overwrite is None or not os.path.lexists(target):
        return target
    if kind == "file":
        if target.is_dir():
            raise FunmatchError(f"{flag} {given}: is a folder, expected a file")
        if not overwrite:
            raise FunmatchError(f"{flag} {given}: already exists (use --overwrite to replace it)")
        return target
    if not target.is_dir():
        raise FunmatchError(f"{flag} {given}: exists and is not a folder")
    if not any(target.iterdir()):
        return target
    if not overwrite:
        raise FunmatchError(f"{flag} {given}: exists and is not empty (use --overwrite to replace a folder funmatch wrote)")
    if not is_funmatch_folder(target):
        raise FunmatchError(f"{flag} {given}: holds files funmatch did not write (no {MARKER} marker in it); "
                            "--overwrite replaces only funmatch's own output folders: remove it yourself or name another")
    return target


def temporary_name(out: pathlib.Path, kind: str = "partial") -> pathlib.Path:
    """A sibling of `out` unique to this host and process: `.NAME.KIND-HOST-PID` (a file keeps its suffix)."""
    tag = f"{kind}-{socket.gethostname().replace('-', '_')}-{os.getpid()}"
    if out.suffix and not out.is_dir():
        return out.with_name(f".{out.stem}.{tag}{out.suffix}")
    return out.with_name(f".{out.name}.{tag}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(out: pathlib.Path) -> None:
    """Removes the temporaries of writes into `out` that were killed on this host (their process is gone).

    Names: `.NAME.partial-HOST-PID` / `.NAME.previous-HOST-PID`, and the older `.NAME.partial-PID`. Another
    host's temporaries are left alone: its process may be alive.
    """
    host = socket.gethostname().replace("-", "_")
    for leftover in out.parent.glob(f".{out.stem if out.suffix else out.name}.*"):
        tag = leftover.name[1:].split(".")
        parts = next((t.split("-") for t in tag if t.startswith(("partial-", "previous-"))), None)
        if not parts or not parts[-1].isdigit() or (len(parts) == 3 and parts[1] != host) or len(parts) > 3:
            continue
        if not _alive(int(parts[-1])):
            _remove(leftover)


def write_marker(folder, command: str) -> None:
    """Writes the marker that lets a later `--overwrite` replace `folder`."""
    from funmatch import __version__

    content = {"written_by": f"funmatch {__version__}", "command": command,
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    (pathlib.Path(folder) / MARKER).write_text(json.dumps(content) + "\n")


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink(missing_ok=True)


def swap_in(temporary: pathlib.Path, out: pathlib.Path) -> None:
    """Puts `temporary` at `out` by renames; the old `out`, if any, is removed only once the new one is there."""
    if not os.path.lexists(out):
        temporary.rename(out)
        return
    if temporary.is_file() and out.is_file():
        os.replace(temporary, out)  # atomic for a file
        return
    aside = temporary_name(out, "previous")
    out.rename(aside)
    try:
        temporary.rename(out)
    except BaseException:
        aside.rename(out)
        raise
    _remove(aside)


@contextlib.contextmanager
def staged(out, *, command: str, kind: str = "folder") -> Iterator[pathlib.Path]:
    """Yields a temporary sibling of `out` to write into; swaps it in when the block ends without error.

    A folder gets the marker before the swap. On an error the temporary is removed and `out` is untouched.
    """
    out = pathlib.Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FunmatchError(f"{out}: cannot create its folder ({error.strerror or error})") from None
    remove_leftovers(out)
    temporary = temporary_name(out)
    _remove(temporary)
    if kind == "folder":
        temporary.mkdir()
    try:
        yield temporary
        if kind == "folder":
            write_marker(temporary, command)
        swap_in(temporary, out)
    finally:
        _remove(temporary)


__all__ = ["MARKER", "check_output", "is_funmatch_folder", "remove_leftovers", "staged", "swap_in", "temporary_name", "write_marker"]
