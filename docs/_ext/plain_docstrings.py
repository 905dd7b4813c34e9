"""Griffe extension for the API reference: the docstrings read as written.

The package's docstrings are plain text laid out line by line (formulas, shapes), with
reST-style ``code`` and ``::`` literal blocks. Rendered as Markdown their lines would run
into one paragraph and ``a * b`` would turn italic. This keeps each line break, escapes
``*`` and ``<`` outside code, and turns ``::`` blocks into Markdown code blocks.
"""

import re

import griffe

_CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")


def _escape(text):
    """Escape Markdown emphasis and raw HTML outside code spans."""
    parts = _CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):  # even indices are outside code spans
        parts[i] = parts[i].replace("\\", "\\\\").replace("*", r"\*").replace("<", "&lt;")
    return "".join(parts)


def plain_to_markdown(docstring):
    """A plain docstring as Markdown that renders with the same lines."""
    lines, out, literal = docstring.splitlines(), [], False
    for k, line in enumerate(lines):
        indented = line.startswith("    ") or not line.strip()
        if literal and indented:
            out.append(line)  # inside a literal block (indented by 4 after a blank line): as is
            continue
        literal = False
        if line.rstrip().endswith("::"):
            out.append(_escape(line.rstrip()[:-1]))
            literal = True
            continue
        following = lines[k + 1] if k + 1 < len(lines) else ""
        # a hard line break keeps the docstring's line layout inside a paragraph
        out.append(_escape(line) + ("  " if line.strip() and following.strip() else ""))
    return "\n".join(out)


class PlainDocstrings(griffe.Extension):
    def on_object(self, *, obj, **kwargs):
        docstring = obj.docstring
        if docstring is not None and not getattr(docstring, "_plain_done", False):
            docstring.value = plain_to_markdown(docstring.value)
            docstring._plain_done = True
