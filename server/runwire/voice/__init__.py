"""Phone and voice calls: audio, speech, DTMF, SIP/RTP, the IVR simulator and call drivers.

Nothing here imports the server, the runner or a web framework: the `call` step kind
(runner/steps/call.py) and `runwire ivr-sim` (cli.py) are built on it.

- `media.py`    the audio format every part shares and `MediaLeg`, one side of a call's media
- `calls.py`    `CallDriver` (`sip`, `simulated`), `DialRequest`, `Call`, `CallFailed`
- `codecs.py`   G.711 µ-law and A-law, WAV files
- `dtmf.py`     DTMF tones and a detector with energy and twist thresholds
- `tts.py`      text to speech (espeak-ng from the espeakng-loader wheel)
- `asr.py`      offline recognition with confidence (PocketSphinx and its bundled en-US model)
- `listening.py` hearing one prompt: speech start and end by energy, then recognition
- `sip/`        a SIP user agent (UAC and UAS) and RTP sessions on asyncio
- `ivr/`        the IVR simulator: YAML menus, the menu engine, the SIP server of `ivr-sim`
- `pipe.py`     `MediaPipe`: two `MediaLeg`s joined in memory, paced like RTP
- `simulated.py` the `simulated` driver: the IVR simulator over a `MediaPipe`, no network
"""
