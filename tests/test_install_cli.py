"""``aq install`` / ``aq uninstall``: a real plugin distribution (tests/example_plugin, aq-echo) goes into
the environment that runs aq, shows up in ``aq engines``, and goes away again; pip's failures and a
missing pip are one line; aq-core itself is never uninstalled.

Each case runs aq in a scratch venv that sees this environment's packages (as in test_packaging), with
pip told not to use the network.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

from test_packaging import EXAMPLE, JUNK, _engines, _env, _ok, _outer_site_dirs, _run, _scratch_venv

# pip reads its options from the environment too: no index, build with this environment's setuptools.
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_CACHE_DIR": "1"}


def _purelib(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return Path(_ok(_run([python, "-c", code], env=_env(), cwd=python.parent)).stdout.strip())


def _echo_source(tmp_path: Path) -> Path:
    source = tmp_path / "src" / "aq-echo"
    shutil.copytree(EXAMPLE, source, ignore=JUNK)
    (source / "aq-echo-agent").chmod(0o755)
    return source


def test_install_lists_the_engine_and_uninstall_removes_it(tmp_path: Path) -> None:
    python = _scratch_venv(tmp_path / "venv")
    aq = [python, "-m", "aq_core"]
    env = _env(**OFFLINE)
    assert "echo" not in _engines(aq, env, tmp_path)

    installed = _run([*aq, "install", _echo_source(tmp_path)], env=env, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Successfully installed aq-echo-0.3.1" in installed.stdout
    engines = _engines(aq, env, tmp_path)
    assert (engines["echo"]["distribution"], engines["echo"]["version"]) == ("aq-echo", "0.3.1")
    # Into aq's own environment (the scratch venv), not the one the tests run in.
    site = _purelib(python)
    assert (site / "aq_echo" / "__init__.py").is_file()
    assert not Path(sysconfig.get_path("purelib"), "aq_echo").exists()

    removed = _run([*aq, "uninstall", "aq-echo", "-y"], env=env, cwd=tmp_path)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "Successfully uninstalled aq-echo-0.3.1" in removed.stdout
    assert "echo" not in _engines(aq, env, tmp_path)
    assert not (site / "aq_echo").exists()
    assert not list(site.glob("aq_echo-*.dist-info"))


def test_install_editable_and_upgrade_pass_through(tmp_path: Path) -> None:
    python = _scratch_venv(tmp_path / "venv")
    aq = [python, "-m", "aq_core"]
    env = _env(**OFFLINE)
    source = _echo_source(tmp_path)

    _ok(_run([*aq, "install", "-e", source], env=env, cwd=tmp_path))
    assert _engines(aq, env, tmp_path)["echo"]["version"] == "0.3.1"
    # Editable: the module is imported from the source tree, so a change there is live.
    where = _ok(_run([python, "-c", "import aq_echo; print(aq_echo.__file__)"], env=env, cwd=tmp_path))
    assert Path(where.stdout.strip()) == source / "aq_echo" / "__init__.py"

    # A new version of the plugin, installed over the old one with --upgrade.
    project = source / "pyproject.toml"
    project.write_text(project.read_text().replace('version = "0.3.1"', 'version = "0.4.0"'))
    upgraded = _ok(_run([*aq, "install", "--upgrade", source], env=env, cwd=tmp_path))
    assert "Successfully installed aq-echo-0.4.0" in upgraded.stdout
    assert _engines(aq, env, tmp_path)["echo"]["version"] == "0.4.0"
    _ok(_run([*aq, "uninstall", "--yes", "AQ_Echo"], env=env, cwd=tmp_path))
    assert "echo" not in _engines(aq, env, tmp_path)


def test_pip_failure_is_one_line_and_exit_1(tmp_path: Path) -> None:
    python = _scratch_venv(tmp_path / "venv")
    failed = _run([python, "-m", "aq_core", "install", "aq-no-such-plugin"], env=_env(**OFFLINE), cwd=tmp_path)
    assert failed.returncode == 1, failed
    ours = [line for line in failed.stderr.splitlines() if line.startswith("aq:")]
    assert ours == ["aq: aq install: pip install failed (exit 1); see pip's output above"], failed.stderr
    assert "aq-no-such-plugin" in failed.stderr  # pip said which one
    assert "Traceback" not in failed.stderr


def test_aq_core_itself_is_never_uninstalled(tmp_path: Path) -> None:
    python = _scratch_venv(tmp_path / "venv")
    for name in ("aq-core", "AQ_Core", "aq.core"):
        refused = _run([python, "-m", "aq_core", "uninstall", "aq-echo", name, "-y"], env=_env(), cwd=tmp_path)
        assert refused.returncode == 2, refused
        assert refused.stdout == ""
        assert refused.stderr.splitlines() == [
            f"aq: aq uninstall: {name!r} is aq itself; remove it with the tool that installed it (pip, pipx, uv tool)"
        ]
    still = _ok(_run([python, "-m", "aq_core", "--version"], env=_env(), cwd=tmp_path))
    assert still.stdout.startswith("aq ")


def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for argv, expected in (
        (["install"], "aq: aq install: name a plugin to install (a distribution name, path or URL), or -e PATH"),
        (["uninstall"], "aq: the following arguments are required: NAME"),
    ):
        proc = _run([sys.executable, "-m", "aq_core", *argv], env=_env(), cwd=tmp_path)
        assert (proc.returncode, proc.stderr.splitlines()) == (2, [expected]), proc


def test_without_pip_says_how_to_add_plugins(tmp_path: Path) -> None:
    # An environment like `uv tool install aq-core` makes: everything aq needs, and no pip.
    site = tmp_path / "site-without-pip"
    site.mkdir()
    for outer in _outer_site_dirs():
        for entry in Path(outer).iterdir():
            if entry.name == "pip" or entry.name.startswith("pip-") or (site / entry.name).exists():
                continue
            (site / entry.name).symlink_to(entry)
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "venv"], env=_env(), cwd=tmp_path))
    python = tmp_path / "venv" / "bin" / "python"
    (_purelib(python) / "aq-site.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    assert _run([python, "-c", "import pip"], env=_env(), cwd=tmp_path).returncode != 0

    for argv in (["install", "aq-echo"], ["uninstall", "aq-echo", "-y"]):
        proc = _run([python, "-m", "aq_core", *argv], env=_env(), cwd=tmp_path)
        assert proc.returncode == 1, proc
        (line,) = proc.stderr.splitlines()
        assert line == (
            f"aq: aq {argv[0]}: pip is not installed in aq's environment ({python}); with uv, run "
            "`uv tool install aq-core --with NAME`; with pipx, `pipx inject aq-core NAME`"
        )
