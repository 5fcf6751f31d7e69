"""``python -m src.eval SOURCE [KEY=VALUE ...] [--set NAME [KEY=VALUE ...]] ... [--out DIR] [--weights last|best]``:
scores a run's weights without training, on one or more test sets, side by side.

SOURCE is a run dir of this harness (its ``last.pt``, or ``best.pt`` with ``--weights best``) or one of its
checkpoints. Each test set is the run's own config with overrides: the overrides before the first ``--set`` apply to
every set; each ``--set NAME`` adds its own (``--set other data=imagefolder data.root=~/photos``). Without ``--set``
the one set is ``val``: the run's own validation data. Only the data and how to run may change (``data``,
``data.*``, ``train.device``, ``train.amp``, ``train.threads``, ``train.eval_batch_size``): the model is the
checkpoint's.

Each set gets ``OUT/NAME/results.json`` in the run record's schema (``status: completed``, ``final`` holding top-1,
top-5, loss and each branch's top-1, an ``evaluation`` entry with the per-class top-1 and the source), so
``python -m analysis.collate OUT`` tables it, and ``val_predictions.npz``. Every set is checked (its classes against
the checkpoint's, its files) before any is scored."""
import argparse
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("src.eval")
CONF = Path(__file__).resolve().parents[1] / "conf"
# what a test set may change: the data, and how to run (never the model, which is the checkpoint's)
MAY_CHANGE = ("data", "train.device", "train.amp", "train.threads", "train.eval_batch_size")


class EvalError(ValueError):
    """Bad input to the eval command: one line naming the problem and the fix."""


@dataclass
class TestSet:
    name: str
    overrides: List[str]
    cfg: Optional[DictConfig] = None
    class_names: Optional[List[str]] = None


def parse(argv: List[str]) -> Tuple[argparse.Namespace, List[TestSet]]:
    parser = argparse.ArgumentParser(prog="python -m src.eval", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("source", help="a run dir of this harness, or a last.pt / best.pt it wrote")
    parser.add_argument("--out", type=Path, help="where the sets' records go (default eval/DATE/TIME)")
    parser.add_argument("--weights", choices=("last", "best"), default="last",
                        help="for a run dir: last.pt (the final weights, what its record's final reports) or best.pt")
    parser.add_argument("--set", dest="sets", action="append", nargs="+", metavar=("NAME", "KEY=VALUE"),
                        help="a test set: its name, then its overrides")
    args, common = parser.parse_known_args(argv)
    unknown = [item for item in common if "=" not in item]
    if unknown:
        parser.error(f"{unknown[0]!r} is not an override (KEY=VALUE) nor an option: see --help")
    sets = [TestSet(name, common + list(overrides)) for name, *overrides in (args.sets or [["val"]])]
    names = [item.name for item in sets]
    if len(set(names)) < len(names) or any("=" in name or "/" in name for name in names):
        parser.error(f"--set names must be distinct words, each the name of its folder: got {', '.join(names)}")
    return args, sets


def source_checkpoint(source: str, weights: str) -> Path:
    from src.train.checkpoint import BEST, LAST

    path = Path(source).expanduser()
    if path.is_dir():
        path = path / (LAST if weights == "last" else BEST)
        if not path.is_file():
            raise EvalError(f"{source} holds no {path.name}: give a run dir of this harness (it writes last.pt after "
                            f"each epoch, best.pt on a better top-1) or the path of a checkpoint")
    elif not path.is_file():
        raise EvalError(f"{source} does not exist: give a run dir of this harness or the path of a checkpoint it wrote")
    return path


def source_config(path: Path, checkpoint: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the run's resolved config, its record or {}): from the checkpoint, or the results.json beside it."""
    from src.train.warm_start import config_beside, record_beside

    record = record_beside(path)
    config = checkpoint.get("config") or config_beside(path, checkpoint.get("config_hash", ""), record)
    if not config:
        raise EvalError(f"{path} records no config and has no results.json of its run beside it: give the run dir it "
                        f"was written in (src.eval needs the run's model and data settings)")
    return config, record


def compose_set(base: Dict[str, Any], overrides: List[str]) -> DictConfig:
    """The run's config with a set's overrides: ``data=NAME`` takes ``conf/data/NAME.yaml`` (over the schema's
    defaults), ``KEY=VALUE`` sets a key; a key that does not exist is an error, as in ``src.run``."""
    from hydra import compose, initialize_config_dir

    from src.config import register_configs

    register_configs()  # the schema and the model options, as src.run composes with
    cfg = OmegaConf.create(base)
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+")
        if not (key in MAY_CHANGE or key.startswith("data.")):
            raise EvalError(f"{override}: a test set changes only the data and how to run ({', '.join(MAY_CHANGE)}, "
                            f"data.*); the model is the checkpoint's")
        if key == "data":
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                cfg.data = compose("config", overrides=[f"data={value}"]).data
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent)
        if node is None or leaf not in node:
            raise EvalError(f"{override}: {key} is not a config key (python -m src.run --cfg job lists them)")
        OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v)
    return cfg


def check_sets(sets: List[TestSet], num_classes: int, trained: Optional[List[str]]) -> None:
    """Every set's data on disk and its classes: the checkpoint's count, and where its run recorded their names
    (``classes``), the same names in the same order."""
    from src.data import eval_class_names

    for test_set in sets:
        test_set.class_names = names = eval_class_names(test_set.cfg.data)
        if len(names) != num_classes or (trained is not None and names != trained):
            known = f" ({shown(trained)})" if trained else ""
            raise EvalError(f"test set {test_set.name} (data={test_set.cfg.data.name}, root {test_set.cfg.data.root}) "
                            f"has {len(names)} classes ({shown(names)}) but the checkpoint was trained on "
                            f"{num_classes}{known}: evaluate on data with the checkpoint's classes, in the same label "
                            f"order")


