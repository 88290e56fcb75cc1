"""The residual models: sizes, torchvision's keys, shapes, and a training step."""

import numpy as np
import pytest

from convnp.functional.losses import softmax_cross_entropy
from convnp.models import MODELS, build_model, resnet18, resnet20, resnet32, resnet56
from convnp.nn import Model


def torchvision_resnet_keys(stages: list[tuple[int, int]], stem_in: int, stem: int) -> list[str]:
    """state_dict keys of torchvision's ResNet with BasicBlocks (no num_batches_tracked), for these stages."""
    bn = ("weight", "bias", "running_mean", "running_var")
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in bn]
    channels = stem
    for stage, (width, blocks) in enumerate(stages, start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            keys += [f"{prefix}.conv1.weight"] + [f"{prefix}.bn1.{k}" for k in bn]
            keys += [f"{prefix}.conv2.weight"] + [f"{prefix}.bn2.{k}" for k in bn]
            if block == 0 and (stage > 1 or channels != width):
                keys += [f"{prefix}.downsample.0.weight"] + [f"{prefix}.downsample.1.{k}" for k in bn]
            channels = width
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize(
    "builder, depth_blocks, parameters",
    [(resnet20, 3, 272_474), (resnet32, 5, 466_906), (resnet56, 9, 855_770)],
)
def test_cifar_resnets_have_he_et_al_layout_and_torchvision_keys(builder, depth_blocks, parameters):
    model = builder()
    assert isinstance(model, Model)
    assert model.num_parameters() == parameters  # 0.27M / 0.47M / 0.86M with 1x1 projection shortcuts
    stages = [(16, depth_blocks), (32, depth_blocks), (64, depth_blocks)]
    assert list(model.state_dict()) == torchvision_resnet_keys(stages, 3, 16)
    assert model.output_shape == (10,)


def test_resnet18_matches_torchvision_keys_and_size():
    model = resnet18(input_shape=(3, 32, 32), num_classes=100)
    assert list(model.state_dict()) == torchvision_resnet_keys([(64, 2), (128, 2), (256, 2), (512, 2)], 3, 64)
    assert model.num_parameters() == 11_220_132  # torchvision's 11.69M less the 7x7 stem and with 100 classes
    assert model.state_dict()["conv1.weight"].shape == (64, 3, 3, 3)


def test_resnet20_on_gray_images_trains_one_step_and_runs_fused_nowhere_it_should_not():
    model = build_model("resnet20", (1, 28, 28), seed=0)
    assert "resnet20" in MODELS
    x = np.random.default_rng(0).random((8, 1, 28, 28)).astype(np.float32)
    y = np.arange(8) % 10
    loss, outputs = model.train_pass(x, y, softmax_cross_entropy)
    assert outputs.shape == (8, 10) and np.isfinite(loss)
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    # No pooling: the only fusions are each ReLU with the batch norm or the Add before it
    # (the stem, every block's bn1, and every block's end), never a batch norm an Add reads.
    fused = [[layer.name or type(layer).__name__ for layer in step.layers] for step in model.execution_plan()]
    fused = [names for names in fused if len(names) > 1]
    assert fused[:2] == [["bn1", "ReLU"], ["layer1.0.bn1", "ReLU"]] and fused[2][0] == "Add"
    assert len(fused) == 1 + 9 + 9
    summary = model.summary()
    assert "layer3.2.conv2" in summary and "Inputs" in summary


def test_resnet_builders_refuse_bad_shapes():
    with pytest.raises(ValueError, match=r"resnet20: input_shape must be \(C, H, W\)"):
        resnet20(input_shape=(28, 28))


def test_cifar_resnet_width_scales_every_stage():
    model = resnet20(input_shape=(1, 28, 28), width=32)
    shapes = dict((name, tuple(p.shape)) for name, p in model.named_parameters())
    assert shapes["conv1.weight"] == (32, 1, 3, 3)
    assert shapes["layer2.0.conv1.weight"] == (64, 32, 3, 3)
    assert shapes["layer3.2.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["fc.weight"] == (10, 128)
    default = resnet20(input_shape=(1, 28, 28))
    assert dict((n, tuple(p.shape)) for n, p in default.named_parameters())["fc.weight"] == (10, 64)
    for bad in (0, -16, 1.5, True, "16"):
        with pytest.raises(ValueError, match="resnet20: width must be a positive int"):
            resnet20(width=bad)
