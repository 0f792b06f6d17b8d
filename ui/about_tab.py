"""About tab: a guided lesson of three exercises, then how BLIP works and how to read what the app shows,
written for a classroom."""

from __future__ import annotations

import gradio as gr

LESSON = """\
## A lesson in three exercises

Each takes about five minutes on the bundled examples (the pictures above the tabs). They work with the
offline demo model as well as with the real BLIP: the demo model knows only coloured shapes, so on it use
the **Shapes** examples.

### Exercise 1: where does the model look for each word?

1. Click the second shapes example (a large blue circle at the top, a small green triangle at the
   bottom), open the **Caption** tab and press **Caption**.
2. Scroll to **Where did the model look?** and move the **Word by word** slider through the caption.
   *Look for*: does the map jump to the circle on "circle" and to the triangle on "triangle"? Where is it
   on "a", "the" or "at"?
3. Switch **Map** to **Grad-CAM**, then to **Rollout (vision tower)**.
   *Look for*: Grad-CAM keeps only the attention that changed the word's probability, so it is usually
   tighter. The rollout is the same for every word: it is what the image encoder gathered into its
   summary vector before any text was written.

*What it shows*: the caption decoder reads the picture again for every word it writes (cross-attention),
and the words that name things are the ones that look at them. The image encoder on its own has no idea
which word comes next.

### Exercise 2: change a word and watch

1. Click the first shapes example (a small red circle in the centre) and press **Caption**.
2. In the **Alternatives** table click the row of the word "red", then one of its alternatives (say
   "blue"), and press **What if?**.
   *Look for*: the model keeps the words before it, takes yours, and carries on. Does it still say
   "circle"? How much lower is the new caption's score than the original's?
3. Open **Check a caption**, type the what-if caption and press **Check**.
   *Look for*: the matcher (a separate model) judges it against the picture: a wrong colour should get a
   low match probability, and the captioner a high perplexity.
4. Open **Search tree** (decoding: Beam search) and draw it: which paths did the search keep, and
   where did your word rank?

*What it shows*: a caption is written one token at a time, each choice conditioned on the ones before;
forcing one word shows how much of the rest depends on it, and two different models can disagree.

### Exercise 3: draw it

1. Open **Draw a picture (sketchpad)**, pick the brush (left of the canvas) and a colour, and draw one
   shape: a filled red circle, a blue square, a green triangle. Press **Use this drawing**.
2. **Caption** it; then in **Ask**, ask "what colour is the shape?"; in **Match**, score "a red circle"
   against "a blue square".
   *Look for*: did the model name your shape and colour? Slide through the words in the heatmap viewer:
   does "circle" look at your strokes? Draw it smaller, in a corner, or as an outline only, and caption
   again.

*What it shows*: a model knows what it was trained on. Drawings that look like its training pictures are
read well; change one thing at a time and see which change breaks it. (A webcam photo works the same way:
the camera icon under the shared image.)

## Which layer a heatmap opens on, and why

A heatmap can show one text layer or the mean over layers. The viewer opens each kind of map on the
layer that *pointed* best, measured with the **pointing game**: on held-out pictures of two shapes, does
the map's hottest patch fall on the shape the word names? (`scripts/pointing_layers.py --count 200` on the
demo models, which have 3 text layers; the figures are in `blip/explain/layers.py`. They were measured
on earlier demo models; on the current ones each default is the best of its row or, for the
matcher's attention, within 0.3 points of it.)

| map | layer 1 | layer 2 | layer 3 | mean of layers | opens on |
|---|---|---|---|---|---|
| caption, attention | 95.5% | 95.3% | **98.9%** | 98.4% | layer 3 |
| caption, Grad-CAM | 93.1% | 89.4% | **98.7%** | 97.4% | layer 3 |
| match, attention | 98.8% | **99.2%** | 98.8% | 99.0% | layer 2 |
| match, Grad-CAM | 93.5% | 90.8% | 16.0% | **97.8%** | mean |

The captioner's maps point best at its last layer; the match model's Grad-CAM points best averaged over
layers, where single layers each miss some words that another layer gets right. Its last layer points
for only 16% of words under Grad-CAM because its match head reads only the first token's final state,
so another word's last cross-attention barely changes the score. For the real 12-layer models nothing could be measured here; the match model's Grad-CAM opens
on layer 7, the block LAVIS's BLIP demo explains, and the rest on the mean. The **Layer** menu's note says
which default you are looking at.
"""


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
    gr.Markdown(LESSON, elem_id="about-lesson")
    gr.Markdown(ABOUT)
