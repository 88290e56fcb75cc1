"""Networks written in plain PyTorch, the way their authors write them, for the interop tests.

Import after ``pytest.importorskip("torch")``. Every builder returns a float64
module in eval mode whose weights and batch-norm statistics are not the
defaults (perturbed weights, a few training-mode passes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock; ``join`` picks how the shortcut is added back."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None, join: str = "iadd") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride
        self.join = join

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        if self.join == "iadd":
            out += identity
        elif self.join == "add":
            out = out + identity
        else:  # the shortcut first: a depth-first walk from the output would meet downsample before conv1
            out = torch.add(identity, out)
        out = self.relu(out)

        return out


class ResNet(nn.Module):
    """torchvision's ResNet layout (small): stem, two stages of BasicBlocks, average pooling, fc."""

    def __init__(self, joins=("iadd", "add", "torch_add"), channels: int = 3, num_classes: int = 5, head="flatten"):
        super().__init__()
        self.inplanes = 8
        self.conv1 = nn.Conv2d(channels, 8, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(8, [joins[0]], stride=1)
        self.layer2 = self._make_layer(16, list(joins[1:]), stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, num_classes)
        self.head = head

    def _make_layer(self, planes: int, joins: list[str], stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, join=joins[0])]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes, join=join) for join in joins[1:]]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)

        x = self.layer1(x)
        x = self.layer2(x)

        x = self.avgpool(x)
        if self.head == "flatten":
            x = torch.flatten(x, 1)
        else:
            x = x.view(x.size(0), -1)
        x = self.fc(x)

        return x


class InceptionBlock(nn.Module):
    """GoogLeNet's Inception module: 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and pool -> 1x1 branches, concatenated."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1 = nn.Conv2d(in_channels, 4, kernel_size=1)
        self.branch2 = nn.Sequential(nn.Conv2d(in_channels, 3, kernel_size=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1))
        self.branch3_reduce = nn.Conv2d(in_channels, 2, kernel_size=1)
        self.branch3 = nn.Conv2d(2, 3, kernel_size=5, padding=2)
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, 2, kernel_size=1))

    def forward(self, x):
        b1 = F.relu(self.branch1(x), inplace=True)
        b2 = self.branch2(x).relu()
        b3 = torch.relu(self.branch3(F.relu(self.branch3_reduce(x))))
        b4 = F.relu(self.branch4(x))
        return torch.cat([b1, b2, b3, b4], 1)


class InceptionNet(nn.Module):
    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True))
        self.inception = InceptionBlock(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(13, num_classes)

    def forward(self, x):
        x = self.inception(self.stem(x))
        x = self.pool(x).view(x.size(0), -1)
        return self.fc(x)


class DoubleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.block(x)


class UNet(nn.Module):
    """A small U-Net: two encoder levels, a bottleneck, a transposed-convolution and an upsampling decoder level."""

    def __init__(self, channels: int = 1, num_classes: int = 3) -> None:
        super().__init__()
        self.enc1 = DoubleConv(channels, 4)
        self.enc2 = DoubleConv(4, 8)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(8, 12)
        self.up2 = nn.ConvTranspose2d(12, 8, kernel_size=2, stride=2)
        self.dec2 = DoubleConv(16, 8)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.reduce1 = nn.Conv2d(8, 4, kernel_size=1)
        self.dec1 = DoubleConv(8, 4)
        self.head = nn.Conv2d(4, num_classes, kernel_size=1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        u1 = self.reduce1(self.up1(d2))
        d1 = self.dec1(torch.cat((u1, e1), dim=1))
        return self.head(d1)


def prepared(module: nn.Module, input_shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """``module`` in float64 with perturbed weights and moved batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.1 * torch.randn_like(param))
        module.train()
        for _ in range(3):
            module(torch.randn(6, *input_shape, dtype=torch.float64))
    return module.eval()


def resnet(joins=("iadd", "add", "torch_add"), head="flatten") -> nn.Module:
    return prepared(ResNet(joins, head=head), (3, 8, 8))


def inception() -> nn.Module:
    return prepared(InceptionNet(), (3, 8, 8))


def unet() -> nn.Module:
    return prepared(UNet(), (1, 16, 16))
