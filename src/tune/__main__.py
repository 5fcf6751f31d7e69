"""``python -m src.tune SPACE [--arm KEY=VALUE ...] [--trials N] [--storage URL] [--workers N] [--out DIR]
[--dry-run]``: one Optuna study per arm of the space (``conf/tune/SPACE.yaml`` or a path), each trial a normal
``python -m src.run`` job in ``OUT/ARM/ID``; then per arm ``OUT/ARM/study.json`` and a table, and ``OUT/best.json``.
``python -m src.tune best SPACE`` and ``python -m src.tune report SPACE``: ``src.tune.report``. docs/tuning.md.

Everything is checked before any trial: the space file, its overrides composed with the real config, the metric,
the pruner, the storage (opened). The same command again (or in another terminal, or SLURM job, on a shared
storage) continues each study: finished trials stay, lost ones are retried, the budget is met over all workers.
"""
import argparse
import logging
import signal
import subprocess
import sys
from typing import List, Optional

import optuna

from . import recheck, report, wandb_sweep
from .check import ArmPlan, check_space
from .costs import summary_table, write_summary
from .errors import BadSpace
from .overrides import shell_line, trial_overrides
from .space import SUBCOMMANDS, Space, load_space
from .storage import check_storage, open_storage, open_study
from .worker import run_arm

log = logging.getLogger("src.tune")
DESCRIPTION = ("One Optuna study per arm of a search space (conf/tune/SPACE.yaml, or a path); each trial a normal "
               "python -m src.run job in OUT/ARM/ID, stopped early by the pruner on its per-epoch metric. The same "
               "command again continues every study (docs/tuning.md).")


def show_log_lines() -> None:
    """src.tune's log lines on stderr, each with its worker's pid; other libraries' logging is left alone."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s][tune %(process)d] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def parse(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.tune", description=DESCRIPTION,
                                     epilog="python -m src.tune best SPACE | report SPACE | recheck SPACE | wandb "
                                            "SPACE: the best recipes' overrides | all arms in one table "
                                            "(src/tune/report.py) | the top trials on new seeds (src/tune/recheck.py) "
                                            "| the search as W&B sweep files, bayes with early_terminate "
                                            "(src/tune/wandb_sweep.py)")
    parser.add_argument("space", help="a name in conf/tune (e.g. fusion_proxy), or a path to a space file")
    parser.add_argument("--arm", action="append", default=[], metavar="KEY=VALUE",
                        help="only this arm (repeatable), e.g. --arm fusion=cross")
    parser.add_argument("--trials", type=int, help="complete + pruned trials per arm (default: the space's)")
    parser.add_argument("--storage", help="sqlite:///PATH, postgresql://..., or journal:PATH (default: the space's)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    parser.add_argument("--out", help="the run dirs' folder (default: the space's out)")
    parser.add_argument("--dry-run", action="store_true", help="check everything and print the plan; run nothing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --workers N's processes
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: give 1 or more worker processes")
    return args


def select_arms(plans: List[ArmPlan], chosen: List[str]) -> List[ArmPlan]:
    labels = [plan.label for plan in plans]
    for label in chosen:
        if label not in labels:
            raise BadSpace(f"--arm {label} is not an arm of the space: pick from {', '.join(labels)}")
    return [plan for plan in plans if not chosen or plan.label in chosen]


def print_plan(space: Space, plans: List[ArmPlan]) -> None:
    sample = {key: dist.values()[0] for key, dist in space.dists.items()}
    points = space.grid_points()
    for plan in plans:
        command = trial_overrides(space.base, plan.arm, sample, plan.folder.absolute() / "ID", ["..."])
        print(f"{plan.study}: {space.trials} trials of up to {plan.epochs} epochs in {plan.folder}; pruner "
              f"{space.pruner['type']}, sampler {space.sampler['type']}, metric {space.metric}\n"
              f"  a trial: {shell_line(['python', '-m', 'src.run', *command])}\n"
              f"  a grid: {points or '-'} points x {plan.epochs} epochs = "
              f"{points * plan.epochs if points else '-'} trial-epochs")
    print(f"storage: {space.storage}")


def stop_on_signal(*_) -> None:
    """Ctrl-C, or SIGTERM (a scheduler's stop): the running trial's run saves its checkpoint and the trial is queued
    again (``src.tune.trial``). Later signals are ignored while that happens."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    raise KeyboardInterrupt


def worker_command(args: argparse.Namespace) -> List[str]:
    """This command as one of ``--workers N``'s processes."""
    options = [f"--arm={arm}" for arm in args.arm] + [f"--{key}={getattr(args, key)}" for key in
                                                      ("trials", "storage", "out") if getattr(args, key) is not None]
    return [sys.executable, "-m", "src.tune", args.space, *options, "--worker"]


def run_workers(command: List[str], workers: int) -> int:
    """``--workers N``: N processes running this command as workers, in this process group (Ctrl-C reaches them)."""
    processes = [subprocess.Popen(command) for _ in range(workers)]

    def forward(*_):
        for process in processes:
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    codes = []
    for process in processes:
        while True:
            try:
                codes.append(process.wait())
                break
            except KeyboardInterrupt:  # Ctrl-C reached the workers too: wait for them to stop their trials
                continue
    return max(codes, key=abs)


def summarise(space: Space, plan: ArmPlan, show: bool) -> None:
    summary = write_summary(space, plan, open_study(open_storage(space.storage), plan.study))
    if show:
        print(summary_table(summary) + "\n", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "recheck":
        return recheck.main(argv[1:])
    if argv and argv[0] == "wandb":
        return wandb_sweep.main(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        return report.main(argv[1:], command=argv[0])
    args = parse(argv)
    show_log_lines()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its lines on each trial are ours here, shorter
    try:
        space = load_space(args.space, trials=args.trials, storage=args.storage, out=args.out)
        plans = select_arms(check_space(space), args.arm)
        if args.dry_run:
            check_storage(space.storage)
            print_plan(space, plans)
            return 0
        open_storage(space.storage)
        if not args.worker:  # the studies exist before the workers start
            for plan in plans:
                open_study(open_storage(space.storage), plan.study)
        if args.workers > 1:
            code = run_workers(worker_command(args), args.workers)
            for plan in plans:
                summarise(space, plan, show=True)
        else:
            signal.signal(signal.SIGTERM, stop_on_signal)
            signal.signal(signal.SIGINT, stop_on_signal)
            for plan in plans:
                try:
                    run_arm(space, plan)
                finally:  # also when the arm stopped on its failed runs: study.json holds their reasons
                    summarise(space, plan, show=not args.worker)
            code = 0
        if not args.worker:
            report.write_best(space, report.summaries(space))
        return code
    except BadSpace as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped: the running trials saved their checkpoints and are queued again; the same command "
              "resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
