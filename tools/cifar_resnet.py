"""CIFAR-style ResNet-20 (He et al. 2016, "Deep Residual Learning for Image Recognition", section 4.2).

3x32x32 input; a 3x3 stem conv with 16 channels; 3 stages of 3 BasicBlocks with 16/32/64 channels
(stride 2 at the first block of stages 2 and 3); option-B shortcuts: a 1x1 conv (stride 2) + BatchNorm
where the shape changes, identity elsewhere; global average pool; Linear(64, 10).
6n+2 layers with n = 3 -> 20 layers, 0.27M parameters.

Parameter names (the ONNX initializer names after a TorchScript export with BN kept):
conv1.weight, bn1.*, layer{1,2,3}.{0,1,2}.conv{1,2}.weight, .bn{1,2}.*, .shortcut.{0,1}.*, fc.weight,
fc.bias. Imported by tools/export_models.py and later gradient-reference scripts.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            # option B: projection shortcut
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, num_blocks: tuple[int, int, int] = (3, 3, 3), num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=False)
        in_planes = 16
        stages = []
        for planes, n, stride in zip((16, 32, 64), num_blocks, (1, 2, 2)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(BasicBlock(in_planes, planes, s))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet20(num_classes: int = 10) -> CifarResNet:
    return CifarResNet((3, 3, 3), num_classes)


if __name__ == "__main__":
    m = resnet20()
    print(sum(p.numel() for p in m.parameters()), "parameters")
    print(m(torch.randn(2, 3, 32, 32)).shape)
