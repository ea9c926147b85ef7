from __future__ import annotations

from services.retriever.chunking import Chunk, chunk_document, language_for
from shared.ingest_files import looks_binary


def lines_of(text: str, c: Chunk) -> str:
    return "\n".join(text.splitlines()[c.start_line - 1 : c.end_line]).strip("\n")


def test_markdown_splits_by_heading_with_heading_trail() -> None:
    intro = "Intro paragraph that is long enough to stand on its own as a section. " * 4
    body = "Text about pools and their pricing formula. " * 6
    text = f"# Title\n{intro}\n## Pools\n{body}\n### Curves\n{body}\n## Fees\n{body}\n"
    chunks = chunk_document("notes/amm.md", text)
    assert [c.title for c in chunks] == ["Title", "Title > Pools", "Title > Pools > Curves", "Title > Fees"]
    for c in chunks:
        assert c.language == "markdown"
        assert c.text == lines_of(text, c)


def test_markdown_heading_inside_code_fence_is_not_a_section() -> None:
    body = "word " * 60
    text = f"# Doc\n{body}\n```bash\n# not a heading\necho hi\n```\n{body}\n"
    chunks = chunk_document("a.md", text)
    assert all("not a heading" not in c.title for c in chunks)


def test_tiny_markdown_section_merges_into_the_next() -> None:
    text = "# Title\n## Sub\n" + "real content here. " * 20 + "\n"
    chunks = chunk_document("a.md", text)
    assert len(chunks) == 1
    assert chunks[0].start_line == 1 and chunks[0].title == "Title > Sub"


PY = '''"""Module doc."""
import os

CONST = 1


@decorator
def first(a, b):
    return a + b


class Thing:
    """A thing."""

    def method(self):
        return 1


async def second():
    return await x()
'''


def test_python_top_level_functions_and_classes() -> None:
    chunks = chunk_document("pkg/mod.py", PY, max_chars=2000)
    titles = [c.title for c in chunks]
    assert titles == ["module", "first", "Thing", "second"]
    first = chunks[1]
    assert first.text.startswith("@decorator") and first.start_line == 7 and first.end_line == 9
    for c in chunks:
        assert c.text == lines_of(PY, c)
        assert c.language == "python"


def test_big_python_class_splits_per_method() -> None:
    methods = "\n".join(f"    def m{i}(self):\n        return {'x' * 200}\n" for i in range(8))
    text = f"class Big:\n    attr = 1\n\n{methods}"
    chunks = chunk_document("big.py", text, max_chars=500)
    titles = [c.title for c in chunks]
    assert "Big" in titles and "Big.m0" in titles and "Big.m7" in titles
    assert all(len(c.text) <= 500 for c in chunks)


def test_syntax_error_falls_back_to_blocks() -> None:
    text = "def broken(:\n    pass\n\nx = 1\n"
    chunks = chunk_document("bad.py", text)
    assert chunks and chunks[0].start_line == 1


def test_oversize_block_is_windowed_with_overlap_and_limits() -> None:
    text = "\n".join(f"line {i} " + "y" * 40 for i in range(100))
    chunks = chunk_document("data.txt", text, max_chars=500, overlap_lines=2)
    assert len(chunks) > 5
    assert all(len(c.text) <= 500 for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start_line == a.end_line - 1  # two lines shared
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 100


def test_minified_single_line_still_chunks() -> None:
    chunks = chunk_document("app.min.js", "x" * 5000, max_chars=1000)
    assert len(chunks) == 1 and chunks[0].start_line == chunks[0].end_line == 1


def test_ids_derive_from_path_and_content() -> None:
    text = "alpha\n\nbeta\n"
    a = chunk_document("x.txt", text, max_chars=5)
    b = chunk_document("x.txt", "new first line\n\n" + text, max_chars=5)
    assert {c.id for c in a} <= {c.id for c in b}  # unchanged blocks keep their ids
    other = chunk_document("y.txt", text, max_chars=5)
    assert not {c.id for c in a} & {c.id for c in other}  # same text, other file: other id


def test_empty_and_blank_documents_have_no_chunks() -> None:
    assert chunk_document("e.md", "") == []
    assert chunk_document("e.md", "\n \n\t\n") == []


def test_language_and_binary_detection() -> None:
    assert language_for("a/b.py") == "python"
    assert language_for("README.md") == "markdown"
    assert language_for("Makefile") == "make"
    assert language_for("x.unknown") == ""
    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert looks_binary(b"\xff\xfe\xfa" * 100)
    assert not looks_binary("héllo wörld".encode())
    # A multi-byte character cut at the 8 KiB sniffing boundary is still text.
    assert not looks_binary(("a" * 8191 + "é").encode())
