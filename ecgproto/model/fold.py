"""BatchNorm folded into the preceding convolutions, for inference only.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it can be merged
into the convolution's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``). The folded
network computes the same function (float32 outputs equal to ~1e-6) with one pass over each
activation map less per BatchNorm. Receptive-field arithmetic (``conv_layers``/``time_geometry``)
is unchanged: the fused convolutions keep kernel, stride, padding and padding mode.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _fold_sequential(seq: nn.Sequential) -> None:
    for i in range(len(seq) - 1):
        if isinstance(seq[i], _ConvNd) and isinstance(seq[i + 1], _BatchNorm):
            seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
            seq[i + 1] = nn.Identity()


def _fold_named_pairs(module: nn.Module, pairs: tuple[tuple[str, str], ...]) -> None:
    for conv_name, bn_name in pairs:
        setattr(module, conv_name, fuse_conv_bn_eval(getattr(module, conv_name), getattr(module, bn_name)))
        setattr(module, bn_name, nn.Identity())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv + BatchNorm pair fused and the BatchNorm
    replaced by ``nn.Identity`` (``model`` itself is not touched: parameters, buffers and mode).

    Pairs are a convolution directly followed by a BatchNorm inside an ``nn.Sequential`` (stems,
    1×1 shortcuts) and the ``conv_bn_pairs`` a module declares (``BasicBlock1d``). The copy's
    parameters do not require grad: it is for inference (``predict_arrays``, scoring) only, must
    never be trained or saved as a checkpoint (its state dict has no BatchNorm entries). Raises
    ValueError if a BatchNorm is left that is not preceded by a convolution.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
        pairs = getattr(module, "conv_bn_pairs", None)
        if pairs:
            _fold_named_pairs(module, pairs)
    left = [name for name, m in folded.named_modules() if isinstance(m, _BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm modules without a preceding convolution cannot be folded: {left}")
    folded.requires_grad_(False)
    return folded.eval()  # the new Identity modules too
