"""Hiding restricted placeholder values in a URL that was rendered and sent (the delivery log).

A delivery stores the URL as sent. Where its values came from is recovered from the postback's
URL template, using what rendering guarantees (`functions.core.rendering`): every value is
percent-encoded in full, so it holds only unreserved characters and `%XX` — never a reserved
character (`: / ? # [ ] @ ! $ & ' ( ) * + , ; =`). Splitting the template and the URL at
reserved characters therefore gives the same delimiters in the same order, and pieces that
correspond one to one. In each piece of the template:

- no placeholder: the URL's piece must be the same text;
- one placeholder: the URL's piece is the literal text around it plus the value, so the value's
  span is exact and is replaced by `***` when the placeholder is hidden;
- several placeholders: where one value ends and the next begins cannot be told, so the whole
  piece becomes `***` when any of them is hidden.

When the URL does not fit the template (the postback's URL was changed after the delivery was
rendered), which parts came from which placeholder cannot be known: every piece after the
authority becomes `***`, keeping only the scheme, host, port and the delimiters. Linear time,
no regular expression backtracking over text a caller controls.
"""

from __future__ import annotations

import re

from functions.core.placeholders import PLACEHOLDER_PATTERN

MASK = "***"
_RESERVED = re.compile(r"([:/?#\[\]@!$&'()*+,;=])")
_SENTINEL = "\x00"


def _split(text: str) -> tuple[list[str], list[str]]:
    """(pieces, delimiters): `pieces[0] + delimiters[0] + pieces[1] + ...` is `text`."""
    parts = _RESERVED.split(text)
    return parts[0::2], parts[1::2]


def _authority_end(text: str) -> int:
    """Index in `text` where the path begins (after `scheme://host:port`), or 0 if none is found."""
    scheme_end = text.find("://")
    if scheme_end == -1:
        return 0
    start = scheme_end + 3
    ends = [index for index in (text.find(d, start) for d in "/?#") if index != -1]
    return min(ends) if ends else len(text)


def mask_everything_after_authority(url: str) -> str:
    """`url` with every piece of its path, query and fragment replaced by `***`."""
    boundary = _authority_end(url)
    pieces, delimiters = _split(url[boundary:])
    masked = [MASK if piece else "" for piece in pieces]
    out = [masked[0]]
    for delimiter, piece in zip(delimiters, masked[1:], strict=True):
        out.extend((delimiter, piece))
    return url[:boundary] + "".join(out)


def _mask_piece(template_piece: str, names: list[str], piece: str, hidden: frozenset[str]) -> str | None:
    """The URL's `piece` with hidden values masked; None when it does not fit `template_piece`."""
    literals = template_piece.split(_SENTINEL)
    if not names:
        return piece if piece == template_piece else None
    prefix, suffix = literals[0], literals[-1]
    if len(piece) < len(prefix) + len(suffix) or not piece.startswith(prefix) or not piece.endswith(suffix):
        return None
    if not any(name in hidden for name in names):
        return piece
    if len(names) == 1:
        return prefix + MASK + suffix
    return MASK


def mask_restricted_values(url: str, template: str, hidden: frozenset[str]) -> str:
    """`url` (sent for a postback whose template is `template`) with values of `hidden` placeholders as `***`."""
    if not hidden:
        return url
    names = PLACEHOLDER_PATTERN.findall(template)
    skeleton = PLACEHOLDER_PATTERN.sub(_SENTINEL, template)
    template_pieces, template_delimiters = _split(skeleton)
    pieces, delimiters = _split(url)
    if template_delimiters != delimiters:
        return mask_everything_after_authority(url)
    masked: list[str] = []
    position = 0
    for template_piece, piece in zip(template_pieces, pieces, strict=True):
        count = template_piece.count(_SENTINEL)
        result = _mask_piece(template_piece, names[position : position + count], piece, hidden)
        if result is None:
            return mask_everything_after_authority(url)
        masked.append(result)
        position += count
    out = [masked[0]]
    for delimiter, piece in zip(delimiters, masked[1:], strict=True):
        out.extend((delimiter, piece))
    return "".join(out)
