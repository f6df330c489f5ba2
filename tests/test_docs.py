"""The user docs are tested code: hooks, examples, command lines, config and job files, links.

Checks, over ``docs/*.md`` and ``README.md``:

- every hook of the plugin manager is documented in docs/plugins.md with the signature of its hookspec,
  and the table there names real tests (in the contract kit or the suite) for every hook;
- code blocks marked ``<!-- file: PATH -->`` are contained, verbatim, in that file (the example plugin);
- every ``aq ...`` command line in a code block parses with the real argument parser;
- every YAML block validates as ``config.yaml`` or as job-file keys, and every job-file example validates;
- every doctest passes, every other Python example runs, and the classifier and notifier examples work;
- links between the pages (and their #anchors) resolve.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import json
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aq_core import hookspecs, plugins
from aq_core.cli import build_parser
from aq_core.config import KEYS as CONFIG_KEYS
from aq_core.config import QueueConfig, load_config
from aq_core.engine import Outcome
from aq_core.errors import UsageError
from aq_core.job import KEYS as JOB_KEYS
from aq_core.job import parse_job, yaml_loader
from aq_core.testing import EngineContract
from aq_core.usage import USAGE_FIELDS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), REPO / "README.md"]
PLUGINS_PAGE = DOCS / "plugins.md"
# The pages this test owns completely (JSON examples there must be valid JSON).
STRICT_PAGES = {DOCS / name for name in ("plugins.md", "resilience.md", "insights.md", "limits.md")}
# Engines a job example may name: the repository's engines, the example plugin's, the one on plugins.md.
DOC_ENGINES = {"claude", "codex", "copilot", "devin", "command", "echo", "myengine"}
# Placeholders in command synopses, and a sample value for each.
PLACEHOLDERS = {
    "JOB": "fix-api",
    "ENGINE": "claude",
    "FILE": "jobs/fix-api.md",
    "DIR": "/tmp/queue",
    "N": "2",
    "WHEN": "24h",
    "NAME": "claude",
    "P": "8765",
    "H": "127.0.0.1",
}


@dataclass(frozen=True)
class Block:
    """A code block of a page: its language (``""`` for none or an indented block), text and marker."""

    page: Path
    line: int
    lang: str
    text: str
    marker: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
_MARKER = re.compile(r"^<!--\s*file:\s*(?P<path>\S+)\s*-->$")


def _scan(page: Path) -> tuple[list[Block], list[str]]:
    """Return the fenced and indented code blocks of a Markdown page, and its other lines."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    rest: list[str] = []
    i = 0
    previous_text = ""  # the last non-blank line outside a block, for markers
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            close = fence["fence"]
            body, start = [], i + 1
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(close):
                body.append(lines[i])
                i += 1
            marker = _MARKER.match(previous_text.strip())
            found.append(Block(page, start, fence["lang"].lower(), "\n".join(body), marker["path"] if marker else None))
            previous_text = ""
            i += 1
            continue
        if line.startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            body, start = [], i + 1
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            found.append(Block(page, start, "", "\n".join(body).rstrip("\n")))
            previous_text = ""
            continue
        if line.strip():
            previous_text = line
        rest.append(line)
        i += 1
    return found, rest


def blocks(page: Path) -> list[Block]:
    return _scan(page)[0]


def text_outside_code_blocks(page: Path) -> str:
    return "\n".join(_scan(page)[1])


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


# -- hooks --------------------------------------------------------------------------------------


def hook_names() -> list[str]:
    return sorted(name for name in dir(plugins.plugin_manager().hook) if not name.startswith("_"))


def documented_hookspecs() -> dict[str, tuple[ast.FunctionDef, Block]]:
    """Return the ``@hookspec`` functions shown in docs/plugins.md, by name."""
    found: dict[str, tuple[ast.FunctionDef, Block]] = {}
    for block in blocks(PLUGINS_PAGE):
        if block.lang != "python" or "@hookspec" not in block.text:
            continue
        for node in ast.parse(block.text).body:
            if isinstance(node, ast.FunctionDef) and any(_is_hookspec(d) for d in node.decorator_list):
                assert node.name not in found, f"{block.where}: hook {node.name} is shown twice"
                found[node.name] = (node, block)
    return found


