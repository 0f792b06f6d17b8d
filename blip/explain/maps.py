"""Where did the model look? The maps of every word, as data: :class:`Heatmaps` holds, per word, the
cross-attention (and Grad-CAM, :mod:`~blip.explain.gradcam`) of every layer and head on the patch grid.

Every text layer in BLIP has a cross-attention block in which each text token spreads one unit of
attention over the image tokens. Those weights, laid back on the patch grid, are the simplest answer
to "which part of the picture was this word about?".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .layers import default_layer

# Tokens that are not words of the text: they get no heatmap of their own.
SPECIAL_PIECES = frozenset({"[CLS]", "[SEP]", "[PAD]", "[DEC]", "[ENC]"})


@dataclass
class WordSpan:
    """A display word made of one or more wordpieces (``tokens`` index the text's token list)."""

    text: str
    tokens: list[int]


def merge_wordpieces(pieces: list[str], skip: frozenset[str] = frozenset()) -> list[WordSpan]:
    """Join WordPiece tokens ("sk", "##ate", "##board") into words ("skateboard").

    Args:
        pieces: token strings in order.
        skip: tokens to leave out (special tokens such as "[CLS]", "[SEP]", "[PAD]").
    """
    words: list[WordSpan] = []
    for i, piece in enumerate(pieces):
        if piece in skip:
            continue
        if piece.startswith("##") and words and words[-1].tokens[-1] == i - 1:
            words[-1].text += piece[2:]
            words[-1].tokens.append(i)
        else:
            words.append(WordSpan(piece, [i]))
    return words


@dataclass
class Heatmaps:
    """Attention (and optionally Grad-CAM) of a text's tokens over the image patch grid.

    Arrays are (tokens, layers, heads, patches), float32, with the image's class token removed;
    ``grid`` gives the (rows, columns) the patches fold into, taken from the checkpoint's config.
    ``source`` says which model's maps these are ("caption", "itm", "vqa-question", "vqa-answer"),
    which picks the layer a viewer opens on (:meth:`default_layer`).
    """

    words: list[WordSpan]
    grid: tuple[int, int]
    attention: np.ndarray
    gradcam: np.ndarray | None = None
    source: str = ""

    @classmethod
    def build(
        cls, pieces: list[str], grid: tuple[int, int], attention, gradcam=None, source: str = ""
    ) -> Heatmaps:
        """Package per-token maps of the text ``pieces`` (see :func:`to_patch_maps` for the layout)."""
        return cls(
            words=merge_wordpieces(pieces, SPECIAL_PIECES),
            grid=grid,
            attention=to_patch_maps(attention, grid),
            gradcam=to_patch_maps(gradcam, grid) if gradcam is not None else None,
            source=source,
        )

    def default_layer(self, kind: str = "attention") -> int | None:
        """The layer to show first for ``kind`` maps, measured per source and depth
        (:data:`~blip.explain.layers.DEFAULT_LAYERS`); None means the mean over layers."""
        return default_layer(self.source, kind, self.num_layers)

    @property
    def num_layers(self) -> int:
        return self.attention.shape[1]

    @property
    def num_heads(self) -> int:
        return self.attention.shape[2]

    def kinds(self) -> list[str]:
        return ["attention", "gradcam"] if self.gradcam is not None else ["attention"]

    def grid_map(
        self,
        word: int | None = None,
        layer: int | None = None,
        head: int | None = None,
        kind: str = "attention",
    ) -> np.ndarray:
        """One (rows, columns) map.

        Args:
            word: index into :attr:`words`; None averages over every word of the text.
            layer: a layer index, or None for the mean over layers.
            head: a head index, or None for the mean over heads.
            kind: "attention" (raw cross-attention) or "gradcam".
        """
        if kind not in self.kinds():
            raise ValueError(f"kind must be one of {self.kinds()}")
        data = self.attention if kind == "attention" else self.gradcam
        if not self.words:
            raise ValueError("this text has no words to show")
        tokens = [t for w in self.words for t in w.tokens] if word is None else self.words[word].tokens
        selected = data[tokens]  # (n, layers, heads, patches)
        selected = selected.mean(axis=1) if layer is None else selected[:, layer]
        selected = selected.mean(axis=1) if head is None else selected[:, head]
        return selected.mean(axis=0).reshape(self.grid)


def to_patch_maps(per_layer: list[torch.Tensor] | torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """(layers) x (tokens, heads, 1 + patches) -> numpy (tokens, layers, heads, patches), class token dropped."""
    stacked = torch.stack(list(per_layer), dim=1) if isinstance(per_layer, list | tuple) else per_layer
    patches = stacked[..., 1:]
    if patches.shape[-1] != grid[0] * grid[1]:
        raise ValueError(f"{patches.shape[-1]} image patches do not fold into a {grid[0]}x{grid[1]} grid")
    return patches.detach().float().cpu().numpy()
