"""``make mutate``: mutation testing (mutmut 3) of the modules that hold dcmnet's guarantees.

Each module is mutated on its own, against the tests that exercise it (``TARGETS``), in a private copy
of the tree under ``build/mutation/<module>/`` (mutmut 3 writes its mutants there; the working tree is
never modified, so it is safe while others edit). The surviving mutants are compared with
``mutation/baseline.txt``: a survivor not in the baseline fails the run (kill it with a test, or add it to
the baseline with the reason it cannot change a status, an exit code or what is on disk).

    python mutation/run.py                      # every module
    python mutation/run.py dcmnet_cli/cli/exitcodes.py   # one (or several)
    python mutation/run.py --update-baseline ...  # rewrite the baseline entries of the modules run
    python mutation/run.py --tests=tests/a.py,tests/b.py MODULE  # other tests (e.g. a score before)
    DCMNET_MUTATE_JOBS=1 python mutation/run.py ...  # forked test workers (default 2: the machine is shared)

Cost here (2 cores, 2 workers): storage.py ~2 min, bulk.py and inputfiles.py ~1 min each, placement.py ~2.5 min, store_handler.py ~7 min,
cli/retrieve.py (move/get's summary, JSON, exit code and option wiring) ~6 min.

Why mutmut 3 and not cosmic-ray or mutmut 2: both of those write each mutant into the source file in
place and restore it afterwards (a crash or a concurrent edit loses work); mutmut 3 mutates a copy and
switches mutants at run time through trampolines, picks for every mutant only the tests that reached the
mutated function (its own stats pass), and runs them in forked workers: a module with its targeted tests
takes seconds to minutes. Its limit: only in-process tests can kill a mutant (a test that runs
``dcmnet`` as a child process imports the unmutated package), hence the in-process tests named below.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutation"
BASELINE = ROOT / "mutation" / "baseline.txt"
EXPLAINED = "  ## "
"""Separates a baseline line (module: function: status: mutated line) from the reason it may survive."""

TARGETS: dict[str, list[str]] = {
    "dcmnet_cli/cli/exitcodes.py": ["tests/test_exit_matrix.py", "tests/test_exitcodes_units.py",
                                    "tests/test_move_get_hostile.py", "tests/test_retrieve_tolerant.py"],
    "dcmnet_cli/dimse/status.py": ["tests/test_dimse_status.py", "tests/test_exit_matrix.py",
                                   "tests/test_exitcodes_units.py"],
    "dcmnet_cli/ul/statemachine.py": ["tests/test_statemachine_cold.py", "tests/test_statemachine.py",
                                      "tests/test_ul_association.py"],
    "dcmnet_cli/services/scp/placement.py": ["tests/test_placement_units.py", "tests/test_services_memory.py",
                                             "tests/test_store_handler_units.py", "tests/test_storage_units.py",
                                             "tests/test_placement_tmpfile.py"],
    "dcmnet_cli/services/scp/store_handler.py": ["tests/test_store_handler_units.py", "tests/test_storage_units.py",
                                                 "tests/test_services_memory.py", "tests/test_placement_units.py",
                                                 "tests/test_placement_tmpfile.py", "tests/test_storage_spares.py",
                                                 "tests/test_index_written_by_stores.py", "tests/test_listen_bulk.py"],
    "dcmnet_cli/services/scp/storage.py": ["tests/test_storage_units.py", "tests/test_store_handler_units.py",
                                           "tests/test_services_memory.py", "tests/test_placement_units.py",
                                           "tests/test_index_batch.py", "tests/test_placement_tmpfile.py",
                                           "tests/test_storage_spares.py", "tests/test_store_perobject.py"],
    "dcmnet_cli/cli/retrieve.py": ["tests/test_retrieve_exit_units.py", "tests/test_retrieve_report_units.py",
                                   "tests/test_move_get_hostile.py", "tests/test_retrieve_tolerant.py"],
    "dcmnet_cli/transport/busy_poll.py": ["tests/test_busy_poll.py"],
    "dcmnet_cli/transport/sockets.py": ["tests/test_sockets.py"],
    "dcmnet_cli/transport/bulk.py": ["tests/test_listen_bulk.py"],
    "dcmnet_cli/transport/inputfiles.py": ["tests/test_input_files.py"],
}


DIFFS = """
import difflib, json, sys
from mutmut.mutation.diff_apply import find_mutant, read_mutant_function, read_original_function
from mutmut.mutation.diff_apply import read_mutants_module
import libcst as cst
out, modules = {}, {}
for name in json.loads(sys.stdin.read()):
    path = find_mutant(name).path
    if path not in modules:
        modules[path] = read_mutants_module(path)
    module = modules[path]
    orig, mutant = (cst.Module([f]).code.strip().splitlines()
                    for f in (read_original_function(module, name), read_mutant_function(module, name)))
    diff = difflib.unified_diff(orig, mutant, lineterm="")
    out[name] = next((line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")), "?")
print(json.dumps(out))
"""
"""The first line of each surviving mutant that its original function does not have (what ``mutmut show``
prints after "+"), for all of them in one process: ``mutmut show`` costs a second per mutant."""


def slug(module: str) -> str:
    return module.removeprefix("dcmnet_cli/").removesuffix(".py").replace("/", ".")


def prepare(module: str, tests: list[str]) -> Path:
    """A private copy of the package, the tests and pyproject.toml with a [tool.mutmut] for ``module``."""
    work = WORK / slug(module)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "dcmnet_cli", work / "dcmnet_cli", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    existing = [t for t in tests if (ROOT / t).exists()]
    text = (ROOT / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text)
    text += "\n[tool.mutmut]\n" + "\n".join([
        'source_paths = ["dcmnet_cli"]',
        f'only_mutate = ["{module}"]',
        'also_copy = ["tests", "pyproject.toml"]',
        f"pytest_add_cli_args_test_selection = {json.dumps(existing)}",
        # mutmut kills slow mutants itself (no pytest-timeout); -x: one failing test kills the mutant
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:timeout", "-x", "-q"]',
        "use_git_change_detection = false",
    ]) + "\n"
    (work / "pyproject.toml").write_text(text)
    return work


def run(module: str) -> tuple[int, int, list[str]]:
    """Mutate ``module``; returns (mutants, killed, survivor lines "module: name: diff line")."""
    work = prepare(module, TARGETS[module])
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", DCMNET_SHARED=str(ROOT.parent / "shared"))
    env.pop("PYTHONPATH", None)
    mutmut = [sys.executable, "-m", "mutmut"]
    jobs = os.environ.get("DCMNET_MUTATE_JOBS", "2")  # the machine is shared: 2 forked workers at most by default
    done = subprocess.run([*mutmut, "run", "--max-children", jobs], cwd=work, env=env, capture_output=True, text=True)
    (work / "run.log").write_text(done.stdout + done.stderr)
    results = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True,
                             text=True)
    statuses: dict[str, str] = {}
    for line in results.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            statuses[name] = status.strip()
    if done.returncode != 0 or results.returncode != 0 or not statuses:  # never a pass for a run that did not happen
        raise SystemExit(f"{module}: mutmut did not run (exit {done.returncode}/{results.returncode}, "
                         f"{len(statuses)} mutants): see {work / 'run.log'} (make mutate installs mutmut)")
    survivors = []
    alive = sorted(name for name, status in statuses.items() if status in ("survived", "no tests"))
    diffs = subprocess.run([sys.executable, "-c", DIFFS], cwd=work, env=env, input=json.dumps(alive),
                           capture_output=True, text=True)
    changed_lines = json.loads(diffs.stdout or "{}")
    for name in alive:
        changed = changed_lines.get(name, "?")
        survivors.append(f"{module}: {name.split('__mutmut_')[0].split('.')[-1]}: {statuses[name]}: {changed}")
    killed = sum(1 for s in statuses.values() if s in ("killed", "timeout", "segfault", "suspicious"))
    return len(statuses), killed, survivors


def main(argv: list[str]) -> int:
    update = "--update-baseline" in argv
    override = next((a.split("=", 1)[1].split(",") for a in argv if a.startswith("--tests=")), None)
    modules = [a for a in argv if not a.startswith("--")] or list(TARGETS)
    if override is not None:  # e.g. the score "before": only the tests that existed then
        for module in modules:
            TARGETS[module] = override
    baseline = BASELINE.read_text().splitlines() if BASELINE.exists() else []
    known = {line.split(EXPLAINED, 1)[0].rstrip() for line in baseline if line.strip() and not line.startswith("#")}
    new_lines, fresh = [], []
    for module in modules:
        total, killed, survivors = run(module)
        score = 100.0 * killed / total if total else 100.0
        print(f"{module}: {total} mutants, {killed} killed, {len(survivors)} survived ({score:.1f} %)")
        for line in survivors:
            marker = "" if line in known else "  NEW"
            print(f"  {line}{marker}")
            if line not in known:
                fresh.append(line)
        new_lines += survivors
    if update:
        kept = [line for line in baseline if not any(line.startswith(m + ":") for m in modules)]
        explained = {line.split(EXPLAINED, 1)[0].rstrip(): line for line in baseline if EXPLAINED in line}
        BASELINE.write_text("\n".join(kept + [explained.get(x, x + EXPLAINED + "TODO explain") for x in new_lines]) + "\n")
        return 0
    if fresh:
        print(f"{len(fresh)} surviving mutant(s) not in {BASELINE.relative_to(ROOT)}: kill them with a test, or add "
              "them there with the reason they cannot change a status, an exit code or what is on disk")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
