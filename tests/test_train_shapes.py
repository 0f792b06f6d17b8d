"""The demo models' vision pretraining targets: every label moves with the picture under a symmetry of
the square, and the replay stream mixes fresh scenes with moved old ones."""

from __future__ import annotations

import pytest
import torch
import train_shapes as training
from shapes_world import IMAGE_SIZE, POSITIONS, SHAPES

from blip.loading.tokenizer import BlipTokenizer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def batch():
    stream = training.SceneStream(3, BlipTokenizer.default())
    scenes, pixels = stream.batch(48)
    return scenes, pixels, training.vision_targets(scenes)


def _cell_of_coverage(coverage: torch.Tensor) -> int:
    """Reading-order 3 x 3 cell of the centre of the covered pixels' box (as the world names places)."""
    ys, xs = torch.nonzero(coverage > 0.5, as_tuple=True)
    side = coverage.shape[-1]
    column = min(int(3 * (xs.min() + xs.max() + 1) / 2 / side), 2)
    row = min(int(3 * (ys.min() + ys.max() + 1) / 2 / side), 2)
    return row * 3 + column


def test_cell_moves_follow_the_flips_and_the_transpose():
    index = list(POSITIONS).index
    mirror, turn_over, transpose = training._cell_moves(1), training._cell_moves(2), training._cell_moves(4)
    assert mirror[1 + index("top left")] == 1 + index("top right")
    assert mirror[1 + index("centre")] == 1 + index("centre")
    assert turn_over[1 + index("top")] == 1 + index("bottom")
    assert transpose[1 + index("top right")] == 1 + index("bottom left")
    for symmetry in range(8):
        table = training._cell_moves(symmetry)
        assert table[0] == 0 and sorted(table.tolist()) == list(range(10))  # background stays, cells permute


@pytest.mark.parametrize("symmetry", range(8))
def test_labels_move_with_the_picture(batch, symmetry):
    scenes, pixels, targets = batch
    moved_pixels, moved = training.transform_views(pixels, targets, torch.full((len(scenes),), symmetry))
    assert torch.equal(moved_pixels, training._square_symmetry(pixels, symmetry))
    for key in ("count", "present"):
        assert torch.equal(moved[key], targets[key])  # what is in the picture does not change

    def on_labelled_patches(coverage, kind):  # the share of a shape's pixels on patches labelled as it
        covered = torch.nn.functional.avg_pool2d(coverage, training.PATCH)[0]
        return float(covered[kind > 0].sum() / covered.sum())

    for b, scene in enumerate(scenes):
        # Labels sit on the shape (a small one straddling four patches is labelled on the one holding its
        # box centre), and the same share of it as before the move.
        share = on_labelled_patches(moved["coverage"][b], moved["kind"][b])
        assert share > 0.3
        assert share == pytest.approx(on_labelled_patches(targets["coverage"][b], targets["kind"][b]))
        if len(scene.shapes) == 1:
            cells = moved["cell"][b][moved["cell"][b] > 0]
            assert set(cells.tolist()) == {1 + _cell_of_coverage(moved["coverage"][b, 0])}
            kinds = moved["kind"][b][moved["kind"][b] > 0]
            assert set(kinds.tolist()) == {1 + SHAPES.index(scene.shapes[0].kind)}


def test_each_scene_moves_by_its_own_symmetry(batch):
    scenes, pixels, targets = batch
    symmetries = torch.arange(len(scenes)) % 8
    moved_pixels, moved = training.transform_views(pixels, targets, symmetries)
    for b, symmetry in enumerate(symmetries.tolist()):
        assert torch.equal(moved_pixels[b], training._square_symmetry(pixels[b], symmetry))
        assert torch.equal(moved["coverage"][b], training._square_symmetry(targets["coverage"][b], symmetry))
        cells = training._cell_moves(symmetry)[training._square_symmetry(targets["cell"][b], symmetry)]
        assert torch.equal(moved["cell"][b], cells)
        for key in ("kind", "colour", "size"):
            assert torch.equal(moved[key][b], training._square_symmetry(targets[key][b], symmetry))


