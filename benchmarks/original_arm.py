"""The original ARM forward pass, step for step, on this project's modules and weights.

The speed baseline for ``ARM``: it does what ``ResNet18_ARM___RAF.forward`` in
JiaweiShiCV/Amend-Representation-Module does (the de-albino convolution once per channel in a
Python loop, each result concatenated onto a growing tensor, max and min maps computed and
discarded, contiguous NCHW memory), on the CPU instead of the GPU its code insists on.
"""
from __future__ import annotations

import torch

from poster.models.arm import ARM


def original_forward(model: ARM, x: torch.Tensor) -> torch.Tensor:
    """Logits of the published forward pass (its batch mean included)."""
    trunk = model.backbone
    x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    x = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(x))))
    x = model.arrangement(x)
    arm = model.arm
    mask = torch.tensor([], dtype=x.dtype)
    for i in range(x.size(1)):
        mask = torch.cat((mask, arm.de_albino(torch.unsqueeze(x[:, i], 1))), 1)
    x = arm.bn(mask)
    torch.max(x, 1, keepdim=True)
    global_mean = x.mean(dim=[0, 1])
    xmean = torch.mean(x, 1, keepdim=True)
    torch.min(x, 1, keepdim=True)
    x = xmean + arm.alpha * global_mean
    return model.fc(x.view(x.size(0), -1))
