"""The git checkpoint plugin: aq/wip/<id> branches, snapshots, resume, worktrees, unusual repos."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gitutil import commit_all, git, head, init_repo, non_wip_refs, status, tree_files, write

from aq_core import plugins
from aq_core.checkpoint import CheckpointContext
from aq_core.checkpoint_git import find_repo

PROTECTED = ("main", "master")
BINARY = bytes(range(256)) * 4
RENAMED = "".join(f"line {i} of a file that moves\n" for i in range(20))


@pytest.fixture(autouse=True)
def _builtin_plugins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQ_LOAD_PLUGINS", "")


class Job:
    """Drives the hooks as the runner does: meta accumulates (last value wins), log lines are kept.

    Around every hook call it asserts that no ref outside ``aq/wip/*`` changed and that no temporary
    index was left behind.
    """

    def __init__(
        self, repo: Path | None, job_id: str = "j1", isolation: str = "inplace", protected: tuple[str, ...] = PROTECTED
    ):
        self.repo, self.id, self.isolation, self.protected = repo, job_id, isolation, protected
        self.meta: dict[str, str] = {}
        self.logs: list[str] = []

    def _call(self, stage: str, workdir: Path, result: str | None) -> dict[str, str]:
        before = non_wip_refs(self.repo) if self.repo else None
        ctx = CheckpointContext(
            job_id=self.id,
            workdir=workdir,
            result=result,
            meta=dict(self.meta),
            isolation=self.isolation,
            protected=self.protected,
            log=self.logs.append,
        )
        answer = plugins.checkpoint(stage, ctx)
        if self.repo:
            assert non_wip_refs(self.repo) == before, f"{stage} changed a ref outside aq/wip/*"
            git_dir = Path(git(self.repo, "rev-parse", "--absolute-git-dir"))
            common = Path(git(self.repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))
            mine = f"aq-index.{self.id}.*"
            leftovers = [*git_dir.glob(mine), *common.glob(f"worktrees/*/{mine}")]
            assert not leftovers, leftovers
        assert all(isinstance(v, str) for v in answer.values()), answer
        self.meta.update(answer)
        return answer

    def prepare(self, cwd: Path) -> dict[str, str]:
        return self._call("prepare", cwd, None)

    def commit(self, workdir: Path, result: str = "ok") -> dict[str, str]:
        return self._call("commit", workdir, result)

    @property
    def branch(self) -> str:
        return f"aq/wip/{self.id}"


def deltas(answer: dict[str, str]) -> tuple[int, int, int]:
    return int(answer["files_changed"]), int(answer["lines_added"]), int(answer["lines_deleted"])


def sha(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", rev)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(
        tmp_path / "repo",
        files={
            "a.txt": "1\n2\n3\n",
            "b.txt": "b1\nb2\n",
            "old.txt": RENAMED,
            "img.bin": BINARY,
            ".gitignore": "*.log\n",
        },
    )


