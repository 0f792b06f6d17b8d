"""Pictures of decoding as a tree: the hypotheses beam search weighed at every step
(:func:`draw_beam_tree`), or the paths several samples took (:func:`draw_sampled_paths`).

Each node is one token, labelled with its word and its probability given the text to its left; time
runs left to right. In a beam tree the returned texts are drawn thick (the best in red), the beams
that ran on in black, candidates that finished with a green frame, pruned candidates in grey, and
forced tokens in blue. matplotlib is imported only when a picture is drawn, and only its object API is
used (no pyplot state), so drawings in concurrent requests do not meet.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from ..generation.tree import SearchTree

BEST, OTHER_RESULT = "#d62728", "#ff7f0e"  # the best returned text; the other returned texts
KEPT, PRUNED, FINISHED, FORCED = "#222222", "#a0a0a0", "#2ca02c", "#1f77b4"


@dataclass
class _Node:
    """A node as drawn: its label and colours, its place once laid out."""

    parent: int | None
    word: str
    probability: float | None
    colour: str = KEPT  # text and frame
    edge: str = KEPT  # the line from the parent
    width: float = 1.0  # of that line
    fill: str = "white"
    order: float = 0.0  # siblings are drawn top to bottom by this, largest first
    lead: int | None = None  # ... but nodes on a returned text first, the best text's on top
    note: str = ""  # written to the right of a leaf
    children: list[int] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0


def draw_beam_tree(tree: SearchTree, title: str = "", show_pruned: bool = True) -> Image.Image:
    """Draw one image's beam search (``CaptionResult.search_tree``, recorded with
    ``DecodingOptions(record_tree=True)``).

    Args:
        tree: the recorded search.
        title: a line above the picture; by default the number of beams and the length penalty.
        show_pruned: also draw the candidates that were pruned (every step has 2 x beams candidates;
            without them only the beams, the finished texts and their ancestors remain).
    """
    on_result: dict[int, int] = {}  # node id -> best rank of a returned text through it
    for final in tree.finals():
        for node in [*tree.path(final.id), tree.nodes[0]]:
            on_result[node.id] = min(on_result.get(node.id, final.rank), final.rank)
    drawn, index = [], {}
    for node in tree.nodes:
        if node.status == "pruned" and not show_pruned:
            continue
        if node.parent is not None and node.parent not in index:
            continue
        item = _Node(
            parent=index.get(node.parent) if node.parent is not None else None,
            word=node.token or str(node.token_id),
            probability=None if node.parent is None else node.probability,
            order=node.score,
        )
        if node.status == "pruned":
            item.colour = item.edge = PRUNED
        elif node.status == "finished":
            item.colour = FINISHED
        elif node.status == "forced":
            item.colour, item.fill = FORCED, "#dbe9f6"
        if node.id in on_result:
            rank = on_result[node.id]
            item.edge, item.width = (BEST, 3.0) if rank == 0 else (OTHER_RESULT, 2.0)
            item.lead = rank
            if node.rank is not None:
                item.note = f"#{node.rank + 1}  score {node.penalised:.3f}"
        index[node.id] = len(drawn)
        drawn.append(item)
    title = title or f"beam search: {tree.num_beams} beams, length penalty {tree.length_penalty:g}"
    legend = [
        (BEST, 3.0, "best text"),
        (OTHER_RESULT, 2.0, "other returned texts"),
        (KEPT, 1.0, "beams that ran on"),
        (FINISHED, 1.0, "finished (framed green)"),
        (PRUNED, 1.0, "pruned candidates"),
    ]
    if any(n.status == "forced" for n in tree.nodes):
        legend.append((FORCED, 1.0, "forced tokens"))
    return _draw(drawn, title, legend)


def draw_sampled_paths(
    paths: Sequence[Sequence[tuple[str, float]]], labels: Sequence[str] | None = None, title: str = ""
) -> Image.Image:
    """Draw several sampled texts as one tree: texts that start alike share their first nodes, and a
    line is as thick as the number of samples that took it.

    Args:
        paths: each sample's tokens as (wordpiece, probability) pairs, e.g.
            ``[(t.token, t.probability) for t in item.tokens]`` for each caption of several seeds.
        labels: a name per sample (e.g. "seed 3"), written after the text's last token.
        title: a line above the picture.
    """
    if not paths:
        raise ValueError("give at least one sampled text to draw")
    labels = list(labels) if labels is not None else [f"sample {i + 1}" for i in range(len(paths))]
    if len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} samples")
    drawn = [_Node(parent=None, word="[DEC]", probability=None)]
    counts = [len(paths)]
    for path, label in zip(paths, labels, strict=True):
        at = 0
        for word, probability in path:
            child = next((c for c in drawn[at].children if drawn[c].word == word), None)
            if child is None:
                child = len(drawn)
                drawn.append(_Node(parent=at, word=word, probability=probability, order=probability))
                drawn[at].children.append(child)
                counts.append(0)
            counts[child] += 1
            at = child
        drawn[at].note = f"{drawn[at].note}, {label}" if drawn[at].note else label
    for node, count in zip(drawn, counts, strict=True):
        node.width = 1.0 + 2.0 * (count - 1) / max(1, len(paths) - 1)
        node.children = []  # rebuilt by _draw
    return _draw(
        drawn, title or f"{len(paths)} sampled texts", [(KEPT, 1.0, "line width: samples through it")]
    )


def _layout(nodes: list[_Node]) -> int:
    """Place each node in the column of its depth and on the row of its first child, so that the
    leading text runs as one straight line along the top; every other child's subtree goes as high
    as the nodes already placed in its columns allow (the tree packs into few rows). Siblings go by
    ``lead``, then by ``order``, largest first. Returns the number of rows."""
    for i, node in enumerate(nodes):
        node.children = []
        if node.parent is not None:
            nodes[node.parent].children.append(i)
    free: dict[int, int] = {}  # per column, the first row with nothing in it yet

    def place(i: int, depth: int, lowest: int) -> float:
        node = nodes[i]
        node.x = float(depth)
        lowest = max(lowest, free.get(depth, 0))
        node.children.sort(key=lambda c: (nodes[c].lead is None, nodes[c].lead or 0, -nodes[c].order))
        if node.children:
            node.y = place(node.children[0], depth + 1, lowest)
            for c in node.children[1:]:
                place(c, depth + 1, int(node.y) + 1)
        else:
            node.y = float(lowest)
        free[depth] = max(free.get(depth, 0), int(node.y) + 1)
        return node.y

    # Recursion as deep as the longest text: a few hundred tokens at most (max_new_tokens <= 448).
    for i, node in enumerate(nodes):
        if node.parent is None:
            place(i, 0, max(free.values(), default=0))
    return max(free.values())


def _draw(nodes: list[_Node], title: str, legend: list[tuple[str, float, str]]) -> Image.Image:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # slow to import: only when drawing
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = _layout(nodes)
    depth = max(int(n.x) for n in nodes) + 1
    figure = Figure(figsize=(1.5 + 1.15 * depth, 1.4 + 0.38 * rows), dpi=100)
    axes = figure.add_axes((0.01, 0.01, 0.98, 0.9))
    axes.set_axis_off()
    axes.set_xlim(-0.6, depth + 0.9)
    axes.set_ylim(rows - 0.4, -0.6)  # the first row at the top
    for node in nodes:
        if node.parent is not None:
            parent = nodes[node.parent]
            axes.plot([parent.x, node.x], [parent.y, node.y], color=node.edge, linewidth=node.width, zorder=1)
    for node in nodes:
        label = node.word if node.probability is None else f"{node.word}\n{node.probability:.2f}"
        frame = dict(boxstyle="round,pad=0.25", facecolor=node.fill, edgecolor=node.colour, linewidth=1.0)
        axes.text(
            node.x,
            node.y,
            label,
            ha="center",
            va="center",
            fontsize=8,
            color=node.colour,
            bbox=frame,
            zorder=2,
        )
        if node.note:
            axes.text(node.x + 0.35, node.y, node.note, ha="left", va="center", fontsize=8, color=node.edge)
    handles = [Line2D([], [], color=colour, linewidth=width) for colour, width, _ in legend]
    figure.legend(
        handles, [text for *_, text in legend], loc="upper right", fontsize=8, ncols=min(3, len(legend))
    )
    figure.text(0.01, 0.985, title, ha="left", va="top", fontsize=10)
    canvas = FigureCanvasAgg(figure)
    with warnings.catch_warnings():
        # The vocabulary has CJK and other pieces the default font lacks: they show as boxes, and a
        # warning per missing glyph would only clutter a server's log.
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
