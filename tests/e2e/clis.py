"""The real engine CLIs for the end-to-end suite: pinned versions, installed once into a cache outside the
repository and reused by every test process, ``scripts/test`` and CI.

The cache is ``$AQ_REALCLI_CACHE``, else ``~/.cache/aq-realcli`` of the real user (tests run with a fresh HOME,
so the home directory comes from the password database, not from ``$HOME``). npm packages go to
``npm/<package>_<version>/`` (``npm install --prefix``), aider to ``pip/aider-chat_<version>/`` (its own venv).
Each install happens under a file lock and is marked complete last, so parallel test processes install once
and a killed install is redone.
When the registry cannot be reached, :func:`executable` raises :class:`Unavailable` with the reason, and the
tests that need that CLI are skipped with it (``pytest -ra`` shows it in the summary).

``python tests/e2e/clis.py [--quiet] [name ...]`` installs them all (or the named ones) ahead of the tests.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cli:
    name: str
    registry: str  # "npm" or "pip"
    package: str
    version: str
    binary: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}" if self.registry == "npm" else f"{self.package}=={self.version}"

    @property
    def dirname(self) -> str:
        return f"{self.package}_{self.version}".replace("/", "+").replace("@", "_")


#: The versions the plugins' flags and the end-to-end tests were checked against.
CLIS = {
    cli.name: cli
    for cli in (
        Cli("claude", "npm", "@anthropic-ai/claude-code", "2.1.328", "claude"),
        Cli("codex", "npm", "@openai/codex", "0.171.0", "codex"),
        Cli("gemini", "npm", "@google/gemini-cli", "0.61.0", "gemini"),
        Cli("qwen", "npm", "@qwen-code/qwen-code", "0.24.4", "qwen"),
        Cli("copilot", "npm", "@github/copilot", "1.0.102", "copilot"),
        Cli("opencode", "npm", "opencode-ai", "1.18.33", "opencode"),
        Cli("aider", "pip", "aider-chat", "0.86.2", "aider"),
    )
}

# Reasons already found in this process: a second test needing an unreachable CLI does not wait again.
_FAILED: dict[str, str] = {}


class Unavailable(Exception):
    """The CLI could not be installed (no registry, no npm, ...); the message says why."""


def cache_dir() -> Path:
    override = os.environ.get("AQ_REALCLI_CACHE")
    if override:
        return Path(override)
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "aq-realcli"


def _bin(cli: Cli, root: Path) -> Path:
    if cli.registry == "npm":
        return root / "node_modules" / ".bin" / cli.binary
    return root / "venv" / "bin" / cli.binary


def _install_into(cli: Cli, target: Path) -> None:
    env = dict(os.environ, npm_config_update_notifier="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if cli.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise Unavailable("npm not found on PATH")
        target.mkdir(parents=True, exist_ok=True)
        argv = [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", "--loglevel=error"]
        argv += ["--fetch-retries=1", "--fetch-retry-mintimeout=1000", "--fetch-retry-maxtimeout=5000"]
        argv += ["--fetch-timeout=30000", cli.spec]
        steps = [argv]
    else:
        python = getattr(sys, "_base_executable", None) or sys.executable
        steps = [
            [python, "-m", "venv", str(target / "venv")],
            [
                str(target / "venv" / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--retries",
                "1",
                "--timeout",
                "30",
                cli.spec,
            ],
        ]
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            raise Unavailable(
                f"{cli.registry} install {cli.spec} failed: {' / '.join(lines[-3:])[:300] or proc.returncode}"
            )


def executable(name: str) -> Path:
    """The path of the pinned CLI, installing it first if the cache does not have it yet."""
    cli = CLIS[name]
    if name in _FAILED:
        raise Unavailable(_FAILED[name])
    root = cache_dir() / cli.registry / cli.dirname
    done = root / ".complete"  # written last: a killed install is redone, never half used
    if done.exists():
        return _bin(cli, root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{cli.dirname}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing it: wait, then use its install
        if done.exists():
            return _bin(cli, root)
        shutil.rmtree(root, ignore_errors=True)
        try:
            _install_into(cli, root)
            if not _bin(cli, root).exists():
                raise Unavailable(f"{cli.spec} installed no {cli.binary} executable")
        except Unavailable as err:
            _FAILED[name] = str(err)
            shutil.rmtree(root, ignore_errors=True)
            raise
        done.write_text(cli.spec + "\n")
    return _bin(cli, root)


def main(argv: list[str]) -> int:
    quiet = "--quiet" in argv
    names = [a for a in argv if not a.startswith("-")] or list(CLIS)
    for name in names:
        try:
            path = executable(name)
        except Unavailable as err:
            print(f"real CLI {name}: not installed ({err}); its end-to-end tests will be skipped", file=sys.stderr)
            continue
        if not quiet:
            print(f"{name} {CLIS[name].version}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