def test_fresh_job_commits_everything_to_its_branch_and_nothing_else(repo: Path) -> None:
    main = sha(repo, "main")
    job = Job(repo)
    prep = job.prepare(repo)
    assert prep == {
        "wip_branch": "aq/wip/j1",
        "wip_base": main,
        "wip_pre": main,  # a clean start: the job starts from the commit itself
        "workdir": str(repo),
    }
    assert head(repo) == "refs/heads/aq/wip/j1"
    assert sha(repo, "aq/wip/j1") == main
    assert status(repo) == ""

    # The agent: edits, commits once on its own, then deletes, renames, adds untracked, ignored, binary.
    write(repo, {"a.txt": "1\nTWO\n3\n4\n"})
    agent_commit = commit_all(repo, "agent's own commit")
    (repo / "b.txt").unlink()
    (repo / "old.txt").rename(repo / "new.txt")
    write(repo, {"u.txt": "u\n", "build.log": "ignored\n", "img.bin": BINARY[::-1]})

    done = job.commit(repo)
    wip = sha(repo, "aq/wip/j1")
    assert done["wip_commit"] == wip
    assert git(repo, "log", "-1", "--format=%s", wip) == "aq wip: j1 (ok)"
    assert git(repo, "log", "-1", "--format=%an <%ae>", wip) == "aq tests <tests@aq.invalid>"
    assert sha(repo, f"{wip}^") == agent_commit
    files = tree_files(repo, wip)
    assert set(files) == {".gitignore", "a.txt", "new.txt", "u.txt", "img.bin"}
    assert files["img.bin"] == BINARY[::-1] and files["new.txt"] == RENAMED.encode()
    # a.txt +2 -1, b.txt -2, old->new (one file, 0 lines), img.bin (binary: 0 lines), u.txt +1
    assert deltas(done) == (5, 3, 3)
    assert sha(repo, "main") == main
    assert git(repo, "log", "--format=%s", "main") == "initial"
    assert head(repo) == "refs/heads/aq/wip/j1"
    assert status(repo) == "!! build.log"  # index refreshed; the ignored file stays, untracked by git
    assert (repo / "build.log").read_text() == "ignored\n"
    assert done["lines_added"] == "3"
    assert any("committed" in line and "aq/wip/j1" in line for line in job.logs)


def _entry_seconds(repo: Path, name: str) -> set[int]:
    """The whole seconds of the ctime and mtime the index recorded for ``name``."""
    debug = git(repo, "ls-files", "--debug", "--", name)
    return {
        int(line.split()[1].split(":")[0]) for line in debug.splitlines() if line.strip()[:6] in ("ctime:", "mtime:")
    }


def test_a_file_rewritten_at_its_size_in_the_second_of_the_agents_commit_is_in_the_snapshot(tmp_path: Path) -> None:
    """git trusts an index entry whose file matches its size and its times to the second, unless the
    entry is as new as the index file (racily clean). The snapshot's copy of the index keeps the
    index's time: a copy made a second later would make git take the rewritten file for unchanged."""
    for attempt in range(5):
        repo = init_repo(tmp_path / f"repo{attempt}", files={"a.txt": "1\n", "img.bin": BINARY})
        job = Job(repo)
        job.prepare(repo)
        # The agent writes both files (img.bin as it was: its entry takes this instant's times) and
        # commits, then rewrites img.bin at its size: a span of two gits, well within one second.
        write(repo, {"a.txt": "2\n", "img.bin": BINARY})
        commit_all(repo, "agent's own commit")
        write(repo, {"img.bin": BINARY[::-1]})
        now = os.stat(repo / "img.bin")
        second = int(os.stat(repo / ".git" / "index").st_mtime)
        if _entry_seconds(repo, "img.bin") == {int(now.st_ctime), int(now.st_mtime), second}:
            break  # the file matches its entry to the second, and the index is as new: racily clean
    else:
        pytest.fail("five tries could not rewrite the file within the second of the agent's commit")
    time.sleep(max(0.0, second + 1.2 - time.time()))  # aq's snapshot comes in a later second
    done = job.commit(repo)
    assert tree_files(repo, done["wip_commit"])["img.bin"] == BINARY[::-1]
    assert status(repo) == ""


def test_uncommitted_user_changes_are_kept_and_not_counted(repo: Path) -> None:
    write(repo, {"a.txt": "1\n2\n3\nuser\n", "mine.txt": "user's own\nnotes\n"})
    before = status(repo)
    job = Job(repo)
    prep = job.prepare(repo)
    assert prep["wip_pre"] != sha(repo, "main^{tree}")
    assert head(repo) == "refs/heads/aq/wip/j1"
    assert status(repo) == before  # not stashed, not staged, not lost
    write(repo, {"a.txt": "1\n2\n3\nuser\nagent\n", "agent.txt": "x\ny\n"})
    done = job.commit(repo, "timeout")
    assert deltas(done) == (2, 3, 0)  # agent.txt +2, a.txt +1 (the user's line is not the job's)
    assert (repo / "mine.txt").read_text() == "user's own\nnotes\n"
    files = tree_files(repo, done["wip_commit"])
    assert files["mine.txt"] == b"user's own\nnotes\n"  # preserved in the checkpoint too
    assert git(repo, "log", "-1", "--format=%s", "aq/wip/j1") == "aq wip: j1 (timeout)"


