"""Writing and reading files safely, knowing nothing of models or layers.

``atomic``: the one writer behind every file convnp writes (models, checkpoints,
ONNX files, IDX files, downloads, JSON, plots).
"""