def _is_hookspec(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Name) and target.id == "hookspec"


def _firstresult(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and _is_hookspec(decorator):
            return any(k.arg == "firstresult" and ast.literal_eval(k.value) is True for k in decorator.keywords)
    return False


def test_the_plugin_manager_has_hooks() -> None:
    assert {"launch", "parse_usage", "classify_failure", "checkpoint"} <= set(hook_names())


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented_with_its_signature(name: str) -> None:
    shown = documented_hookspecs()
    assert name in shown, f"docs/plugins.md shows no `@hookspec def {name}(...)`"
    node, block = shown[name]
    spec = inspect.signature(getattr(hookspecs, name))
    args = node.args
    assert not (args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg), block.where
    doc = [(a.arg, ast.unparse(a.annotation) if a.annotation else None) for a in args.args]
    real = [
        (p.name, p.annotation if p.annotation is not inspect.Parameter.empty else None)
        for p in spec.parameters.values()
    ]
    assert doc == real, f"{block.where}: {name} arguments differ from aq_core/hookspecs.py"
    returns = ast.unparse(node.returns) if node.returns else None
    assert returns == spec.return_annotation, f"{block.where}: {name} return annotation differs"
    opts = plugins.plugin_manager().hook.__dict__[name].spec.opts
    assert _firstresult(node) == bool(opts.get("firstresult")), f"{block.where}: {name} firstresult differs"
    assert re.search(rf"^### {name}$", PLUGINS_PAGE.read_text(), re.MULTILINE), f"no section `### {name}`"


def hook_test_table() -> dict[str, list[tuple[str, str]]]:
    """Return the table "Which tests cover each hook" of docs/plugins.md: hook -> [(file, test)]."""
    text = PLUGINS_PAGE.read_text()
    section = text.split("## Which tests cover each hook", 1)[1].split("\n## ", 1)[0]
    table: dict[str, list[tuple[str, str]]] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        hook = cells[0].strip("`")
        tests = []
        for part in cells[1].split(";"):
            spans = re.findall(r"`([^`]+)`", part)
            assert len(spans) >= 2 and "/" in spans[0], f"plugins.md: bad test list for {hook}: {part!r}"
            tests += [(spans[0], name) for name in spans[1:]]
        table[hook] = tests
    return table


def test_the_hook_test_table_covers_every_hook() -> None:
    assert sorted(hook_test_table()) == hook_names()


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_tests_in_the_kit_or_the_suite(name: str) -> None:
    listed = hook_test_table().get(name)
    assert listed, f"docs/plugins.md lists no test for the hook {name}"
    for path, test in listed:
        assert path == "aq_core/testing.py" or path.startswith("tests/"), f"{test}: not in the kit or the suite"
        source = REPO / path
        assert source.is_file(), f"{path} does not exist"
        assert re.search(rf"^\s*def {re.escape(test)}\(", source.read_text(), re.MULTILINE), f"no {test} in {path}"


def test_the_kit_tests_and_settings_on_the_page_are_the_kits() -> None:
    text = PLUGINS_PAGE.read_text()
    kit = {name for name in dir(EngineContract) if name.startswith("test_")}
    section = text.split("The kit checks:", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"`(test_\w+)`", section))
    assert listed == kit, f"kit tests not on the page: {kit - listed}; on the page only: {listed - kit}"
    flags = text.split("Capability flags", 1)[1].split("The kit checks:", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", flags, re.MULTILINE)
    assert rows, "no capability table"
    for attr, default in rows:
        assert repr(getattr(EngineContract, attr)) == default, f"EngineContract.{attr} default is not {default}"


def test_the_contract_example_sets_only_real_settings(tmp_path: Path) -> None:
    examples = [b for b in blocks(PLUGINS_PAGE) if b.lang == "python" and "(EngineContract)" in b.text]
    assert examples
    for block in examples:
        namespace = {"__file__": str(tmp_path / "tests" / "test_contract.py"), "__name__": "docs_example"}
        exec(compile(block.text, block.where, "exec"), namespace)
        classes = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, EngineContract)]
        classes = [c for c in classes if c is not EngineContract]
        assert classes, block.where
        known = set(dir(EngineContract)) | set(EngineContract.__annotations__)
        for cls in classes:
            assert cls.__name__.startswith("Test"), "pytest collects only classes named Test*"
            settings = {k for k in vars(cls) if not k.startswith("__")}
            assert settings <= known, f"{block.where}: not EngineContract settings: {settings - known}"
            assert "engine" in settings and "fixtures" in settings