def test_agent_switching_branches_does_not_move_head_or_other_branch(repo: Path) -> None:
    git(repo, "branch", "feature")
    job = Job(repo)
    base = job.prepare(repo)["wip_base"]
    git(repo, "switch", "-q", "feature")
    write(repo, {"f.txt": "on feature\n"})
    feature = commit_all(repo, "agent on feature")
    write(repo, {"loose.txt": "not committed\n", "a.txt": "changed\n"})
    git(repo, "add", "a.txt")  # something staged: the user's index must not change
    index_before = (repo / ".git" / "index").read_bytes()
    status_before = status(repo)

    done = job.commit(repo, "crash")
    assert head(repo) == "refs/heads/feature"
    assert sha(repo, "feature") == feature
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert status(repo) == status_before
    wip = done["wip_commit"]
    assert sha(repo, "aq/wip/j1") == wip and sha(repo, f"{wip}^") == base
    files = tree_files(repo, wip)
    assert files["f.txt"] == b"on feature\n" and files["loose.txt"] == b"not committed\n"
    assert files["a.txt"] == b"changed\n"
    assert any("HEAD not moved" in line for line in job.logs)


def test_resume_starts_from_the_checkpoint(repo: Path) -> None:
    job = Job(repo)
    job.prepare(repo)
    write(repo, {"step1.txt": "one\n"})
    first = job.commit(repo, "timeout")["wip_commit"]
    # Between attempts the user goes back to main (the tree is clean: everything is committed).
    git(repo, "switch", "-q", "main")
    assert not (repo / "step1.txt").exists()

    prep = job.prepare(repo)
    assert head(repo) == "refs/heads/aq/wip/j1"
    assert (repo / "step1.txt").read_text() == "one\n"
    assert prep["workdir"] == str(repo) and prep["wip_base"] == sha(repo, "main")
    assert any("resuming" in line for line in job.logs)
    write(repo, {"step2.txt": "two\n"})
    second = job.commit(repo)
    assert sha(repo, f"{second['wip_commit']}^") == first
    assert deltas(second) == (2, 2, 0)  # the job's whole work since it first started

    # Resuming while HEAD is still on the branch (e.g. after orphan recovery) changes nothing.
    job.prepare(repo)
    assert head(repo) == "refs/heads/aq/wip/j1" and status(repo) == ""


def test_resume_blocked_by_user_changes_runs_in_a_worktree(repo: Path) -> None:
    job = Job(repo)
    job.prepare(repo)
    write(repo, {"a.txt": "agent\n"})
    first = job.commit(repo, "stopped")["wip_commit"]
    git(repo, "switch", "-q", "main")
    write(repo, {"a.txt": "user edit\n", "scratch.txt": "user\n"})
    user_status = status(repo)

    prep = job.prepare(repo)
    worktree = Path(prep["workdir"])
    assert worktree != repo and worktree.is_relative_to(repo / ".git")
    assert any("worktree" in line and "uncommitted changes" in line for line in job.logs)
    assert head(repo) == "refs/heads/main" and status(repo) == user_status
    assert (repo / "a.txt").read_text() == "user edit\n"
    assert (worktree / "a.txt").read_text() == "agent\n"
    assert head(worktree) == "refs/heads/aq/wip/j1"

    write(worktree, {"more.txt": "more\n"})
    done = job.commit(worktree)
    assert sha(repo, f"{done['wip_commit']}^") == first
    assert status(worktree) == "" and status(repo) == user_status

    again = job.prepare(repo)  # the next attempt continues in the same worktree
    assert again["workdir"] == str(worktree)
    assert any("in its worktree" in line for line in job.logs)


