"""ImageNet initialisation from a local torchvision ResNet-18 state dict: the loaded 1D trunk computes
exactly what the reference's 2D torchvision network (random (12×7) conv1) computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ecgproto.config import load_config
from ecgproto.errors import ConfigError
from ecgproto.model.backbones import Backbone
from ecgproto.model.pretrained import apply_pretrained, load_imagenet_trunk, read_state_dict

WIDTHS = (64, 128, 256, 512)


def torchvision_resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision resnet18's key names and shapes (written from its architecture)."""
    g = torch.Generator().manual_seed(seed)
    state = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g)}

    def bn(prefix: str, ch: int) -> None:
        state[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(ch, generator=g)
        state[f"{prefix}.bias"] = 0.1 * torch.randn(ch, generator=g)
        state[f"{prefix}.running_mean"] = 0.1 * torch.randn(ch, generator=g)
        state[f"{prefix}.running_var"] = 0.5 + torch.rand(ch, generator=g)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(100)

    bn("bn1", 64)
    cin = 64
    for i, cout in enumerate(WIDTHS):
        for b in range(2):
            p = f"layer{i + 1}.{b}"
            first_in = cin if b == 0 else cout
            state[f"{p}.conv1.weight"] = torch.randn(cout, first_in, 3, 3, generator=g) * (2 / (9 * first_in)) ** 0.5
            bn(f"{p}.bn1", cout)
            state[f"{p}.conv2.weight"] = torch.randn(cout, cout, 3, 3, generator=g) * (2 / (9 * cout)) ** 0.5
            bn(f"{p}.bn2", cout)
            if b == 0 and i > 0:
                state[f"{p}.downsample.0.weight"] = torch.randn(cout, cin, 1, 1, generator=g) * (2 / cin) ** 0.5
                bn(f"{p}.downsample.1", cout)
        cin = cout
    state["fc.weight"] = torch.randn(1000, 512, generator=g)
    state["fc.bias"] = torch.randn(1000, generator=g)
    return state


def reference_2d_forward(x: torch.Tensor, conv1: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference 2D branch in eval mode: Conv2d(1→64, (12,7), stride (1,2), pad (0,3)) on (B,1,12,T),
    then torchvision's bn1/relu/maxpool and layers 1–4 with their 3×3 kernels and zero padding."""
    def bn(z, p):
        return F.batch_norm(z, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                            state[f"{p}.bias"], training=False, eps=1e-5)

    z = F.conv2d(x[:, None], conv1, stride=(1, 2), padding=(0, 3))
    z = F.max_pool2d(F.relu(bn(z, "bn1")), 3, 2, 1)
    for i in range(4):
        for b in range(2):
            p, stride = f"layer{i + 1}.{b}", (2 if (b == 0 and i > 0) else 1)
            out = F.relu(bn(F.conv2d(z, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            short = z if f"{p}.downsample.0.weight" not in state else bn(
                F.conv2d(z, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            z = F.relu(out + short)
    return z  # (B, 512, 1, T')


def test_loaded_trunk_equals_the_reference_2d_network():
    torch.manual_seed(0)
    backbone = Backbone("resnet18_2d", 64)
    state = torchvision_resnet18_state()
    assert load_imagenet_trunk(backbone.trunk, state) > 60
    backbone.eval()
    x = torch.randn(2, 12, 1000)
    conv1 = backbone.trunk.stem[0].weight.detach()[:, None]  # (64, 1, 12, 7): the random reference conv1
    with torch.no_grad():
        ours = backbone(x)
        ref = reference_2d_forward(x, conv1, state)
    assert ours.shape == ref.shape == (2, 512, 1, 32)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # conv1 stays random (as in the reference); the rest of the trunk is ImageNet
    assert not torch.equal(backbone.trunk.stem[0].weight, torch.zeros_like(backbone.trunk.stem[0].weight))
    torch.testing.assert_close(backbone.trunk.stem[1].running_var, state["bn1.running_var"])


def test_apply_pretrained_from_a_local_file_and_refusals(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18_state(1), path)
    from ecgproto.model import build_network

    cfg = load_config(None, ["model.branches.rhythm.base_width=4", "model.branches.global.base_width=4",
                             "model.branches.morphology.prototypes_per_class=1",
                             f"model.branches.morphology.pretrained={path}"]).model
    torch.manual_seed(0)
    model = build_network(cfg, 1000, 100)
    assert apply_pretrained(model) == {"morphology": str(path)}
    w = model.branches["morphology"].backbone.trunk.stages[0][0].conv1.weight
    torch.testing.assert_close(w, torchvision_resnet18_state(1)["layer1.0.conv1.weight"][:, :, 1, :])
    with pytest.raises(NotImplementedError, match="does not download"):
        read_state_dict("imagenet")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_state_dict(str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="base_width 64"):
        load_config(None, ["model.branches.morphology.base_width=8", f"model.branches.morphology.pretrained={path}"])
    small = Backbone("resnet34_2d", 64)
    with pytest.raises(ValueError, match="missing"):
        load_imagenet_trunk(small.trunk, torchvision_resnet18_state(), "resnet18.pth")
