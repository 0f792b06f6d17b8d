"""How fast can a vision tower learn the shapes world? A quick probe for choosing the demo models' recipe.

    python scripts/shapes_probe.py --steps 3000 --curriculum 0.2 0.4 --reuse 4   # the demo ViT
    python scripts/shapes_probe.py --steps 500 --tower cnn      # a small CNN on the same labels, for scale
    python scripts/shapes_probe.py --steps 1000 --tower hybrid  # the ViT with the CNN as its patch embedding

Every tower is trained with the same read-outs (``train_shapes.PatchHeads``: which shape kind, colour,
size and 3 x 3 cell each patch of the grid belongs to, the shape count, and which kinds and colours are
present) on fresh scenes of the training world, and every ``--every`` steps the probe prints how often
the kind read-out, averaged over a shape's own patches, names the shape of held-out one-shape scenes of
the world and of the robustness set (scripts/shapes_robust.py), overall and by size, style and dark
ground. Kind is the hard part: colour and place are learned within a few hundred steps by any tower.
``hybrid`` is a diagnostic that can never ship (BLIP's patch embedding is one linear map): it learns
kind about as fast as the CNN, so what holds the ViT back is its linear patch embedding, not the
transformer over it. Run it alone, or two at ``--threads 1`` on two cores.
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

from blip.loading.tokenizer import BlipTokenizer  # noqa: E402
from blip.model import CaptionModel  # noqa: E402
from blip.model.config import config_from_dict  # noqa: E402


class SmallCNN(nn.Module):
    """Five 3 x 3 convolutions pooled down to the ViT's patch grid: a yardstick, never shipped."""

    def __init__(self, width: int = training.WIDTH):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 96, 3, padding=1), nn.GELU(), nn.AdaptiveMaxPool2d(shapes.IMAGE_SIZE // training.PATCH),
            nn.Conv2d(96, 128, 3, padding=1), nn.GELU(),
            nn.Conv2d(128, width, 3, padding=1),
        )  # fmt: skip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 1 + patches, width) like the ViT's tokens: a mean-pooled first token, then the grid."""
        grid = self.body(pixels).flatten(2).transpose(1, 2)
        return torch.cat([grid.mean(1, keepdim=True), grid], dim=1)


def kind_report(tower: nn.Module, heads: training.PatchHeads, scenes: list[shapes.Scene]) -> str:
    """Kind accuracy overall, then by size, by drawing style and on dark grounds."""
    hits = training.kind_hits(tower, heads, scenes)
    groups = {
        "small": [s.shapes[0].size == "small" for s in scenes],
        "large": [s.shapes[0].size == "large" for s in scenes],
        "filled": [s.shapes[0].style == "filled" for s in scenes],
        "outlined": [s.shapes[0].style == "outlined" for s in scenes],
        "hand": [s.shapes[0].style.endswith("hand-drawn") for s in scenes],
        "dark": [s.dark for s in scenes],
    }
    parts = [f"{sum(hits) / len(hits):.1%}"]
    for name, members in groups.items():
        chosen = [h for h, m in zip(hits, members, strict=True) if m]
        if chosen:
            parts.append(f"{name} {sum(chosen) / len(chosen):.0%}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tower", choices=["vit", "cnn", "hybrid"], default="vit")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--count", type=int, default=200, help="held-out scenes per set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse", type=int, default=1, help="see each scene this many times (moved)")
    parser.add_argument("--mlp", type=int, default=training.MLP_V, help="the ViT's MLP width")
    parser.add_argument("--init", choices=["random", "mimetic"], default="random", help="attention start")
    parser.add_argument("--patch", type=int, default=training.PATCH, help="ViT patch side in pixels")
    parser.add_argument(
        "--curriculum",
        type=float,
        nargs=2,
        metavar=("NEAT_ON_PLAIN", "NEAT"),
        help="fractions of the steps at which to leave the first and the second stage (e.g. 0.2 0.4)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    training.PATCH = args.patch  # read by demo_config, the read-outs and their labels
    training.MLP_V = args.mlp
    torch.set_num_threads(args.threads)
    if args.tower in ("vit", "hybrid"):
        model = CaptionModel(config_from_dict(training.demo_config("caption")))
        training.init_weights(model, seed=1)
        tower: nn.Module = model.vision_model
        if args.init == "mimetic":
            training.mimetic_init(tower, seed=1)
        if args.tower == "hybrid":  # a diagnostic, never shipped: the CNN's body as the patch embedding
            body = SmallCNN().body
            body.weight = body[0].weight  # the embeddings read the patch embedding's dtype from it
            tower.embeddings.patch_embedding = body
    else:
        tower = SmallCNN()
    wrapped = training.WithHeads(tower)
    world = list(shapes.scene_stream(4242, args.count, num_shapes=1))
    robust_set = list(robust.robust_stream(robust.ROBUST_SEED, args.count))
    stream = training.SceneStream(1, BlipTokenizer.default())
    replay = training.ReplayStream(stream, reuse=args.reuse)
    opt = torch.optim.AdamW(wrapped.parameters(), lr=args.lr, weight_decay=0.01)
    start = time.time()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = training.schedule(step, args.steps, args.lr)
        if args.curriculum:
            done = step / args.steps
            stream.stage = sum(done >= edge for edge in args.curriculum)  # 0, 1, then 2 (FULL)
        if args.reuse > 1:
            pixels, targets = replay.batch(args.batch)
        else:
            scenes, pixels = stream.batch(args.batch)
            targets = training.vision_targets(scenes)
        loss = training.patch_loss(wrapped.heads, tower(pixels), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wrapped.parameters(), 1.0)
        opt.step()
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            wrapped.eval()
            print(
                f"[{args.tower}] step {step + 1:5d}  loss {loss.item():.3f}  {time.time() - start:5.0f}s  "
                f"kind: world {kind_report(tower, wrapped.heads, world)} | "
                f"robust {kind_report(tower, wrapped.heads, robust_set)}",
                flush=True,
            )
            wrapped.train()


if __name__ == "__main__":
    main()