def test_worktree_isolation_leaves_the_user_checkout_alone(repo: Path) -> None:
    write(repo, {"a.txt": "user\n", "scratch.txt": "user\n"})
    git(repo, "add", "scratch.txt")
    index = (repo / ".git" / "index").read_bytes()
    before = (head(repo), status(repo), (repo / "a.txt").read_text())
    assert plugins.work_lock(repo, "worktree") is None

    job = Job(repo, "iso", isolation="worktree")
    prep = job.prepare(repo / ".")
    worktree = Path(prep["workdir"])
    assert worktree == (repo / ".git" / "aq-worktrees" / "iso").resolve()
    assert prep["wip_base"] == prep["wip_pre"] == sha(repo, "main")
    assert head(worktree) == "refs/heads/aq/wip/iso"
    assert (worktree / "a.txt").read_text() == "1\n2\n3\n"
    write(worktree, {"new.txt": "n\n"})
    (worktree / "b.txt").unlink()
    done = job.commit(worktree)
    assert deltas(done) == (2, 1, 2)
    assert set(tree_files(repo, "aq/wip/iso")) == {".gitignore", "a.txt", "img.bin", "new.txt", "old.txt"}
    assert (head(repo), status(repo), (repo / "a.txt").read_text()) == before
    assert (repo / ".git" / "index").read_bytes() == index

    # Resume reuses the worktree, also after someone deleted its directory.
    assert job.prepare(repo)["workdir"] == str(worktree)
    subprocess.run(["rm", "-rf", str(worktree)], check=True)
    assert job.prepare(repo)["workdir"] == str(worktree)
    assert (worktree / "new.txt").read_text() == "n\n"


def test_unborn_head(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "empty")
    write(repo, {"draft.txt": "user's draft\n"})
    job = Job(repo)
    prep = job.prepare(repo)
    assert head(repo) == "refs/heads/aq/wip/j1"
    assert git(repo, "ls-tree", prep["wip_base"]) == ""  # an empty root commit
    assert any("no commit yet" in line for line in job.logs)
    write(repo, {"agent.txt": "a\nb\n"})
    done = job.commit(repo)
    assert set(tree_files(repo, done["wip_commit"])) == {"draft.txt", "agent.txt"}
    assert deltas(done) == (1, 2, 0)
    assert git(repo, "rev-parse", "--verify", "-q", "refs/heads/main", check=False) == ""


def test_unborn_head_with_worktree_isolation(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "empty")
    job = Job(repo, isolation="worktree")
    worktree = Path(job.prepare(repo)["workdir"])
    write(worktree, {"x.txt": "x\n"})
    assert deltas(job.commit(worktree)) == (1, 1, 0)
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"


def test_detached_head(repo: Path) -> None:
    git(repo, "switch", "-q", "--detach", "main")
    job = Job(repo)
    assert job.prepare(repo)["wip_base"] == sha(repo, "main")
    assert head(repo) == "refs/heads/aq/wip/j1"
    write(repo, {"d.txt": "d\n"})
    assert deltas(job.commit(repo)) == (1, 1, 0)


def test_detached_by_the_agent(repo: Path) -> None:
    job = Job(repo)
    job.prepare(repo)
    git(repo, "switch", "-q", "--detach", "main")
    write(repo, {"d.txt": "d\n"})
    detached = sha(repo, "HEAD")
    done = job.commit(repo)
    assert head(repo) == detached
    assert "d.txt" in tree_files(repo, done["wip_commit"])
    assert any("HEAD is detached" in line for line in job.logs)


