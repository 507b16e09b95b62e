"""FID and KID with Inception-v3 features: the figures papers report, from a local weights file.

genlab's own feature net (``genlab.metrics.features``) measures its small data sets offline;
published FIDs (Heusel et al., 2017) and KIDs (Bińkowski et al., 2018) are computed with the
2048-d pool3 features of TensorFlow's 2015 Inception-v3 (``genlab.nets.inception``), whose
weights the user downloads once (``pt_inception-2015-12-05-6726825d.pth``) and points to.

Images enter as the standard tools read them: uint8 pixels 0..255 as they are, floats in
[-1, 1] (genlab's images) quantised to uint8 first, as saving them to PNG would, so that a
model's samples and the same samples read back from files have one FID. Grey images are read as
RGB. KID with these features is ``genlab.metrics.kid.kid`` of two ``inception_features``. Every
figure is named for its features ("FID with Inception-v3 features"); numbers are comparable with
other papers' only with the standard weights, and FIDs only at the same number of images.

Cost on a CPU: the network reads every image at 299x299 (about 0.4 s per image on one thread),
and the Fréchet distance takes the square root of a 2048x2048 matrix (about a minute on one
thread); a GPU does the first in milliseconds per batch.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.images import to_uint8
from genlab.metrics.fid import feature_statistics, frechet_distance
from genlab.nets.inception import FIDInceptionV3, load_fid_inception

FEATURES_NAME = "Inception-v3"  # "FID with Inception-v3 features"

Weights = str | os.PathLike | FIDInceptionV3


def _network(weights: Weights) -> FIDInceptionV3:
    """A loaded network as it is (on its device), or the one in a weights file, on the CPU."""
    return weights if isinstance(weights, FIDInceptionV3) else load_fid_inception(weights)


def _pixels(images: Tensor) -> Tensor:
    """uint8 RGB pixels (N, 3, H, W) of uint8 pixels or of floats in [-1, 1]."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise GenlabError(
            f"Inception features read images (N, 1 or 3, H, W), got shape {tuple(images.shape)}"
        )
    pixels = images if images.dtype == torch.uint8 else to_uint8(images)
    return pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels


@torch.inference_mode()
def inception_features(weights: Weights, images: Tensor, batch_size: int = 64) -> Tensor:
    """The 2048-d pool3 features (N, 2048), float32 on the CPU, of images (N, C, H, W): uint8
    pixels, or floats in [-1, 1] (quantised to uint8 first). ``weights``: a loaded
    :class:`FIDInceptionV3` or the path of its weights file."""
    net = _network(weights)
    device = next(net.parameters()).device
    pixels = _pixels(images)
    return torch.cat(
        [
            net(pixels[s : s + batch_size].to(device)).float().cpu()
            for s in range(0, len(pixels), batch_size)
        ]
    )


def inception_fid(
    images: Tensor, reference: Tensor, weights: Weights, batch_size: int = 64
) -> float:
    """FID with Inception-v3 features between two sets of images (see
    :func:`inception_features` for what they may be)."""
    net = _network(weights)
    mu1, sigma1 = feature_statistics(inception_features(net, images, batch_size))
    mu2, sigma2 = feature_statistics(inception_features(net, reference, batch_size))
    return frechet_distance(mu1, sigma1, mu2, sigma2)
