"""The Gradio user interface: one module per tab, plain Python in and out (no ``torch``).

``build_app(Services(...))`` returns the Blocks app; ``app.py`` builds the services and launches it.
"""

from .layout import build_app
from .services import Services

__all__ = ["Services", "build_app"]
