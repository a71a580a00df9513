"""One measurement per child process, so each starts from a clean interpreter and its
peak RSS belongs to it alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_child(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Runs ``script --child SPEC``; the JSON object its last line of output holds."""
    command = [sys.executable, script, "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{spec.get('key', script)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def rss_kib(field_name: str) -> int:
    """A field of /proc/self/status in KiB: VmRSS (now) or VmHWM (peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")
