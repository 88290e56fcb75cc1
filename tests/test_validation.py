"""Input validation at every public entry: the exception type, and a message that names
the layer or function and the expected and actual values.

Each case is ``(callable, exception type, substrings the message must contain)``.
"""

from __future__ import annotations

import gzip
import math
import tracemalloc

import numpy as np
import pytest

import convnp
from convnp import nn, optim
from convnp.data import read_idx

F32 = np.float32


def small_model(dtype: str = "float32") -> convnp.Sequential:
    """Conv2D(2, 3, p1) - ReLU - MaxPool2D(2) - Flatten - Dense(3) on (1, 4, 4)."""
    return convnp.Sequential(
        [nn.Conv2D(2, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(3)],
        input_shape=(1, 4, 4),
        dtype=dtype,
        seed=0,
    )


def images(n: int = 4, shape: tuple[int, ...] = (1, 4, 4), dtype=F32) -> np.ndarray:
    return np.random.default_rng(0).random((n, *shape)).astype(dtype)


LABELS = np.array([0, 1, 2, 1])


def check(call, error_type: type[Exception], parts: list[str]) -> None:
    with pytest.raises(error_type) as info:
        call()
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# ------------------------------------------------------------------ forward
FORWARD_CASES = {
    "ndim: 2-D batch": (
        lambda m: m.forward(np.zeros((2, 16), F32)),
        ValueError,
        ["Sequential", "(N, 1, 4, 4)", "(2, 16)", "2-D array instead of a 4-D batch"],
    ),
    "ndim: 5-D batch": (
        lambda m: m.forward(np.zeros((2, 1, 1, 4, 4), F32)),
        ValueError,
        ["Sequential", "(N, 1, 4, 4)", "(2, 1, 1, 4, 4)"],
    ),
    "channels": (
        lambda m: m.forward(np.zeros((2, 3, 4, 4), F32)),
        ValueError,
        ["Sequential", "(N, 1, 4, 4)", "(2, 3, 4, 4)", "3 channels instead of 1"],
    ),
    "spatial size": (
        lambda m: m.forward(np.zeros((2, 1, 5, 6), F32)),
        ValueError,
        ["Sequential", "(N, 1, 4, 4)", "spatial size 5x6 instead of 4x4"],
    ),
    "3-D batch of the wrong size": (
        lambda m: m.forward(np.zeros((2, 5, 5), F32)),
        ValueError,
        ["Sequential", "(N, 1, 4, 4)", "(2, 5, 5)"],
    ),
    "int32 images": (
        lambda m: m.forward(np.zeros((2, 1, 4, 4), np.int32)),
        TypeError,
        ["Sequential", "int32", "uint8"],
    ),
    "int64 images": (lambda m: m.predict(np.zeros((2, 1, 4, 4), np.int64)), TypeError, ["Sequential", "int64"]),
    "uint16 images": (lambda m: m.forward(np.zeros((2, 1, 4, 4), np.uint16)), TypeError, ["Sequential", "uint16"]),
    "bool images": (lambda m: m.forward(np.zeros((2, 1, 4, 4), bool)), TypeError, ["Sequential", "bool"]),
    "complex images": (
        lambda m: m.forward(np.zeros((2, 1, 4, 4), np.complex64)),
        TypeError,
        ["Sequential", "complex64"],
    ),
    "strings": (lambda m: m.forward(np.full((2, 1, 4, 4), "a")), TypeError, ["Sequential", "<U1"]),
    "layer called directly with ints": (
        lambda m: m[0].forward(np.zeros((2, 1, 4, 4), np.int64)),
        TypeError,
        ["Conv2D (layer 0)", "floating-point", "int64"],
    ),
    "layer called directly with uint8": (
        lambda m: m[0].forward(np.zeros((2, 1, 4, 4), np.uint8)),
        TypeError,
        ["Conv2D (layer 0)", "uint8", "/ 255"],
    ),
    "layer called with the wrong dtype": (
        lambda m: m[0].forward(np.zeros((2, 1, 4, 4), np.float64)),
        TypeError,
        ["Conv2D (layer 0)", "float64", "float32"],
    ),
    "layer called with the wrong channels": (
        lambda m: m[0].forward(np.zeros((2, 2, 4, 4), F32)),
        ValueError,
        ["Conv2D (layer 0)", "(N, 1, 4, 4)", "(2, 2, 4, 4)", "2 channels instead of 1"],
    ),
    "dense called with the wrong features": (
        lambda m: m[4].forward(np.zeros((2, 9), F32)),
        ValueError,
        ["Dense (layer 4)", "(N, 8)", "(2, 9)", "9 features instead of 8"],
    ),
    "pool called with a 3-D array": (
        lambda m: m[2].forward(np.zeros((2, 4, 4), F32)),
        ValueError,
        ["MaxPool2D (layer 2)", "(N, 2, 4, 4)", "3-D array instead of a 4-D batch"],
    ),
}


@pytest.mark.parametrize("case", list(FORWARD_CASES), ids=list(FORWARD_CASES))
def test_forward_rejects_bad_input(case):
    call, error_type, parts = FORWARD_CASES[case]
    model = small_model()
    check(lambda: call(model), error_type, parts)


@pytest.mark.parametrize(
    ("layer", "x", "parts"),
    [
        (nn.ReLU(), np.zeros((2, 3), np.int32), ["ReLU", "int32"]),
        (nn.Dense(2), np.zeros((2, 3), np.int64), ["Dense", "int64"]),
        (nn.Conv2D(2, 3), np.zeros((1, 1, 4, 4), np.uint8), ["Conv2D", "uint8"]),
        (nn.BatchNorm1D(), np.zeros((4, 3), bool), ["BatchNorm1D", "bool"]),
        (nn.Dropout(0.5), np.zeros((4, 3), np.int16), ["Dropout", "int16"]),
    ],
    ids=["relu", "dense", "conv", "batchnorm", "dropout"],
)
def test_unbuilt_layer_called_directly_rejects_non_floats(layer, x, parts):
    check(lambda: layer.forward(x), TypeError, parts)
    assert not layer.built  # nothing was built from the rejected input


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uint8_images_are_scaled_by_1_over_255(dtype):
    """The documented rule: uint8 pixels x become x / 255 in the model's dtype."""
    model = small_model(dtype)
    pixels = np.random.default_rng(1).integers(0, 256, (3, 1, 4, 4), dtype=np.uint8)
    scaled = pixels.astype(dtype) / np.dtype(dtype).type(255)
    np.testing.assert_array_equal(model.prepare_input(pixels), scaled)
    np.testing.assert_array_equal(model.forward(pixels), model.forward(scaled))
    np.testing.assert_array_equal(model.predict(pixels), model.predict(scaled))
    # (N, H, W) uint8 for a one-channel model gets the channel axis.
    np.testing.assert_array_equal(model.predict(pixels[:, 0]), model.predict(scaled))


def test_float64_input_is_cast_to_a_float32_model_dtype():
    model = small_model()
    x = images(dtype=np.float64)
    assert model.forward(x).dtype == np.float32
    np.testing.assert_array_equal(model.forward(x), model.forward(x.astype(F32)))


# ---------------------------------------------------------- fit / evaluate / predict
def _fit(**kwargs):
    def call(model):
        arguments = {"x": images(), "y": LABELS, "epochs": 1, "batch_size": 2, "verbose": 0}
        arguments.update(kwargs)
        return model.fit(**arguments)

    return call


DATA_CASES = {
    "fit: x/y length mismatch": (_fit(y=LABELS[:3]), ValueError, ["fit", "4 samples", "3 labels"]),
    "fit: more labels than samples": (
        _fit(y=np.zeros(5, int)),
        ValueError,
        ["fit", "4 samples", "5 labels"],
    ),
    "fit: float labels": (_fit(y=np.array([0.5, 1, 2, 1])), TypeError, ["fit", "integer", "float64"]),
    "fit: string labels": (_fit(y=np.array(["a", "b", "c", "d"])), TypeError, ["fit", "integer", "<U1"]),
    "fit: bool labels": (_fit(y=np.array([True, False, True, False])), TypeError, ["fit", "integer", "bool"]),
    "fit: NaN labels": (_fit(y=np.array([0, np.nan, 1, 2])), TypeError, ["fit", "integer"]),
    "fit: label == num_classes": (
        _fit(y=np.array([0, 1, 3, 1])),
        ValueError,
        ["fit", "[0, 3)", "3 outputs", "from 0 to 3"],
    ),
    "fit: negative label": (_fit(y=np.array([0, -1, 2, 1])), ValueError, ["fit", "[0, 3)", "from -1 to 2"]),
    "fit: 2-D labels": (_fit(y=np.zeros((4, 3), int)), ValueError, ["fit", "(N,)", "(4, 3)"]),
    "fit: empty x": (
        _fit(x=np.zeros((0, 1, 4, 4), F32), y=np.zeros(0, int)),
        ValueError,
        ["fit", "empty", "(0, 1, 4, 4)"],
    ),
    "fit: scalar x": (_fit(x=np.float32(1.0)), ValueError, ["fit", "scalar"]),
    "fit: ragged x": (_fit(x=[[1.0, 2.0], [1.0]]), ValueError, ["fit", "rectangular"]),
    "fit: batch_size 0": (_fit(batch_size=0), ValueError, ["fit", "batch_size", "0"]),
    "fit: batch_size -5": (_fit(batch_size=-5), ValueError, ["fit", "batch_size", "-5"]),
    "fit: batch_size 2.0": (_fit(batch_size=2.0), ValueError, ["fit", "batch_size", "2.0"]),
    "fit: epochs -1": (_fit(epochs=-1), ValueError, ["fit", "epochs", "-1"]),
    "fit: epochs 1.5": (_fit(epochs=1.5), ValueError, ["fit", "epochs", "1.5"]),
    "fit: unknown loss": (_fit(loss="hinge"), ValueError, ["fit", "'hinge'", "'cross_entropy'", "'mse'"]),
    "fit: unknown optimizer": (
        _fit(optimizer="adamax"),
        ValueError,
        ["get_optimizer", "'adamax'", "'sgd'", "'adam'", "'adamw'", "'rmsprop'"],
    ),
    "fit: optimizer of the wrong type": (_fit(optimizer=3), TypeError, ["get_optimizer", "int"]),
    "fit: negative lr": (_fit(lr=-0.1), ValueError, ["Adam", "learning rate", "-0.1"]),
    "fit: clip_norm 0": (_fit(clip_norm=0), ValueError, ["fit", "clip_norm", "0"]),
    "fit: augment not callable": (_fit(augment="flip"), TypeError, ["fit", "augment", "'flip'"]),
    "fit: resume without checkpoint": (_fit(resume=True), ValueError, ["fit", "resume=True", "checkpoint"]),
    "fit: validation_data not a pair": (
        _fit(validation_data=images()),
        ValueError,
        ["fit", "validation_data", "pair"],
    ),
    "fit: validation labels out of range": (
        _fit(validation_data=(images(), np.array([0, 1, 2, 7]))),
        ValueError,
        ["fit (validation_data)", "[0, 3)", "7"],
    ),
    "fit: mse targets of the wrong shape": (
        _fit(loss="mse", y=np.zeros((4, 2), F32)),
        ValueError,
        ["fit", "(4, 3)", "(4, 2)"],
    ),
    "fit: int images": (_fit(x=np.zeros((4, 1, 4, 4), np.int32)), TypeError, ["Sequential", "int32"]),
    "fit: wrong channels": (
        _fit(x=np.zeros((4, 3, 4, 4), F32)),
        ValueError,
        ["Sequential", "3 channels instead of 1"],
    ),
    "evaluate: x/y length mismatch": (
        lambda m: m.evaluate(images(), LABELS[:2]),
        ValueError,
        ["evaluate", "4 samples", "2 labels"],
    ),
    "evaluate: labels out of range": (
        lambda m: m.evaluate(images(), np.array([0, 1, 2, 9])),
        ValueError,
        ["evaluate", "[0, 3)", "9"],
    ),
    "evaluate: empty x": (
        lambda m: m.evaluate(np.zeros((0, 1, 4, 4), F32), np.zeros(0, int)),
        ValueError,
        ["evaluate", "empty"],
    ),
    "evaluate: batch_size 0": (
        lambda m: m.evaluate(images(), LABELS, batch_size=0),
        ValueError,
        ["evaluate", "batch_size", "0"],
    ),
    "evaluate: unknown loss": (
        lambda m: m.evaluate(images(), LABELS, loss="l1"),
        ValueError,
        ["evaluate", "'l1'"],
    ),
    "predict: empty x": (lambda m: m.predict(np.zeros((0, 1, 4, 4), F32)), ValueError, ["predict", "empty"]),
    "predict: batch_size -1": (
        lambda m: m.predict(images(), batch_size=-1),
        ValueError,
        ["predict", "batch_size", "-1"],
    ),
    "predict: wrong spatial size": (
        lambda m: m.predict(np.zeros((2, 1, 8, 8), F32)),
        ValueError,
        ["Sequential", "spatial size 8x8 instead of 4x4"],
    ),
}


@pytest.mark.parametrize("case", list(DATA_CASES), ids=list(DATA_CASES))
def test_fit_evaluate_predict_reject_bad_arguments(case):
    call, error_type, parts = DATA_CASES[case]
    model = small_model()
    before = model.state_dict()
    check(lambda: call(model), error_type, parts)
    # Validation happens before any training step: the weights are untouched.
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_integral_float_labels_are_accepted():
    model = small_model()
    history = model.fit(images(), LABELS.astype(np.float64), epochs=1, batch_size=2, verbose=0, seed=0)
    assert len(history) == 1


# ------------------------------------------------------------- constructors
CONSTRUCTOR_CASES = {
    "Conv2D out_channels 0": (lambda: nn.Conv2D(0, 3), ValueError, ["Conv2D", "out_channels", "0"]),
    "Conv2D out_channels -2": (lambda: nn.Conv2D(-2, 3), ValueError, ["Conv2D", "out_channels", "-2"]),
    "Conv2D out_channels 2.5": (lambda: nn.Conv2D(2.5, 3), TypeError, ["Conv2D", "out_channels", "2.5"]),
    "Conv2D out_channels True": (lambda: nn.Conv2D(True, 3), TypeError, ["Conv2D", "out_channels", "True"]),
    "Conv2D in_channels 0": (lambda: nn.Conv2D(2, 3, in_channels=0), ValueError, ["Conv2D", "in_channels", "0"]),
    "Conv2D kernel_size 0": (lambda: nn.Conv2D(2, 0), ValueError, ["Conv2D", "kernel_size", "0"]),
    "Conv2D kernel_size (3, -1)": (lambda: nn.Conv2D(2, (3, -1)), ValueError, ["Conv2D", "kernel_size", "(3, -1)"]),
    "Conv2D kernel_size 'big'": (lambda: nn.Conv2D(2, "big"), TypeError, ["Conv2D", "kernel_size", "'big'"]),
    "Conv2D stride 0": (lambda: nn.Conv2D(2, 3, stride=0), ValueError, ["Conv2D", "stride", "0"]),
    "Conv2D dilation 0": (lambda: nn.Conv2D(2, 3, dilation=0), ValueError, ["Conv2D", "dilation", "0"]),
    "Conv2D padding -1": (lambda: nn.Conv2D(2, 3, padding=-1), ValueError, ["Conv2D", "padding", "-1"]),
    "Conv2D padding 'full'": (
        lambda: nn.Conv2D(2, 3, padding="full"),
        ValueError,
        ["Conv2D", "'full'", "'valid'", "'same'"],
    ),
    "Conv2D groups 0": (lambda: nn.Conv2D(2, 3, groups=0), ValueError, ["Conv2D", "groups", "0"]),
    "Conv2D groups do not divide": (
        lambda: nn.Conv2D(3, 3, groups=2),
        ValueError,
        ["Conv2D", "out_channels=3", "groups=2"],
    ),
    "Conv2D unknown activation": (
        lambda: nn.Conv2D(2, 3, activation="swish"),
        ValueError,
        ["Conv2D", "'swish'", "'relu'", "'leaky_relu'", "'sigmoid'", "'tanh'"],
    ),
    "Conv2D unknown initializer": (
        lambda: nn.Conv2D(2, 3, init="glorious"),
        ValueError,
        ["Conv2D", "'glorious'", "'he'", "'xavier'", "'lecun'", "'zeros'"],
    ),
    "Dense out_features 0": (lambda: nn.Dense(0), ValueError, ["Dense", "out_features", "0"]),
    "Dense out_features -3": (lambda: nn.Dense(-3), ValueError, ["Dense", "out_features", "-3"]),
    "Dense out_features 2.0": (lambda: nn.Dense(2.0), TypeError, ["Dense", "out_features", "2.0"]),
    "Dense in_features 0": (lambda: nn.Dense(2, in_features=0), ValueError, ["Dense", "in_features", "0"]),
    "Dense unknown activation": (
        lambda: nn.Dense(2, activation="gelu"),
        ValueError,
        ["Dense", "'gelu'", "'relu'", "'softmax'"],
    ),
    "Dense activation of the wrong type": (lambda: nn.Dense(2, activation=3), TypeError, ["Dense", "int"]),
    "Dense unknown initializer": (lambda: nn.Dense(2, init="ones"), ValueError, ["Dense", "'ones'", "'he'"]),
    "MaxPool2D kernel_size 0": (lambda: nn.MaxPool2D(0), ValueError, ["MaxPool2D", "kernel_size", "0"]),
    "MaxPool2D stride 0": (lambda: nn.MaxPool2D(2, stride=0), ValueError, ["MaxPool2D", "stride", "0"]),
    "MaxPool2D padding > kernel / 2": (
        lambda: nn.MaxPool2D(2, padding=2),
        ValueError,
        ["MaxPool2D", "padding 2", "(2, 2)"],
    ),
    "AvgPool2D kernel_size -1": (lambda: nn.AvgPool2D(-1), ValueError, ["AvgPool2D", "kernel_size", "-1"]),
    "AvgPool2D stride 0": (lambda: nn.AvgPool2D(3, stride=(1, 0)), ValueError, ["AvgPool2D", "stride", "(1, 0)"]),
    "Dropout p 1": (lambda: nn.Dropout(1.0), ValueError, ["Dropout", "[0, 1)", "1.0"]),
    "Dropout p -0.1": (lambda: nn.Dropout(-0.1), ValueError, ["Dropout", "[0, 1)", "-0.1"]),
    "Dropout p 1.5": (lambda: nn.Dropout(1.5), ValueError, ["Dropout", "[0, 1)", "1.5"]),
    "Dropout p NaN": (lambda: nn.Dropout(math.nan), ValueError, ["Dropout", "[0, 1)", "nan"]),
    "Dropout p '0.5'": (lambda: nn.Dropout("0.5"), ValueError, ["Dropout", "'0.5'"]),
    "BatchNorm2D momentum 2": (lambda: nn.BatchNorm2D(momentum=2), ValueError, ["BatchNorm2D", "momentum", "2"]),
    "BatchNorm1D eps 0": (lambda: nn.BatchNorm1D(eps=0), ValueError, ["BatchNorm1D", "eps", "0"]),
    "BatchNorm1D num_features 0": (
        lambda: nn.BatchNorm1D(num_features=0),
        ValueError,
        ["BatchNorm1D", "num_features", "0"],
    ),
    "GroupNorm num_groups 0": (lambda: nn.GroupNorm(0), ValueError, ["GroupNorm", "num_groups", "0"]),
    "LayerNorm eps -1": (lambda: nn.LayerNorm(eps=-1), ValueError, ["LayerNorm", "eps", "-1"]),
    "LeakyReLU alpha 'a'": (lambda: nn.LeakyReLU("a"), TypeError, ["LeakyReLU", "alpha", "'a'"]),
    "Sequential no layers": (lambda: convnp.Sequential([]), ValueError, ["Sequential", "at least one layer"]),
    "Sequential non-layer item": (
        lambda: convnp.Sequential([nn.ReLU(), "relu"]),
        TypeError,
        ["Sequential", "item 1", "str"],
    ),
    "Sequential int dtype": (
        lambda: convnp.Sequential([nn.ReLU()], dtype="int32"),
        TypeError,
        ["Sequential", "'float32'", "int32"],
    ),
    "Sequential unknown dtype": (
        lambda: convnp.Sequential([nn.ReLU()], dtype="float99"),
        TypeError,
        ["Sequential", "'float32'", "'float99'"],
    ),
    "Sequential input_shape 0": (
        lambda: convnp.Sequential([nn.ReLU()], input_shape=(1, 0, 4)),
        ValueError,
        ["ReLU (layer 0)", "input_shape", "(1, 0, 4)"],
    ),
    "build: conv output < 1": (
        lambda: convnp.Sequential([nn.Conv2D(2, 5)], input_shape=(1, 4, 4)),
        ValueError,
        ["Conv2D (layer 0)", "(1, 4, 4)", "kernel_size=(5, 5)", "(0, 0)"],
    ),
    "build: pool output < 1": (
        lambda: convnp.Sequential([nn.MaxPool2D(3, stride=2)], input_shape=(1, 2, 2)),
        ValueError,
        ["MaxPool2D (layer 0)", "(1, 2, 2)", "kernel_size=(3, 3)"],
    ),
    "build: dense after conv without Flatten": (
        lambda: convnp.Sequential([nn.Conv2D(2, 3), nn.Dense(4)], input_shape=(1, 4, 4)),
        ValueError,
        ["Dense (layer 1)", "(2, 2, 2)", "Flatten"],
    ),
    "build: conv in_channels mismatch": (
        lambda: convnp.Sequential([nn.Conv2D(2, 3, in_channels=3)], input_shape=(1, 4, 4)),
        ValueError,
        ["Conv2D (layer 0)", "3 input channels", "(1, 4, 4)"],
    ),
    "get_optimizer unknown name": (
        lambda: optim.get_optimizer("momentum", small_model().parameters()),
        ValueError,
        ["get_optimizer", "'momentum'", "'sgd'", "'adam'"],
    ),
    "SGD negative lr": (lambda: optim.SGD(small_model().parameters(), lr=-1), ValueError, ["SGD", "-1"]),
    "SGD negative momentum": (
        lambda: optim.SGD(small_model().parameters(), lr=0.1, momentum=-0.5),
        ValueError,
        ["SGD", "momentum", "-0.5"],
    ),
    "Adam beta 1": (
        lambda: optim.Adam(small_model().parameters(), betas=(0.9, 1.0)),
        ValueError,
        ["Adam", "beta2", "1.0"],
    ),
}


@pytest.mark.parametrize("case", list(CONSTRUCTOR_CASES), ids=list(CONSTRUCTOR_CASES))
def test_constructors_reject_bad_arguments(case):
    call, error_type, parts = CONSTRUCTOR_CASES[case]
    check(call, error_type, parts)


# ------------------------------------------------------------------ loaders
def _idx_header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


IDX_CASES = {
    "bad magic": (b"\x08\x03" + bytes(20), ["magic bytes 08 03", "expected 00 00"]),
    "gzip magic in a text file": (b"hello, this is not IDX", ["magic bytes 68 65"]),
    "unknown dtype code": (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]), ["0x0A", "0x08", "0x0E"]),
    "0 dimensions": (bytes([0, 0, 0x08, 0]), ["0 dimensions"]),
    "too many dimensions": (_idx_header(0x08, (1,) * 40) + b"\x00", ["40 dimensions", "at most 32"]),
    "truncated header": (_idx_header(0x08, (2, 3))[:9], ["truncated IDX header", "2 dimensions need 12 bytes"]),
    "truncated data": (_idx_header(0x08, (2, 3)) + bytes(5), ["truncated IDX file", "(2, 3)", "need 18 bytes"]),
    "oversized data": (_idx_header(0x08, (2, 3)) + bytes(7), ["oversized IDX file", "(2, 3)"]),
    "wrong dims for int32 data": (
        _idx_header(0x0C, (2, 2)) + bytes(12),
        ["truncated IDX file", "int32", "need 28 bytes"],
    ),
    "huge dims": (
        _idx_header(0x0E, (2**32 - 1, 2**32 - 1, 2**32 - 1)) + bytes(16),
        ["IDX file", "(4294967295, 4294967295, 4294967295)", "need"],
    ),
    "empty file": (b"", ["shorter than the header"]),
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("case", list(IDX_CASES), ids=list(IDX_CASES))
def test_read_idx_rejects_damaged_files_without_large_allocations(tmp_path, case, gz):
    content, parts = IDX_CASES[case]
    path = tmp_path / "case-idx"
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    tracemalloc.start()
    try:
        check(lambda: read_idx(path), ValueError, [str(path), *parts])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"read_idx allocated {peak} bytes for a {path.stat().st_size}-byte file"