# -- code shown verbatim ------------------------------------------------------------------------

FILE_BLOCKS = [b for b in ALL_BLOCKS if b.marker]


def test_the_example_plugin_is_shown() -> None:
    assert any(b.marker == "tests/example_plugin/aq_echo/__init__.py" for b in FILE_BLOCKS)


@pytest.mark.parametrize("block", FILE_BLOCKS, ids=[b.where for b in FILE_BLOCKS])
def test_shown_code_is_the_real_file(block: Block) -> None:
    source = REPO / block.marker
    assert source.is_file(), f"{block.where}: {block.marker} does not exist"
    assert block.text.strip("\n") in source.read_text(), f"{block.where} is not verbatim from {block.marker}"


# -- command lines ------------------------------------------------------------------------------


def command_lines() -> list[tuple[str, str]]:
    """Return (where, line) for each ``aq`` command line in a code block (shell or indented)."""
    found = []
    for block in ALL_BLOCKS:
        if block.lang not in ("", "sh", "bash", "shell", "console", "text"):
            continue
        for offset, raw in enumerate(block.text.splitlines()):
            line = raw.strip()
            if line.startswith("$ "):
                line = line[2:]
            elif block.lang in ("text", "console"):
                continue  # output, unless it is a prompt line
            line = re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+", "", line)  # VAR=value before the command
            if line.startswith("aq ") or line == "aq":
                found.append((f"{block.page.relative_to(REPO)}:{block.line + offset}", line))
    return found


COMMANDS = command_lines()


def concrete_argv(line: str) -> list[str] | None:
    """Return the argv of a command line with its placeholders filled in; None for a bare synopsis."""
    line = line.split(" | ", 1)[0]
    words = shlex.split(line, comments=True)[1:]
    argv = []
    for word in words:
        word = word.replace("[", "").replace("]", "")
        if word in ("...", ""):
            continue
        if word == "COMMAND":
            return None  # `aq [--root DIR] COMMAND ...`: the general form, not a command
        word = word.removesuffix("...")
        argv.append(PLACEHOLDERS.get(word, word))
    return argv


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 20
    assert {"run", "insights", "resume", "recover", "dashboard"} <= {
        (concrete_argv(line) or [""])[0] for _, line in COMMANDS
    }


@pytest.mark.parametrize("line", [line for _, line in COMMANDS], ids=[where for where, _ in COMMANDS])
def test_aq_command_lines_parse(line: str) -> None:
    argv = concrete_argv(line)
    if argv is None:
        return
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --version prints and exits 0
        assert exc.code == 0, line
        return
    except UsageError as exc:
        pytest.fail(f"`{line}` does not parse: {exc}")
    assert getattr(args, "func", None), f"`{line}` names no command"


# -- config.yaml and job files ------------------------------------------------------------------


def _engines() -> set[str]:
    return set(plugins.engine_names()) | DOC_ENGINES


def _doc_profiles() -> dict:
    """The profiles the pages' config.yaml examples define: a job example may name them."""
    import yaml

    profiles: dict = {}
    for block in ALL_BLOCKS:
        if block.lang in ("yaml", "yml") and block.text.startswith("profiles:"):
            profiles.update(yaml.load(block.text, Loader=yaml_loader())["profiles"])
    return profiles


def _parse_example_job(text: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    text = re.sub(r"^cwd:.*$", f"cwd: {work}", text, flags=re.MULTILINE)
    path = tmp_path / "example.md"
    path.write_text(text)
    parse_job(
        path,
        text.encode(),
        engines=_engines(),
        failure_classes=plugins.failure_classes(),
        default_cwd=work,
        profiles=_doc_profiles(),
    )


YAML_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("yaml", "yml")]
JOB_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("markdown", "md") and b.text.startswith("---")]


