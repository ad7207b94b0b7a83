"""Test-only entry point: run the ecgproto CLI, SIGKILLing this process right after it has committed
N output chunks (a real, uncatchable kill at a known point, for the --resume tests).

    python -m tests.score.kill_after_chunks N score CHECKPOINT INPUT --out OUT ...

The production scoring path has no kill hook: this wraps ``ChunkStore.commit`` instead.
"""

from __future__ import annotations

import os
import signal
import sys

from ecgproto.score.store import ChunkStore


def kill_after(n_chunks: int) -> None:
    """Make this process SIGKILL itself once ``n_chunks`` chunks have been committed."""
    commit = ChunkStore.commit
    done = {"n": 0}

    def commit_then_maybe_die(self, *args, **kwargs):
        commit(self, *args, **kwargs)
        done["n"] += 1
        if done["n"] >= n_chunks:
            os.kill(os.getpid(), signal.SIGKILL)

    ChunkStore.commit = commit_then_maybe_die


if __name__ == "__main__":
    from ecgproto.cli import main

    kill_after(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
