"""How fast can a vision tower learn the shapes world? A quick probe for choosing the demo models' recipe.

    python scripts/shapes_probe.py --steps 3000                # the demo ViT (train_shapes.demo_config)
    python scripts/shapes_probe.py --steps 600 --tower cnn     # a small CNN on the same labels, for scale

Both towers are trained with the same per-patch read-outs (``train_shapes.PatchHeads``: which shape
kind, colour, size and 3 x 3 cell each patch of the 8 x 8 grid belongs to, and the shape count) on
fresh scenes of the training world, and every ``--every`` steps the probe prints how often the kind
read-out, averaged over a shape's own patches, names the shape of held-out one-shape scenes of the
world and of the robustness set (scripts/shapes_robust.py). Kind is the hard part: colour and place
are learned within a few hundred steps by either tower. Run it alone (one PyTorch process per core).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import shapes_robust as robust  # noqa: E402
import shapes_world as shapes  # noqa: E402
import train_shapes as training  # noqa: E402

from blip.loading.preprocess import preprocess  # noqa: E402
from blip.loading.tokenizer import BlipTokenizer  # noqa: E402
from blip.model import CaptionModel  # noqa: E402
from blip.model.config import config_from_dict  # noqa: E402


class SmallCNN(nn.Module):
    """Five 3 x 3 convolutions pooled down to the ViT's 8 x 8 grid: a yardstick, never shipped."""

    def __init__(self, width: int = training.WIDTH):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 96, 3, padding=1), nn.GELU(), nn.MaxPool2d(3),
            nn.Conv2d(96, 128, 3, padding=1), nn.GELU(),
            nn.Conv2d(128, width, 3, padding=1),
        )  # fmt: skip

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 1 + 64, width) like the ViT's tokens: a mean-pooled first token, then the grid."""
        grid = self.body(pixels).flatten(2).transpose(1, 2)
        return torch.cat([grid.mean(1, keepdim=True), grid], dim=1)


def kind_accuracy(tower: nn.Module, heads: training.PatchHeads, scenes: list[shapes.Scene]) -> float:
    """Share of one-shape scenes whose shape the kind read-out names, averaged over its patches."""
    with torch.no_grad():
        tokens = tower.encode_image(preprocess([s.image for s in scenes], shapes.IMAGE_SIZE))[:, 1:]
        logits = heads.kind(tokens)[..., 1:]
        inside = training.patch_labels(scenes)["kind"] > 0
        right = [
            shapes.SHAPES[int(logits[b][inside[b]].mean(0).argmax())] == scene.shapes[0].kind
            for b, scene in enumerate(scenes)
        ]
    return sum(right) / len(right)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tower", choices=["vit", "cnn"], default="vit")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--count", type=int, default=200, help="held-out scenes per set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--curriculum",
        type=float,
        nargs=2,
        metavar=("NEAT_ON_PLAIN", "NEAT"),
        help="fractions of the steps at which to leave the first and the second stage (e.g. 0.2 0.4)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.tower == "vit":
        model = CaptionModel(config_from_dict(training.demo_config("caption")))
        training.init_weights(model, seed=1)
        tower: nn.Module = model.vision_model
        tower.encode_image = tower.forward  # the same (B, 1 + patches, D) tokens the decoder reads
    else:
        tower = SmallCNN()
    wrapped = training.WithHeads(tower)
    world = list(shapes.scene_stream(4242, args.count, num_shapes=1))
    robust_set = list(robust.robust_stream(robust.ROBUST_SEED, args.count))
    stream = training.SceneStream(1, BlipTokenizer.default())
    opt = torch.optim.AdamW(wrapped.parameters(), lr=args.lr, weight_decay=0.01)
    start = time.time()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = training.schedule(step, args.steps, args.lr)
        if args.curriculum:
            done = step / args.steps
            stream.stage = sum(done >= edge for edge in args.curriculum)  # 0, 1, then 2 (FULL)
        scenes, pixels = stream.batch(args.batch)
        loss = training.patch_loss(wrapped.heads, tower.encode_image(pixels), scenes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wrapped.parameters(), 1.0)
        opt.step()
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            wrapped.eval()
            print(
                f"[{args.tower}] step {step + 1:5d}  loss {loss.item():.3f}  {time.time() - start:5.0f}s  "
                f"kind: world {kind_accuracy(tower, wrapped.heads, world):.1%}  "
                f"robust {kind_accuracy(tower, wrapped.heads, robust_set):.1%}",
                flush=True,
            )
            wrapped.train()


if __name__ == "__main__":
    main()
