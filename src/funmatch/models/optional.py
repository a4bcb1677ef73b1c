"""Optional packages of the models package: keras-hub (its image models, without tensorflow-text).

May import errors only.
"""

from __future__ import annotations

from funmatch.errors import FunmatchError

INSTALL = ("pip install --no-deps keras-hub && pip install 'funmatch[hub]' (keras-hub without tensorflow-text, "
           "which would bring a second TensorFlow), or bash scripts/setup.sh")


def require_keras_hub(what: str):
    """The `keras_hub` module; FunmatchError naming `what` needs it and how to install it."""
    try:
        import keras_hub
    except ImportError as error:
        raise FunmatchError(f"{what} needs keras-hub, which is not installed: {INSTALL}") from error
    return keras_hub
