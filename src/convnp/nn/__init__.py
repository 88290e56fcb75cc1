"""Layers that hold parameters and call the functional pairs; ``Sequential`` and graph ``Model``s of them."""

from convnp.nn.activations import ELU, Gaussian, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, get_activation
from convnp.nn.blocks import Residual
from convnp.nn.conv import Conv2D
from convnp.nn.conv_transpose import ConvTranspose2D
from convnp.nn.dense import Dense, Flatten
from convnp.nn.dropout import Dropout
from convnp.nn.graph import Model
from convnp.nn.layer import Layer
from convnp.nn.merge import Add, Concatenate, Identity
from convnp.nn.node import Input, Node
from convnp.nn.normalization import BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm
from convnp.nn.pooling import AdaptiveAvgPool2D, AvgPool2D, GlobalAvgPool2D, MaxPool2D
from convnp.nn.sequential import Sequential
from convnp.nn.upsample import Upsample2D
from convnp.parameter import Parameter

__all__ = [
    "Parameter", "Layer", "Sequential", "Model", "Input", "Node",
    "Add", "Concatenate", "Identity", "Residual",
    "Conv2D", "ConvTranspose2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "AdaptiveAvgPool2D", "Upsample2D",
    "Dense", "Flatten",
    "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Gaussian", "Softmax", "get_activation",
    "Dropout", "BatchNorm1D", "BatchNorm2D", "GroupNorm", "LayerNorm",
]  # fmt: skip
