"""The `sip` call driver: each call gets its own user agent and RTP socket, freed on exit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from runwire.voice import calls
from runwire.voice.sip.agent import SipUserAgent


class SipDriver:
    """Places calls as a SIP user agent bound on `local_host` (port chosen per call).

    `public_host` is the address the far end sees (Contact, Via, SDP) when it differs from
    `local_host`, e.g. binding 0.0.0.0 on a machine a PBX reaches at 10.0.0.5.
    """

    name = "sip"

    def __init__(
        self,
        local_host: str = "127.0.0.1",
        public_host: str | None = None,
        *,
        user: str = "runwire",
        display_name: str | None = None,
    ) -> None:
        self.local_host = local_host
        self.public_host = public_host
        self.user = user
        self.display_name = display_name

    def dial(
        self, request: calls.DialRequest, progress: Callable[[calls.Progress], None]
    ) -> AbstractAsyncContextManager[calls.Call]:
        return self._dial(request, progress)

    @contextlib.asynccontextmanager
    async def _dial(
        self, request: calls.DialRequest, progress: Callable[[calls.Progress], None]
    ) -> AsyncIterator[calls.Call]:
        async with (
            SipUserAgent.bound(
                self.local_host,
                user=self.user,
                display_name=self.display_name,
                public_host=self.public_host,
            ) as agent,
            agent.dial(request, progress) as call,
        ):
            yield call
