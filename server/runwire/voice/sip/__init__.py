"""SIP over UDP and RTP on asyncio: our own small stack, so every socket, timer and task of a call
lives inside an `async with` on the caller's event loop (no global endpoint, no threads).

- `message.py` SIP requests and responses (RFC 3261)
- `sdp.py`     audio offer/answer: PCMU, PCMA, telephone-event
- `digest.py`  digest authentication for 401/407
- `rtp.py`     `RtpSession`, a `media.MediaLeg` over RTP with RFC 4733 DTMF
- `agent.py`   `SipUserAgent`: dial (UAC) and serve (UAS)
- `driver.py`  `SipDriver`, the `sip` call driver
"""
