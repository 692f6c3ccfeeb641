"""MyAnimeList's list export (the XML file its export page produces, plain or gzip) as a profile.

The file comes from a stranger, so it is parsed defensively: gzip is inflated up to a size limit
(a small bomb cannot become gigabytes), the XML parser refuses DTDs and entities (no billion
laughs, no external entities), and every entry is checked like a posted one. Anything wrong is
an `ExportError` that says what and where.

    <myanimelist>
      <anime>
        <series_animedb_id>1</series_animedb_id>
        <my_score>9</my_score>
        <my_status>Completed</my_status>
      </anime>
    </myanimelist>
"""

from __future__ import annotations

import zlib
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from sprout.inference.requests import MAX_ANIME_ID, ProfileEntry

MAX_EXPORT_BYTES = 16 << 20  # inflated; MAL's export of a 5,000-entry list is about 3 MB
GZIP_MAGIC = b"\x1f\x8b"
# The export spells statuses out; older exports use numbers.
STATUSES = {
    "watching": "watching", "1": "watching",
    "completed": "completed", "2": "completed",
    "on-hold": "on_hold", "on hold": "on_hold", "3": "on_hold",
    "dropped": "dropped", "4": "dropped",
    "plan to watch": "plan_to_watch", "6": "plan_to_watch",
}


class ExportError(ValueError):
    """The file is not a usable MAL list export; the message says why."""


def inflated(data: bytes, max_bytes: int = MAX_EXPORT_BYTES) -> bytes:
    """``data``, inflated when it is gzip, refusing more than ``max_bytes`` either way."""
    if data[:2] == GZIP_MAGIC:
        inflater = zlib.decompressobj(wbits=31)
        try:
            data = inflater.decompress(data, max_bytes + 1)
        except zlib.error as error:
            raise ExportError(f"the file looks gzipped but does not inflate: {error}") from None
        if len(data) > max_bytes or inflater.unconsumed_tail:
            raise ExportError(f"the export inflates to more than {max_bytes:,} bytes")
        if not inflater.eof:
            raise ExportError("the gzip stream is cut short")
    elif len(data) > max_bytes:
        raise ExportError(f"the export is larger than {max_bytes:,} bytes")
    return data


def _text(anime: Element, tag: str, position: int) -> str:
    found = anime.find(tag)
    if found is None or found.text is None or not found.text.strip():
        raise ExportError(f"entry {position} has no <{tag}>")
    return found.text.strip()


def parse_list_export(data: bytes, max_bytes: int = MAX_EXPORT_BYTES) -> list[ProfileEntry]:
    """The profile entries of a MAL list export, in file order."""
    try:
        root = fromstring(inflated(data, max_bytes), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as error:
        raise ExportError(f"the export declares a DTD or entities, which are refused: {type(error).__name__}") from None
    except ParseError as error:
        raise ExportError(f"the export is not well-formed XML: {error}") from None
    if root.tag != "myanimelist":
        raise ExportError(f"the root element is <{root.tag}>, not <myanimelist>: is this a MAL anime list export?")
    entries = []
    for position, anime in enumerate(root.iter("anime"), start=1):
        raw_id, raw_score = _text(anime, "series_animedb_id", position), anime.findtext("my_score", "0").strip() or "0"
        raw_status = _text(anime, "my_status", position)
        if not raw_id.isdigit() or not 1 <= int(raw_id) <= MAX_ANIME_ID:
            raise ExportError(f"entry {position}: {raw_id!r} is not an anime id")
        if not raw_score.isdigit() or not 0 <= int(raw_score) <= 10:
            raise ExportError(f"entry {position}: score {raw_score!r} is not 0..10")
        status = STATUSES.get(raw_status.lower())
        if status is None:
            raise ExportError(f"entry {position}: unknown status {raw_status!r}")
        entries.append(ProfileEntry(anime_id=int(raw_id), score=int(raw_score), status=status))
    return entries