def test_the_docs_show_config_and_job_examples() -> None:
    assert len(YAML_BLOCKS) >= 5 and len(JOB_BLOCKS) >= 5


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[b.where for b in YAML_BLOCKS])
def test_yaml_examples_validate(block: Block, tmp_path: Path) -> None:
    import yaml

    data = yaml.load(block.text, Loader=yaml_loader())
    assert isinstance(data, dict) and data, f"{block.where}: not a mapping"
    if set(data) <= set(CONFIG_KEYS):
        root = tmp_path / "queue"
        root.mkdir()
        (root / "config.yaml").write_text(block.text + "\n")
        load_config(root)  # raises UsageError naming the key
    elif set(data) <= set(JOB_KEYS):
        front = block.text
        if "engine" not in data:
            front = "engine: command\ncommand: [my-agent]\n" + front
        if "cwd" not in data:
            front = "cwd: .\n" + front
        _parse_example_job(f"---\n{front}\n---\nThe prompt.\n", tmp_path)
    else:
        pytest.fail(f"{block.where}: keys {sorted(data)} are neither config.yaml keys nor job keys")


@pytest.mark.parametrize("block", JOB_BLOCKS, ids=[b.where for b in JOB_BLOCKS])
def test_job_file_examples_validate(block: Block, tmp_path: Path) -> None:
    _parse_example_job(block.text + "\n", tmp_path)


def test_the_plan_of_three_jobs_runs_in_its_order(tmp_path: Path) -> None:
    """docs/jobs.md's worked plan, queued in one `aq add` and run: schema, then queries, then tests.

    Only the engine (a stub agent) and the directory change; ``not_before`` is moved to the past.
    """
    import sys

    from helpers import aq, git_repo, meta, state_of

    page = DOCS / "jobs.md"
    start = page.read_text().index("## A plan of dependent jobs")
    plan = [b for b in JOB_BLOCKS if b.page == page and b.line > page.read_text()[:start].count("\n")][:3]
    repo = git_repo(tmp_path / "shop")
    record = tmp_path / "record"
    agent = [sys.executable, str(REPO / "tests" / "agents" / "stub_agent.py"), "--record", str(record)]
    names = []
    for name, block in zip(("schema", "queries", "tests"), plan, strict=True):
        text = re.sub(r"^cwd:.*$", f"cwd: {repo}", block.text, flags=re.MULTILINE)
        text = re.sub(r"^engine:.*$", f"engine: command\ncommand: {json.dumps(agent)}", text, flags=re.MULTILINE)
        text = re.sub(r"^not_before:.*$", "not_before: 2020-01-01T00:00", text, flags=re.MULTILINE)
        (tmp_path / f"{name}.md").write_text(text + "\n")
        names.append(str(tmp_path / f"{name}.md"))
    root = tmp_path / "queue"
    added = aq("add", *reversed(names), root=root)
    assert added.returncode == 0, added.stderr
    assert aq("run", "--once", root=root, timeout=120).returncode == 0
    order = [line.split()[1] for line in record.read_text().splitlines() if line.startswith("start ")]
    assert order == ["schema", "queries", "tests"]
    assert [state_of(root, j) for j in ("schema", "queries", "tests")] == ["done"] * 3
    assert meta(root, "queries")["wip_base"] == meta(root, "schema")["wip_commit"], "queries built on schema"


# -- Python and JSON examples -------------------------------------------------------------------

DOCTEST_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("python", "pycon") and ">>>" in b.text]
RUN_BLOCKS = [
    b
    for b in ALL_BLOCKS
    if b.lang == "python" and ">>>" not in b.text and "@hookspec" not in b.text and "(EngineContract)" not in b.text
]


