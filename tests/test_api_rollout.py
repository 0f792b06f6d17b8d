"""The ``/rollout`` endpoint of the running app through ``gradio_client``: the vision tower's rollout
over a picture, and a clear refusal of a model that does not exist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from live_app import demo_client
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with demo_client(tmp_path_factory) as started:
        yield started


def test_rollout_endpoint(client):
    picture, raw = client.predict(
        image=handle_file(str(SHAPES[1])), model="itm-base-coco", opacity=0.5, colormap="viridis", blur=0.48,
        api_name="/rollout",
    )  # fmt: skip
    maps = np.asarray(raw["maps"])
    assert raw["offline_demo"] is True and maps.ndim == 3
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-5)  # each layer's map a distribution
    assert Image.open(picture).size == Image.open(SHAPES[1]).size  # drawn over the picture itself
    with pytest.raises(Exception, match="Model must be one of"):
        client.predict(
            image=handle_file(str(SHAPES[1])), model="no-such-model", opacity=0.5, colormap="jet", blur=0.0,
            api_name="/rollout",
        )  # fmt: skip
