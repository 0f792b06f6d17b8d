"""About tab: how BLIP works and how to read what the app shows, written for a classroom."""

from __future__ import annotations

import gradio as gr

ABOUT = """\
## How BLIP works

BLIP (Li et al., 2022, arXiv 2201.12086) is a *vision-language* model: it turns a picture into words and
judges whether words fit a picture. It has two halves.

1. **An image encoder** (a Vision Transformer) cuts the picture into square patches (16 x 16 pixels in the
   real models), turns each patch into a vector and lets the patches exchange information over a dozen
   layers. Out come one vector per patch plus a summary vector.
2. **A text transformer** (BERT-like) reads or writes text. In every layer, each word can look at the image
   patches through **cross-attention**: a set of weights, one per patch, that add up to 1.

The same parts are wired three ways, one per tab:

| tab | what the text side does | what you get |
|---|---|---|
| Caption | writes a caption one token at a time, each time looking at the patches | captions, with how sure the model was of each token |
| Ask | encodes your question while looking at the image; a second decoder writes the answer from that | an answer, or your candidate answers ranked |
| Match, Zero-shot | reads a text while looking at the image (ITM) and, separately, embeds the text alone (ITC) | a match probability and a similarity |

## Reading the numbers

- **Token probability** (Caption, Ask): how likely the model found each token when it chose it. Low values
  mark the words it hesitated over; the table lists what else it considered.
- **Score** of a caption: the sum of its tokens' log-probabilities (beam search divides by length to the
  power of the length penalty). Closer to 0 is more confident.
- **ITM probability** (Match): "do this image and this text belong together?", judged for each text on its
  own, so several texts can all be near 1.
- **ITC cosine** (Match, Zero-shot): the similarity of the image's and the text's vectors, embedded apart.
  Compare it between texts for the same image; the raw value means little.
- **Zero-shot probabilities**: the labels are put into the prompt template and scored; a softmax over the
  labels turns scores into probabilities that add up to 1 *among the labels you gave*.

## Reading the heatmaps

Each heatmap shows, for one word, how the model spread its attention over the patches of the picture:
warm colours = much attention. Pick a word, then a layer and a head, or the mean over them.

- **Attention** is what the word *looked at*. Early layers often look broadly, later ones more sharply.
- **Grad-CAM** weighs each attention weight by how much it *mattered* for the output (the match score, or
  the probability of the generated word): attention x positive gradient. It is usually more focused.
- A heatmap is evidence, not proof: models sometimes look at the background, or at the object next to the
  one named. That is worth discussing in class.

## The offline demo model

Where the real BLIP weights cannot be downloaded, the app runs a tiny BLIP with the same architecture,
trained in about 40 minutes on a laptop-class CPU on a toy world of coloured circles, squares, triangles
and stars. It describes shape pictures well and anything else badly: try the shapes examples.
"""


def build() -> None:
    gr.Markdown(ABOUT)
