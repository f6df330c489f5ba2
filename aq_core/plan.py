"""The plan that ``after:`` makes of a queue's jobs: unknown ids, cycles and dependants (pure functions)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence


def parse_after(value: object) -> tuple[str, ...]:
    """Return the ids an ``after:`` value names; raise ``ValueError`` with a one-line reason."""
    from aq_core.job import JOB_ID

    names = value if isinstance(value, list) else [value]
    if not names:
        raise ValueError("expected a job id or a list of job ids")
    ids: list[str] = []
    for name in names:
        if not isinstance(name, str) or not JOB_ID.fullmatch(name.strip()):
            raise ValueError(f"{name!r} is not a job id")
        if name.strip() not in ids:
            ids.append(name.strip())
    return tuple(ids)


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return one cycle of ``graph`` (job -> the jobs it waits for) as ``[a, b, ..., a]``, or None.

    Only edges between jobs of ``graph`` count: a job outside it cannot wait for one inside (it was
    checked when it was added, before these existed).
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path: list[str] = [start]
        todo: list[Iterable[str]] = [iter(graph[start])]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
                continue
            if nxt not in graph or state.get(nxt) == 2:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            state[nxt] = 1
            path.append(nxt)
            todo.append(iter(graph[nxt]))
    return None


def check_after(new: Mapping[str, Sequence[str]], known: Collection[str]) -> dict[str, list[str]]:
    """Return the problems of the ``after:`` lists of jobs being added, by job id (empty: all fine).

    :param new: each job being added -> the ids it names in ``after:``.
    :param known: the ids already in the queue (any state).
    A named id must be in ``known`` or in ``new``; a cycle among ``new`` (a job naming itself too)
    is a problem of every job on it, so none of them is queued.
    """
    problems: dict[str, list[str]] = {}
    for job_id, after in new.items():
        for dep in after:
            if dep not in new and dep not in known:
                problems.setdefault(job_id, []).append(f"after: {dep!r} is not a job in the queue or in this add")
    cycle = find_cycle(new)
    if cycle:
        line = "after: cycle " + " -> ".join(cycle)
        for job_id in dict.fromkeys(cycle):
            problems.setdefault(job_id, []).append(line)
    return problems


def dependants(job_id: str, graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Return every job that waits for ``job_id``, directly or through others, nearest first."""
    waiting_for: dict[str, list[str]] = {}
    for other, after in graph.items():
        for dep in after:
            waiting_for.setdefault(dep, []).append(other)
    seen: dict[str, None] = {}
    frontier = [job_id]
    while frontier:
        nxt: list[str] = []
        for current in frontier:
            for other in sorted(waiting_for.get(current, ())):
                if other != job_id and other not in seen:
                    seen[other] = None
                    nxt.append(other)
        frontier = nxt
    return list(seen)
