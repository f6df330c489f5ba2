"""Hardening: the parsers never fail on hostile input, and the queue keeps its files and the prompt private.

Property-based tests (Hypothesis) feed the job-file parser, durations, meta records and every installed
engine's usage parser and failure classifier arbitrary bytes and mutated real logs: the only exception
allowed is one of aq's own errors (``AqError``, one line), and the input file is never changed. End-to-end
tests run the real CLI in subprocesses: queue files stay private under ``umask 000``, a symlink planted
in the queue root cannot make aq write (or read into meta) outside it, and a canary in a prompt never
reaches meta, status, insights, aq's own log lines or any process's argv.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from fakes import Fakes, codex_limit
from helpers import aq, meta, start_runner, state_of, stub, wait_running, write_job
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aq_core import plugins
from aq_core.durations import MAX_SECONDS, parse_duration
from aq_core.engine import Failure, Outcome
from aq_core.errors import AqError, JobInvalid
from aq_core.job import KEYS, RETRY_KEYS, Job, parse_job
from aq_core.meta import KEY, MAX_VALUE, Meta, encode_lines, encode_value
from aq_core.store_fs import FsStore
from aq_core.usage import Usage, as_int, iter_json_objects

REPO = Path(__file__).resolve().parent.parent
ENGINES = plugins.engine_names()
FAILURE_CLASSES = plugins.failure_classes()
FIXTURE_LOGS = sorted(REPO.glob("plugins/*/tests/fixtures/*.log")) + sorted(REPO.glob("tests/fixtures_command/*.log"))
INT_FIELDS = ("tokens_in", "tokens_out", "tokens_cached", "turns", "tool_calls")

# Moderate example counts: the whole file runs in well under a minute. No example database: nothing
# is written into the repository.
PROPS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(message: str) -> None:
    assert message, "an error message is never empty"
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening")


# -- the job file parser ---------------------------------------------------------------------------


def check_parse(folder: Path, data: bytes, name: str = "job.md") -> Job | None:
    """Parse ``data`` as the job file ``folder/name``: a Job, or JobInvalid with one-line problems."""
    path = folder / name
    path.write_bytes(data)
    before = sha(path)
    try:
        job = parse_job(path, data, engines=ENGINES, failure_classes=FAILURE_CLASSES, default_cwd=folder)
    except JobInvalid as exc:
        assert exc.problems, "JobInvalid lists at least one problem"
        for problem in exc.problems:
            one_line(problem)
            # Every problem names the file (a name that is not printable may be shown escaped).
            named = str(path) in problem or (not path.name.isprintable() and str(path.parent) in problem)
            assert named, f"the problem does not name the file: {problem!r}"
        job = None
    except AqError as exc:
        one_line(str(exc))
        job = None
    assert sha(path) == before, "parsing never changes the file"
    if job is not None:
        assert job.engines and set(job.engines) <= set(ENGINES)
        assert job.prompt.strip(), "a job with an empty prompt is invalid"
        assert job.timeout is None or 0 < job.timeout <= MAX_SECONDS
        assert 0 < job.grace <= MAX_SECONDS
        assert 0 <= job.retry.max <= 1000
        assert job.max_cost_usd is None or job.max_cost_usd > 0
    return job


DURATION_LIKE = ["90", "90s", "5m", "4h", "1h30m", "2d", "1.5h", "0", "-5m", "367d", "1h-30m", "5 minutes", "", "m5"]
# YAML scalars whose *construction* goes wrong in odd ways (bad dates, bad explicit tags, huge ints).
RAW_SCALARS = [
    "2001-13-45",
    "2001-02-30",
    "2001-01-01 25:61:61",
    "!!int abc",
    "!!float abc",
    "!!bool maybe",
    "!!timestamp soon",
    "!!binary '!!!'",
    "!!set [a]",
    "!!omap [a]",
    "!!python/object:os.system x",
    "*undefined_alias",
    "&a [*a]",
    "{a: [",
    "'unterminated",
    "9" * 5000,
    "-" + "9" * 400,
    "9" * 400,
    "0x" + "f" * 400,
    "1:2:3",
    ".nan",
    "-.inf",
    "~",
    "? [a]",
    "[" * 200 + "]" * 200,
    '"\\0 nul"',
    '"\\u2028"',
    "x" * 100_000,
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**320),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(DURATION_LIKE),
    st.sampled_from([*ENGINES, "nosuchengine", "Claude", " "]),
    st.sampled_from(["inplace", "worktree", "wait", "fail", "timeout", "crash", "verify_failed"]),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(RETRY_KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FRONT_KEYS = (
    st.sampled_from(KEYS) | st.sampled_from(["tiemout", "Engine", "on", "yes", "prompt"]) | st.text(max_size=12)
)


@st.composite
def job_documents(draw: st.DrawFn) -> bytes:
    """A job file: generated frontmatter (dumped, or raw lines with tricky scalars), a prompt, odd delimiters."""
    if draw(st.booleans()):
        front = draw(st.dictionaries(FRONT_KEYS, VALUES, max_size=8))
        text = yaml.safe_dump(front, allow_unicode=draw(st.booleans()), sort_keys=False) if front else ""
    else:
        lines = []
        for key in draw(st.lists(st.sampled_from(KEYS) | st.text(max_size=8), max_size=6)):
            value = draw(
                st.sampled_from(RAW_SCALARS) | st.text(alphabet="-:[]{}!&*#|>'\"%@`,? \t\\abc019.~", max_size=20)
            )
            lines.append(f"{key}: {value}")
        text = "\n".join(lines) + "\n"
    prompt = draw(st.text(max_size=200) | st.just("x" * 300_000) | st.just(""))
    opening = draw(st.sampled_from(["---\n", "---\r\n", "\ufeff---\n", "--- \n", "---", "----\n", ""]))
    closing = draw(st.sampled_from(["---\n", "---\r\n", "--- \t\n", "---", "", "...\n"]))
    return (opening + text + closing + prompt).encode("utf-8", errors="surrogatepass")


@PROPS
@given(data=st.binary(max_size=4096))
@example(data=b"")
@example(data=b"\x00" * 10)
@example(data=b"---\n\xff\xfe\n---\nx\n")
def test_parse_job_on_arbitrary_bytes(scratch: Path, data: bytes) -> None:
    check_parse(scratch, data)


@PROPS
@given(document=job_documents())
@example(document=b"---\nengine: command\ncommand: 'true'\n---\nGo.\n")
def test_parse_job_on_generated_frontmatter(scratch: Path, document: bytes) -> None:
    check_parse(scratch, document)


NAME_DOCUMENTS = [
    b"---\nengine: command\ncommand: 'true'\n---\nGo.\n",
    b"---\nengine: command\ntiemout: 5m\n---\nGo.\n",
    b"junk",
    b"",
]


@PROPS
@given(document=st.sampled_from(NAME_DOCUMENTS), name=st.text(min_size=1, max_size=40))
def test_parse_job_with_any_file_name(scratch: Path, document: bytes, name: str) -> None:
    name = (
        name.replace("/", "_").replace("\x00", "_").encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")
    )
    if name in ("", ".", ".."):
        name = "x"
    try:
        (scratch / name).write_bytes(b"")
    except OSError:
        return  # the file system refused the name: not aq's business
    check_parse(scratch, document, name)


BUG_FRONTMATTER = {  # each one raised something other than JobInvalid
    # A number too big for a float: OverflowError from float() in parse_duration and in max_cost_usd.
    "timeout-huge-int": "engine: claude\ntimeout: " + "9" * 400,
    "grace-huge-int": "engine: claude\ngrace: " + "9" * 400,
    "backoff-huge-int": "engine: claude\nretry: {max: 1, backoff: " + "9" * 400 + "}",
    "max_cost_usd-huge-int": "engine: claude\nmax_cost_usd: " + "9" * 400,
    # YAML constructor errors that are not yaml.YAMLError: ValueError, KeyError, AttributeError.
    "int-over-4300-digits": "engine: claude\nmodel: " + "9" * 5000,
    "impossible-date": "engine: claude\nmodel: 2001-13-45",
    "impossible-time": "engine: claude\nmodel: 2001-01-01 25:61:61",
    "bad-int-tag": "engine: claude\nmodel: !!int abc",
    "bad-float-tag": "engine: claude\nmodel: !!float abc",
    "bad-bool-tag": "engine: claude\nmodel: !!bool maybe",
    "bad-timestamp-tag": "engine: claude\nmodel: !!timestamp soon",
    # cwd values the file system chokes on: ValueError (NUL) and OSError (name too long) from resolve().
    "cwd-relative-nul": 'engine: claude\ncwd: "a\\0b"',
    "cwd-tilde-nul": 'engine: claude\ncwd: "~\\0b"',
    "cwd-name-too-long": "engine: claude\ncwd: " + "a" * 300,
    "cwd-absolute-name-too-long": "engine: claude\ncwd: /" + "a" * 300,
}


@pytest.mark.parametrize("front", list(BUG_FRONTMATTER.values()), ids=list(BUG_FRONTMATTER))
def test_hostile_frontmatter_is_a_job_or_a_job_invalid(tmp_path: Path, front: str) -> None:
    check_parse(tmp_path, f"---\n{front}\n---\nThe prompt.\n".encode())


# -- durations ---------------------------------------------------------------------------------------


@PROPS
@given(
    value=st.one_of(
        st.text(max_size=30),
        st.text(alphabet="0123456789.dhms -+eE", max_size=20),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.dates(),
    )
)
@example(value=10**400)
@example(value=-(10**400))
@example(value="9" * 400)
@example(value="1e400")
def test_parse_duration_is_a_bounded_number_or_a_one_line_value_error(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        one_line(str(exc))
        return
    assert isinstance(seconds, float) and 0 <= seconds <= MAX_SECONDS and not math.isnan(seconds)


@PROPS
@given(
    parts=st.tuples(*(st.none() | st.integers(0, 500) for _ in range(4))).filter(
        lambda p: any(x is not None for x in p)
    ),
    upper=st.booleans(),
    spaced=st.booleans(),
)
def test_compound_durations_add_up(parts: tuple[int | None, ...], upper: bool, spaced: bool) -> None:
    text = (" " if spaced else "").join(f"{n}{unit}" for n, unit in zip(parts, "dhms", strict=True) if n is not None)
    text = text.upper() if upper else text
    expected = sum(n * mult for n, mult in zip(parts, (86400, 3600, 60, 1), strict=True) if n is not None)
    if expected > MAX_SECONDS:
        with pytest.raises(ValueError):
            parse_duration(text)
    else:
        assert parse_duration(text) == expected


# -- meta ------------------------------------------------------------------------------------------------

META_KEYS = st.from_regex(KEY, fullmatch=True)
# Text as meta values carry it: anything a file name, an engine's output or an error message can hold.
META_TEXT = st.text(max_size=120) | st.text(alphabet="ab=\\\n\r\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", max_size=20)


@PROPS
@given(data=st.binary(max_size=4096))
@example(data=b"\x00\xffgarbage\n=novalue\nresult=ok\nattempts=9")
@example(data=b"a=1\na=2\nb=" + b"x" * (1 << 20) + b"\n")
def test_meta_from_arbitrary_bytes_never_raises(data: bytes) -> None:
    meta = Meta.from_bytes(data)
    for key, _value in meta.pairs:
        assert KEY.fullmatch(key)
    assert meta.last == dict(meta.pairs), "the last value of a key wins"
    for key in list(meta.last)[:10]:
        meta.number(key)
        meta.integer(key)
    meta.runs()
    list(meta.since_last("attempt"))


@PROPS
@given(items=st.lists(st.tuples(META_KEYS, META_TEXT), max_size=8), torn=st.binary(max_size=200))
def test_a_torn_last_line_is_dropped_and_nothing_else(items: list[tuple[str, str]], torn: bytes) -> None:
    data = encode_lines(items)
    torn = torn.replace(b"\n", b"")
    assert Meta.from_bytes(data + torn).pairs == Meta.from_bytes(data).pairs


@PROPS
@given(values=st.dictionaries(META_KEYS, META_TEXT | st.integers(), max_size=8))
@example(values={"error": "inbox/x\u2028result=ok.md: bad job id"})
@example(values={"model": "m\x0cattempts=0"})
@example(values={"detail": "a\x85b=1"})
def test_encode_lines_round_trips_every_value(values: dict[str, object]) -> None:
    data = encode_lines(values)
    assert data.count(b"\n") == len(values), "one line per pair"
    expected = {k: str(v) for k, v in values.items() if len(encode_value(v)) < MAX_VALUE}
    got = Meta.from_bytes(data).last
    assert {k: got.get(k) for k in expected} == expected
    assert set(got) <= set(values), f"a value injected keys of its own: {sorted(set(got) - set(values))}"


@PROPS
@given(prefix=st.binary(max_size=300), key=META_KEYS, value=META_TEXT)
def test_an_appended_pair_reads_back_as_exactly_that_pair_whatever_came_before(
    prefix: bytes, key: str, value: str
) -> None:
    prefix = prefix if prefix.endswith(b"\n") or not prefix else prefix + b"\n"
    before = Meta.from_bytes(prefix).pairs
    assert Meta.from_bytes(prefix + encode_lines({key: value})).pairs == [*before, (key, value)]


def test_meta_value_with_a_unicode_line_separator_cannot_inject_keys(tmp_path: Path) -> None:
    store = FsStore(tmp_path / "q")
    store.add("job", b"x", {"engine": "command"})
    store.append_meta("job", {"result": "invalid", "error": "inbox/a\u2028result=ok\u2028.md: bad"})
    got = store.read_meta("job")
    assert got.get("result") == "invalid"
    assert got.get("error") == "inbox/a\u2028result=ok\u2028.md: bad"


@PROPS
@given(garbage=st.binary(max_size=2048))
@example(garbage=b"\x00" * 100 + b"\n")
@example(garbage=b"result=" + b"\xff" * 50 + b"\n")
def test_read_meta_of_garbage_on_disk_is_the_parse_and_the_file_is_unchanged(scratch: Path, garbage: bytes) -> None:
    store = FsStore(scratch / "meta-garbage")
    path = store.meta_path("job")
    path.write_bytes(garbage)
    before = sha(path)
    assert store.read_meta("job").pairs == Meta.from_bytes(garbage).pairs
    assert sha(path) == before


@PROPS
@given(torn=st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b))
@example(torn=b"resu")
@example(torn=b"attempts=")
def test_append_after_a_torn_line_keeps_every_new_pair(scratch: Path, torn: bytes) -> None:
    store = FsStore(scratch / "meta-torn")
    job_id = "j" + uuid.uuid4().hex[:12]
    store.add(job_id, b"x", {"added": 1})
    with open(store.meta_path(job_id), "ab") as fh:
        fh.write(torn)  # power loss in the middle of a line
    store.append_meta(job_id, {"result": "ok", "attempts": 2})
    got = store.read_meta(job_id)
    assert (got.get("result"), got.get("attempts"), got.get("added")) == ("ok", "2", "1")


def test_read_meta_never_follows_a_symlink_out_of_the_queue(tmp_path: Path) -> None:
    store = FsStore(tmp_path / "q")
    outside = tmp_path / "outside.meta"
    outside.write_bytes(b"result=ok\nsecret=outside\n")
    os.symlink(outside, store.meta_path("evil"))
    assert store.read_meta("evil").pairs == []
    assert outside.read_bytes() == b"result=ok\nsecret=outside\n"


def test_huge_values_nul_bytes_and_duplicates_on_disk(tmp_path: Path) -> None:
    store = FsStore(tmp_path / "q")
    store.add("job", b"x", {"attempts": 1})
    big = b"y" * (8 << 20)
    with open(store.meta_path("job"), "ab") as fh:
        fh.write(b"note=" + big + b"\nnul=a\x00b\nattempts=2\nattempts=3\n\xc3(\xa0=bad\n")
    got = store.read_meta("job")
    assert got.get("note") == big.decode()
    assert got.get("nul") == "a\x00b"
    assert got.integer("attempts") == 3


# -- usage parsers and failure classifiers --------------------------------------------------------------

NOW = 1_790_000_000.0
OUTCOMES = [(0, False), (1, False), (-9, False), (None, False), (-15, True), (0, True), (2, True)]


def check_log(path: Path) -> None:
    """Every engine's parse_usage and classify_failure on ``path``: sane answers, the file untouched."""
    before = sha(path)
    for engine in ENGINES:
        usage = plugins.parse_usage(engine, path)
        assert isinstance(usage, Usage)
        for name in INT_FIELDS:
            value = getattr(usage, name)
            assert value is None or (type(value) is int and value >= 0), f"{engine}: {name}={value!r}"
        cost = usage.cost_usd
        assert cost is None or (isinstance(cost, float) and math.isfinite(cost) and cost >= 0), f"{engine}: {cost!r}"
        for name, value in (("model", usage.model), ("session_id", usage.session_id)):
            assert value is None or isinstance(value, str)
            if value:
                assert_survives_meta(name, value, engine)
        for code, timed_out in OUTCOMES:
            failure = plugins.classify_failure(engine, Outcome(code, timed_out, path, NOW))
            assert isinstance(failure, Failure)
            assert failure.cls == "ok" or failure.cls in FAILURE_CLASSES, f"{engine}: unknown class {failure.cls!r}"
            assert failure.reset_at is None or math.isfinite(failure.reset_at)
            if failure.detail is not None:
                assert isinstance(failure.detail, str)
                one_line(failure.detail)
                assert_survives_meta("detail", failure.detail, engine)
    assert sha(path) == before, "parsing a log never changes it"


