"""CIFAR-scale classifiers of the adversarial-training literature, registered with timm (doracle.models.entrypoints).

- ``doracle_preact_resnet18``: the PreActResNet-18 of Rice, Wong & Kolter 2020
  (robust_overfitting, ``preactresnet.py``) and Wong, Rice & Kolter 2020 (fast_adversarial):
  PreActBlock, [2, 2, 2, 2], a 3x3 stride-1 64-channel stem, a final BN + ReLU before pooling;
  PyTorch's default initialisation, as there. 11,172,170 parameters for 10 classes (the final
  BN's 1,024 included; kuangliu's pytorch-cifar PreActResNet18 has no final BN: 11,171,146).
  The projection shortcut takes the pre-activated input, as in He et al. 2016 and Rice et al.;
  fast_adversarial's ``PreActBlock`` applies it to the raw block input instead (same parameters,
  a slightly different function in the three down-sampling blocks).
- ``doracle_wrn28_10``, ``doracle_wrn34_10``: the WideResNet of the TRADES code (the PyTorch
  port of Madry et al.'s): pre-activation basic blocks, widths 16, 16k, 32k, 64k, BatchNorm with
  PyTorch's default momentum 0.1 (Madry's TensorFlow ``decay=0.9``), conv weights
  N(0, 2 / (3 * 3 * out_channels)), BN weight 1 / bias 0, linear bias 0; dropout 0 by default.
  TRADES' unused ``sub_block1`` (never called in ``forward``) is left out: it has no effect on
  the function and the published parameter counts (36.48M, 46.16M) do not include it.

Both end in global average pooling (the references pool a fixed 4x4 / 8x8, which is the same
thing at 32x32), so any input size works: 28x28 (MNIST), 32x32, 64x64 (TinyImageNet). Inputs in
[0, 1], normalisation inside (:class:`doracle.models.small.Normalized`), logits out. Every weight
is drawn from torch's global generator in a fixed order: same seed, same bytes.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from doracle.models.entrypoints import entrypoint
from doracle.models.small import Normalized, _own, _stats


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_blocks=(2, 2, 2, 2), num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.bn = nn.BatchNorm2d(512 * PreActBlock.expansion)
        self.linear = nn.Linear(512 * PreActBlock.expansion, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes * PreActBlock.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


class WideBasicBlock(nn.Module):
    """TRADES' ``BasicBlock``: BN-ReLU-conv-BN-ReLU-(dropout)-conv, 1x1 shortcut on a width change.

    When the width changes the shortcut takes the pre-activated input (as in the reference)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride,
                                                                 bias=False)

    def forward(self, x):
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.equal_in_out else self.shortcut(act))


class WideResNet(nn.Module):
    def __init__(self, depth: int = 34, widen: int = 10, num_classes: int = 10, in_chans: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = self._group(n, widths[0], widths[1], 1, dropout)
        self.block2 = self._group(n, widths[1], widths[2], 2, dropout)
        self.block3 = self._group(n, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @staticmethod
    def _group(n: int, in_planes: int, out_planes: int, stride: int, dropout: float) -> nn.Sequential:
        return nn.Sequential(*[WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                              stride if i == 0 else 1, dropout) for i in range(n)])

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights (doracle trains its own; pretrained=False)")


def wide_resnet(depth: int = 28, widen: int = 10, dropout: float = 0.0, *, num_classes: int = 10,
                in_chans: int = 3, mean=None, std=None) -> Normalized:
    """WideResNet-``depth``-``widen`` with normalisation inside (the registered WRNs' factory)."""
    mean, std = _stats(in_chans, mean, std)
    return Normalized(WideResNet(depth, widen, num_classes, in_chans, dropout), mean, std)


@entrypoint
def doracle_preact_resnet18(pretrained=False, num_classes=10, in_chans=3, img_size=32, mean=None, std=None,
                            **kwargs):
    """PreActResNet-18 (Rice et al. 2020; Wong et al. 2020): 11,172,170 parameters for 10 classes."""
    _no_pretrained("doracle_preact_resnet18", pretrained)
    mean, std = _stats(in_chans, mean, std)
    return Normalized(PreActResNet((2, 2, 2, 2), num_classes, in_chans), mean, std)


@entrypoint
def doracle_wrn28_10(pretrained=False, num_classes=10, in_chans=3, img_size=32, mean=None, std=None, **kwargs):
    """WideResNet-28-10 (TRADES/Madry code): 36,479,194 parameters for 10 classes. Option: dropout."""
    _no_pretrained("doracle_wrn28_10", pretrained)
    return wide_resnet(28, 10, num_classes=num_classes, in_chans=in_chans, mean=mean, std=std,
                       **_own(kwargs, ("dropout",)))


@entrypoint
def doracle_wrn34_10(pretrained=False, num_classes=10, in_chans=3, img_size=32, mean=None, std=None, **kwargs):
    """WideResNet-34-10 (TRADES/Madry code): 46,160,474 parameters for 10 classes. Option: dropout."""
    _no_pretrained("doracle_wrn34_10", pretrained)
    return wide_resnet(34, 10, num_classes=num_classes, in_chans=in_chans, mean=mean, std=std,
                       **_own(kwargs, ("dropout",)))
