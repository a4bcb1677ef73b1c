"""Every failure of a command is one line naming the file and the cause, never a traceback."""

import errno
import json
import sys
import types
import zipfile

import pytest

from funmatch import cli


@pytest.fixture
def command(monkeypatch):
    """A fake command `funmatch fault` whose main raises the error given to the returned setter."""
    module = types.ModuleType("funmatch_fault_command")
    module.add_arguments = lambda parser: None
    holder = {}

    def main(args):
        raise holder["error"]

    module.main = main
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fault", (module.__name__, "raises"))

    def set_error(error):
        holder["error"] = error

    return set_error


def _tensorflow_error(name):
    import tensorflow as tf

    return getattr(tf.errors, name)(None, None, "truncated record at 1234' failed with Read less bytes")


@pytest.mark.parametrize(
    "error,expected",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/run/ckpt"), "/data/run/ckpt: No space left on device"),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/x"), "/ro/x: Permission denied"),
        (OSError(errno.ENOSPC, "No space left on device"), "a file could not be read or written: No space left on device"),
        (zipfile.BadZipFile("File is not a zip file"), "a damaged file (BadZipFile: File is not a zip file)"),
        (EOFError("unexpected end"), "a damaged file (EOFError: unexpected end)"),
        (json.JSONDecodeError("Expecting value", "", 0), "a damaged file (JSONDecodeError: Expecting value"),
    ],
)
def test_file_errors_are_one_line(command, capsys, error, expected):
    command(error)
    assert cli.main(["fault"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("funmatch fault: error: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_data_loss_is_one_line(command, capsys):
    command(_tensorflow_error("DataLossError"))
    assert cli.main(["fault"]) == 2
    err = capsys.readouterr().err
    assert "a damaged record file (truncated or corrupted; re-run `funmatch prepare`)" in err and err.count("\n") == 1


def test_a_bug_keeps_its_traceback(command):
    command(ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["fault"])
