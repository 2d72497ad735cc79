"""A transcript replayer standing in for a CLI agent (Claude Code, Codex) in examples and tests.

`runwire fake-agent --format claude-stream-json [--transcript NAME|FILE] [--delay-ms N] [PROMPT]`
reads its prompt as the real CLIs do (an argument, or stdin when it is `-` or absent), then
prints a recorded transcript line by line, waiting `--delay-ms` before each, and exits with the
code the real CLI would: 1 when the transcript ends in an error result, else 0. `${prompt}` in a
transcript is replaced by the prompt (JSON-escaped). SIGINT ends it at once (exit 130), as it ends
the real CLIs. It calls no model: what it prints was written from the formats' public docs.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from importlib import resources
from pathlib import Path

FORMATS = ("claude-stream-json", "codex-jsonl", "ndjson")
SHIPPED = ("success", "error", "malformed")
"""The transcripts shipped for each format (transcripts/<format>/<name>.jsonl)."""


def transcript_text(format_name: str, transcript: str) -> str:
    """A shipped transcript by name, or a file's text."""
    if transcript in SHIPPED:
        found = resources.files("runwire.fakes").joinpath(
            "transcripts", format_name, f"{transcript}.jsonl"
        )
        return found.read_text("utf-8")
    return Path(transcript).read_text("utf-8")


def exit_code_of(lines: list[str]) -> int:
    """1 when the last record is an error result (as the real CLIs exit then), else 0."""
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        kind = record.get("type")
        if kind == "result":
            failed = record.get("is_error") is True or str(record.get("subtype", "")).startswith(
                "error"
            )
            return 1 if failed else 0
        if kind in ("turn.failed", "error"):
            return 1
        return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="runwire fake-agent",
        description="Replay a recorded CLI-agent transcript (no model is called).",
    )
    parser.add_argument("--format", choices=FORMATS, default="claude-stream-json")
    parser.add_argument(
        "--transcript",
        default="success",
        help=f"a shipped transcript ({', '.join(SHIPPED)}) or a file of JSON lines",
    )
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait before each line")
    parser.add_argument("prompt", nargs="?", default="-", help="the prompt; '-' reads stdin")
    args = parser.parse_args(argv)
    # The default handler raises KeyboardInterrupt wherever the replay is: it ends at once.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
        try:
            text = transcript_text(args.format, args.transcript)
        except OSError as error:
            print(f"fake-agent: cannot read transcript {args.transcript}: {error}", file=sys.stderr)
            return 2
        escaped = json.dumps(prompt.strip())[1:-1]
        lines = [line.replace("${prompt}", escaped) for line in text.splitlines() if line]
        for line in lines:
            if args.delay_ms > 0:
                time.sleep(args.delay_ms / 1000.0)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        return exit_code_of(lines)
    except KeyboardInterrupt:
        print("fake-agent: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