@pytest.mark.parametrize("block", DOCTEST_BLOCKS, ids=[b.where for b in DOCTEST_BLOCKS])
def test_doctests_pass(block: Block) -> None:
    test = doctest.DocTestParser().get_doctest(block.text, {}, block.where, str(block.page), block.line)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=report.append)
    assert result.attempted, block.where
    assert not result.failed, "".join(report)


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[b.where for b in RUN_BLOCKS])
def test_python_examples_run(block: Block) -> None:
    exec(compile(block.text, block.where, "exec"), {"__name__": "docs_example"})


def _example_defining(page: Path, name: str) -> dict:
    for block in blocks(page):
        if block.lang == "python" and f"def {name}(" in block.text and "@hookimpl" in block.text:
            namespace: dict = {"__name__": "docs_example"}
            exec(compile(block.text, block.where, "exec"), namespace)
            return namespace
    pytest.fail(f"{page.name} shows no @hookimpl def {name}")


def test_the_classify_failure_example_classifies(tmp_path: Path) -> None:
    ns = _example_defining(PLUGINS_PAGE, "classify_failure")
    classify = ns["classify_failure"]
    log = tmp_path / "attempt.log"
    log.write_text("working...\n  Error: quoted by the agent\nError: usage limit reached, resets 8pm (UTC)\n")
    ended = datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp()
    failure = classify(engine=ns["NAME"], outcome=Outcome(1, False, log, ended))
    assert failure.cls == "usage_limit"
    assert failure.reset_at == datetime(2026, 11, 26, 20, 0, tzinfo=UTC).timestamp()
    assert classify(engine="other", outcome=Outcome(1, False, log, ended)) is None
    assert classify(engine=ns["NAME"], outcome=Outcome(-15, True, log, ended)) is None
    assert classify(engine=ns["NAME"], outcome=Outcome(0, False, log, ended)) is None


def test_the_notify_example_writes_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notify = _example_defining(DOCS / "limits.md", "notify")["notify"]
    events = tmp_path / "events.jsonl"
    lines: list[str] = []
    record = {"engine": "claude", "until": 1795687320.0, "reason": "usage_limit", "job": "j", "event": "engine_paused"}
    monkeypatch.delenv("AQ_EVENTS_FILE", raising=False)
    notify(event="engine_paused", record=record, config=QueueConfig(), log=lines.append)
    assert not events.exists()
    monkeypatch.setenv("AQ_EVENTS_FILE", str(events))
    notify(event="engine_paused", record=record, config=QueueConfig(), log=lines.append)
    assert json.loads(events.read_text()) == record
    assert len(lines) == 1 and "claude" in lines[0]


JSON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "json" and b.page in STRICT_PAGES]


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=[b.where for b in JSON_BLOCKS])
def test_json_examples_parse(block: Block) -> None:
    data = json.loads(block.text)
    if "usage" in data:  # a golden fixture's expected file
        assert set(data) <= {"usage", "outcome", "failure"}, block.where
        assert set(data["usage"]) <= set(USAGE_FIELDS), block.where


# -- links --------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", text_outside_code_blocks(page), re.MULTILINE)
    return {slug(heading.replace("`", "")) for heading in headings}


def links() -> list[tuple[str, Path, str]]:
    found = []
    for page in PAGES:
        prose = re.sub(r"`[^`\n]*`", "", text_outside_code_blocks(page))  # links are not in code
        for target in re.findall(r"\[[^\]]+\]\(([^)\s]+)\)", prose):
            if not re.match(r"[a-z]+:", target):
                found.append((f"{page.relative_to(REPO)} -> {target}", page, target))
    return found


LINKS = links()


def test_the_docs_link_to_each_other() -> None:
    pages = {target.split("#")[0] for _, _, target in LINKS}
    assert {"plugins.md", "resilience.md", "insights.md", "limits.md"} <= {Path(p).name for p in pages}


@pytest.mark.parametrize(("page", "target"), [(p, t) for _, p, t in LINKS], ids=[w for w, _, _ in LINKS])
def test_links_resolve(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.name}: {target}: {dest} does not exist"
    if anchor:
        assert dest.suffix == ".md", f"{page.name}: {target}: an anchor into a non-Markdown file"
        assert anchor in anchors(dest), f"{page.name}: {target}: no heading #{anchor} in {dest.name}"