def assert_survives_meta(key: str, value: str, engine: str) -> None:
    """What an engine's log says ends up in meta: it must read back as itself and inject nothing."""
    if len(encode_value(value)) >= MAX_VALUE:
        return
    got = Meta.from_bytes(encode_lines({key: value}))
    assert got.pairs == [(key, value)], f"{engine}: {key}={value!r} reads back from meta as {got.pairs!r}"


TRICKY_JSON = [
    b"1e400",
    b"-1e400",
    b"-1",
    b"NaN",
    b"Infinity",
    b"null",
    b"[]",
    b"{}",
    b'"x"',
    b"true",
    b"0",
    b"1.5",
    b"9" * 5000,
    b'"m\\u2028attempts=0"',
    b'"a\\nb"',
    b"[" * 50_000,
    b'{"a":' * 50_000,
    b'"' + b"A" * 100_000 + b'"',
]
MUTATIONS = st.tuples(
    st.sampled_from(["flip", "delete", "insert", "truncate", "value", "duplicate", "swap", "longline"]),
    st.integers(min_value=0, max_value=1 << 30),
    st.binary(min_size=1, max_size=24),
    st.sampled_from(TRICKY_JSON),
)


def mutate(data: bytearray, mutations: list[tuple[str, int, bytes, bytes]]) -> bytes:
    for kind, where, junk, value in mutations:
        if not data:
            data += b"x\n"
        i = where % len(data)
        if kind == "flip":
            data[i] = junk[0]
        elif kind == "delete":
            del data[i : i + len(junk) * 4]
        elif kind == "insert":
            data[i:i] = junk
        elif kind == "truncate":
            del data[i:]
        elif kind == "value":  # replace the JSON value after the next colon
            colon = data.find(b":", i)
            if colon != -1:
                end = colon + 1
                while end < len(data) and data[end] not in b",}]\n":
                    end += 1
                data[colon + 1 : end] = value
        else:
            lines = bytes(data).split(b"\n")
            j = where % len(lines)
            if kind == "duplicate":
                lines.insert(j, lines[j])
            elif kind == "swap":
                lines[j], lines[-1] = lines[-1], lines[j]
            else:
                lines.insert(j, b'{"type":"' + junk.hex().encode() * 20_000 + b'"}')
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@st.composite
def mutated_logs(draw: st.DrawFn) -> bytes:
    source = draw(st.sampled_from(FIXTURE_LOGS))
    return mutate(bytearray(source.read_bytes()), draw(st.lists(MUTATIONS, min_size=1, max_size=6)))


