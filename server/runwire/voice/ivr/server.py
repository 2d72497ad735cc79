"""`runwire ivr-sim`: a SIP endpoint that answers every call with one IVR menu.

Each INVITE is refused (404 for another extension, the menu's `reject`/`busy` status) or rung
for `answer_after_ms` and answered; then an `IvrSimulator` runs the menu over the call's RTP
media, concurrently with every other call. One readable line per event goes to the log: who
called, each prompt, what was heard (with confidence), transfers and hang-ups.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict

from runwire.voice.calls import CallFailed
from runwire.voice.ivr.menu import Menu
from runwire.voice.ivr.simulator import IvrEvent, IvrSimulator, Prompts, Recognizers
from runwire.voice.sip.agent import IncomingCall, SipUserAgent
from runwire.voice.sip.message import MalformedMessage, SipUri


class IvrServer:
    """Answers calls to one menu; `lines` gets one log line per event (JSON with `json_lines`)."""

    def __init__(
        self, menu: Menu, lines: Callable[[str], None], *, json_lines: bool = False
    ) -> None:
        self.menu = menu
        self.prompts = Prompts.of(menu)
        self.recognizers = Recognizers()
        self._lines = lines
        self._json = json_lines
        self._numbers = itertools.count(1)
        self.calls = 0
        """Calls answered so far."""

    async def on_call(self, incoming: IncomingCall) -> None:
        number = next(self._numbers)
        try:
            extension = SipUri.parse(incoming.request_uri).user
        except MalformedMessage:
            extension = None
        self._log(
            number,
            "CALL",
            f"call from {incoming.caller} to {incoming.request_uri}",
            caller=incoming.caller,
            extension=extension,
            call_id=incoming.call_id,
        )
        refusal = self.menu.refusal(extension)
        if refusal is not None:
            self._log(
                number,
                "REJECTED",
                f"rejected: {refusal.status} {refusal.reason}",
                status=refusal.status,
                reason=refusal.reason,
            )
            await incoming.reject(refusal.status, refusal.reason)
            return
        await incoming.ring()
        if not await self._rang(incoming):
            self._log(number, "CANCELLED", "the caller hung up while it rang")
            return
        try:
            call = await incoming.answer()
        except CallFailed as failed:
            self._log(number, "FAILED", f"not answered: {failed}", status=failed.status)
            return
        self.calls += 1
        self._log(number, "ANSWERED", "answered")
        simulator = IvrSimulator(
            self.menu,
            call.media,
            prompts=self.prompts,
            recognizers=self.recognizers,
            on_event=lambda event: self._event(number, event),
            transfer=call.refer,
        )
        try:
            await simulator.run()
        except asyncio.CancelledError:
            self._log(number, "STOPPING", "hanging up: the simulator is stopping")
            raise
        # Returning hangs up (BYE) a call the caller has not already ended (after a refer too).

    async def _rang(self, incoming: IncomingCall) -> bool:
        """Ring for the menu's `answer_after_ms`; False when the caller cancelled meanwhile."""
        ring = asyncio.ensure_future(asyncio.sleep(self.menu.answer_after_ms / 1000))
        cancelled = asyncio.ensure_future(incoming.wait_cancelled())
        try:
            await asyncio.wait((ring, cancelled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ring.cancel()
            cancelled.cancel()
            await asyncio.wait((ring, cancelled))
        return not incoming.cancelled

    def _event(self, number: int, event: IvrEvent) -> None:
        details = asdict(event)
        details.pop("kind")
        self._log(number, event.kind.value, event.describe(), **details)

    def _log(self, number: int, kind: str, line: str, **details: object) -> None:
        if self._json:
            record = {"time": round(time.time(), 3), "call": number, "event": kind, **details}
            self._lines(json.dumps(record, default=str))
        else:
            stamp = time.strftime("%H:%M:%S")
            self._lines(f"{stamp} call {number}: {line}")


@asynccontextmanager
async def serving_menu(
    menu: Menu,
    host: str,
    port: int,
    lines: Callable[[str], None],
    *,
    json_lines: bool = False,
) -> AsyncIterator[tuple[IvrServer, SipUserAgent]]:
    """Serve `menu` on `host:port` until exit; exit hangs up every live call (BYE).

    The prompts are synthesized first, so a missing TTS engine fails here, before any call.
    """
    server = IvrServer(menu, lines, json_lines=json_lines)
    await server.prompts.warm(menu.prompts())
    async with (
        SipUserAgent.bound(host, port, user=menu.extension or "ivr") as agent,
        agent.serving(server.on_call),
    ):
        yield server, agent


async def run_until_stopped(
    menu: Menu, host: str, port: int, lines: Callable[[str], None], *, json_lines: bool = False
) -> None:
    """`runwire ivr-sim`: serve until SIGINT or SIGTERM, then hang up live calls and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with serving_menu(menu, host, port, lines, json_lines=json_lines) as (_, agent):
            where = f"sip:{menu.extension or 'ANY'}@{agent.host}:{agent.port}"
            lines(f"ivr-sim: menu {menu.name!r} answering {where} (Ctrl-C stops)")
            await stop.wait()
            lines("ivr-sim: stopping, hanging up live calls")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    lines("ivr-sim: stopped")
