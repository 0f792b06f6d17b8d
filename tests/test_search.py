"""Search over a collection on the offline demo models: a text naming a colour and a shape finds a
picture that has it; re-ranking, search by example and bad input."""

from __future__ import annotations

import itertools

import pytest
import shapes_world

from blip.engine import Engine

pytestmark = pytest.mark.unit
SEED = 20261129  # held out: not a training seed


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(device="cpu", demo="always")


@pytest.fixture(scope="module")
def scenes() -> list[shapes_world.Scene]:
    return list(shapes_world.scene_stream(SEED, 60))


@pytest.fixture(scope="module")
def index(engine, scenes):
    done = []
    built = engine.index_images(
        ((f"scene-{i}", s.image) for i, s in enumerate(scenes)), batch_size=16, progress=done.append
    )
    assert done == [16, 32, 48, 60]
    return built


def _has(scene: shapes_world.Scene, colour: str, kind: str) -> bool:
    return any(s.colour == colour and s.kind == kind for s in scene.shapes)


@pytest.mark.parametrize("rerank", [0, 10])
def test_a_query_naming_colour_and_shape_finds_a_picture_that_has_it(engine, scenes, index, rerank):
    by_name = {f"scene-{i}": s for i, s in enumerate(scenes)}
    opened = {name: s.image for name, s in by_name.items()}
    queries = [
        (colour, kind)
        for colour, kind in itertools.product(shapes_world.COLOURS, shapes_world.SHAPES)
        if any(_has(s, colour, kind) for s in scenes)
    ]
    assert len(queries) >= 14
    right = 0
    for colour, kind in queries:
        result = engine.search(index, f"a {colour} {kind}", top=5, rerank=rerank, open_image=opened.get)
        assert len(result.hits) == 5 and result.indexed == 60 and result.reranked == rerank
        assert result.offline_demo
        right += _has(by_name[result.hits[0].path], colour, kind)
        if rerank:
            assert all(h.itm_probability is not None for h in result.hits)
            ps = [h.itm_probability for h in result.hits]
            assert ps == sorted(ps, reverse=True)
        else:
            cosines = [h.itc_cosine for h in result.hits]
            assert cosines == sorted(cosines, reverse=True)
    assert right / len(queries) >= 0.9, f"{right}/{len(queries)}"


def test_search_by_example_finds_the_picture_itself(engine, scenes, index):
    for i in (0, 7, 33):
        result = engine.search(index, scenes[i].image, top=3)
        assert result.hits[0].path == f"scene-{i}" and result.query == "picture"
        assert result.hits[0].itc_cosine == pytest.approx(1.0, abs=1e-4)


def test_bad_searches_are_explained(engine, index):
    from blip.engine.searching import ImageIndex

    with pytest.raises(ValueError, match="the query is empty"):
        engine.search(index, " \x00 ")
    with pytest.raises(ValueError, match="the index is empty"):
        engine.search(ImageIndex(model="itm-base-coco"), "a red circle")
    with pytest.raises(ValueError, match="rerank must be between 0 and 100"):
        engine.search(index, "a red circle", rerank=500)
    with pytest.raises(ValueError, match="embedding needs a RetrievalModel or FeatureModel"):
        engine.index_images([], model="caption-base")


def test_an_index_made_by_the_demo_model_says_so_and_is_not_searched_by_the_real_one(
    index, checkpoints, tmp_path
):
    from blip.cli import vectors

    assert index.offline_demo and index.label == "itm-base-coco (offline demo)"
    for suffix in (".npz", ".parquet"):
        vectors.write(tmp_path / f"i{suffix}", index)
        back = vectors.read_index(tmp_path / f"i{suffix}")
        assert back.model == "itm-base-coco" and back.offline_demo and len(back) == len(index)
    real = Engine(device="cpu", demo="never", local_models={"itm-base-coco": checkpoints.get("retrieval")})
    with pytest.raises(ValueError, match=r"offline demo model .* different spaces"):
        real.search(index, "a red circle")