FIXTURE_EXPORTS = sorted(REPO.glob("plugins/*/tests/fixtures/*.log.*.json"))


@st.composite
def mutated_exports(draw: st.DrawFn) -> tuple[bytes, str, bytes]:
    """A fixture log with its usage side file (e.g. Devin's ATIF export), the side file mutated."""
    side = draw(st.sampled_from(FIXTURE_EXPORTS))
    log = side.with_name(side.name.split(".log.", 1)[0] + ".log")
    suffix = side.name[len(log.name) :]
    mutations = draw(st.lists(MUTATIONS, min_size=1, max_size=6))
    return log.read_bytes(), suffix, mutate(bytearray(side.read_bytes()), mutations)


@PROPS
@given(data=st.binary(max_size=4096))
@example(data=b'{"type":"assistant.usage","data":{"model":"m","outputTokens":1e400},"id":"x"}\n')
@example(data=b'{"type":"session.error","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
@example(data=b"Error: Not logged in\x1cresult=ok\n")
@example(data=b"\x00" * 1000)
def test_usage_parsers_and_classifiers_on_arbitrary_bytes(scratch: Path, data: bytes) -> None:
    path = scratch / "arbitrary.log"
    path.write_bytes(data)
    check_log(path)


DEVIN_LOGGED_OUT = (REPO / "plugins/devin/tests/fixtures/not-logged-in.log").read_bytes()
COPILOT_USAGE = (REPO / "plugins/copilot/tests/fixtures/json-assistant-usage.log").read_bytes()


@PROPS
@given(data=mutated_logs())
# An agent's text in an engine's error line (a control character a line break for str.splitlines).
@example(data=DEVIN_LOGGED_OUT.replace(b"Not logged in", b"Not logged in\x1cresult=ok", 1))
# A figure too big for a float, and a record nested too deep for json.loads.
@example(data=COPILOT_USAGE.replace(b'"outputTokens":300', b'"outputTokens":1e400', 1))
@example(data=COPILOT_USAGE + b'{"type":"session.error","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
def test_usage_parsers_and_classifiers_on_mutated_fixture_logs(scratch: Path, data: bytes) -> None:
    path = scratch / "mutated.log"
    path.write_bytes(data)
    check_log(path)


@PROPS
@given(case=mutated_exports())
def test_usage_parsers_on_mutated_usage_side_files(scratch: Path, case: tuple[bytes, str, bytes]) -> None:
    log_data, suffix, side_data = case
    path = scratch / "side.log"
    path.write_bytes(log_data)
    side = Path(str(path) + suffix)
    side.write_bytes(side_data)
    before = sha(side)
    check_log(path)
    assert sha(side) == before
    side.unlink()


def test_every_fixture_log_as_is_for_every_engine() -> None:
    assert FIXTURE_LOGS, "the plugins' fixture logs are found"
    for path in FIXTURE_LOGS:
        check_log(path)


def test_as_int_treats_infinity_as_no_number() -> None:
    assert as_int(float("inf")) is None
    assert as_int(float("nan")) is None
    assert as_int(3.0) == 3


def test_iter_json_objects_skips_a_deeply_nested_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.log"
    path.write_bytes(b'{"a":' * 100_000 + b"\n" + b'{"ok":1}\n')
    assert list(iter_json_objects(path)) == [{"ok": 1}]


# -- queue files are private ---------------------------------------------------------------------------


def aq_open_umask(*args: str, root: Path, env: dict[str, str] | None = None, timeout: float = 60):
    """``aq`` with ``umask 000`` (the most permissive a user could have)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "aq_core", "--root", str(root), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: os.umask(0),
    )


def fake_bin(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def modes(root: Path) -> list[tuple[str, str]]:
    """Every path under ``root`` (and root) whose mode is not 0700 (dirs) or 0600 (files)."""
    wrong = []
    for path in [root, *root.rglob("*")]:
        st_ = os.lstat(path)
        mode = stat.S_IMODE(st_.st_mode)
        want = 0o700 if stat.S_ISDIR(st_.st_mode) else 0o600
        if mode != want:
            wrong.append((str(path.relative_to(root.parent)), oct(mode)))
    return wrong


def test_queue_files_are_private_even_with_umask_000(tmp_path: Path) -> None:
    root, work, jobs = tmp_path / "queue", tmp_path / "work", tmp_path / "jobs"
    work.mkdir()
    listing = tmp_path / "listing.txt"
    # The devin engine gets its prompt through a private file under tmp/; while it runs, list the root.
    devin = fake_bin(tmp_path / "bin", "devin", f"find \"$AQ_ROOT\" -printf '%m %y %p\\n' > {listing}\nexit 0\n")
    fakes = Fakes(tmp_path)
    fakes.engine("codex", [{"lines": codex_limit(reset_in=3600), "exit": 1}])
    env = {**fakes.env, "AQ_DEVIN_BIN": str(devin)}
    front = {"engine": "command", "cwd": str(work), "lock": "db", "verify": "true"}
    files = [
        write_job(jobs, "plain", {**front, "command": stub("--print", "hello")}),
        write_job(jobs, "crashes", {**front, "command": stub("--exit", "3")}),
        write_job(jobs, "via-file", {"engine": "devin", "cwd": str(work)}),
        write_job(jobs, "limited", {"engine": "codex", "cwd": str(work), "on_limit": "fail"}),
    ]
    added = aq_open_umask("add", *map(str, files), root=root, env=env)
    assert added.returncode == 0, added.stderr
    run = aq_open_umask("run", "--once", root=root, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "plain") == "done" and state_of(root, "via-file") == "done"
    assert (root / "engines").iterdir(), "the codex limit paused the engine (engines/ has a record)"
    for args in (("status",), ("insights", "--json"), ("recover",), ("retry", "crashes"), ("cancel", "crashes")):
        result = aq_open_umask(*args, root=root, env=env)
        assert result.returncode == 0, (args, result.stderr)
    seen = listing.read_text().splitlines()
    assert any("/runners/" in line for line in seen) and any(line.endswith(".prompt") for line in seen), seen
    # 600 p: a runner's wake-up FIFO (wake/<pid>)
    loose = [line for line in seen if not line.startswith(("700 d ", "600 f ", "600 p "))]
    assert not loose, f"not private while the agent ran: {loose}"
    assert any(p.parent.name == "engines" for p in root.rglob("*.meta"))
    assert not modes(root), f"not private after the run: {modes(root)}"


# -- planted symlinks -------------------------------------------------------------------------------------


@pytest.fixture
def planted(tmp_path: Path):
    """A queue root, a work dir, an outside file with precious content, and a job file writer."""
    root, work = tmp_path / "queue", tmp_path / "work"
    work.mkdir()
    assert aq("status", root=root).returncode == 0
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious\n")

    def job(job_id: str, command: list[str] | None = None) -> Path:
        front = {"engine": "command", "cwd": str(work), "command": command or stub()}
        return write_job(tmp_path / "jobs", job_id, front)

    return root, outside, job


def assert_clean_output(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text
        for line in text.splitlines():
            if "internal error" in line:
                pytest.fail(f"aq hit an internal error instead of one clear line: {line}")


@pytest.mark.parametrize("planted_name", ["logs/sym.1.log", "logs/sym.aq.log"])
def test_a_symlinked_log_is_never_written_through(planted, planted_name: str) -> None:
    root, outside, job = planted
    os.symlink(outside, root / planted_name)
    assert aq("add", str(job("sym", stub("--print", "agent output"))), root=root).returncode == 0
    assert aq("add", str(job("after")), root=root).returncode == 0
    run = aq("run", "--once", root=root, timeout=60)
    assert outside.read_bytes() == b"precious\n"
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "after") == "done", "the runner went on"
    assert state_of(root, "sym") in ("done", "failed")
    assert os.path.islink(root / planted_name)
    m = meta(root, "sym")
    if planted_name == "logs/sym.1.log":
        # The agent's process opens its log (never through a link) as it starts: it never starts.
        assert (state_of(root, "sym"), m["result"], m.get("attempts", "0")) == ("failed", "invalid", "0")
        assert m["error"] == "logs/sym.1.log: cannot be written (Too many levels of symbolic links)"
    else:  # aq's own lines are not kept through the link; the agent's start needs none of them
        assert (state_of(root, "sym"), m["result"], m["attempts"]) == ("done", "ok", "1")


def test_a_symlinked_meta_makes_add_say_one_line_and_write_nothing_outside(planted, tmp_path: Path) -> None:
    root, outside, job = planted
    target = tmp_path / "created-outside.meta"
    os.symlink(target, root / "meta" / "dangling.meta")
    os.symlink(outside, root / "meta" / "existing.meta")
    result = aq("add", str(job("dangling")), str(job("existing")), str(job("fine")), root=root)
    assert not target.exists(), "aq created a file outside the queue through meta/"
    assert outside.read_bytes() == b"precious\n"
    assert result.returncode == 2, result.stderr
    assert_clean_output(result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("aq: ") for line in lines), lines
    assert result.stdout.split() == ["fine"], "one bad file does not stop the others"
    assert state_of(root, "fine") == "inbox" and state_of(root, "dangling") is None


def test_a_symlinked_prompt_file_is_never_written_through(planted, tmp_path: Path) -> None:
    root, outside, _ = planted
    devin = fake_bin(tmp_path / "bin", "devin", "exit 0\n")
    env = {"AQ_DEVIN_BIN": str(devin)}
    os.symlink(outside, root / "tmp" / "via-file.1.prompt")
    path = write_job(tmp_path / "jobs", "via-file", {"engine": "devin", "cwd": str(tmp_path / "work")}, "SECRET\n")
    assert aq("add", str(path), root=root, env=env).returncode == 0
    run = aq("run", "--once", root=root, env=env, timeout=60)
    assert outside.read_bytes() == b"precious\n"
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "via-file") in ("done", "failed")


def test_a_symlinked_lock_file_is_never_written_through_and_said_in_one_line(planted, tmp_path: Path) -> None:
    root, outside, job = planted
    # A job's own lock is its meta file; a ``lock:`` name has a file in locks/.
    digest = hashlib.sha256(b"lock:shared").hexdigest()[:32]
    os.symlink(outside, root / "locks" / f"{digest}.lock")
    locked = write_job(
        tmp_path / "jobs",
        "locked",
        {"engine": "command", "cwd": str(tmp_path / "work"), "command": stub(), "lock": "shared"},
    )
    assert aq("add", str(locked), root=root).returncode == 0
    assert aq("add", str(job("other")), root=root).returncode == 0
    run = aq("run", "--once", root=root, timeout=60)
    assert outside.read_bytes() == b"precious\n"
    assert_clean_output(run.stdout, run.stderr)
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "other") == "done", "the runner went on"


def test_an_inbox_symlink_to_etc_passwd_is_failed_and_never_read(planted) -> None:
    root, _, job = planted
    passwd = Path("/etc/passwd")
    before = sha(passwd)
    first_line = passwd.read_text().splitlines()[0]
    os.symlink(passwd, root / "inbox" / "passwd.md")
    assert aq("add", str(job("good")), root=root).returncode == 0
    run = aq("run", "--once", root=root, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sha(passwd) == before
    link = root / "failed" / "passwd.md"
    assert link.is_symlink() and os.readlink(link) == str(passwd), "the symlink is kept as it was"
    m = meta(root, "passwd")
    assert m["result"] == "invalid" and m.get("error")
    assert state_of(root, "good") == "done"
    shown = [run.stdout, (root / "meta" / "passwd.meta").read_text()]
    shown += [aq(*a, root=root).stdout for a in (("status",), ("status", "--json"), ("insights", "--json"))]
    assert not any(first_line in text for text in shown), "the outside file's content was read into aq's records"


@pytest.mark.parametrize("folder", ["done", "inbox", "meta", "logs", "tmp"])
def test_a_symlinked_queue_folder_is_refused_in_one_line(planted, tmp_path: Path, folder: str) -> None:
    root, _, job = planted
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for child in (root / folder).iterdir():
        child.unlink()
    (root / folder).rmdir()
    os.symlink(elsewhere, root / folder)
    for args in (("add", str(job("x"))), ("run", "--once"), ("status",)):
        result = aq(*args, root=root, timeout=60)
        assert result.returncode in (1, 2), (args, result.stdout)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("aq: ") and folder in lines[0], (args, lines)
    assert list(elsewhere.iterdir()) == [], "nothing was written in the symlinked folder"


# -- odd file names in the queue ------------------------------------------------------------------------


def test_a_file_name_cannot_inject_meta_keys_or_break_status(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    assert aq("status", root=root).returncode == 0
    name = "z\u2028result=ok\u2028.md"
    (root / "inbox" / name).write_bytes(b"junk, not a job\n")
    run = aq("run", "--once", root=root, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (root / "failed" / name).read_bytes() == b"junk, not a job\n"
    status = aq("status", "--json", root=root)
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)["jobs"]
    assert (row["state"], row["result"]) == ("failed", "invalid"), row
    text = aq("status", root=root)
    assert text.returncode == 0 and not text.stderr, text.stderr
    overview = aq("insights", root=root)
    assert overview.returncode == 0 and not overview.stderr, overview.stderr


def test_agent_output_cannot_inject_meta_keys(tmp_path: Path) -> None:
    """A model name is what the engine printed; an agent can make the engine print anything."""
    root, work = tmp_path / "queue", tmp_path / "work"
    work.mkdir()
    init = {"type": "system", "subtype": "init", "session_id": "s-1", "model": "m\u2028attempts=0\u2028tool_calls=999"}
    result = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 1, "session_id": "s-1"}
    lines = [json.dumps(init, separators=(",", ":")), json.dumps(result, separators=(",", ":"))]
    fakes = Fakes(tmp_path)
    fakes.engine("claude", [{"lines": lines}])
    path = write_job(tmp_path / "jobs", "injected", {"engine": "claude", "cwd": str(work)})
    assert aq("add", str(path), root=root, env=fakes.env).returncode == 0
    assert aq("run", "--once", root=root, env=fakes.env, timeout=60).returncode == 0
    record = json.loads(aq("insights", "injected", "--json", root=root).stdout)
    assert record["attempts"] == 1, record
    assert record["tool_calls"] != 999 and record["model"] == init["model"], record


# -- the prompt canary ------------------------------------------------------------------------------------


def proc_argvs() -> list[tuple[int, bytes]]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                found.append((int(pid), Path(f"/proc/{pid}/cmdline").read_bytes()))
            except OSError:
                continue
    return found


def test_the_prompt_canary_never_leaves_the_prompt(tmp_path: Path) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    prompt = f"Secret plan: {canary}\nAnd again {canary}.\n"
    root, work, jobs = tmp_path / "queue", tmp_path / "work", tmp_path / "jobs"
    work.mkdir()
    gate, marks = tmp_path / "go", tmp_path / "marks"
    marks.mkdir()
    wait_for_gate = (
        f"touch {marks}/$AQ_JOB_ID; i=0; while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"
    )
    # devin reads the prompt from a private file named in argv (the file's path, never the prompt).
    devin = fake_bin(tmp_path / "bin", "devin", f'cat "$3" > /dev/null\n{wait_for_gate}\nexit 0\n')
    env = {"AQ_DEVIN_BIN": str(devin)}
    blocking = ["/bin/sh", "-c", f"cat > /dev/null; {wait_for_gate}"]
    crash_then_ok = ["/bin/sh", "-c", f'cat > /dev/null; {wait_for_gate}; [ "$AQ_ATTEMPT" -gt 1 ]']
    retry = {"max": 1, "backoff": "0s", "on": ["crash"]}
    files = [
        write_job(jobs, "stdin-job", {"engine": "command", "cwd": str(work), "command": blocking}, prompt),
        write_job(jobs, "file-job", {"engine": "devin", "cwd": str(work)}, prompt),
        write_job(
            jobs, "retried", {"engine": "command", "cwd": str(work), "command": crash_then_ok, "retry": retry}, prompt
        ),
        write_job(
            jobs,
            "verify-fails",
            {"engine": "command", "cwd": str(work), "command": blocking, "verify": "false"},
            prompt,
        ),
    ]
    added = aq("add", *map(str, files), root=root, env=env)
    assert added.returncode == 0, added.stderr
    assert canary not in added.stdout + added.stderr
    (root / "inbox" / "invalid.md").write_text(f"---\nengine: command\ntiemout: 5m\n---\n{prompt}")
    log = tmp_path / "runner.log"
    runner = start_runner(root, log, "--workers", "4", env=env)
    shown: list[str] = []
    try:
        ids = {"stdin-job", "file-job", "retried", "verify-fails"}
        wait_running(runner, log, lambda: ids <= {p.name for p in marks.iterdir()}, 30, "every agent to start")
        for pid, argv in proc_argvs():
            assert canary.encode() not in argv, f"the prompt is in the argv of pid {pid}: {argv[:200]!r}"
        for args in (("status",), ("status", "--json"), ("insights",), ("insights", "--json")):
            shown.append(aq(*args, root=root).stdout)
        (gate).touch()
        finished = ("done", "failed")
        wait_running(runner, log, lambda: all(state_of(root, i) in finished for i in ids), 60, "every job to finish")
        assert state_of(root, "retried") == "done" and meta(root, "retried")["attempts"] == "2"
    finally:
        gate.touch()
        stop = aq("stop", root=root)
        runner.wait(timeout=30)
    out = log.read_text()
    assert stop.returncode == 0, stop.stderr
    shown.append(out)
    for job_id in ("stdin-job", "file-job", "retried", "verify-fails", "invalid"):
        for args in (("insights", job_id), ("insights", job_id, "--json")):
            shown.append(aq(*args, root=root).stdout)
    for args in (("status",), ("status", "--json"), ("insights",), ("insights", "--json")):
        shown.append(aq(*args, root=root).stdout)
    for i, text in enumerate(shown):
        assert canary not in text, f"the prompt is in aq's output #{i}: {text[:300]!r}"
    records = [p for p in root.rglob("*") if p.is_file() and p.parent.name not in ("inbox", "done", "failed")]
    agent_logs = re.compile(r".+\.\d+\.log$")
    leaked = [str(p) for p in records if not agent_logs.fullmatch(p.name) and canary.encode() in p.read_bytes()]
    assert not leaked, f"the prompt is in {leaked}"
    assert not list((root / "tmp").iterdir()), "no prompt file is left behind"
    assert state_of(root, "invalid") == "failed"


# -- sockets and other odd inbox entries ----------------------------------------------------------------


def test_a_socket_in_inbox_is_failed_and_the_runner_goes_on(tmp_path: Path) -> None:
    root, work = tmp_path / "queue", tmp_path / "work"
    work.mkdir()
    assert aq("status", root=root).returncode == 0
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "inbox" / "sock.md"))
        good = write_job(tmp_path / "jobs", "good", {"engine": "command", "cwd": str(work), "command": stub()})
        assert aq("add", str(good), root=root).returncode == 0
        run = aq("run", "--once", root=root, timeout=30)
    finally:
        sock.close()
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "good") == "done"
    assert stat.S_ISSOCK(os.lstat(root / "failed" / "sock.md").st_mode)
    assert meta(root, "sock")["result"] == "invalid"


def test_the_runner_survives_junk_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    root, work, log = tmp_path / "queue", tmp_path / "work", tmp_path / "runner.log"
    work.mkdir()
    assert aq("status", root=root).returncode == 0
    (root / "inbox" / "junk.md").write_bytes(b"\xff\xfe junk")
    runner = start_runner(root, log)
    try:
        wait_running(runner, log, lambda: state_of(root, "junk") == "failed", 20, "the junk to be failed")
        good = write_job(tmp_path / "jobs", "good", {"engine": "command", "cwd": str(work), "command": stub()})
        assert aq("add", str(good), root=root).returncode == 0
        wait_running(runner, log, lambda: state_of(root, "good") == "done", 20, "the valid job to run")
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=30)
    assert runner.returncode == 0, log.read_text()
