"""An imported TensorFlow SavedModel as a frozen Keras layer, kept by path and content hash.

The `.keras` file of an imported SavedModel (`funmatch models import FOLDER`) names the folder and the
SHA-256 of its files; the layer loads only while the folder holds the bytes the user imported (vouched for
then). Keras' own `TFSMLayer` is refused by safe mode. TensorFlow backend; inference only (a teacher).
May import errors only.
"""

from __future__ import annotations

import functools
import os

from funmatch.errors import FunmatchError


def folder_sha256(path) -> str:
    """SHA-256 over a folder's files (relative names and contents, in sorted order)."""
    import hashlib

    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _savedmodel_layer_class():
    import keras

    @keras.saving.register_keras_serializable(package="funmatch")
    class SavedModelLayer(keras.layers.Layer):
        """A SavedModel's `serving_default` signature as a frozen Keras layer (TensorFlow backend): images ->
        its single output. Loads only while the folder's content hash is `sha256` (the imported bytes)."""

        def __init__(self, path: str, sha256: str, **kwargs):
            kwargs["trainable"] = False  # a frozen graph: nothing to train
            super().__init__(**kwargs)
            self.savedmodel_path, self.sha256 = str(path), str(sha256)
            if not os.path.isdir(self.savedmodel_path):
                raise FunmatchError(f"{self.savedmodel_path}: the SavedModel this model was imported from is gone")
            if folder_sha256(self.savedmodel_path) != self.sha256:
                raise FunmatchError(f"{self.savedmodel_path}: the SavedModel changed since it was imported; import it again "
                                    "(funmatch models import)")
            import tensorflow as tf

            loaded = tf.saved_model.load(self.savedmodel_path)
            # Kept out of Keras' attribute tracking (its variables are the SavedModel's, not this layer's);
            # the function needs the loaded object alive.
            self.__dict__["_loaded"] = loaded
            self.__dict__["_function"] = loaded.signatures["serving_default"]
            self.__dict__["_input_name"] = list(self._function.structured_input_signature[1])[0]

        def call(self, images):
            outputs = self._function(**{self._input_name: images})
            return next(iter(outputs.values())) if len(outputs) == 1 else outputs

        def compute_output_spec(self, images):
            outputs = self._function.structured_outputs
            spec = next(iter(outputs.values()))
            return keras.KerasTensor((images.shape[0],) + tuple(spec.shape[1:]), dtype=spec.dtype.name)

        def get_config(self):
            return {**super().get_config(), "path": self.savedmodel_path, "sha256": self.sha256}

    return SavedModelLayer


def SavedModelLayer(*args, **kwargs):  # noqa: N802 (a class, built on first use so Keras loads lazily)
    return _savedmodel_layer_class()(*args, **kwargs)
