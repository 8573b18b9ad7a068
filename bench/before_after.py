"""One bench script on an earlier commit and on this tree, in alternating rounds.

The earlier commit is checked out in a git worktree beside this one (kept for the next
run) and run with this tree's Python; each side has a bench database of its own, since
their migrations differ. Rounds alternate sides (before, after, after, before, ...), so
a drift in this machine's speed falls on both. Each run's output is printed whole,
labelled with its side and round.

    python bench/before_after.py BASE [--rounds 3] [--fresh] -- bench/api.py --rounds 1 --users 32
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import ROOT, database_drop

DATABASE = "postgres://postgres@127.0.0.1:5432/backserv_bench_{side}"


def worktree(base: str) -> Path:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", base], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = ROOT.parent / f"backserv-before-{commit}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--fresh", action="store_true", help="drop both sides' bench databases first (jobs and servers of earlier runs)"
    )
    arguments = sys.argv[1:]
    if "--" not in arguments or arguments.index("--") == len(arguments) - 1:
        parser.error("name the bench script and its options after --")
    split = arguments.index("--")
    options, script = parser.parse_args(arguments[:split]), arguments[split + 1 :]
    trees = {"before": worktree(options.base), "after": ROOT}
    if options.fresh:
        for side in trees:
            database_drop(DATABASE.format(side=side))
    for round_index in range(options.rounds):
        order = ["before", "after"] if round_index % 2 == 0 else ["after", "before"]
        for side in order:
            env = {**os.environ, "DATABASE_URL": DATABASE.format(side=side)}
            print(f"== round {round_index + 1}, {side} ({trees[side]})", flush=True)
            subprocess.run([sys.executable, *script], cwd=trees[side], env=env, check=True)


if __name__ == "__main__":
    main()
