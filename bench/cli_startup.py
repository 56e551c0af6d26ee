"""Benchmark: how fast the `dsr-desk` command line starts.

Target: `dsr-desk --help` under 0.3 s median, run as `python -m bot.cli --help` and, when the
virtualenv has it, as its `dsr-desk` entry point script. Help and argument errors need only
argparse: bot.cli imports what a command needs when the command runs.

Each round runs, in turn (the order rotated from round to round, since the machine may be
shared and busy: a slow spell then weighs on every command alike), each a fresh process:

- `python -c pass`, the floor: an interpreter that starts and imports nothing;
- `python -m bot.cli --help`, and `dsr-desk --help` when the entry point script exists;
- `dsr-desk jurisdictions`, for information: a real command, which loads the settings and reads
  a temporary SQLite database (made once, by `dsr-desk db upgrade`, before the rounds).

It prints min/median/max in seconds, each median against the floor's, and how many modules
`--help` leaves in `sys.modules` (and which of the heavy libraries, which must be none).
From the repository root:

    python -m bench.cli_startup [--rounds 9]

Exits 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP_TARGET_S = 0.3
ROOT = Path(__file__).resolve().parents[1]
# What `--help` must not import: the database, the migrations, Slack, the settings' machinery.
HEAVY = ("sqlalchemy", "alembic", "sqlmodel", "slack_sdk", "slack_bolt", "pydantic",
         "pydantic_settings", "cryptography", "httpx", "apscheduler")
COUNT_MODULES = f"""\
import sys
sys.argv = ["dsr-desk", "--help"]
from bot.cli import main
try:
    main()
except SystemExit:
    pass
print(len(sys.modules), *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)
"""


def environment(data_dir: Path) -> dict[str, str]:
    """This environment without a developer's settings, the database in `data_dir`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "GENESYS_", "ZENDESK_", "DSR_", "DATABASE_URL"))}
    return env | {"DSR_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}


def run(command: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def modules(code: str, *, cwd: Path, env: dict[str, str]) -> list[str]:
    """What `code` prints on standard error, split: the number of modules, then names."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return done.stderr.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="runs of each command, interleaved")
    args = parser.parse_args()

    python = sys.executable
    script = Path(python).with_name("dsr-desk")
    cli = [str(script)] if script.exists() else [python, "-m", "bot.cli"]
    commands = {"python -c pass (floor)": [python, "-c", "pass"],
                "python -m bot.cli --help": [python, "-m", "bot.cli", "--help"]}
    if script.exists():
        commands["dsr-desk --help"] = [str(script), "--help"]
    commands["dsr-desk jurisdictions"] = [*cli, "jurisdictions"]
    help_commands = [name for name in commands if name.endswith("--help")]

    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)  # no .env of the repository's is read
        env = environment(cwd / "var")
        run([*cli, "db", "upgrade"], cwd=cwd, env=env)
        count, *heavy = modules(COUNT_MODULES, cwd=cwd, env=env)
        floor_count, *_ = modules("import sys; print(len(sys.modules), file=sys.stderr)",
                                  cwd=cwd, env=env)
        names = list(commands)
        times: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(run(commands[name], cwd=cwd, env=env))

    floor = statistics.median(times[names[0]])
    print(f"CLI start-up, {args.rounds} interleaved rounds, Python {sys.version.split()[0]}"
          f"{'' if script.exists() else ' (no dsr-desk script: python -m bot.cli instead)'}")
    print(f"  {'':<26} {'min s':>7} {'median s':>9} {'max s':>7} {'x floor':>8}")
    for name in names:
        seconds = times[name]
        print(f"  {name:<26} {min(seconds):>7.3f} {statistics.median(seconds):>9.3f} "
              f"{max(seconds):>7.3f} {statistics.median(seconds) / floor:>8.1f}")
    print(f"\n  modules after --help: {count} ({int(count) - int(floor_count)} more than "
          f"python -c pass's {floor_count}); heavy libraries: {', '.join(heavy) or 'none'}")

    missed = [name for name in help_commands if statistics.median(times[name]) >= HELP_TARGET_S]
    print(f"  target: --help under {HELP_TARGET_S} s median: "
          + (f"MISSED by {', '.join(missed)}" if missed else "met"))
    if missed or heavy:
        sys.exit(1)


if __name__ == "__main__":
    main()
