"""Beam search as a tree, for watching it work: every candidate each step considered, whether it ran
on, finished or was pruned, with its scores and its parent.

Recording is asked for with ``DecodingOptions(record_tree=True)``; without it beam search never
touches this module. The tree is plain Python (ints, floats, strings), so results that carry it can
be shown, drawn (:mod:`blip.explain.beam_tree`) or written as JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# What became of a node. A step's candidates are the top 2 x num_beams extensions of the running beams.
STATUSES = (
    "prompt",  # the root: the prompt the search started from
    "forced",  # a token the caller forced (see blip.generation.forcing)
    "kept",  # a candidate that ran on as one of the beams
    "finished",  # a candidate that ended ([SEP] or the length limit) and joined the finished list
    "pruned",  # a candidate that did neither: outranked, or ended without making the finished list
)


@dataclass
class TreeNode:
    """One hypothesis: its parent's text plus one token."""

    id: int  # index in SearchTree.nodes
    parent: int | None  # the node it extends; None for the root
    step: int  # which new token this is (0 = the first); -1 for the root
    token_id: int
    logprob: float  # raw log p(token | the parent's text), before penalties
    score: float  # accumulated beam score: the sum of the step scores (after penalties) so far
    penalised: float  # score / length ** length_penalty, how beam search compares ended texts
    status: str  # one of STATUSES
    rank: int | None = None  # place among the returned texts (0 = best) when this node ends one
    token: str = ""  # the wordpiece, filled in by whoever holds the tokenizer

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)


@dataclass
class SearchTree:
    """One image's beam search, node by node (parents always come before their children)."""

    num_beams: int
    length_penalty: float
    nodes: list[TreeNode] = field(default_factory=list)

    def path(self, node: int) -> list[TreeNode]:
        """The tokens from the first new one down to ``node`` (the root left out)."""
        out = []
        current: int | None = node
        while current is not None and self.nodes[current].parent is not None:
            out.append(self.nodes[current])
            current = self.nodes[current].parent
        return out[::-1]

    def finals(self) -> list[TreeNode]:
        """The nodes that end the returned texts, best first."""
        return sorted((n for n in self.nodes if n.rank is not None), key=lambda n: n.rank)

    def at_step(self, step: int) -> list[TreeNode]:
        return [n for n in self.nodes if n.step == step]

    def name_tokens(self, names: list[str]) -> None:
        """Fill in each node's wordpiece; ``names`` holds them in node order."""
        for node, name in zip(self.nodes, names, strict=True):
            node.token = name

    def add(
        self,
        parent: int | None,
        step: int,
        token_id: int,
        logprob: float,
        score: float,
        status: str,
    ) -> int:
        length = step + 1
        penalised = score / (length**self.length_penalty) if length > 0 else score
        self.nodes.append(
            TreeNode(len(self.nodes), parent, step, token_id, logprob, score, penalised, status)
        )
        return len(self.nodes) - 1


class TreeRecorder:
    """Builds each image's :class:`SearchTree` while :func:`~blip.generation.beam.beam_search` runs.

    It mirrors the search's own bookkeeping with node ids: which node each running beam is, and which
    node fills each slot of the finished list. Images leave with :meth:`keep`, as they leave the search.
    """

    def __init__(
        self,
        images: int,
        beams: int,
        penalty: float,
        last_prompt_id: int,
        forced: list[list[tuple[int, float, float]]] | None = None,
    ):
        """``forced``: per image, the forced tokens as (token id, raw log-probability, step score)."""
        self.beams = beams
        self.trees = [SearchTree(beams, penalty) for _ in range(images)]
        self.alive = list(range(images))  # which tree each image still in the batch records into
        self.running: list[list[int]] = []  # per image in the batch, the node of each running beam
        self.finished: list[list[int | None]] = []  # per image in the batch, the node in each slot
        for i, tree in enumerate(self.trees):
            last = tree.add(None, -1, last_prompt_id, 0.0, 0.0, "prompt")
            score = 0.0
            for j, (token, logprob, step_score) in enumerate(forced[i] if forced else []):
                score += step_score
                last = tree.add(last, j, token, logprob, score, "forced")
            self.running.append([last] * beams)
            self.finished.append([None] * beams)

    def step(
        self,
        step: int,
        source: list[list[int]],
        tokens: list[list[int]],
        logprobs: list[list[float]],
        scores: list[list[float]],
        ends: list[list[bool]],
        chosen: list[list[int]],
        best: list[list[int]],
        entered: list[list[bool]],
    ) -> None:
        """Record one step's candidates; every argument is a nested list per image in the batch.

        Args:
            source: (g, keep) the running row (of all g x beams) each candidate extends.
            tokens, logprobs, scores: (g, keep) its token, the token's raw log-probability, its
                accumulated score.
            ends: (g, keep) it ended ([SEP] or the length limit).
            chosen: (g, beams) the candidates that run on.
            best: (g, beams) the new finished list, as indices into the old list + the candidates.
            entered: (g, keep) the candidate joined the finished list.
        """
        for i in range(len(self.alive)):
            tree, running = self.trees[self.alive[i]], self.running[i]
            runs_on = set(chosen[i])
            ids = []
            for c, token in enumerate(tokens[i]):
                if entered[i][c]:
                    status = "finished"
                elif c in runs_on and not ends[i][c]:
                    status = "kept"
                else:
                    status = "pruned"
                parent = running[source[i][c] - i * self.beams]
                ids.append(tree.add(parent, step, token, logprobs[i][c], scores[i][c], status))
            self.running[i] = [ids[c] for c in chosen[i]]
            merged = self.finished[i] + [n if entered[i][c] else None for c, n in enumerate(ids)]
            self.finished[i] = [merged[b] for b in best[i]]

    def keep(self, stay: list[int]) -> None:
        """Only the images at positions ``stay`` of the batch search on."""
        self.alive = [self.alive[i] for i in stay]
        self.running = [self.running[i] for i in stay]
        self.finished = [self.finished[i] for i in stay]

    def finish(self, i: int, count: int) -> SearchTree:
        """Image ``i`` of the batch has stopped: its first ``count`` finished texts are returned."""
        tree = self.trees[self.alive[i]]
        for rank, node in enumerate(self.finished[i][:count]):
            if node is not None:
                tree.nodes[node].rank = rank
        return tree

    def forced_only(self, i: int) -> SearchTree:
        """Image ``i``'s whole text was forced: the end of the forced chain is the one result."""
        tree = self.trees[i]
        tree.nodes[-1].status, tree.nodes[-1].rank = "finished", 0
        return tree
