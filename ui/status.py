"""The status line: which weights are loaded (Hub checkpoint or the offline demo model), device, dtype."""

from __future__ import annotations

from .services import Services

DEMO_BANNER = (
    "⚠️ **Offline demo model.** The Hugging Face checkpoints are not available here, so a tiny BLIP trained "
    "on coloured shapes answers instead. It knows only shapes: try the shapes examples."
)


def status_text(services: Services) -> str:
    """Markdown for the status line, read from the engine each time (it changes as models load)."""
    engine = services.engine
    loaded = engine.model_status()
    if loaded:
        models = ", ".join(
            f"`{m['name']}` (offline demo model)" if m["offline_demo"] else f"`{m['name']}`" for m in loaded
        )
    else:
        models = "none yet (each model loads on first use)"
    line = f"**Loaded:** {models} · **device** {services.device} · **dtype** {services.dtype}"
    line += f" · **fast mode** {engine.fast_mode()}" if getattr(engine, "fast", False) else ""
    if engine.demo == "always" or any(m["offline_demo"] for m in loaded):
        line = f"{DEMO_BANNER}\n\n{line}"
    return line
