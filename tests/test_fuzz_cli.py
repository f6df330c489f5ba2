"""A fuzz run of the real CLI over generated bad job files.

A seeded corpus (random frontmatter, raw YAML with hostile scalars, binary junk, empty and huge files,
5 MB prompts, odd names, ``..`` in paths, symlinks in and out of the queue, a directory, a socket, an
unreadable file) goes through ``aq validate`` and ``aq add`` (exit 0 or 2, one ``aq: ...`` line per
problem, never a traceback, every file preserved), then is dropped straight into ``inbox/`` beside valid
jobs: ``aq run`` fails each bad entry for good (``failed/``, ``result=invalid``, the reason in meta),
byte for byte as it was dropped, runs every valid job, and keeps running.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml
from helpers import aq, start_runner, state_of, stub, wait_running, write_job

from aq_core.job import JOB_ID, KEYS, RETRY_KEYS

SEED = 20261126
PASSWD = Path("/etc/passwd")


@dataclass
class Case:
    """One corpus entry: ``valid`` when aq must accept it (content and file name)."""

    path: Path
    kind: str  # file | symlink | dir | socket
    valid: bool = False
    tag: str = ""  # what a valid job appends to ran.txt when it runs


# -- the corpus -------------------------------------------------------------------------------------

POOL = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    10**30,
    10**400,
    "",
    " ",
    "5m",
    "-5m",
    "1h-30m",
    "forever",
    "claude",
    "nosuchengine",
    "command",
    "worktree",
    "sandbox",
    [],
    [1, "a"],
    {"a": 1},
    {"max": -1},
    {"on": ["crsh"]},
    "ünïcode ✓ 名前",
    "x" * 5000,
    "line\nbreak",
    "sep\u2028arator",
    date(2001, 1, 1),
    b"\x00bytes",
]
RAW = [
    "2001-13-45",
    "2001-01-01 25:61:61",
    "!!int abc",
    "!!bool maybe",
    "!!timestamp soon",
    "!!float abc",
    "!!binary '!!!'",
    "!!python/object:os.system x",
    "*undefined",
    "&a [*a]",
    "{a: [",
    "'unterminated",
    "9" * 400,
    "9" * 5000,
    "1:2:3",
    ".nan",
    "~",
    "[" * 300 + "]" * 300,
    '"\\0 nul"',
    '"\\u2028"',
]
PUNCT = "-:[]{}!&*#|>'\"%@`,? \t\\abcxyz019.~ü✓"


def rand_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(PUNCT) for _ in range(rng.randint(0, n)))


def rand_value(rng: random.Random, depth: int = 0) -> object:
    r = rng.random()
    if depth < 3 and r < 0.15:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and r < 0.3:
        keys = [*RETRY_KEYS, "zz", rand_text(rng, 6)]
        return {rng.choice(keys): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if r < 0.45:
        return rng.randint(-(10**6), 10**6)
    if r < 0.55:
        return rand_text(rng, 20)
    return rng.choice(POOL)


def random_frontmatter(rng: random.Random, n: int) -> bytes:
    front = {rng.choice([*KEYS, rand_text(rng, 8)]): rand_value(rng) for _ in range(rng.randint(0, 7))}
    front[f"fuzz_{n}"] = 1  # an unknown key: the file is invalid whatever else it says
    text = yaml.safe_dump(front, allow_unicode=rng.random() < 0.5, sort_keys=False)
    return ("---\n" + text + "---\n" + rand_text(rng, 80) + "\n").encode()


def raw_frontmatter(rng: random.Random, n: int) -> bytes:
    lines = [f"{rng.choice([*KEYS, 'zz'])}: {rng.choice([*RAW, rand_text(rng, 12)])}" for _ in range(rng.randint(1, 5))]
    lines.append(f"fuzz_{n}: 1")
    rng.shuffle(lines)
    return ("---\n" + "\n".join(lines) + "\n---\nThe prompt.\n").encode()


def junk_bytes(rng: random.Random, n: int) -> bytes:
    body = rng.randbytes(rng.randint(1, 4096))
    match n % 4:
        case 0:
            return body
        case 1:
            return b"\x00" + body
        case 2:
            return b"---\n" + body.replace(b"\x00", b"") + b"\n---\nprompt\n"
        case _:
            return b"---\nengine: command\n---\n\xff\xfe" + body


def valid_job(work: Path, tag: str, prompt: str = "Do the task.\n") -> bytes:
    front = {"engine": "command", "cwd": str(work), "command": stub("--append", f"ran.txt={tag}")}
    return ("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + prompt).encode()


def build_corpus(folder: Path, outside: Path, work: Path) -> list[Case]:
    """The seeded corpus under ``folder``; ``outside`` holds files the symlinks point at."""
    rng = random.Random(SEED)
    folder.mkdir(parents=True)
    outside.mkdir(parents=True)
    cases: list[Case] = []

    def put(name: str, data: bytes, valid: bool = False, tag: str = "") -> Path:
        path = folder / name
        path.write_bytes(data)
        cases.append(Case(path, "file", valid, tag))
        return path

    for n in range(30):
        put(f"fm-{n:03d}.md", random_frontmatter(rng, n))
    for n in range(15):
        put(f"raw-{n:03d}.md", raw_frontmatter(rng, n))
    for n in range(10):
        put(f"bin-{n:03d}.md", junk_bytes(rng, n))
    put("empty.md", b"")
    put("blank.md", b"  \n\n\t\n")
    put("bom-only.md", b"\xef\xbb\xbf")
    put("no-close.md", b"---\nengine: command\ncommand: 'true'\nThe prompt, never closed.\n")
    put("no-prompt.md", valid_job(work, "no-prompt", prompt=""))
    put("huge-prompt.md", b"---\nengine: command\nfuzz_huge: 1\n---\n" + b"p" * (5 << 20))
    put("too-large.md", valid_job(work, "too-large", prompt="q" * (11 << 20)))
    put("valid-huge-prompt.md", valid_job(work, "valid-huge-prompt", prompt="h" * (5 << 20)), True, "valid-huge-prompt")
    put("valid-plain.md", valid_job(work, "valid-plain"), True, "valid-plain")
    put("notes.txt", valid_job(work, "notes"), True, "notes")  # the id is the stem, whatever the suffix
    put("a..b.md", b"---\nengine: command\nfuzz_dots: 1\n---\nx\n")
    # Valid content under a name that is not a valid id: never queued, never run.
    for name in ("sp ace.md", "ünïcödé-名前.md", "-dash.md", ".hidden.md", "..md", "emoji-😀.md", "x" * 130 + ".md"):
        put(name, valid_job(work, "bad-name"))
    for name in ("tab\there.md", "new\nline.md", "cr\rname.md", "z\u2028result=ok\u2028.md"):
        put(name, valid_job(work, "bad-name"))
    # ``..`` in the path (the id is still the stem).
    (folder / "sub").mkdir()
    dotdot = put("dotdot.md", valid_job(work, "dotdot"), True, "dotdot")
    cases[-1] = Case(folder / "sub" / ".." / dotdot.name, "file", True, "dotdot")
    # An unreadable file (tests run as root, where mode 000 is still readable: the content is invalid
    # either way, so the expectation holds for root and for a normal user).
    locked = put("locked.md", random_frontmatter(rng, 999))
    locked.chmod(0)
    # Symlinks out of the corpus folder.
    secret = outside / "secret-job.md"
    secret.write_bytes(valid_job(work, "secret", prompt="OUTSIDE-SECRET-7f3a\n"))
    (outside / "a-dir").mkdir()
    for name, target, valid in (
        ("link-outside.md", secret, True),
        ("link-passwd.md", PASSWD, False),
        ("link-dangling.md", outside / "nonexistent.md", False),
        ("link-dir.md", outside / "a-dir", False),
        ("link-loop.md", folder / "link-loop.md", False),
    ):
        os.symlink(target, folder / name)
        cases.append(Case(folder / name, "symlink", valid, "secret" if valid else ""))
    (folder / "dir.md").mkdir()
    (folder / "dir.md" / "inside.txt").write_text("a directory, not a job\n")
    cases.append(Case(folder / "dir.md", "dir"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.md"))
    sock.close()  # the socket file stays; opening it fails (ENXIO)
    cases.append(Case(folder / "sock.md", "socket"))
    return cases


# -- checks ----------------------------------------------------------------------------------------------


def fingerprint(path: Path) -> tuple:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ("symlink", os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        try:
            with open(path, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
        except PermissionError:  # not root: mode 000 is unreadable (its size and mode still tell)
            digest = f"unreadable, {st.st_size} bytes"
        return ("file", digest, stat.S_IMODE(st.st_mode))
    if stat.S_ISDIR(st.st_mode):
        return ("dir", sorted(os.listdir(path)))
    return ("other", stat.S_IFMT(st.st_mode))


def snapshot(paths: list[Path]) -> dict[str, tuple]:
    return {str(p): fingerprint(p) for p in paths}


def bad_output(result: subprocess.CompletedProcess) -> list[str]:
    """What breaks the error contract: tracebacks, internal errors, lines that are not ``aq: ...``."""
    wrong = []
    if "Traceback" in result.stdout + result.stderr:
        wrong.append("a traceback")
    for line in result.stderr.removesuffix("\n").split("\n") if result.stderr else []:
        if not line.startswith("aq: "):
            wrong.append(f"stderr line not 'aq: ...': {line!r}")
        elif "internal error" in line:
            wrong.append(line)
    if result.returncode not in (0, 2):
        wrong.append(f"exit {result.returncode}")
    return wrong


def names(stderr: str, path: Path) -> bool:
    """Whether an error names ``path`` (a name with control characters may be shown escaped)."""
    if str(path) in stderr:
        return True
    if path.name.isprintable():
        return False
    longest = max(re.split(r"[^\w.-]+", path.name), key=len)
    return any(str(path.parent) in line and longest in line for line in stderr.splitlines())


def offenders(command: str, cases: list[Case], root: Path) -> list[str]:
    """Which files break the error contract: a crash stops the batch at the first file it did not
    report, so try that file alone, then go on with the rest (one batch per crash, not one per file)."""
    found, rest = [], list(cases)
    while rest:
        result = aq(command, *(str(c.path) for c in rest), root=root, timeout=60)
        wrong = bad_output(result)
        if not wrong:
            break
        words = set(result.stdout.split())
        unnamed = [i for i, c in enumerate(rest) if not names(result.stderr + result.stdout, c.path)]
        unnamed = [i for i in unnamed if rest[i].path.stem not in words]  # aq add prints the ids it queued
        if result.returncode in (0, 2) or not unnamed:
            found.extend(wrong)  # no crash: the bad lines name their files
            break
        suspect = rest[unnamed[0]]
        alone = aq(command, str(suspect.path), root=root, timeout=60)
        if bad_output(alone):
            found.append(f"{suspect.path.name!r}: {bad_output(alone)}")
        rest = rest[unnamed[0] + 1 :]
    return found


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[list[Case], Path, Path]:
    work = tmp_path / "work"
    work.mkdir()
    cases = build_corpus(tmp_path / "jobs", tmp_path / "outside", work)
    yield cases, work, tmp_path / "outside"
    with contextlib.suppress(OSError):
        (tmp_path / "jobs" / "locked.md").chmod(0o600)


def test_validate_over_the_corpus_exits_0_or_2_with_one_line_errors(corpus, tmp_path: Path) -> None:
    cases, _, outside = corpus
    paths = [c.path for c in cases]
    before = snapshot([*paths, *outside.iterdir(), PASSWD])
    result = aq("validate", *map(str, paths), root=tmp_path / "queue", timeout=60)
    wrong = bad_output(result)
    if wrong:
        found = offenders("validate", cases, tmp_path / "queue")
        pytest.fail(f"aq validate broke the error contract ({wrong[:3]}); per file: {found}")
    assert result.returncode == 2
    ok = {line.split(": ok (job ", 1)[1].split(",")[0] for line in result.stdout.splitlines() if ": ok (job " in line}
    assert ok == {Path(c.path).stem for c in cases if c.valid}
    for case in cases:
        if not case.valid:
            assert names(result.stderr, case.path), f"no error names {case.path.name!r}"
    # Mode 000: root reads it anyway (then its content is what is wrong); anyone else cannot read it.
    locked = next(c.path for c in cases if c.path.name == "locked.md")
    why = "unknown key 'fuzz_999'" if os.geteuid() == 0 else "cannot read (Permission denied)"
    assert any(str(locked) in line and why in line for line in result.stderr.splitlines()), why
    assert snapshot([*paths, *outside.iterdir(), PASSWD]) == before, "validate changed a file"
    assert not (tmp_path / "queue").exists(), "validate does not create a queue"


def test_add_over_the_corpus_queues_exactly_the_valid_files(corpus, tmp_path: Path) -> None:
    cases, _, outside = corpus
    root = tmp_path / "queue"
    paths = [c.path for c in cases]
    before = snapshot([*paths, *outside.iterdir(), PASSWD])
    result = aq("add", *map(str, paths), root=root, timeout=60)
    wrong = bad_output(result)
    if wrong:
        found = offenders("add", cases, tmp_path / "other-queue")
        pytest.fail(f"aq add broke the error contract ({wrong[:3]}); per file: {found}")
    assert result.returncode == 2
    valid = {c.path.stem: c for c in cases if c.valid}
    assert sorted(result.stdout.split()) == sorted(valid)
    queued = {p.name for p in (root / "inbox").iterdir()}
    assert queued == {f"{job_id}.md" for job_id in valid}
    for job_id, case in valid.items():
        copy = root / "inbox" / f"{job_id}.md"
        assert not copy.is_symlink() and copy.read_bytes() == case.path.read_bytes()
    assert snapshot([*paths, *outside.iterdir(), PASSWD]) == before, "add changed a file"
    for path in (root / "meta").iterdir():
        assert b"OUTSIDE-SECRET" not in path.read_bytes(), "the prompt of a job is never in meta"


def status_rows(root: Path) -> dict[str, dict]:
    result = aq("status", "--json", root=root)
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)["jobs"]}


def drop_in_inbox(cases: list[Case], inbox: Path, prefix: str = "linked") -> dict[str, tuple[Case, Path]]:
    """Copy (or re-link) every corpus entry into ``inbox``; return {inbox name: (case, entry)}."""
    dropped: dict[str, tuple[Case, Path]] = {}
    for case in cases:
        name = case.path.name if case.path.name.endswith(".md") else case.path.name + ".md"
        entry = inbox / name
        if case.kind == "symlink":
            os.symlink(os.readlink(case.path), entry)
        elif case.kind == "dir":
            shutil.copytree(case.path, entry)
        elif case.kind == "socket":
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(entry))
            sock.close()
        else:
            shutil.copyfile(case.path, entry)
            os.chmod(entry, stat.S_IMODE(os.lstat(case.path).st_mode))
        dropped[name] = (case, entry)
    # Symlinks from the queue to regular files outside it (one of them a valid job).
    for i, case in enumerate(c for c in cases if c.kind == "file" and c.path.stat().st_size < 1 << 20):
        if i % 7 == 0 or case.valid:
            name = f"{prefix}-{i:03d}.md"
            os.symlink(case.path, inbox / name)
            dropped[name] = (Case(case.path, "symlink"), inbox / name)
    return dropped


def expected_to_run(name: str, case: Case) -> bool:
    stem = name[: -len(".md")]
    return case.valid and case.kind == "file" and bool(JOB_ID.fullmatch(stem))


def check_dropped(root: Path, dropped: dict[str, tuple[Case, Path]], prints: dict[str, tuple]) -> list[str]:
    """Every bad entry is in failed/ exactly as dropped, with result=invalid and a reason."""
    rows = status_rows(root)
    problems = []
    for name, (case, _) in dropped.items():
        if expected_to_run(name, case):
            continue
        stem = name[: -len(".md")]
        if name.startswith("."):
            # aq ignores dot files in inbox/ (editor and sync temporaries): left alone, never run.
            if fingerprint(root / "inbox" / name) != prints[name]:
                problems.append(f"{name!r}: a dot file in inbox/ was changed")
            continue
        failed = root / "failed" / name
        if not os.path.lexists(failed):
            where = [s for s in ("inbox", "building", "done") if os.path.lexists(root / s / name)]
            problems.append(f"{name!r}: not in failed/ (in {where or 'no folder'})")
            continue
        if fingerprint(failed) != prints[name]:
            problems.append(f"{name!r}: changed on its way to failed/: {prints[name]} -> {fingerprint(failed)}")
        row = rows.get(stem)
        if len(stem) + len(".meta") <= 255 and (row is None or row.get("result") != "invalid" or not row.get("error")):
            problems.append(f"{name!r}: meta says {row and {k: row.get(k) for k in ('result', 'error')}}")
    return problems


def test_junk_dropped_in_inbox_is_failed_as_it_was_and_valid_jobs_run(corpus, tmp_path: Path) -> None:
    cases, work, outside = corpus
    root = tmp_path / "queue"
    jobs = tmp_path / "valid-jobs"
    front = {"engine": "command", "cwd": str(work)}
    for job_id in ("before-1", "before-2"):
        path = write_job(jobs, job_id, {**front, "command": stub("--append", f"ran.txt={job_id}")})
        assert aq("add", str(path), root=root).returncode == 0
    dropped = drop_in_inbox(cases, root / "inbox")
    prints = {name: fingerprint(entry) for name, (_, entry) in dropped.items()}
    outside_before = snapshot([*outside.iterdir(), PASSWD])
    for job_id in ("after-1", "after-2"):
        path = write_job(jobs, job_id, {**front, "command": stub("--append", f"ran.txt={job_id}")})
        assert aq("add", str(path), root=root).returncode == 0

    run = aq("run", "--once", root=root, timeout=120)
    assert "Traceback" not in run.stdout + run.stderr
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr

    ran = (work / "ran.txt").read_text().split() if (work / "ran.txt").exists() else []
    should_run = {"before-1", "before-2", "after-1", "after-2"}
    should_run |= {case.tag for name, (case, _) in dropped.items() if expected_to_run(name, case)}
    assert sorted(ran) == sorted(should_run), "exactly the valid jobs ran, once each"
    for job_id in ("before-1", "before-2", "after-1", "after-2"):
        assert state_of(root, job_id) == "done"
    assert not check_dropped(root, dropped, prints)
    assert snapshot([*outside.iterdir(), PASSWD]) == outside_before, "a file outside the queue changed"
    for path in (root / "meta").iterdir():
        data = path.read_bytes()
        assert b"OUTSIDE-SECRET" not in data and PASSWD.read_bytes().split(b"\n")[0] not in data, path.name
    assert not list((root / "building").iterdir())


def test_a_running_runner_fails_junk_and_keeps_running(corpus, tmp_path: Path) -> None:
    cases, work, _ = corpus
    root, log = tmp_path / "queue", tmp_path / "runner.log"
    assert aq("status", root=root).returncode == 0
    jobs = tmp_path / "valid-jobs"

    def add(job_id: str) -> None:
        path = write_job(jobs, job_id, {"engine": "command", "cwd": str(work), "command": stub()})
        result = aq("add", str(path), root=root)
        assert result.returncode == 0, result.stderr

    def drop(batch: list[Case], staged: Path) -> dict[str, tuple[Case, Path]]:
        staged.mkdir()
        dropped = drop_in_inbox(batch, staged, prefix=staged.name)
        for name in dropped:  # a rename into inbox/ is how `mv` or a sync tool drops a file
            os.rename(staged / name, root / "inbox" / name)
        return dropped

    junk = [c for c in cases if c.kind != "file" or c.path.name.startswith(("bin-", "fm-00"))]
    runner = start_runner(root, log)
    try:
        first = drop(junk[: len(junk) // 2], tmp_path / "staged1")
        add("valid-a")
        wait_running(runner, log, lambda: state_of(root, "valid-a") == "done", 30, "valid-a to run after the junk")
        second = drop(junk[len(junk) // 2 :], tmp_path / "staged2")
        add("valid-b")
        add("valid-c")
        both = {"done"}
        wait_running(runner, log, lambda: {state_of(root, "valid-b"), state_of(root, "valid-c")} == both, 30, "b, c")
        bad = [n for n in {**first, **second} if not n.startswith(".")]
        in_failed = lambda: all(os.path.lexists(root / "failed" / n) for n in bad)  # noqa: E731
        wait_running(runner, log, in_failed, 30, "every junk entry in failed/")
    finally:
        stop = aq("stop", root=root)
        runner.wait(timeout=30)
    out = log.read_text()
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert runner.returncode == 0, out[-2000:]
    assert "Traceback" not in out and "internal error" not in out


# -- entries that hang or crash aq today get their own tests ---------------------------------------------


def test_validate_and_add_never_block_on_a_fifo(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    good = tmp_path / "good.md"
    good.write_bytes(valid_job(work, "good"))
    for command in ("validate", "add"):
        try:
            result = aq(command, str(fifo), str(good), root=tmp_path / "queue", timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"aq {command} blocked on a FIFO (open() waits for a writer forever)")
        assert result.returncode == 2 and not bad_output(result), result.stderr
        assert str(fifo) in result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_fifo_in_inbox_is_failed_and_the_runner_goes_on(tmp_path: Path) -> None:
    root, work = tmp_path / "queue", tmp_path / "work"
    work.mkdir()
    good = tmp_path / "good.md"
    good.write_bytes(valid_job(work, "good"))
    assert aq("add", str(good), root=root).returncode == 0
    os.mkfifo(root / "inbox" / "pipe.md")
    try:
        run = aq("run", "--once", root=root, timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("aq run blocked on a FIFO in inbox/ (and SIGTERM cannot stop it while open() waits)")
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "good") == "done"
    assert stat.S_ISFIFO(os.lstat(root / "failed" / "pipe.md").st_mode)
    assert status_rows(root)["pipe"]["result"] == "invalid"


CRASHERS = {
    "timeout-huge-int": "timeout: " + "9" * 400,
    "max_cost_usd-huge-int": "max_cost_usd: " + "9" * 400,
    "bad-bool-tag": "model: !!bool maybe",
    "bad-timestamp-tag": "model: !!timestamp soon",
    "impossible-date": "model: 2001-13-45",
    "int-over-4300-digits": "model: " + "9" * 5000,
    "cwd-nul": 'cwd: "a\\0b"',
    "cwd-too-long": "cwd: " + "a" * 300,
}


@pytest.mark.parametrize("line", list(CRASHERS.values()), ids=list(CRASHERS))
def test_junk_that_breaks_the_parser_does_not_stop_the_runner(tmp_path: Path, line: str) -> None:
    root, work = tmp_path / "queue", tmp_path / "work"
    work.mkdir()
    good = tmp_path / "good.md"
    good.write_bytes(valid_job(work, "good"))
    assert aq("add", str(good), root=root).returncode == 0
    data = f"---\nengine: command\ncommand: 'true'\n{line}\n---\nThe prompt.\n".encode()
    (root / "inbox" / "junk.md").write_bytes(data)
    run = aq("run", "--once", root=root, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "good") == "done"
    assert (root / "failed" / "junk.md").read_bytes() == data
    row = status_rows(root)["junk"]
    assert row["result"] == "invalid" and row["error"], row


@pytest.mark.parametrize(
    "name",
    ["sp ace.md", "-dash.md", "ünï.md", "new\nline.md", "y" * 200 + ".md", "y" * 251 + ".md"],
    ids=["space", "dash", "unicode", "newline", "200-chars", "251-chars-meta-name-too-long"],
)
def test_a_file_with_a_bad_id_in_inbox_is_never_run(tmp_path: Path, name: str) -> None:
    root, work = tmp_path / "queue", tmp_path / "work"
    work.mkdir()
    good = tmp_path / "good.md"
    good.write_bytes(valid_job(work, "good"))
    assert aq("add", str(good), root=root).returncode == 0
    data = valid_job(work, "bad-name")
    (root / "inbox" / name).write_bytes(data)
    run = aq("run", "--once", root=root, timeout=60)
    ran = (work / "ran.txt").read_text().split()
    assert "bad-name" not in ran, "a file whose name is not a valid job id was run"
    assert run.returncode == 0, run.stdout + run.stderr
    assert ran == ["good"]
    where = [s for s in ("inbox", "building", "done", "failed") if os.path.lexists(root / s / name)]
    assert where == ["failed"], f"the file ended in {where}, not in failed/"
    assert (root / "failed" / name).read_bytes() == data


@pytest.mark.parametrize("state", ["failed", "done"])
def test_a_dropped_file_with_the_id_of_a_finished_job_is_refused_and_the_runner_goes_on(
    tmp_path: Path, state: str
) -> None:
    root, work = tmp_path / "queue", tmp_path / "work"
    work.mkdir()
    assert aq("status", root=root).returncode == 0
    first = valid_job(work, "first") if state == "done" else b"junk, not a job\n"
    (root / "inbox" / "dup.md").write_bytes(first)
    assert aq("run", "--once", root=root, timeout=60).returncode == 0
    old = root / state / "dup.md"
    before, result = fingerprint(old), status_rows(root)["dup"]["result"]
    # The same name dropped again (a user re-saving the job file, a sync tool replaying it).
    second = valid_job(work, "second") if state == "done" else b"junk again\n"
    (root / "inbox" / "dup.md").write_bytes(second)
    other = tmp_path / "other.md"
    other.write_bytes(valid_job(work, "other"))
    assert aq("add", str(other), root=root).returncode == 0
    run = aq("run", "--once", root=root, timeout=60)
    assert "internal error" not in run.stdout + run.stderr and "Traceback" not in run.stderr
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "other") == "done", "the runner went on"
    assert "second" not in (work / "ran.txt").read_text().split(), "a job that already finished ran again"
    assert fingerprint(old) == before and status_rows(root)["dup"]["result"] == result, "the finished job changed"
    kept = [p for p in root.rglob("*.md") if p.is_file() and p != old and p.read_bytes() == second]
    assert kept, "the dropped file was lost"
