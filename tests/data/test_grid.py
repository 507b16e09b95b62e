"""Sample grids: layout, padding and the PNG they write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.core.errors import GenlabError
from genlab.data.images import to_uint8
from genlab.data.images.grid import make_grid, read_grid, save_grid


def test_make_grid_places_images_row_by_row() -> None:
    images = torch.stack([torch.full((3, 4, 5), v) for v in (-1.0, 0.5, 1.0)])
    grid = make_grid(images, nrow=2, padding=1, pad_value=0.0)
    assert grid.shape == (3, 2 * (4 + 1) + 1, 2 * (5 + 1) + 1)
    assert (grid[:, 1:5, 1:6] == -1).all()  # first row, first column
    assert (grid[:, 1:5, 7:12] == 0.5).all()  # first row, second column
    assert (grid[:, 6:10, 1:6] == 1).all()  # second row, first column
    assert (grid[:, 6:10, 7:12] == 0).all()  # the empty cell keeps the pad value
    assert (grid[:, 0] == 0).all() and (grid[:, :, 6] == 0).all()  # padding lines


def test_make_grid_takes_a_list_and_fewer_images_than_a_row() -> None:
    grid = make_grid([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)], nrow=8, padding=0)
    assert torch.equal(grid, torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]]))


def test_save_grid_writes_the_grid_as_png(tmp_path) -> None:
    images = torch.rand(5, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    grid = save_grid(images, tmp_path / "g.png", nrow=3, padding=2, scale=2)
    png = np.asarray(Image.open(tmp_path / "g.png"))
    assert png.shape == (grid.shape[1] * 2, grid.shape[2] * 2, 3)
    expected = to_uint8(grid).permute(1, 2, 0).numpy()
    assert np.array_equal(png[::2, ::2], expected) and np.array_equal(png[1::2, 1::2], expected)


def test_grey_images_give_a_grey_png(tmp_path) -> None:
    save_grid(torch.zeros(4, 1, 3, 3), tmp_path / "g.png", nrow=2)
    assert Image.open(tmp_path / "g.png").mode == "L"


def test_bad_input_is_a_one_line_error() -> None:
    with pytest.raises(GenlabError, match="B x C x H x W"):
        make_grid(torch.zeros(3, 4, 4))
    with pytest.raises(GenlabError, match="nrow"):
        make_grid(torch.zeros(1, 3, 4, 4), nrow=0)


def test_read_grid_returns_the_images_save_grid_wrote(tmp_path) -> None:
    images = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    save_grid(images, tmp_path / "g.png", nrow=8, scale=3)
    back = read_grid(tmp_path / "g.png", side=8, nrow=8, scale=3)
    assert back.shape == images.shape
    assert torch.equal(to_uint8(back), to_uint8(images))  # exact up to the PNG's 8 bits


def test_read_grid_refuses_a_grid_of_other_settings(tmp_path) -> None:
    save_grid(torch.zeros(4, 1, 8, 8), tmp_path / "g.png", nrow=4, scale=2)
    with pytest.raises(GenlabError, match="not a grid of 10-pixel images"):
        read_grid(tmp_path / "g.png", side=10, nrow=4, scale=2)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(GenlabError, match="cannot read the grid"):
        read_grid(tmp_path / "bad.png", side=8)
