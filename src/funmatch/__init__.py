"""funmatch: knowledge distillation by function matching, as a Keras 3 library.

Importing this package does not import Keras or TensorFlow; the heavy modules are imported by the
subpackages that need them, so that `funmatch --help` stays fast. The Keras backend is chosen by
the `KERAS_BACKEND` environment variable (`jax` or `tensorflow`) before Keras is first imported.
"""

__version__ = "0.1.0"

import importlib.util  # noqa: E402

# tf.data feeds every backend, yet TensorFlow is no requirement of the package, so that installing funmatch
# never replaces an accelerator image's own build (`tensorflow` with CUDA, or `tensorflow-cpu` beside
# jax[tpu]). find_spec looks for it without importing it.
if importlib.util.find_spec("tensorflow") is None:
    raise ImportError(
        "funmatch needs TensorFlow (tf.data feeds every Keras backend) and none is installed: on a plain "
        "machine run `pip install 'funmatch[cpu]'` (jax[cpu] and tensorflow-cpu); on an accelerator image "
        "install the TensorFlow build made for it (`tensorflow` or `tensorflow-cpu`, never both)"
    )

from funmatch.errors import FunmatchError  # noqa: E402

__all__ = ["FunmatchError", "__version__"]
