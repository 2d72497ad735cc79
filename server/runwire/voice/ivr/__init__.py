"""The IVR simulator: YAML menus (`menu.py`), the menu engine over one call's media
(`simulator.py`) and the SIP server of `runwire ivr-sim` (`server.py`)."""
