"""Built-in images: captioned shapes, scikit-learn's handwritten digits, and your own image folders.

Every data set yields ``ImageItem(image in [-1, 1], caption, attributes)`` (``common``), so every
image model reads every one of them. One module per idea: ``common`` (items, batches, 8-bit and
PNG conversions), ``scenes`` (what a shapes image shows and its caption), ``shapes`` (drawing
scenes: ``ShapesDataset``), ``compositions`` (the colour-kind-position combinations held out of
training), ``digits``, ``folder`` (your images, and ``export_images`` writing that format),
``grid`` (contact sheets of samples) and ``palette`` (iGPT's colour tokens).
"""

from __future__ import annotations

from genlab.data.images.common import (
    ImageBatch,
    ImageItem,
    collate_images,
    from_uint8,
    png_bytes,
    to_pil,
    to_uint8,
)
from genlab.data.images.compositions import CompositionSplit, composition_split
from genlab.data.images.digits import NUMBER_WORDS, DigitsDataset
from genlab.data.images.folder import (
    CAPTIONS_FILE,
    IMAGE_SUFFIXES,
    ImageFolderDataset,
    export_images,
)
from genlab.data.images.grid import make_grid, save_grid
from genlab.data.images.palette import PixelPalette
from genlab.data.images.scenes import (
    COLORS,
    KINDS,
    POSITIONS,
    SIZES,
    Scene,
    Shape,
    ShapesConfig,
    sample_scenes,
    scenes_for_captions,
)
from genlab.data.images.shapes import ShapesDataset, render_scenes

__all__ = [
    "CAPTIONS_FILE",
    "COLORS",
    "CompositionSplit",
    "IMAGE_SUFFIXES",
    "KINDS",
    "NUMBER_WORDS",
    "PixelPalette",
    "POSITIONS",
    "SIZES",
    "DigitsDataset",
    "ImageBatch",
    "ImageFolderDataset",
    "ImageItem",
    "Scene",
    "Shape",
    "ShapesConfig",
    "ShapesDataset",
    "collate_images",
    "composition_split",
    "export_images",
    "from_uint8",
    "make_grid",
    "png_bytes",
    "render_scenes",
    "sample_scenes",
    "scenes_for_captions",
    "save_grid",
    "to_pil",
    "to_uint8",
]
