"""Renders message templates: ``email/<name>/{subject.txt,body.txt,body.html}``
and ``sms/<name>.txt`` under the templates directory."""
from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from guestguard.timefmt import add_filters


def qr_png_data_uri(content: str, scale: int = 6) -> str:
    """``content`` as a QR code (dark on light, with its quiet zone) in a PNG
    data URI, for email. segno is imported by the first code drawn (by
    the task worker, which renders messages), not by every web worker."""
    import segno

    return segno.make_qr(content, error="m").png_data_uri(scale=scale, border=4)


class TemplateMissing(LookupError):
    pass


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class _Environment(jinja2.Environment):
    """Loads a template once when several threads ask for it at the same
    time: the worker's threads start their first batches together, and
    each compiled every template of the message itself (8 threads, 16
    compiles of an invitation's three parts)."""

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._loading = threading.RLock()

    def get_template(self, *args: Any, **kwargs: Any) -> jinja2.Template:
        with self._loading:
            return super().get_template(*args, **kwargs)


class MessageRenderer:
    """``reload``: look at the files again at each render (an edited template
    shows; ``pyramid.reload_templates``), else each is read once."""

    def __init__(self, templates_dir: Path, reload: bool = True,
                 bytecode_cache: jinja2.BytecodeCache | None = None):
        self.templates_dir = templates_dir
        self.env = _Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            auto_reload=reload,
            bytecode_cache=bytecode_cache,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )
        add_filters(self.env)  # times in the event's zone: {{ starts_at|long_when(timezone) }}
        self.env.filters["qr_png"] = qr_png_data_uri  # a pass: <img src="{{ pass_secret|qr_png }}">

    def template_paths(self, channel: str, name: str) -> dict[str, str]:
        if channel == "email":
            return {part: f"email/{name}/{part}" for part in ("subject.txt", "body.txt", "body.html")}
        own = f"{channel}/{name}.txt"
        if channel != "sms" and not (self.templates_dir / own).is_file():
            own = f"sms/{name}.txt"  # a text channel without templates of its own (a plugin's) reads the texts'
        return {"body.txt": own}

    def check(self, channel: str, name: str) -> None:
        """Raise TemplateMissing unless every part of the template exists."""
        if not name.replace("_", "").replace("-", "").isalnum():
            raise TemplateMissing(f"bad template name {name!r}")
        for path in self.template_paths(channel, name).values():
            if not (self.templates_dir / path).is_file():
                raise TemplateMissing(f"template {path} does not exist")

    def render(self, channel: str, name: str, context: Mapping[str, Any]) -> Rendered:
        parts = {
            part: self.env.get_template(path).render(**context)
            for part, path in self.template_paths(channel, name).items()
        }
        return Rendered(
            subject=" ".join(parts.get("subject.txt", "").split()),
            text=parts["body.txt"].strip() + "\n",
            html=parts.get("body.html", ""),
        )
