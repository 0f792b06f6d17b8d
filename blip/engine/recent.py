"""The engine's memory of recent work: a small thread-safe LRU map, and the key a picture is known by."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from PIL import Image


def image_key(image: Image.Image) -> str:
    """A digest of the picture's content (pixels, mode, size and EXIF orientation)."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    orientation = image.getexif().get(0x0112, 1)
    digest.update(f"{image.mode}|{image.size}|{orientation}".encode())
    return digest.hexdigest()


class Recent:
    """A thread-safe least-recently-used map holding at most ``capacity`` entries (0: holds nothing)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            if not self.capacity:
                return
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
