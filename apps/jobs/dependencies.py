"""Workflows: a submission's ``depends_on`` and ``ref`` resolved to job ids (API.md,
"Workflows"; docs/architecture.md, "Dependencies").

Pure checks, no database: the names each job gives, resolved against the refs of its batch.
A name is a ref of the batch when one of its jobs carries it, else it must be a job id (a UUID;
whether the client owns such a job is the services' check, under the rows' locks). A ref may
name only an *earlier* job of the batch, so a batch's graph has no cycle by construction; a
name that points forward is refused as a ``cycle`` when following refs from it leads back to
the job, else as a forward ref, and a name that is neither a ref nor an id as an unknown ref.
Every problem is reported at once, keyed ``jobs.<index>.<field>`` with the refs named.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from apps.jobs.submission import Submission


def _as_id(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(name)
    except ValueError:
        return None


def resolve_single(submission: Submission) -> tuple[list[uuid.UUID], dict[str, list[str]]]:
    """The job ids of one job's ``depends_on`` (POST /jobs: ids only), or the problems."""
    ids, bad = [], []
    for name in submission.depends_on:
        job_id = _as_id(name)
        if job_id is None:
            bad.append(name)
        else:
            ids.append(job_id)
    if bad:
        return [], {"depends_on": [f"Unknown job id(s): {', '.join(map(repr, bad))}."]}
    return list(dict.fromkeys(ids)), {}


def _reaches(start: int, target: int, edges: dict[int, list[int]]) -> bool:
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return False


def resolve_batch(
    submissions: Sequence[Submission], job_ids: Sequence[Any]
) -> tuple[list[list[Any]], dict[str, list[str]]]:
    """Each job's dependencies as ids (``job_ids[i]`` is the id given to the batch's job i),
    or the problems keyed ``jobs.<index>.ref`` / ``jobs.<index>.depends_on``."""
    errors: dict[str, list[str]] = {}
    refs: dict[str, int] = {}
    for index, submission in enumerate(submissions):
        ref = submission.ref
        if ref is None:
            continue
        if ref in refs:
            errors[f"jobs.{index}.ref"] = [f"Ref {ref!r} is already used by jobs.{refs[ref]}."]
        else:
            refs[ref] = index
    # Every edge a ref draws, forward ones included, to tell a cycle from a forward ref.
    edges = {
        index: [refs[name] for name in s.depends_on if name in refs]
        for index, s in enumerate(submissions)
    }
    resolved: list[list[Any]] = []
    for index, submission in enumerate(submissions):
        ids: list[Any] = []
        cycles: list[str] = []
        forward: list[str] = []
        unknown: list[str] = []
        for name in submission.depends_on:
            target = refs.get(name)
            if target is not None and target < index:
                ids.append(job_ids[target])
            elif target is not None:
                (cycles if _reaches(target, index, edges) else forward).append(name)
            elif (job_id := _as_id(name)) is not None:
                ids.append(job_id)
            else:
                unknown.append(name)
        problems = []
        if cycles:
            problems.append(f"Ref(s) {', '.join(map(repr, cycles))} make a cycle.")
        if forward:
            problems.append(
                f"Ref(s) {', '.join(map(repr, forward))} name a later job of the batch; a job "
                "may depend only on earlier ones."
            )
        if unknown:
            problems.append(
                f"Ref(s) {', '.join(map(repr, unknown))} name no job of the batch and are not "
                "job ids."
            )
        if problems:
            errors[f"jobs.{index}.depends_on"] = problems
        resolved.append(list(dict.fromkeys(ids)))
    return resolved, errors
