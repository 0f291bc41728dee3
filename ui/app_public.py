"""What the chat app shows of the server's file system: paths under the server's working folder
become relative (``./runs/ui/...``) and paths under its home folder start with ``~``.

Error messages of the lower layers name the files they failed on with absolute paths (right
for a command line, where the user owns the machine); in a shared app those paths would show
every visitor the account the server runs as. The app keeps absolute references internally
and passes every text it shows through ``Redactor``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Optional

__all__ = ["Redactor"]


class Redactor:
    """Rewrites absolute paths under ``roots`` (default: the working folder -> '.', the home
    folder -> '~') in strings and in lists / tuples / dicts of them."""

    def __init__(self, roots: Optional[Iterable[tuple[str | os.PathLike, str]]] = None):
        if roots is None:
            roots = ((Path.cwd(), "."), (Path.home(), "~"))
        pairs = []
        for path, shown in roots:
            for form in {str(Path(path)), str(Path(path).resolve())}:
                if len(form) > 1:          # never rewrite '/' itself
                    pairs.append((form, shown))
        # longest first: the working folder usually lies inside the home folder
        pairs.sort(key=lambda p: -len(p[0]))
        self._pairs = pairs
        self._pattern = re.compile("|".join(f"({re.escape(p)})(?![\\w.-])" for p, _ in pairs)) if pairs else None

    def text(self, s: str) -> str:
        if not self._pattern or not isinstance(s, str):
            return s
        return self._pattern.sub(lambda m: self._pairs[m.lastindex - 1][1], s)

    def value(self, v: Any) -> Any:
        """A copy of ``v`` with every string in it rewritten (other objects as they are)."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(self.value(x) for x in v)
        return v
