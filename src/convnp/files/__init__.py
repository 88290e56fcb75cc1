"""Writing and reading files safely, knowing nothing of layers.

- ``atomic``: the one writer behind every file convnp writes (models,
  checkpoints, ONNX files, IDX files, downloads, JSON, plots): whole or not at
  all, with the usual permissions.
- ``safe_zip``: the ``.npz`` reader that never unpickles and checks every size
  against the file's before reading.
- ``model_file``: the convnp model file at the level of bytes (layout,
  checksums, ``save_model``, ``load_file``); it knows a model only through its
  public attributes. Building a model back is ``convnp.serialization``.
"""
