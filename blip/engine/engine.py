"""The engine: one object between the BLIP core and every way of using it (app, command line, API).

It loads each model once (lazily, thread-safely, keeping at most a few in memory), remembers the image
tokens it has computed (so the same picture in several tabs or questions is encoded once), runs the four
tasks (and search over a collection, and the classroom's questions) and returns plain results with
timings and, on request, heatmaps.

Each task lives in its own module as a part of the engine (:class:`Captioning`, :class:`Answering`,
:class:`Matching`, :class:`Embedding`, :class:`Searching`, :class:`Classroom`, all built on
:class:`~blip.engine.core.EngineCore`); a new task is a new module and one more base here. Nothing is
per user: every request builds its own decoding state, so concurrent requests never see each other's
data.
"""

from __future__ import annotations

from .answering import Answering
from .captioning import Captioning
from .classroom import Classroom
from .comparing import Comparing
from .matching import Matching
from .searching import Searching


class Engine(
    Classroom, Comparing, Captioning, Answering, Matching, Searching
):  # Searching builds on Embedding
    """Loads models on first use and runs caption / answer / match / classify, searches, and the
    classroom's questions (check a caption, a caption's likelihood, vision rollout).

    Its arguments are :class:`~blip.engine.core.EngineCore`'s: device, dtype, max_models,
    image_cache_size, local_models, loader, demo ("fallback", "always", "never") and fast.
    """
