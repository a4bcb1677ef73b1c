"""funmatch: knowledge distillation by function matching, as a Keras 3 library.

Importing this package does not import Keras or TensorFlow; the heavy modules are imported by the
subpackages that need them, so that `funmatch --help` stays fast. The Keras backend is chosen by
the `KERAS_BACKEND` environment variable (`jax` or `tensorflow`) before Keras is first imported.
"""

__version__ = "0.1.0"

from funmatch.errors import FunmatchError  # noqa: E402

__all__ = ["FunmatchError", "__version__"]