def test_mid_rebase_is_snapshotted_without_touching_head_or_index(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "topic")
    write(repo, {"a.txt": "topic\n"})
    commit_all(repo, "topic change")
    git(repo, "switch", "-q", "main")
    write(repo, {"a.txt": "main\n"})
    commit_all(repo, "main change")
    git(repo, "switch", "-q", "topic")
    git(repo, "rebase", "main", check=False)  # stops on the conflict
    assert (repo / ".git" / "rebase-merge").is_dir()
    rebasing = sha(repo, "HEAD")

    job = Job(repo)
    job.prepare(repo)
    assert head(repo) == rebasing  # still detached mid-rebase
    assert any("middle of a rebase" in line for line in job.logs)
    write(repo, {"a.txt": "resolved\n"})
    index = (repo / ".git" / "index").read_bytes()
    done = job.commit(repo, "ok")
    assert head(repo) == rebasing
    assert (repo / ".git" / "index").read_bytes() == index
    assert tree_files(repo, done["wip_commit"])["a.txt"] == b"resolved\n"
    assert deltas(done) == (1, 1, 5)  # the conflict markers were the starting state
    git(repo, "rebase", "--abort")
    assert head(repo) == "refs/heads/topic"


def test_not_a_git_repo(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert find_repo(plain) is None
    job = Job(None)
    assert job.prepare(plain) == {}
    assert job.logs == ["wip: cwd not a git repo"]
    assert job.commit(plain) == {}
    assert job.logs == ["wip: cwd not a git repo"]
    assert plugins.work_lock(plain, "inplace") is None


def test_subdirectory_workdir(repo: Path) -> None:
    sub = repo / "pkg" / "mod"
    write(sub, {"keep.txt": "k\n"})
    commit_all(repo, "pkg")
    assert plugins.work_lock(sub, "inplace") == f"git:{repo.resolve()}"
    job = Job(repo)
    assert job.prepare(sub)["workdir"] == str(sub)
    assert head(repo) == "refs/heads/aq/wip/j1"
    write(sub, {"inner.txt": "i\n"})
    write(repo, {"outer.txt": "o\n"})
    done = job.commit(sub)
    assert {"pkg/mod/inner.txt", "outer.txt"} <= set(tree_files(repo, done["wip_commit"]))
    assert deltas(done) == (2, 2, 0)

    iso = Job(repo, "iso", isolation="worktree")
    workdir = Path(iso.prepare(sub)["workdir"])
    assert workdir == (repo / ".git" / "aq-worktrees" / "iso" / "pkg" / "mod").resolve() and workdir.is_dir()


def test_protected_branches_are_never_moved(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "release")
    release = sha(repo, "release")
    job = Job(repo, protected=("main", "master", "release"))
    job.prepare(repo)
    write(repo, {"r.txt": "r\n"})
    job.commit(repo)
    git(repo, "switch", "-q", "release")  # the agent went back to a protected branch and changed files
    write(repo, {"r2.txt": "r\n"})
    job.commit(repo)
    assert sha(repo, "release") == release and sha(repo, "main") == release

    refused = Job(repo, "x", protected=("main", "aq/wip/x"))
    assert refused.prepare(repo) == {}
    assert "cannot be used" in refused.logs[0]
    assert head(repo) == "refs/heads/release"


def test_committing_twice_without_changes(repo: Path) -> None:
    job = Job(repo)
    job.prepare(repo)
    write(repo, {"once.txt": "1\n"})
    first = job.commit(repo)
    second = job.commit(repo, "stopped")
    assert second["wip_commit"] == first["wip_commit"] == sha(repo, "aq/wip/j1")
    assert deltas(second) == deltas(first) == (1, 1, 0)
    assert any("nothing new" in line for line in job.logs)
    # A job that changed nothing at all still records its (base) commit.
    idle = Job(repo, "idle")
    idle.prepare(repo)
    assert idle.commit(repo)["wip_commit"] == sha(repo, "aq/wip/j1")
    assert deltas(idle.meta) == (0, 0, 0)


def test_identity_falls_back_to_aq_and_prefers_the_users(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(key)
    job = Job(repo)
    job.prepare(repo)
    write(repo, {"x.txt": "x\n"})
    done = job.commit(repo)
    assert git(repo, "log", "-1", "--format=%an <%ae> / %cn <%ce>", done["wip_commit"]) == (
        "aq <aq@localhost> / aq <aq@localhost>"
    )
    git(repo, "config", "user.name", "Some User")
    git(repo, "config", "user.email", "user@example.com")
    write(repo, {"y.txt": "y\n"})
    done = job.commit(repo)
    assert git(repo, "log", "-1", "--format=%an <%ae>", done["wip_commit"]) == "Some User <user@example.com>"


def test_work_lock_names_the_work_tree(repo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(repo)
    assert plugins.work_lock(repo, "inplace") == plugins.work_lock(link, "inplace") == f"git:{repo.resolve()}"
    other = tmp_path / "other-tree"
    git(repo, "worktree", "add", "-q", str(other), "-b", "side")
    assert plugins.work_lock(other, "inplace") == f"git:{other.resolve()}"
    assert plugins.work_lock(repo / ".git", "inplace") is None


def test_checkpoints_never_import_gitpython(repo: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from aq_core import plugins\n"
        f"plugins.work_lock(Path({str(repo)!r}), 'inplace')\n"
        "from aq_core.checkpoint import CheckpointContext\n"
        f"ctx = CheckpointContext('imp', Path({str(repo)!r}), None, {{}}, 'inplace', ('main',), print)\n"
        "meta = plugins.checkpoint('prepare', ctx)\n"
        f"Path({str(repo)!r}, 'new.txt').write_text('n')\n"
        "from dataclasses import replace\n"
        "print(plugins.checkpoint('commit', replace(ctx, result='ok', meta=meta))['files_changed'])\n"
        "print('git' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    # GitPython's import alone costs a runner tens of milliseconds and runs git: plain git processes do it all.
    assert out.stdout.strip().splitlines()[-2:] == ["1", "False"], out.stdout + out.stderr


def test_prepare_and_commit_are_quick(repo: Path) -> None:
    job = Job(repo)
    start = time.perf_counter()
    job.prepare(repo)
    write(repo, {"fast.txt": "f\n"})
    job.commit(repo)
    # Generous bound (about a dozen git processes); the point is that nothing scans or waits needlessly.
    assert time.perf_counter() - start < 2.0


def test_a_deleted_work_branch_is_started_again_from_the_base(repo: Path) -> None:
    job = Job(repo)
    base = job.prepare(repo)["wip_base"]
    write(repo, {"kept.txt": "k\n"})
    git(repo, "switch", "-q", "main")  # carries the untracked file along
    git(repo, "branch", "-D", "aq/wip/j1")
    done = job.commit(repo)
    assert sha(repo, f"{done['wip_commit']}^") == base
    assert "kept.txt" in tree_files(repo, "aq/wip/j1")


def test_a_branch_checked_out_by_the_user_elsewhere_is_not_forced(repo: Path, tmp_path: Path) -> None:
    job = Job(repo)
    job.prepare(repo)
    write(repo, {"w.txt": "w\n"})
    job.commit(repo)
    git(repo, "switch", "-q", "main")
    git(repo, "worktree", "add", "-q", str(tmp_path / "mine"), "aq/wip/j1")
    write(repo, {"a.txt": "user\n"})
    prep = job.prepare(repo)  # would need a worktree, but the branch is the user's other checkout
    assert "already checked out" in prep["wip_error"]  # the runner must not start the engine
    assert head(repo) == "refs/heads/main"
    assert any("the engine must not run in" in line for line in job.logs)
    assert not (repo / ".git" / "aq-worktrees" / "j1").exists()
    assert (repo / "a.txt").read_text() == "user\n"


def test_commit_when_the_workdir_is_gone(repo: Path) -> None:
    job = Job(repo, isolation="worktree")
    worktree = Path(job.prepare(repo)["workdir"])
    subprocess.run(["rm", "-rf", str(worktree)], check=True)
    assert job.commit(worktree) == {}
    assert any("no longer in a git work tree" in line for line in job.logs)


def test_temporary_indexes_of_killed_runs_are_swept(repo: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = repo / ".git" / f"aq-index.j.x.{dead.pid}.abcd"
    stale.write_bytes(b"junk")
    (repo / ".git" / f"aq-index.j.x.{dead.pid}.abcd.lock").write_bytes(b"junk")
    live = repo / ".git" / f"aq-index.other.{os.getpid()}.beef"
    live.write_bytes(b"in use")
    job = Job(repo, "j.x")
    job.repo = None  # this test leaves a live one behind on purpose; refs are checked below
    refs_before = non_wip_refs(repo)
    job.prepare(repo)
    write(repo, {"s.txt": "s\n"})
    job.commit(repo)
    assert sorted(p.name for p in (repo / ".git").glob("aq-index.*")) == [live.name]
    assert non_wip_refs(repo) == refs_before


def test_resume_never_overwrites_an_ignored_file_of_the_user(repo: Path) -> None:
    job = Job(repo)
    job.prepare(repo)
    write(repo, {".gitignore": "", "out.log": "agent's log, now tracked\n"})
    job.commit(repo)
    git(repo, "switch", "-q", "main")
    write(repo, {"out.log": "the user's ignored file\n"})
    assert status(repo) == "!! out.log"
    prep = job.prepare(repo)
    assert Path(prep["workdir"]).is_relative_to(repo / ".git")
    assert (repo / "out.log").read_text() == "the user's ignored file\n"
    assert head(repo) == "refs/heads/main"
    assert any("would overwrite" in line for line in job.logs)


def test_worktree_jobs_prepared_at_once(repo: Path) -> None:
    jobs = [Job(repo, f"par{i}", isolation="worktree") for i in range(8)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: job.prepare(repo), jobs))
    assert not [a for a in answers if "wip_error" in a], [job.logs for job in jobs]
    for job, answer in zip(jobs, answers, strict=True):
        assert head(Path(answer["workdir"])) == f"refs/heads/{job.branch}"
    with ThreadPoolExecutor(len(jobs)) as pool:
        done = list(pool.map(lambda pair: pair[0].commit(Path(pair[1]["workdir"])), zip(jobs, answers, strict=True)))
    assert all(d["wip_commit"] == sha(repo, "main") for d in done)  # nothing changed: no new commit
    assert status(repo) == ""


def test_user_config_cannot_make_aq_sign_run_hooks_or_wait(repo: Path) -> None:
    marker = repo.parent / "hook-ran"
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    for key, value in {
        "commit.gpgSign": "true",
        "gpg.program": "false",
        "core.pager": "false",
        "core.editor": "false",
    }.items():
        git(repo, "config", key, value)
    job = Job(repo)
    job.prepare(repo)
    write(repo, {"x.txt": "x\n"})
    first = job.commit(repo)["wip_commit"]
    git(repo, "-c", "core.hooksPath=/dev/null", "switch", "-q", "main")
    job.prepare(repo)  # checks the branch out again
    iso = Job(repo, "iso", isolation="worktree")
    iso.prepare(repo)  # git worktree add checks out too
    assert not marker.exists()
    assert git(repo, "cat-file", "commit", first).count("gpgsig") == 0
    assert head(repo) == "refs/heads/aq/wip/j1"


def test_inherited_git_environment_does_not_redirect_aq(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = init_repo(tmp_path / "decoy", files={"d.txt": "d\n"})
    decoy_refs = non_wip_refs(decoy)
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "bogus-index"))
    job = Job(None)
    job.prepare(repo)
    write(repo, {"x.txt": "x\n"})
    done = job.commit(repo)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(key, raising=False)  # aq drops them from its own environment
    assert "x.txt" in tree_files(repo, done["wip_commit"])
    assert head(repo) == "refs/heads/aq/wip/j1"
    assert non_wip_refs(decoy) == decoy_refs and "refs/heads/aq/wip/j1" not in git(decoy, "for-each-ref")
    assert not (tmp_path / "bogus-index").exists()
