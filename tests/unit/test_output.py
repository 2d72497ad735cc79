"""Output coalescing: a window merges pieces into one chunk; a window of 0 makes one per line.

Whole lines after a quiet window go out at once; what follows them within the window is merged.
"""

from __future__ import annotations

import asyncio

from runwire.domain.models import OutputStream
from runwire.runner.output import OutputCoalescer

OUT, ERR = OutputStream.STDOUT, OutputStream.STDERR


async def test_a_window_merges_pieces_into_one_chunk() -> None:
    chunks: list[tuple[OutputStream, str]] = []
    coalescer = OutputCoalescer(lambda stream, text, at: chunks.append((stream, text)), 0.01)
    coalescer.write(OUT, "a\nb")
    coalescer.write(OUT, "\nc\n")
    assert chunks == []
    await asyncio.sleep(0.05)
    assert chunks == [(OUT, "a\nb\nc\n")]


async def test_a_line_after_a_quiet_spell_goes_out_at_once() -> None:
    chunks: list[tuple[OutputStream, str]] = []
    coalescer = OutputCoalescer(lambda stream, text, at: chunks.append((stream, text)), 0.02)
    coalescer.write(OUT, "first\n")
    assert chunks == [(OUT, "first\n")]
    coalescer.write(OUT, "second\n")
    coalescer.write(OUT, "third\n")
    assert chunks == [(OUT, "first\n")]  # within the window: held and merged
    await asyncio.sleep(0.03)
    assert chunks == [(OUT, "first\n"), (OUT, "second\nthird\n")]
    coalescer.write(OUT, "partial")
    assert len(chunks) == 2  # the window since the merged chunk has not passed
    await asyncio.sleep(0.05)
    assert chunks[-1] == (OUT, "partial")
    await asyncio.sleep(0.05)
    coalescer.write(ERR, "late\n")
    assert chunks[-1] == (ERR, "late\n")


async def test_a_window_of_zero_makes_every_line_its_own_chunk() -> None:
    chunks: list[tuple[OutputStream, str]] = []
    coalescer = OutputCoalescer(lambda stream, text, at: chunks.append((stream, text)), 0)
    coalescer.write(OUT, "one\ntwo\nthr")
    assert chunks == [(OUT, "one\n"), (OUT, "two\n")]
    coalescer.write(OUT, "ee\nfour")  # the rest of a line joins its start
    assert chunks[2:] == [(OUT, "three\n")]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # A line still missing its newline goes out at the next pass of the loop.
    assert chunks[3:] == [(OUT, "four")]


async def test_a_window_of_zero_keeps_the_order_of_streams() -> None:
    chunks: list[tuple[OutputStream, str]] = []
    coalescer = OutputCoalescer(lambda stream, text, at: chunks.append((stream, text)), 0)
    coalescer.write(OUT, "prompt: ")
    coalescer.write(ERR, "warning\n")
    coalescer.write(OUT, "x\r\ny\n")
    coalescer.flush()
    assert chunks == [(OUT, "prompt: "), (ERR, "warning\n"), (OUT, "x\r\n"), (OUT, "y\n")]
