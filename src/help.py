"""The lists of ``python -m src.run --help`` (conf/hydra/help/fusionvit.yaml), made from conf/ when the help is
printed, through the ``fusionvit_help`` resolver: the groups and their options (a preset group, added with ``+``,
apart; the overlays presets are built from, such as ``experiment/cpu/``, are not choices and are not listed), the
launchers of ``-m`` and the keys people change most."""
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = ("experiment", "scales")  # added with +GROUP=NAME: no default holds them
LAUNCHERS = ("hydra/launcher=OPTION for -m: (none) one job after another here; parallel one job per core (joblib, "
             "make run's; give train.threads=1); local a process per job (submitit); slurm SLURM jobs (submitit; "
             "hydra.launcher.partition=...)")
KEYS = ("Keys most changed: seed  train.epochs  train.batch_size  train.device=auto|cpu|cuda|cuda:N  train.threads  "
        "train.amp  optim.lr  data.root  data.num_classes (null: the data's)  model.pretrained=RUN_DIR|PATH|hub  "
        "train.resume=auto|never|PATH  logger.mode=auto|offline|online|disabled")


def options(group: str) -> list:
    if group == "model":
        from src.variant_table import VARIANTS

        return sorted(VARIANTS)
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))  # not the overlay folders below it


def groups(kind: str) -> str:
    names = sorted(path.name for path in CONF.iterdir() if path.is_dir() and path.name not in ("hydra", "tune"))
    if "model" not in names:
        names.append("model")
    chosen = [name for name in sorted(names) if (name in PRESETS) == (kind == "presets")]
    return "\n".join(f"{name}: {', '.join(options(name))}" for name in chosen)


def fusionvit_help(part: str) -> str:
    return {"groups": lambda: groups("groups"), "presets": lambda: groups("presets"),
            "launchers": lambda: LAUNCHERS, "keys": lambda: KEYS}[part]()
