"""The fake provider streams at the pace its model name asks for, also at thousands a second."""

from __future__ import annotations

import time

import httpx

from runwire.fakes.llm_provider import FakeLlmProvider, serving


async def test_tps_is_the_rate_of_content_chunks_even_above_the_loops_timer_resolution() -> None:
    body = {
        "model": "runwire-fake-chat:tps=2000:words=1000",
        "messages": [{"role": "user", "content": "go"}],
        "stream": True,
    }
    arrivals: list[float] = []
    async with (
        serving(FakeLlmProvider()) as url,
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", f"{url}/chat/completions", json=body) as response,
    ):
        async for line in response.aiter_lines():
            if '"content": "word' in line:
                arrivals.append(time.monotonic())

    assert len(arrivals) == 1000
    seconds = arrivals[-1] - arrivals[0]
    # Not faster than asked (999 intervals of 0.5 ms, less the client's own jitter). Waiting out
    # each interval in turn took 1.3 s here (the loop's timers round up to a millisecond); on a
    # schedule it takes 0.5 s.
    assert seconds >= 0.45
    assert seconds < 0.9