def shown(names: List[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    args, sets = parse(sys.argv[1:] if argv is None else argv)
    try:
        return evaluate_sets(args, sets)
    except (EvalError, ValueError, FileNotFoundError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1


def evaluate_sets(args: argparse.Namespace, sets: List[TestSet]) -> int:
    from src.train.checkpoint import load

    path = source_checkpoint(args.source, args.weights)
    checkpoint = load(path)
    base, record = source_config(path, checkpoint)
    for test_set in sets:
        test_set.cfg = compose_set(base, test_set.overrides)
    num_classes = checkpoint["model"]["head.0.weight"].shape[0]
    check_sets(sets, num_classes, record.get("classes"))
    out = args.out or Path("eval") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    rows = [score(test_set, path, checkpoint, record, out, num_classes) for test_set in sets]
    print(side_by_side(rows, path))
    return 0


def score(test_set: TestSet, path: Path, checkpoint: Dict[str, Any], record: Dict[str, Any], out: Path,
          num_classes: int) -> Dict[str, Any]:
    """One set: the model with the checkpoint's weights (strict: every tensor), its data, one evaluation pass."""

    from src.data import build_eval_data, dataset_sources
    from src.train.build import build_model, input_size, resolve_amp, resolve_device
    from src.train.engine import evaluate
    from src.train.process import set_threads
    from src.train.record_io import write_predictions, write_results

    cfg = test_set.cfg
    started = time.perf_counter()
    set_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    amp = resolve_amp(cfg.train.amp, device)
    model_cfg = OmegaConf.merge(cfg, {"model": {"pretrained": None}})
    model = build_model(model_cfg, num_classes)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise EvalError(f"{path} does not fit the model its config builds ({cfg.model.name}, fusion={cfg.fusion.name}):"
                        f" {str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else error}; "
                        f"was the config changed after it was written?") from error
    model.to(device)
    size = input_size(cfg, model.img_size)
    loader, to_device = build_eval_data(cfg.data, size, cfg.train.eval_batch_size or 2 * cfg.train.batch_size, device)
    metrics = evaluate(model, to_device(loader), device, amp)
    run_dir = out / test_set.name
    run_dir.mkdir(parents=True, exist_ok=True)
    sources = dataset_sources(loader.dataset)  # renders of one digit share it: the unit of the set's noise
    write_predictions(run_dir, metrics["predictions"], sources)
    result = eval_record(test_set, path, checkpoint, record, metrics, run_dir, device,
                         time.perf_counter() - started, None if sources is None else len(set(sources.tolist())))
    write_results(run_dir, result)
    log.info("%s: top-1 %.2f, top-5 %.2f on %d images; %s", test_set.name, metrics["top1"], metrics["top5"],
             len(metrics["predictions"]["target"]), run_dir / "results.json")
    return {"set": test_set.name, "images": len(metrics["predictions"]["target"]), "top1": metrics["top1"],
            "top5": metrics["top5"], "top1_branch": metrics["top1_branch"], "dir": str(run_dir)}


def per_class(predictions: Dict[str, Any], names: List[str]) -> Dict[str, Dict[str, float]]:
    """Each class's top-1 (percent) and image count."""
    target, pred = predictions["target"], predictions["pred"]
    result = {}
    for index, name in enumerate(names):
        mask = target == index
        count = int(mask.sum())
        result[name] = {"top1": float((pred[mask] == index).mean() * 100) if count else float("nan"), "images": count}
    return result


def eval_record(test_set: TestSet, path: Path, checkpoint: Dict[str, Any], record: Dict[str, Any],
                metrics: Dict[str, Any], run_dir: Path, device, wall_time_s: float,
                val_units: Optional[int] = None) -> Dict[str, Any]:
    """The set's results.json: the run record's schema, ``history`` empty (nothing trained), ``final`` this pass."""
    from src.train.provenance import provenance
    from src.train.record import data_sizes, mark_completed, new_record

    config = OmegaConf.to_container(test_set.cfg, resolve=True)
    choices = {**(record.get("choices") or {}), "data": test_set.cfg.data.name}
    result = new_record(config, choices, list(record.get("overrides") or []) + test_set.overrides,
                        config.get("seed", 0), run_dir)
    for key in ("model", "params_m", "gmacs", "fusion_params_m", "fusion_gmacs"):
        result[key] = record.get(key)
    result.update(data_sizes=data_sizes(0, len(metrics["predictions"]["target"]), val_units),
                  provenance=provenance(device), classes=test_set.class_names)
    row = {"top1": metrics["top1"], "top5": metrics["top5"], "val_loss": metrics["loss"],
           "top1_branch": metrics["top1_branch"]}
    mark_completed(result, row, None, wall_time_s)
    state = checkpoint.get("state") or {}
    result["evaluation"] = {"source": str(path.resolve()), "set": test_set.name,
                            "trained_epochs": state.get("epoch"), "trained_steps": state.get("step"),
                            "per_class": per_class(metrics["predictions"], test_set.class_names)}
    return result


def side_by_side(rows: List[Dict[str, Any]], path: Path) -> str:
    branches = max(len(row["top1_branch"]) for row in rows)
    header = ["set", "images", "top-1", "top-5", *[f"top-1 branch {b}" for b in range(branches)], "record"]
    lines = [[row["set"], str(row["images"]), f"{row['top1']:.2f}", f"{row['top5']:.2f}",
              *[f"{top1:.2f}" for top1 in row["top1_branch"]], f"{row['dir']}/results.json"] for row in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    text = [f"{path}:"] + ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                           for line in [header, *lines]]
    return "\n".join(text)


if __name__ == "__main__":
    sys.exit(main())
