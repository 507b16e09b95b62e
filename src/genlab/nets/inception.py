"""Inception-v3 as FID measures with it: TensorFlow's 2015 ImageNet graph, in PyTorch.

Inception-v3 (Szegedy et al., 2016, "Rethinking the Inception Architecture for Computer
Vision") is a stem of plain convolutions followed by "Inception" blocks, each running a few
branches side by side (a 1x1 convolution, stacks of factorised 3x3 or 1x7/7x1 convolutions, a
pooling) and concatenating their channels. FID (Heusel et al., 2017, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium") fits Gaussians to the 2048-d
"pool3" features of the model TensorFlow released on 2015-12-05; KID (Bińkowski et al., 2018)
reads the same features. A number is only comparable with published FIDs when it uses *that*
graph and *those* weights, and the graph is not torchvision's Inception-v3:

- the pooling branch of blocks A, C and E averages over the real pixels of the 3x3 window only
  (TensorFlow's average pool ignores the zero padding: ``count_include_pad=False``);
- the pooling branch of the last block (``Mixed_7c``) takes a 3x3 *max*, where the paper and
  every other block average: a quirk of the released graph, kept because the weights expect it;
- the classifier has 1008 outputs (1000 ImageNet classes and 8 unused), not 1000;
- the input is resized to 299x299 with TensorFlow 1's bilinear resize, in which output pixel i
  reads the source at i * in/out (no half-pixel centres), and scaled as (x - 128) / 128.

pytorch-fid and torch-fidelity ship that graph's weights converted to a PyTorch state dict,
``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's release ``fid_weights``; torch-fidelity
names it ``weights-inception-2015-12-05-6726825d.pth``). genlab never downloads it: the user
gives its path, and it is read as plain tensors (``torch.load(weights_only=True)``, which runs
no code hidden in a pickle) or from a safetensors copy of the same state dict. The layer names
here are those of the file, so it loads as is.

The resize follows the TensorFlow graph, as torch-fidelity does (and torchmetrics with
``antialias=False``). pytorch-fid resizes with ``F.interpolate`` (half-pixel centres), and
torchmetrics by default with an antialiased one, so FIDs of images smaller than 299 pixels
differ a little between those tools; at 299x299 the resize is the identity and all agree.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.checkpoint import check_state_dict
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors

INPUT_SIZE = 299  # pixels a side the graph reads
FEATURE_DIM = 2048  # the pool3 features FID and KID use
NUM_CLASSES = 1008  # 1000 ImageNet classes and 8 unused outputs of the 2015 graph
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE
)
# Batch norm's step counter: in PyTorch's state dicts, not in every converted file.
_COUNTER = "num_batches_tracked"


def tf1_resize_bilinear(x: Tensor, size: int) -> Tensor:
    """Resize (B, C, H, W) floats to (B, C, size, size) as TensorFlow 1's ``resize_bilinear``
    (``align_corners=False``): output pixel i interpolates the source at i * in/out, between
    its floor and the next pixel (clamped at the edge)."""

    def lerp_along(x: Tensor, dim: int) -> Tensor:
        n = x.shape[dim]
        pos = torch.arange(size, dtype=torch.float32, device=x.device) * (n / size)
        lo = pos.long()
        hi = (lo + 1).clamp(max=n - 1)
        frac = (pos - lo.float()).to(x.dtype)
        shape = [1] * x.dim()
        shape[dim] = size
        a, b = x.index_select(dim, lo), x.index_select(dim, hi)
        return a + (b - a) * frac.view(shape)

    return lerp_along(lerp_along(x, 3), 2)  # along the width, then the height


class ConvBN(nn.Module):
    """Every layer of Inception: a convolution without bias, batch norm (TensorFlow's epsilon
    1e-3), ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: Tensor) -> Tensor:
    """TensorFlow's 3x3 average pool: the padding is not counted in the average."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b-d): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([a, b, c, d], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): strided 3x3 | 1x1 -> 3x3 -> strided 3x3 | max pool."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block (Mixed_6b-e), 7x7 convolutions factorised into 1x7 and 7x1:
    1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = (
            {"kernel_size": (1, 7), "padding": (0, 3)},
            {"kernel_size": (7, 1), "padding": (3, 0)},
        )
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            c = layer(c)
        c = self.branch7x7dbl_5(c)
        d = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([a, b, c, d], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 1x1 -> strided 3x3 | 1x1 -> 1x7 -> 7x1 -> strided 3x3
    | max pool."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = layer(b)
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block (Mixed_7b, Mixed_7c), each 3x3 split into parallel 1x3 and 3x1 outputs:
    1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | pool -> 1x1. The pool averages in
    Mixed_7b and takes the max in Mixed_7c, as the 2015 graph does."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise GenlabError(f"InceptionE pools with 'avg' or 'max', got '{pool}'")
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
        pooled = _avg_pool_3x3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([a, b, c, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: uint8-range RGB pixels of any size in, 2048-d pool3 features out.

    ``forward`` resizes to 299x299 (TensorFlow 1's bilinear), scales to [-1, 1), runs the stem
    and the eleven Inception blocks, and averages the last 8x8 map over space. ``fc`` is the
    graph's 1008-way ImageNet classifier, read from the weights file but unused by FID."""

    def __init__(self) -> None:
        super().__init__()
        # stem: 299 -> 149 -> 147 -> 147 -> (max pool) 73 -> 73 -> 71 -> (max pool) 35
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        # 35x35: 192 -> 256 -> 288 -> 288 channels
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        # 17x17: 768 channels
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        # 8x8: 1280 -> 2048 -> 2048 channels
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def blocks(self) -> list[nn.Module]:
        """The eleven Inception blocks, in order (35x35, then 17x17, then 8x8)."""
        names = ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")
        return [getattr(self, f"Mixed_{name}") for name in names]

    def forward(self, pixels: Tensor) -> Tensor:
        """RGB pixels (B, 3, H, W) with values 0..255 (uint8 or float) -> features (B, 2048)."""
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise GenlabError(
                f"the FID Inception reads RGB images (B, 3, H, W), got shape {tuple(pixels.shape)}"
            )
        x = tf1_resize_bilinear(pixels.float(), INPUT_SIZE)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in self.blocks():
            x = block(x)
        return x.mean(dim=(2, 3))  # pool3: the average over the 8x8 map


