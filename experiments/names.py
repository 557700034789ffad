"""Names are data (torch-free, base layer): a preset, run or file name becomes a folder only
through :func:`slug`, and each writer escapes it for its format (:func:`markdown_text`,
:func:`csv_cell`, :func:`plot_text`), so a name can neither leave the store, inject markup,
forge a table row, run as a spreadsheet formula nor break a plot.

Example:
    >>> slug("../../outside/pwned")
    'outside-pwned'
    >>> markdown_text("<script>x</script>|\\nforged")
    '&lt;script&gt;x&lt;/script&gt;\\\\| forged'
    >>> csv_cell("=HYPERLINK(1)")
    "'=HYPERLINK(1)"
    >>> plot_text("price $\\\\frac$")
    'price \\\\$\\\\frac\\\\$'
"""

from __future__ import annotations

import html
import re
from typing import Any

#: The longest slug: folder names stay well inside every filesystem's limit.
SLUG_MAX = 80

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def slug(name: str) -> str:
    """A folder name for ``name``: letters, digits, ``.``, ``_`` and ``-`` only, no leading dot
    or dash (so never ``..`` or an option), at most :data:`SLUG_MAX` characters, never empty."""
    text = _UNSAFE.sub("-", str(name)).strip(".-")
    text = re.sub(r"-{2,}", "-", text)[:SLUG_MAX].strip(".-")
    return text or "unnamed"


def markdown_text(value: Any) -> str:
    """``value`` as inert Markdown text: HTML special characters escaped, table pipes escaped,
    line breaks and control characters turned into spaces (a name cannot start a new row)."""
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return _CONTROL.sub(" ", text.replace("\r\n", " ").replace("\n", " "))


#: Characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string starting with ``= + - @``, a tab or
    a carriage return gets a leading apostrophe; numbers and other values pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)  # a negative number written as text stays a number
            return value
        except ValueError:
            return "'" + value
    return value


def plot_text(value: Any) -> str:
    """A label that matplotlib draws literally: ``$`` escaped, so no mathtext is parsed from a name."""
    return _CONTROL.sub(" ", str(value)).replace("$", r"\$")
