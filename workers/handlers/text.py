"""A workflow example: word counts of a text, fanned out over chunks and merged (fan-in).

Submitted as one batch (docs/job-types.md has the curl):

- ``text.split`` (ref ``split``): cuts ``text`` into ``chunks`` pieces at word boundaries;
  result ``{"chunks": [str, …]}``;
- ``text.count_words``, N of them, each ``depends_on: ["split"]`` with ``input.chunk`` = its index:
  counts the words of that chunk of the split's result; result
  ``{"chunk": i, "chunks": 1, "words": n, "counts": {word: n}}``;
- ``text.merge_counts``, ``depends_on`` every count job (or, past 100 chunks, other merges:
  a job has at most 100 dependencies): adds their counts up; result
  ``{"chunks": N, "words": total, "counts": {…}, "top": [[word, n], …]}``.

Each job reads its inputs from ``ctx.dependency_results``: the graph is the data flow.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from rest_framework import serializers

from apps.jobs.registry import JobContext, PermanentError, job_type

CHUNKS_MAX = 1000
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


class SplitInput(serializers.Serializer):
    # As long as diagnostics.echo's message: the escaped JSON of the longest one stays within
    # JOB_INPUT_MAX_BYTES and a batch of them within the request body limit.
    text = serializers.CharField(max_length=10_000, allow_blank=True, trim_whitespace=False)
    chunks = serializers.IntegerField(
        min_value=1, max_value=CHUNKS_MAX, help_text="How many pieces to cut the text into."
    )


class CountInput(serializers.Serializer):
    chunk = serializers.IntegerField(
        min_value=0, max_value=CHUNKS_MAX - 1, help_text="Which piece of the split to count."
    )


class MergeInput(serializers.Serializer):
    top = serializers.IntegerField(
        min_value=0, max_value=100, default=10, help_text="How many most frequent words to list."
    )


_OPTIONS: dict[str, Any] = {
    "queue": "default",
    "timeout_seconds": 60,
    "max_timeout_seconds": 600,
    "max_attempts": 3,
    "max_attempts_limit": 10,
}


def split_words(text: str, chunks: int) -> list[str]:
    """``text`` cut into ``chunks`` pieces of about as many words each (some may be empty)."""
    words = text.split()
    size, extra = divmod(len(words), chunks)
    pieces, start = [], 0
    for index in range(chunks):
        end = start + size + (1 if index < extra else 0)
        pieces.append(" ".join(words[start:end]))
        start = end
    return pieces


@job_type("text.split", input=SplitInput, **_OPTIONS)
def split(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Cut a text into chunks at word boundaries (the fan-out's source)."""
    return {"chunks": split_words(input["text"], input["chunks"])}


def _the_split(ctx: JobContext) -> list[str]:
    for result in ctx.dependency_results.values():
        if isinstance(result, dict) and isinstance(result.get("chunks"), list):
            return list(result["chunks"])
    raise PermanentError("depends on no text.split job", code="no_split")


@job_type("text.count_words", input=CountInput, **_OPTIONS)
def count_words(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Count the words of one chunk of the text.split it depends on."""
    chunks = _the_split(ctx)
    index = input["chunk"]
    if index >= len(chunks):
        raise PermanentError(
            f"the split has {len(chunks)} chunks, not {index + 1}", code="no_chunk"
        )
    counts = Counter(word.lower() for word in _WORD.findall(chunks[index]))
    return {"chunk": index, "chunks": 1, "words": sum(counts.values()), "counts": dict(counts)}


@job_type("text.merge_counts", input=MergeInput, **_OPTIONS)
def merge_counts(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Add up the word counts of the jobs it depends on (the fan-in): text.count_words jobs, or
    other text.merge_counts jobs (a job has at most 100 dependencies: more chunks than that
    are merged in two levels)."""
    total: Counter[str] = Counter()
    chunks = 0
    for result in ctx.dependency_results.values():
        if isinstance(result, dict) and isinstance(result.get("counts"), dict):
            total.update(result["counts"])
            chunks += int(result.get("chunks", 1))
    top = sorted(total.items(), key=lambda item: (-item[1], item[0]))[: input["top"]]
    return {
        "chunks": chunks,
        "words": sum(total.values()),
        "counts": dict(total),
        "top": [list(pair) for pair in top],
    }