@pytest.mark.parametrize(
    ("content", "parts"),
    [
        (b"\x1f\x8b" + bytes(30), ["damaged or truncated gzip stream"]),
        (gzip.compress(_idx_header(0x08, (2, 3)) + bytes(6), mtime=0)[:-6], ["damaged or truncated gzip"]),
        (gzip.compress(_idx_header(0x08, (2, 3)) + bytes(6), mtime=0) + b"junk", ["damaged or truncated gzip"]),
    ],
    ids=["garbage after gzip magic", "cut-off gzip", "trailing garbage"],
)
def test_read_idx_wraps_gzip_errors(tmp_path, content, parts):
    path = tmp_path / "damaged.gz"
    path.write_bytes(content)
    check(lambda: read_idx(path), ValueError, [str(path), *parts])


def test_read_idx_refuses_a_gzip_header_claiming_more_than_deflate_can_hold(tmp_path):
    """A 50-byte gzip file cannot hold 2**32 bytes: refused before decompressing or allocating."""
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(_idx_header(0x08, (65536, 65536)) + bytes(100), mtime=0))
    tracemalloc.start()
    try:
        check(lambda: read_idx(path), ValueError, [str(path), "more than a", "gzip file can hold"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_read_idx_missing_file(tmp_path):
    check(lambda: read_idx(tmp_path / "nope-idx3-ubyte"), FileNotFoundError, ["nope-idx3-ubyte"])


def test_load_npz_rejects_pickled_and_foreign_files(tmp_path):
    from convnp.data import load_npz

    path = tmp_path / "mndata.npz"
    np.savez(path, trainimages=np.array([object()], dtype=object))
    check(lambda: load_npz(path), ValueError, [str(path)])
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    check(lambda: load_npz(text), ValueError, [str(text), "not an .npz (zip) archive"])