def test_present_names_every_kind_and_colour_in_the_scene(batch):
    scenes, _, targets = batch
    for scene, present in zip(scenes, targets["present"], strict=True):
        named = {s.kind for s in scene.shapes} | {s.colour for s in scene.shapes}
        assert int(present.sum()) == len(named)


def test_replay_mixes_fresh_and_moved_scenes():
    stream = training.SceneStream(5, BlipTokenizer.default())
    replay = training.ReplayStream(stream, reuse=4, capacity=64, seed=1)
    for _ in range(6):
        pixels, targets = replay.batch(16)
        assert pixels.shape == (16, 3, 96, 96)
        assert set(targets) == {"kind", "colour", "size", "cell", "count", "present", "coverage"}
        assert all(len(value) == 16 for value in targets.values())
    assert replay.filled == 6 * 4  # a quarter of each batch was drawn fresh and kept


def test_mimetic_start_makes_attention_look_at_itself_and_its_neighbours():
    from blip.model import CaptionModel
    from blip.model.config import config_from_dict

    model = CaptionModel(config_from_dict(training.demo_config("caption")))
    training.init_weights(model, seed=1)
    tower = model.vision_model
    training.mimetic_init(tower, seed=1)
    width, heads = training.WIDTH, training.HEADS
    size = width // heads
    for layer in tower.encoder.layers:
        weight = layer.self_attn.qkv.weight.detach()
        for h in range(heads):
            query_key = (
                weight[h * size : (h + 1) * size].T @ weight[width + h * size : width + (h + 1) * size]
            )
            assert query_key.diagonal().mean() > 3 * query_key.abs().mean() / 2  # identity-like
        value_out = layer.self_attn.projection.weight.detach() @ weight[2 * width :]
        assert value_out.diagonal().mean() < -0.3  # minus the identity, plus noise
    # Nearby patches start with more similar position codes than far ones, along rows and columns.
    grid = IMAGE_SIZE // training.PATCH
    codes = tower.embeddings.position_embedding.detach()[0, 1:]
    similarity = codes @ codes.T
    assert similarity[0, 0] > similarity[0, 1] > similarity[0, 2] > similarity[0, grid - 1]
    assert similarity[0, 0] > similarity[0, grid] > similarity[0, 2 * grid] > similarity[0, grid * (grid - 1)]


@pytest.mark.parametrize("keep", [0.0, 1.0])
def test_easy_keep_thins_out_scenes_of_large_filled_shapes(keep):
    stream = training.SceneStream(5, BlipTokenizer.default())
    stream.easy_keep = keep
    scenes, _ = stream.batch(60)
    hard = [any(s.size == "small" or s.style != "filled" for s in scene.shapes) for scene in scenes]
    if keep == 0.0:
        assert all(hard)
    else:  # the world's own mix: some scenes have only large filled shapes
        assert not all(hard) and any(hard)


def test_one_shape_changed_differs_from_the_caption_in_one_kind_or_colour_word():
    import shapes_world

    gen = torch.Generator().manual_seed(0)
    for scene in shapes_world.scene_stream(9, 20, num_shapes=2):
        negative = training.one_shape_changed(scene, gen)
        said, truth = negative.split(), scene.caption.split()
        assert len(said) == len(truth)
        changed = [(a, b) for a, b in zip(truth, said, strict=True) if a != b]
        assert len(changed) == 1
        vocabulary = set(shapes_world.SHAPES) | set(shapes_world.COLOURS)
        assert changed[0][0] in vocabulary and changed[0][1] in vocabulary


