"""Structure-aware chunking of documents and source code.

* Markdown: one chunk per heading section (tiny sections merge into the next one);
  the heading trail ("Lending > Health factor") becomes the chunk's title.
* Python: one chunk per top-level function or class (decorators included), large
  classes split per method, module-level code grouped by blank-line blocks. A file
  that does not parse falls back to blank-line blocks.
* Anything else: blank-line blocks merged up to the size limit.

Every piece larger than ``max_chars`` is cut into line windows that overlap by
``overlap_lines``. Chunks keep their 1-based inclusive line range. A chunk's id derives
from its path and content only, so re-ingesting unchanged text is idempotent and an
edited file keeps the ids of its unchanged chunks.
"""

from __future__ import annotations

import ast
import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

_ID_NAMESPACE = uuid.UUID("6f0c3f8e-8d0a-4a53-9a39-4f3a5e7b2c11")
CHUNKER_VERSION = 1  # bump when chunk boundaries change: forces re-chunking on ingest

LANGUAGES = {
    ".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".txt": "text",
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".jsx": "javascript", ".go": "go",
    ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp",
    ".java": "java", ".kt": "kotlin", ".rb": "ruby", ".php": "php", ".cs": "csharp",
    ".swift": "swift", ".scala": "scala", ".sh": "shell", ".bash": "shell",
    ".sql": "sql", ".html": "html", ".css": "css", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".json": "json", ".ini": "ini", ".cfg": "ini", ".proto": "proto",
    ".tex": "latex", ".csv": "csv", ".xml": "xml", ".lua": "lua", ".r": "r",
}
_NAMES = {"Makefile": "make", "Dockerfile": "docker", "README": "text", "LICENSE": "text"}


def language_for(path: str) -> str:
    """A short language name from the file name ('' when unknown)."""
    p = PurePosixPath(path)
    return LANGUAGES.get(p.suffix.lower()) or _NAMES.get(p.name, "")


@dataclass(frozen=True)
class Chunk:
    path: str
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str
    language: str = ""
    title: str = ""  # heading trail or symbol name

    @property
    def id(self) -> str:
        digest = hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self.path}\0{digest}"))

    @property
    def embed_text(self) -> str:
        """What the embedder sees: path and title give a bare code block its context."""
        head = f"{self.path} {self.title}".strip()
        return f"{head}\n{self.text}"


@dataclass(frozen=True)
class _Piece:
    start: int  # 0-based index of the first line
    end: int  # exclusive
    title: str = ""


def chunk_document(
    path: str, text: str, *, max_chars: int = 1000, overlap_lines: int = 2, min_chars: int = 200
) -> list[Chunk]:
    """Split one document into chunks (see the module docstring for the rules)."""
    language = language_for(path)
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        return []
    if language == "markdown":
        pieces = _markdown_sections(lines, min_chars)
    elif language == "python":
        pieces = _python_pieces(text, lines, max_chars)
    else:
        pieces = _merge(_blocks(lines, 0, len(lines)), lines, max_chars)
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for piece in pieces:
        for start, end in _windows(lines, piece.start, piece.end, max_chars, overlap_lines):
            body = "\n".join(lines[start:end]).strip("\n")
            if not body.strip():
                continue
            chunk = Chunk(path, start + 1, end, body, language, piece.title)
            if chunk.id not in seen:  # identical repeated blocks collapse to one chunk
                seen.add(chunk.id)
                chunks.append(chunk)
    return chunks


def _size(lines: list[str], start: int, end: int) -> int:
    return sum(len(line) + 1 for line in lines[start:end])


def _blocks(lines: list[str], start: int, end: int, title: str = "") -> list[_Piece]:
    """Runs of non-blank lines."""
    out: list[_Piece] = []
    i = start
    while i < end:
        while i < end and not lines[i].strip():
            i += 1
        j = i
        while j < end and lines[j].strip():
            j += 1
        if j > i:
            out.append(_Piece(i, j, title))
        i = j
    return out


