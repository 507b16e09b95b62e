"""iGPT's pixel palette: exact round trips on palette images, a deterministic k-means whose
colours are the means of their pixels, area downsampling, JSON round trips and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genlab.core.errors import GenlabError
from genlab.data.images.common import from_uint8
from genlab.data.images.palette import PixelPalette

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = torch.tensor(
    [[0, 0, 0], [255, 255, 255], [200, 30, 40], [20, 180, 60], [35, 60, 220]], dtype=torch.uint8
)


def palette_images(n: int, grid: int, size: int, colours: torch.Tensor, seed: int = 0):
    """Images (n, C, size, size) whose grid x grid blocks each have one of ``colours``, and the
    index of each block's colour (n, grid, grid)."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(len(colours), (n, grid, grid), generator=g)
    small = from_uint8(colours)[index].permute(0, 3, 1, 2)
    return F.interpolate(small, size=(size, size), mode="nearest"), index


@pytest.mark.parametrize("grid", [8, 16])
def test_images_of_palette_colours_round_trip_exactly(grid: int) -> None:
    images, index = palette_images(12, grid, 32, COLOURS)
    palette = PixelPalette.fit(images, k=len(COLOURS), grid=grid, seed=0)
    assert palette.num_codes == 5 and palette.grid == grid and palette.channels == 3
    assert sorted(palette.colors.tolist()) == sorted(COLOURS.tolist())
    codes = palette.encode(images)
    assert codes.shape == (12, grid, grid) and codes.dtype == torch.int64
    assert torch.equal(palette.colors[codes], COLOURS[index])  # every block got its colour
    assert torch.equal(palette.decode(codes, 32), images)  # bit for bit
    assert torch.equal(palette.encode(palette.decode(codes, 32)), codes)


def test_grey_images_and_fewer_colours_than_k() -> None:
    greys = torch.tensor([[0], [90], [255]], dtype=torch.uint8)
    images, index = palette_images(6, 8, 16, greys)
    palette = PixelPalette.fit(images, k=16, grid=8)
    assert palette.colors.tolist() == [[0], [90], [255]]  # the distinct colours, sorted
    assert torch.equal(palette.encode(images), index)  # sorted greys: index == code
    assert palette.decode(index, 16).shape == (6, 1, 16, 16)


def noisy_images(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(40, 3, 16, 16, generator=g) * 2 - 1).clamp(-1, 1)


def test_fit_is_deterministic_and_its_colours_are_their_clusters_means() -> None:
    images = noisy_images(0)
    a = PixelPalette.fit(images, k=12, grid=8, seed=3)
    b = PixelPalette.fit(images, k=12, grid=8, seed=3)
    assert torch.equal(a.colors, b.colors) and a.num_codes == 12
    # Lloyd's fixed point: each colour is the mean of the pixels coded to it (to 8 bits)
    pixels = F.interpolate(images, size=(8, 8), mode="area").permute(0, 2, 3, 1).reshape(-1, 3)
    codes = a.encode(images).reshape(-1)
    colours = from_uint8(a.colors)
    for k in range(a.num_codes):
        mean = pixels[codes == k].mean(0)
        assert (mean - colours[k]).abs().max() < 2 / 127.5
    # and it quantises better than the same number of random training pixels
    random = pixels[torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))[:12]]
    fitted_error = (pixels - colours[codes]).pow(2).sum(1).mean()
    random_error = torch.cdist(pixels, random).min(1).values.pow(2).mean()
    assert fitted_error < 0.8 * random_error


def test_encoding_reads_the_area_mean_of_each_block() -> None:
    images = noisy_images(1)[:4]
    palette = PixelPalette.fit(images, k=6, grid=4)
    blocks = images.unfold(2, 4, 4).unfold(3, 4, 4).mean((-1, -2))  # (B, C, 4, 4)
    colours = from_uint8(palette.colors)
    nearest = (blocks.permute(0, 2, 3, 1)[..., None, :] - colours).pow(2).sum(-1).argmin(-1)
    assert torch.equal(palette.encode(images), nearest)


def test_json_round_trip() -> None:
    images = noisy_images(2)
    palette = PixelPalette.fit(images, k=8, grid=8)
    again = PixelPalette.from_json(palette.to_json())
    assert torch.equal(again.colors, palette.colors) and again.grid == 8
    assert torch.equal(again.encode(images), palette.encode(images))
    with pytest.raises(GenlabError, match="not a genlab pixel palette"):
        PixelPalette.from_json('{"colors": [[1, 2, 3]]}')
    with pytest.raises(GenlabError, match="8-bit"):
        PixelPalette.from_json('{"grid": 8, "colors": [[1, 2, 300]]}')


def test_errors_name_the_problem() -> None:
    palette = PixelPalette(COLOURS, grid=8)
    with pytest.raises(GenlabError, match="3-channel palette"):
        palette.encode(torch.zeros(2, 1, 32, 32))
    with pytest.raises(GenlabError, match=r"in \[0, 5\)"):
        palette.decode(torch.full((1, 8, 8), 5), 32)
    with pytest.raises(GenlabError, match=r"not \(B, 8, 8\)"):
        palette.decode(torch.zeros(1, 4, 4, dtype=torch.long), 32)
    with pytest.raises(GenlabError, match="k >= 1"):
        PixelPalette.fit(torch.zeros(1, 3, 8, 8), k=0, grid=8)
