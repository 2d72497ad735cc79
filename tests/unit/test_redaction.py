"""Masking secret values in what steps report, including values split across output pieces."""

from __future__ import annotations

import random
import time

import pytest

from runwire.domain.models import OutputStream
from runwire.runner.redaction import MASK, Redactor, StreamRedactor
from runwire.scenarios.results import StepResult

SECRET = "hunter2-and-more"
OUT, ERR = OutputStream.STDOUT, OutputStream.STDERR


def redactor(*values: str) -> Redactor:
    found = Redactor()
    found.add(values)
    return found


def streamed(stream_redactor: StreamRedactor, pieces: list[tuple[OutputStream, str]]) -> str:
    """Everything that went out, in order, the held-back rest last."""
    out = [stream_redactor.feed(stream, text) for stream, text in pieces]
    out.extend(text for _, text in stream_redactor.flush())
    return "".join(out)


def test_every_occurrence_is_masked_and_the_longest_value_first() -> None:
    found = redactor("abc", "xabcx")
    assert found.text("1 abc 2 xabcx 3 abcabc") == f"1 {MASK} 2 {MASK} 3 {MASK}{MASK}"


@pytest.mark.parametrize("cut", range(1, len(SECRET)))
def test_a_value_split_across_two_pieces_never_goes_out_in_part(cut: int) -> None:
    pieces = [(OUT, "token=" + SECRET[:cut]), (OUT, SECRET[cut:] + " done\n")]
    stream_redactor = StreamRedactor(redactor(SECRET))
    first = stream_redactor.feed(*pieces[0])
    assert first == "token="  # the start of the value is held back, not sent
    assert streamed(stream_redactor, pieces[1:]) == f"{MASK} done\n"


def test_a_value_split_into_single_characters_is_masked() -> None:
    stream_redactor = StreamRedactor(redactor(SECRET))
    pieces = [(OUT, char) for char in f"<{SECRET}>"]
    assert streamed(stream_redactor, pieces) == f"<{MASK}>"


def test_streams_are_held_apart_and_what_is_held_goes_out_at_the_end() -> None:
    stream_redactor = StreamRedactor(redactor(SECRET))
    assert stream_redactor.feed(OUT, "a hunter") == "a "
    assert stream_redactor.feed(ERR, "2-and-more") == "2-and-more"  # not the stdout value's end
    assert stream_redactor.feed(OUT, "!") == "hunter!"
    assert stream_redactor.feed(OUT, "x hunt") == "x "
    assert list(stream_redactor.flush()) == [(OUT, "hunt")]
    assert list(stream_redactor.flush()) == []


def test_without_values_output_passes_untouched() -> None:
    stream_redactor = StreamRedactor(Redactor())
    assert stream_redactor.feed(OUT, "hunter") == "hunter"
    assert list(stream_redactor.flush()) == []


def test_values_added_later_are_masked_from_then_on() -> None:
    found = Redactor()
    stream_redactor = StreamRedactor(found)
    assert stream_redactor.feed(OUT, SECRET) == SECRET
    found.add([SECRET, SECRET, ""])
    assert stream_redactor.feed(OUT, SECRET + "\n") == f"{MASK}\n"


def test_a_result_is_masked_in_its_output_error_and_attributes_keys_included() -> None:
    result = StepResult(
        output={"stdout": f"{SECRET}\n", "nested": [SECRET, 3, None, (SECRET,)], SECRET: 1},
        error=f"failed with {SECRET}",
        exit_code=2,
        attributes={"url": f"https://x/?k={SECRET}"},
    )
    masked = redactor(SECRET).result(result)
    assert masked.output == {
        "stdout": f"{MASK}\n",
        "nested": [MASK, 3, None, (MASK,)],
        MASK: 1,
    }
    assert masked.error == f"failed with {MASK}"
    assert masked.attributes == {"url": f"https://x/?k={MASK}"}
    assert masked.exit_code == 2
    assert SECRET not in repr(masked)


def test_what_is_held_back_is_the_longest_end_that_starts_a_value() -> None:
    """Against a brute force, over a two-letter alphabet mostly of one letter, so candidates are
    plentiful (the probe, the short end and the linear fallback all take turns)."""
    rng = random.Random(15)

    def word(longest: int) -> str:
        return "".join(rng.choices("ab", weights=(9, 1), k=rng.randint(0, longest)))

    for _ in range(3000):
        value = "a" + word(60)
        text = word(120)
        expected = max(
            (k for k in range(min(len(value) - 1, len(text)) + 1) if text.endswith(value[:k])),
            default=0,
        )
        assert redactor(value).held_back(text) == expected, (value, text)


def test_hostile_output_is_held_back_exactly_and_quickly() -> None:
    value = "A" * 20 + "B" * 4076
    stream_redactor = StreamRedactor(redactor(value))
    started = time.perf_counter()
    assert stream_redactor.feed(OUT, "A" * 32768) == "A" * (32768 - 20)
    assert stream_redactor.feed(OUT, "B" * 4076 + "\n") == f"{MASK}\n"
    # Linear, not quadratic in the length of the piece.
    assert time.perf_counter() - started < 0.5
