"""``POST /preview``: the contact sheet of ``facestyle preview`` (:mod:`pipeline.tools.preview`) as a
PNG, for an editor panel. It runs in the request, on the service's first device, beside the jobs;
paths and options are checked as ``POST /jobs`` checks them."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from pipeline.errors import FacestyleError, UsageError
from pipeline.service.config import PathNotAllowed, PathPolicy

MAX_ITEMS = 8
OptionValue = str | int | float | bool | list[str] | None        # as POST /jobs takes them


class PreviewRequest(BaseModel):
    """A contact sheet to make: the same choices as ``facestyle preview``."""

    model_config = ConfigDict(extra="forbid")
    input: str = Field(description="absolute path of the video")
    model: str = Field(description="one model or several, comma-separated: official names or checkpoint paths")
    strength: list[float] = Field(default_factory=list, max_length=MAX_ITEMS,
                                  description="strengths to show (editing models; default: the 'strength' option)")
    at: list[float] = Field(default_factory=list, max_length=MAX_ITEMS,
                            description="times in seconds, one row each (default: three spread over the clip)")
    cell_height: int = Field(360, ge=16, le=2160, description="taller frames are scaled down to this height")
    options: dict[str, OptionValue] = Field(default_factory=dict, description="convert options by their Python "
                                                                              "names, as for POST /jobs")


def add_route(app: FastAPI, policy: PathPolicy, authorized: Callable, errors: dict, device: Callable[[], str],
              check_model: Callable[[str, PathPolicy], str],
              check_options: Callable[[str, dict[str, OptionValue]], dict[str, Any]]) -> None:
    """Add ``POST /preview`` to ``app``: ``device()`` the default device, ``check_model`` and
    ``check_options(model, options)`` (checked options; HTTPException) as ``POST /jobs`` checks them."""

    @app.post("/preview", response_class=Response, tags=["jobs"], dependencies=[Depends(authorized)],
              responses={200: {"content": {"image/png": {}}, "description": "the sheet (PNG)"}, **errors})
    def preview(req: PreviewRequest) -> Response:
        """A contact sheet of the clip: rows at the given times, columns the source and each model x strength,
        each cell the frame a job with these options would write there. Runs now, in the request."""
        from dataclasses import replace
        from pathlib import Path

        from pipeline.frontend import FrontEnd, model_tag
        from pipeline.options import ConvertOptions
        from pipeline.tools.preview import make_sheet

        names = [n.strip() for n in req.model.split(",") if n.strip()]
        if not names or len(names) > MAX_ITEMS:
            raise HTTPException(422, f"model: give 1 to {MAX_ITEMS} models, comma-separated")
        options = check_options(names[0], dict(req.options))
        try:
            src = policy.readable(req.input)
            models = [check_model(n, policy) for n in names]
        except PathNotAllowed as e:
            raise HTTPException(403, str(e)) from None
        except UsageError as e:
            raise HTTPException(422, str(e)) from None
        if not Path(src).is_file():
            raise HTTPException(422, f"{req.input}: no such file")
        try:
            opts = ConvertOptions.from_mapping({"model": models[0], **options})
            where = str(options.get("device") or device())
            front = FrontEnd.open(opts, device=where)
            nets = [(model_tag(n), FrontEnd.open(replace(opts, model=n), device=where).load_model()) for n in models]
            with front.precision.context(front.device):
                sheet = make_sheet(src, nets, front.make_detector(), front.config, req.strength, req.at,
                                   req.cell_height)
        except FacestyleError as e:
            raise HTTPException(422, str(e)) from None
        return Response(sheet.png(), media_type="image/png")
