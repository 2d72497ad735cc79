"""The delivery engine: work done once per event batch and process, not once per subscriber."""
