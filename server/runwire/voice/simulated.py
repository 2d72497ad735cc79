"""The `simulated` call driver: the IVR simulator in-process, over a `MediaPipe` instead of a
network, with the same audio on both legs (TTS prompts, DTMF tones or events, recognition) and
the same failure statuses `runwire ivr-sim` answers with over SIP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from runwire.errors import InvalidDefinition
from runwire.voice.calls import (
    Call,
    CallFailed,
    DialRequest,
    Ended,
    HungUpBy,
    Progress,
)
from runwire.voice.ivr.menu import Menu, find_menu, load_menu
from runwire.voice.ivr.simulator import IvrEvent, IvrSimulator, Prompts, Recognizers
from runwire.voice.media import MediaLeg
from runwire.voice.pipe import MediaPipe


class SimulatedCall:
    """An answered simulated call; `simulator` is the IVR on the far leg (its `heard` log)."""

    def __init__(self, pipe: MediaPipe, simulator: IvrSimulator) -> None:
        self._pipe = pipe
        self.simulator = simulator
        self._ended: Ended | None = None
        self._task: asyncio.Task[None] | None = None
        self.transferred_to: str | None = None
        """Where the IVR transferred the call (its refer), as a SIP REFER would tell us."""
        simulator.transfer = self._refer

    @property
    def media(self) -> MediaLeg:
        return self._pipe.near

    @property
    def ended(self) -> Ended | None:
        return self._ended

    async def _refer(self, target: str) -> None:
        # What our SIP agent does with a REFER: accept it and report it, without calling target.
        self.transferred_to = target

    async def hangup(self) -> None:
        if self._ended is None:
            self._ended = Ended(HungUpBy.US, "BYE", self.transferred_to)
        self._pipe.end()
        if self._task is not None:
            # The IVR sees its media end and returns at its next step.
            await asyncio.wait((self._task,))

    def _start(self) -> None:
        self._task = asyncio.create_task(self._run_ivr(), name="simulated-ivr")

    async def _run_ivr(self) -> None:
        try:
            by = await self.simulator.run()
            cause = "BYE"
        except Exception as exc:  # the IVR failing ends the call, as it would on a network
            by, cause = HungUpBy.US, f"IVR failed: {exc}"
        if self._ended is None:
            # The simulator's US is the far end of our call; after a refer its BYE completes
            # the transfer, as over SIP.
            if by is HungUpBy.US and cause == "BYE" and self.transferred_to is not None:
                cause = "REFER"
            self._ended = Ended(
                HungUpBy.FAR_END if by is HungUpBy.US else HungUpBy.US,
                cause,
                self.transferred_to,
            )
        self._pipe.end()

    async def _stop(self) -> None:
        if self._ended is None:
            self._ended = Ended(HungUpBy.US, "BYE", self.transferred_to)
        self._pipe.end()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait((self._task,))


class SimulatedDriver:
    """Dials an IVR menu: `DialRequest.target` is `MENU` or `EXTENSION@MENU`, where MENU is a
    menu file path or a shipped menu's name (`bank`, `broken-bank`).

    Raises CallFailed like `runwire ivr-sim` would answer: 404 for a menu that does not exist or
    another extension than the menu's, the menu's `reject`/`busy` status, 408 when it rings
    longer than `answer_timeout_seconds`, and 500 for a menu file that does not check.
    """

    name = "simulated"

    def __init__(self, *, on_event: Callable[[IvrEvent], None] | None = None) -> None:
        self._on_event = on_event
        self._menus: dict[Path, tuple[int, Menu, Prompts]] = {}
        self._recognizers = Recognizers()

    def dial(
        self, request: DialRequest, progress: Callable[[Progress], None]
    ) -> AbstractAsyncContextManager[Call]:
        return self._dial(request, progress)

    @asynccontextmanager
    async def _dial(
        self, request: DialRequest, progress: Callable[[Progress], None]
    ) -> AsyncIterator[Call]:
        progress(Progress.DIALING)
        if request.codec not in ("PCMU", "PCMA"):
            raise CallFailed(488, f"Not Acceptable Here (no codec {request.codec!r})")
        extension, menu, prompts = self._menu(request.target)
        refusal = menu.refusal(extension)
        if refusal is not None:
            raise CallFailed(refusal.status, refusal.reason)
        progress(Progress.RINGING)
        ring = menu.answer_after_ms / 1000
        if ring > request.answer_timeout_seconds:
            await asyncio.sleep(request.answer_timeout_seconds)
            raise CallFailed(
                408, f"Request Timeout (no answer within {request.answer_timeout_seconds:g} s)"
            )
        # The first prompt is synthesized while it rings, so a missing TTS engine fails the
        # dial with its install hint instead of answering with silence.
        await asyncio.gather(asyncio.sleep(ring), prompts.audio(menu.nodes[menu.start].say))
        async with MediaPipe.open(request.codec) as pipe:
            simulator = IvrSimulator(
                menu,
                pipe.far,
                prompts=prompts,
                recognizers=self._recognizers,
                on_event=self._on_event,
            )
            call = SimulatedCall(pipe, simulator)
            call._start()
            progress(Progress.ANSWERED)
            try:
                yield call
            finally:
                await call._stop()

    def _menu(self, target: str) -> tuple[str | None, Menu, Prompts]:
        extension: str | None = None
        name = target
        if "@" in target and not Path(target).is_file():
            extension, name = target.split("@", 1)
        try:
            path = find_menu(name).resolve()
        except FileNotFoundError as exc:
            raise CallFailed(404, f"Not Found ({exc})") from exc
        modified = path.stat().st_mtime_ns
        cached = self._menus.get(path)
        if cached is None or cached[0] != modified:
            try:
                menu = load_menu(path)
            except InvalidDefinition as exc:
                raise CallFailed(500, f"Server Internal Error (menu {path}: {exc})") from exc
            cached = (modified, menu, Prompts.of(menu))
            self._menus[path] = cached
        return extension, cached[1], cached[2]
