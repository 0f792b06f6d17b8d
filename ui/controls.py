"""Gradio inputs that check what the API sends them and say which control was wrong.

The browser keeps a slider inside its range and a dropdown on its choices, but the API does not: a
client can send beams -3, top-p 7 or a model name that does not exist. Gradio's own checks catch most
of that, with messages such as "Value 0 is less than minimum value 1." that do not say which of a dozen
parameters was meant. The factories below build the standard components and run the same checks
first, naming the control and what it allows.

(They wrap the instance's ``preprocess`` rather than subclass: Gradio writes a ``.pyi`` stub next to
the source of every component subclass when it is defined, which a read-only deployment cannot take.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

C = TypeVar("C", bound=gr.components.Component)


def _label(component: gr.components.Component) -> str:
    return component.label or "This value"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _as_number(payload: Any) -> float | None:
    """A finite float from what the client sent (numbers or numeric text), else None."""
    if isinstance(payload, bool) or not isinstance(payload, int | float | str):
        return None
    try:
        value = float(payload)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _in_range(
    component: gr.components.Component, payload: Any, low: float | None, high: float | None
) -> float:
    """``payload`` as a finite number within [low, high], or a ``gr.Error`` naming the control."""
    value = _as_number(payload)
    if value is None or (low is not None and value < low) or (high is not None and value > high):
        allowed = f"between {_number(low)} and {_number(high)}" if None not in (low, high) else "a number"
        raise gr.Error(f"{_label(component)} must be {allowed} (got {payload!r})", print_exception=False)
    return value


def _guard(component: C, check: Callable[[C, Any], Any]) -> C:
    """Make ``component`` run ``check`` on every incoming value before its own preprocessing."""
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        return original(check(component, payload))

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def slider(*args: Any, **kwargs: Any) -> gr.Slider:
    """A ``gr.Slider`` whose API values are checked against its range, by name."""
    return _guard(gr.Slider(*args, **kwargs), lambda c, payload: _in_range(c, payload, c.minimum, c.maximum))


def number(*args: Any, **kwargs: Any) -> gr.Number:
    """A ``gr.Number`` whose API values are checked against its bounds, by name (empty stays empty)."""

    def check(c: gr.Number, payload: Any) -> Any:
        return None if payload is None else _in_range(c, payload, c.minimum, c.maximum)

    return _guard(gr.Number(*args, **kwargs), check)


def _one_of(component: gr.components.Component, payload: Any) -> Any:
    choices = [value for _, value in component.choices]
    if payload is not None and payload not in choices:
        listed = ", ".join(repr(c) for c in choices[:20]) + (", ..." if len(choices) > 20 else "")
        raise gr.Error(
            f"{_label(component)} must be one of {listed} (got {payload!r})", print_exception=False
        )
    return payload


def dropdown(*args: Any, **kwargs: Any) -> gr.Dropdown:
    """A single-choice ``gr.Dropdown`` whose API values must be one of its choices, checked by name."""
    return _guard(gr.Dropdown(*args, **kwargs), _one_of)


def radio(*args: Any, **kwargs: Any) -> gr.Radio:
    """``gr.Radio`` buttons whose API values must be one of the choices, checked by name."""
    return _guard(gr.Radio(*args, **kwargs), _one_of)


def image_path(**kwargs: Any) -> gr.Image:
    """An image input that hands the handler the uploaded file's path without opening it.

    ``gr.Image`` opens every upload with PIL before the handler runs, so a zero-byte file, a text file
    named .jpg or a decompression bomb would fail inside Gradio with a generic error. Here the handler
    opens the file itself (``blip.loading.uploads.open_upload``) and explains what is wrong with it.
    """
    component = gr.Image(type="filepath", **kwargs)
    original = component.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None or getattr(payload, "path", None) is None:
            return original(payload)  # no image, or a base64 data URL
        return str(payload.path)

    component.preprocess = preprocess  # type: ignore[method-assign]
    return _explain_fetch_failures(component)


def fetch_failure(url: str, err: Exception) -> str:
    """Why an image URL could not be fetched, and what to send instead."""
    shown = url if len(url) <= 100 else url[:97] + "..."
    return (
        f"Could not fetch the image at {shown} ({err}). Give a public http(s) URL (addresses on this "
        f"machine or a private network are refused) or a data:image/...;base64 URL"
    )


def _explain_fetch_failures(component: C) -> C:
    """Make a failed download of an image URL (Gradio fetches URLs a client sends before the handler
    runs) a message naming the URL, instead of Gradio's generic "the app raised an exception"."""
    original = component.async_move_resource_to_block_cache

    async def fetch(url_or_file_path: Any) -> str | None:
        try:
            return await original(url_or_file_path)
        except Exception as err:
            if isinstance(url_or_file_path, str) and url_or_file_path.startswith(("http://", "https://")):
                raise gr.Error(fetch_failure(url_or_file_path, err), print_exception=False) from None
            raise

    component.async_move_resource_to_block_cache = fetch  # type: ignore[method-assign]
    return component


def checkbox_group(*args: Any, **kwargs: Any) -> gr.CheckboxGroup:
    """``gr.CheckboxGroup`` whose API values must all be among the choices, checked by name (a lone
    value sent for the list is taken as a list of one)."""

    def check(c: gr.CheckboxGroup, payload: Any) -> Any:
        values = [payload] if isinstance(payload, str) else [] if payload is None else payload
        if not isinstance(values, list | tuple):
            raise gr.Error(f"{_label(c)} must be a list of choices (got {payload!r})", print_exception=False)
        for value in values:
            _one_of(c, value)
        return list(values)

    return _guard(gr.CheckboxGroup(*args, **kwargs), check)
