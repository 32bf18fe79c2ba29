"""mkdocs hooks of the docs site (see mkdocs.yml): not a page."""

from __future__ import annotations

import re
from typing import Any

# The docstrings use Sphinx roles (:class:`Part`); mkdocstrings renders them as
# the role name followed by the code. Keep the code only.
_ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|exc|obj):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Drop the Sphinx role prefixes from a rendered page."""
    return _ROLE.sub("", html)
