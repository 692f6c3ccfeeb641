"""``sprout recommend``: recommendations for a MAL username or list export, from a running service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sprout.figures import percent, rating

from .common import AsJson, console, fail

DEFAULT_URL = "http://127.0.0.1:3000"


def recommend(
    username: Annotated[str | None, typer.Option(help="MyAnimeList username whose public list to use.")] = None,
    export: Annotated[Path | None, typer.Option(
        help="MyAnimeList list export file (.xml or .xml.gz).", exists=True, dir_okay=False)] = None,
    url: Annotated[str, typer.Option(help="The Sprout service (`sprout serve`).")] = DEFAULT_URL,
    top_k: Annotated[int, typer.Option(min=1, max=500, help="How many recommendations.")] = 20,
    rating_weight: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="1 ranks by how likely you are to watch, 0 by how much you would like it.")] = None,
    as_json: AsJson = False,
) -> None:
    """Ask a running service for recommendations with their reasons, and print them as a table."""
    import httpx

    if (username is None) == (export is None):
        raise fail("give exactly one of --username and --export", 2)
    body: dict = {"top_k": top_k}
    if rating_weight is not None:
        body["rating_weight"] = rating_weight
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=60.0) as client:
            if export is not None:
                found = client.post("/profile/export", content=export.read_bytes(),
                                    headers={"Content-Type": "application/octet-stream"})
                body["profile"] = _answer(found)["profile"]
            else:
                body["username"] = username
            result = _answer(client.post("/recommend", json={**body, "explain": True}))
    except httpx.HTTPError as error:
        raise fail(f"no answer from the service at {url}: {error.__class__.__name__} (is `sprout serve` running?)") from None
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"recommendations (model {result['model']['version']})")
    for column in ("#", "title", "predicted rating", "probability", "because you watched"):
        table.add_column(column, justify="right" if column in ("#", "predicted rating", "probability") else "left")
    for rank, item in enumerate(result["recommendations"], start=1):
        because = ", ".join(f"{c['title']} ({percent(c['share'])})" for c in item.get("contributors") or [])
        table.add_row(str(rank), item["title"], rating(item["predicted_rating"]), percent(item["probability"]), because)
    console.print(table)


def _answer(response) -> dict:
    """The JSON of a success; the service's own sentence as the error otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.is_success:
        return body
    message = body.get("error") if isinstance(body, dict) else None
    retry = response.headers.get("Retry-After")
    raise fail((message or f"the service answered HTTP {response.status_code}") + (f" (try again in {retry} s)" if retry else ""))