def test_hard_negatives_are_distinct_falsehoods_of_the_scene():
    import shapes_world

    gen = torch.Generator().manual_seed(0)
    scenes = [
        *shapes_world.scene_stream(5, 10, num_shapes=1),
        *shapes_world.scene_stream(6, 10, num_shapes=2),
    ]
    for scene in scenes:
        negatives = training.hard_negatives(scene, gen, 6)
        assert len(negatives) == 6 and len(set(negatives)) == 6
        assert not set(negatives) & training.true_texts(scene)
    # Every other draw comes from all of the scene's one-attribute changes, so moved shapes are among them.
    moved = [
        text
        for scene in scenes[10:]
        for text in training.hard_negatives(scene, gen, 6)
        if sorted(text.split()) != sorted(scene.caption.split())
        and set(text.split()) - set(scene.caption.split())
        <= set(" ".join(shapes_world.POSITION_PHRASES.values()).split())
    ]
    assert moved


def test_false_pairing_is_false_and_built_from_the_scenes_own_words():
    import shapes_world

    gen = torch.Generator().manual_seed(0)
    for scene in shapes_world.scene_stream(7, 40):
        decoy = training.false_pairing(scene, gen)
        assert decoy not in training.true_texts(scene)
        _, colour, kind = decoy.split()
        colours, kinds = {s.colour for s in scene.shapes}, {s.kind for s in scene.shapes}
        if len(colours) == 2 and len(kinds) == 2:  # a red star beside a blue circle: "a blue star"
            assert colour in colours and kind in kinds
        else:
            assert colour in colours or kind in kinds


def test_moved_shape_moves_one_shape_to_a_free_cell():
    from dataclasses import replace

    import shapes_world

    gen = torch.Generator().manual_seed(0)
    for scene in shapes_world.scene_stream(8, 40):
        held = {s.position for s in scene.shapes}
        moves = {
            shapes_world.caption_for(
                [replace(s, position=cell) if j == i else s for j, s in enumerate(scene.shapes)]
            )
            for i in range(len(scene.shapes))
            for cell in POSITIONS
            if cell not in held
        }
        decoy = training.moved_shape(scene, gen)
        assert decoy in moves and decoy not in training.true_texts(scene)


def test_multi_positive_contrast_is_blips_contrast_with_several_positives_and_decoys():
    import torch.nn.functional as F

    sim = torch.randn(4, 4) * 3
    plain = F.cross_entropy(sim, torch.arange(4)) + F.cross_entropy(sim.T, torch.arange(4))
    same = torch.eye(4)
    torch.testing.assert_close(training.multi_positive_contrast(sim, same), plain)
    # A decoy column (true of no image) is a negative only: it gets no row, and the further it is from
    # every image, the lower the loss.
    far, near = torch.full((4, 1), -9.0), torch.full((4, 1), 9.0)
    with_decoy = torch.cat([same, torch.zeros(4, 1)], 1)
    low = training.multi_positive_contrast(torch.cat([sim, far], 1), with_decoy)
    high = training.multi_positive_contrast(torch.cat([sim, near], 1), with_decoy)
    assert torch.isfinite(low) and low < high
    # Two true texts for one image: both are its positives, half the target each.
    two = torch.eye(4)
    two[0, 1] = 1.0
    assert training.multi_positive_contrast(sim, two) != training.multi_positive_contrast(sim, same)


def test_calibrated_match_threshold_is_the_equal_error_point():
    import numpy as np

    from blip.model import RetrievalModel
    from blip.model.config import config_from_dict

    model = RetrievalModel(config_from_dict(training.demo_config("retrieval")))
    training.init_weights(model, seed=3)
    with torch.no_grad():
        model.itm_head.weight.normal_(0, 1.0)  # spread the untrained margins
    tokenizer = BlipTokenizer.default()
    shift = training.calibrate_match(model, tokenizer, count=8)
    true_margins, false_margins = training.match_margins(model, tokenizer, training.CALIBRATION_SEED, 8)
    missed = np.mean(np.array(true_margins) < 0)
    passed = np.mean(np.array(false_margins) > 0)
    assert shift != 0 and abs(missed - passed) <= 2 / len(true_margins)