def _merge(pieces: list[_Piece], lines: list[str], max_chars: int) -> list[_Piece]:
    """Greedily join neighbouring pieces while the result stays under max_chars."""
    out: list[_Piece] = []
    for p in pieces:
        if out and out[-1].title == p.title and _size(lines, out[-1].start, p.end) <= max_chars:
            out[-1] = _Piece(out[-1].start, p.end, p.title)
        else:
            out.append(p)
    return out


def _windows(
    lines: list[str], start: int, end: int, max_chars: int, overlap: int
) -> list[tuple[int, int]]:
    """Cut [start, end) into line windows of at most max_chars overlapping by `overlap` lines.

    A single line longer than max_chars (minified code) becomes its own window.
    """
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    if start >= end:
        return []
    if _size(lines, start, end) <= max_chars:
        return [(start, end)]
    out: list[tuple[int, int]] = []
    i = start
    while i < end:
        j, size = i, 0
        while j < end and (j == i or size + len(lines[j]) + 1 <= max_chars):
            size += len(lines[j]) + 1
            j += 1
        out.append((i, j))
        if j >= end:
            break
        i = max(j - overlap, i + 1)
    return out


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _markdown_sections(lines: list[str], min_chars: int) -> list[_Piece]:
    """One piece per heading section; a section too small to stand alone joins the next."""
    starts: list[tuple[int, str]] = []
    trail: list[tuple[int, str]] = []
    fenced = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(line)
        if m:
            level = len(m.group(1))
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, m.group(2))]
            starts.append((i, " > ".join(t for _, t in trail)))
    if not starts or starts[0][0] != 0:
        starts.insert(0, (0, ""))
    bounds = [(s, starts[k + 1][0] if k + 1 < len(starts) else len(lines), t) for k, (s, t) in enumerate(starts)]
    out: list[_Piece] = []
    carry: int | None = None
    for s, e, t in bounds:
        begin = s if carry is None else carry
        if _size(lines, begin, e) < min_chars and e < len(lines):
            carry = begin  # e.g. a title line followed directly by a sub-heading
            continue
        out.append(_Piece(begin, e, t))
        carry = None
    if carry is not None:
        out.append(_Piece(carry, len(lines), bounds[-1][2]))
    return out


def _python_pieces(text: str, lines: list[str], max_chars: int) -> list[_Piece]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return _merge(_blocks(lines, 0, len(lines)), lines, max_chars)
    out: list[_Piece] = []
    cursor = 0
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in tree.body:
        if not isinstance(node, defs):
            continue
        start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        end = node.end_lineno or node.lineno
        out.extend(_merge(_blocks(lines, cursor, start, "module"), lines, max_chars))
        if isinstance(node, ast.ClassDef) and _size(lines, start, end) > max_chars:
            out.extend(_class_pieces(node, lines, start, end, max_chars))
        else:
            out.append(_Piece(start, end, node.name))
        cursor = end
    out.extend(_merge(_blocks(lines, cursor, len(lines), "module"), lines, max_chars))
    return sorted(out, key=lambda p: p.start)


def _class_pieces(node: ast.ClassDef, lines: list[str], start: int, end: int, max_chars: int) -> list[_Piece]:
    """A big class: its header (up to the first method), then one piece per method."""
    methods = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not methods:
        return [_Piece(start, end, node.name)]
    out: list[_Piece] = []
    cursor = start
    for m in methods:
        m_start = min([m.lineno] + [d.lineno for d in m.decorator_list]) - 1
        if m_start > cursor:
            out.append(_Piece(cursor, m_start, node.name))
        m_end = m.end_lineno or m.lineno
        out.append(_Piece(m_start, m_end, f"{node.name}.{m.name}"))
        cursor = m_end
    if cursor < end:
        out.append(_Piece(cursor, end, node.name))
    return out
