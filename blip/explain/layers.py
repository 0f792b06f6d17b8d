"""Which layer's map to show first: a small table of measured defaults.

A heatmap can show one text layer or the mean over layers. Layers differ in how well they point at the
thing a word names, so the viewer opens on the layer that pointed best where that was measured:
``scripts/pointing_layers.py`` runs the pointing game (does the map's maximum fall on the named
shape's box, dilated by one patch?) on the offline demo models' held-out two-shape scenes, for every
layer and the mean, per kind of map. Models of a depth never measured open on the mean over layers.
"""

from __future__ import annotations

# (source, kind) -> {number of text layers: layer index to show, or None for the mean over layers}.
# Sources: "caption" (the captioner's cross-attention, captions and scored captions), "itm" (the
# matcher's, matched texts and zero-shot labels). Kinds: "attention", "gradcam".
#
# Measured by scripts/pointing_layers.py --count 200 on the demo models shipped before retrain 8 (3 text
# layers, heads averaged; held-out two-shape scenes of seed 20261128: 379 shape words in the captions,
# 400 under the matcher). On retrain 9's models each default is the best of its row, or for ITM
# attention within 0.3 points of it (assets/demo/README.md):
#
#                       layer 0   layer 1   layer 2    mean
#   caption attention     95.5%     95.3%     98.9%   98.4%
#   caption gradcam       93.1%     89.4%     98.7%   97.4%
#   itm attention         98.8%     99.2%     98.8%   99.0%   (trained with an attention-grounding loss)
#   itm gradcam           93.5%     90.8%     16.0%   97.8%
#
# The last layer wins for both of the captioner's maps, the middle one for the matcher's attention,
# and the mean for ITM Grad-CAM (a tie would go to the mean, which hides no layer). ITM Grad-CAM in
# the last layer points for only 16% of words: the match head reads only the first token's final
# state, so another word's last cross-attention barely moves the match score.
#
# For 12-layer models (the base and large checkpoints: their text side is always BERT-base) nothing
# could be measured here (no pointing data for real photographs); ITM Grad-CAM uses layer 6, the
# block LAVIS's BLIP demo explains (``compute_gradcam(..., block_num=6)``), and the rest the mean.
DEFAULT_LAYERS: dict[tuple[str, str], dict[int, int | None]] = {
    ("caption", "attention"): {3: 2},
    ("caption", "gradcam"): {3: 2},
    ("itm", "attention"): {3: 1},
    ("itm", "gradcam"): {3: None, 12: 6},
}


def default_layer(source: str, kind: str, num_layers: int) -> int | None:
    """The layer a ``kind`` map ("attention", "gradcam") from ``source`` ("caption", "itm", ...) opens
    on, for a model with ``num_layers`` text layers; None means the mean over layers."""
    return DEFAULT_LAYERS.get((source, kind), {}).get(num_layers)