def read_inception_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of an Inception weights file: a ``.safetensors`` file, or a PyTorch file read
    with ``torch.load(weights_only=True)``. One-line ``GenlabError`` when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(
            f"Inception weights not found: {path} (get {WEIGHTS_FILE} from {WEIGHTS_URL})"
        )
    if path.suffix == ".safetensors":
        return load_tensors(path, what="Inception weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file fails in pickle, zip, struct or EOF errors alike
        # torch's message is many lines and suggests weights_only=False: name the culprit.
        culprit = re.search(r"GLOBAL (\S+)", str(e))
        found = f": it references {culprit.group(1)}" if culprit else ""
        raise GenlabError(
            f"{path} is not a plain file of tensors (torch.load with weights_only=True refused "
            f"it{found}); it is corrupt or not {WEIGHTS_FILE}"
        ) from e
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise GenlabError(f"{path} does not hold a dictionary of tensors (a state dict)")
    return state


def load_fid_inception(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> FIDInceptionV3:
    """The FID Inception-v3 with the weights at ``path`` (in eval mode, no gradients). Refuses,
    in one line, a file that is not this network's state dict; batch norm's
    ``num_batches_tracked`` counters may be present or not."""
    state = {k: v for k, v in read_inception_weights(path).items() if not k.endswith(_COUNTER)}
    net = FIDInceptionV3()
    own = {k: v for k, v in net.state_dict().items() if not k.endswith(_COUNTER)}
    check_state_dict(own, state, f"the Inception weights {path}")
    net.load_state_dict(state, strict=False)  # only the counters are left out
    return net.to(device).eval().requires_grad_(False)
