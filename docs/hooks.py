"""MkDocs hooks (``hooks:`` in mkdocs.yml): render the docstrings' doctest examples as code.

The docstrings are prose with doctest examples (``>>>`` lines and their output). Markdown
would read a ``>>>`` line as a nested blockquote and an output such as ``[111]`` as a
reference link; this preprocessor fences each doctest run as a ``pycon`` code block first.
"""

from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

_PROMPT = re.compile(r"^(\s*)>>> ")
_FENCE = re.compile(r"^\s*(```|~~~)")


class _DoctestFences(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        in_fence = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if _FENCE.match(line):
                in_fence = not in_fence
            prompt = None if in_fence else _PROMPT.match(line)
            if prompt is None:
                out.append(line)
                i += 1
                continue
            indent = prompt.group(1)
            out.append(f"{indent}```pycon")
            # A doctest run ends at a blank line (or the end of the text).
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
        return out


class DoctestFences(Extension):
    def extendMarkdown(self, md: Markdown) -> None:  # Markdown's API, camel case
        # Before pymdownx.superfences' preprocessor (priority 32) fences the code.
        md.preprocessors.register(_DoctestFences(md), "doctest_fences", 40)


def on_config(config: Any) -> Any:
    config.markdown_extensions.append(DoctestFences())
    return config
