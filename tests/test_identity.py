"""A run's identity (``src.identity``): what changes a run's numbers and nothing else, declared with the schema, and
every run this harness ever recorded still recognised as the job it was."""
import functools
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.config import FIELDS, NOT_RECORDED
from src.identity import V1_RUN_ONLY, checkpoint_matches, config_hash, group_hash, identity, same_job, version_1

from conftest import ROOT, compose_config

SHIPPED = sorted((ROOT / "results").rglob("results.json"))


def composed(overrides=()) -> dict:
    return OmegaConf.to_container(compose_config(["+experiment=smoke", *overrides]), resolve=True)


def test_run_only_keys_are_the_ones_marked_so_in_the_schema_and_change_nothing_but_how_to_run():
    marked = {key for key, field in FIELDS.items() if field.metadata.get("run_only")}
    assert {f"train.{key}" for key in V1_RUN_ONLY} <= marked and "logger" in marked
    base = composed()
    for override in ("train.force=true", "train.threads=1", "train.progress=log", "train.resume=never",
                     "train.on_busy=wait", "train.save_checkpoints=false", "train.ckpt_every_steps=5", "logger=none",
                     "logger.project=other"):
        assert same_job(base, composed([override])), override
    for override in ("seed=1", "train.epochs=3", "optim.lr=0.01", "fusion=none", "train.grad_accum_steps=2",
                     "data.remode=pixel", "train.device=cpu"):
        assert not same_job(base, composed([override])), override


def test_a_key_at_what_older_records_trained_with_is_the_same_job_as_those_records():
    """``grad_accum_steps`` defaults to 1 and ``remode`` to const, what a record with null (or without the key)
    trained with."""
    new = composed()
    assert new["train"]["grad_accum_steps"] == 1 and new["data"]["remode"] == "const"
    old = json.loads(json.dumps(new))
    old["train"]["grad_accum_steps"], old["data"]["remode"] = None, None
    assert same_job(new, old)
    del old["train"]["grad_accum_steps"], old["data"]["remode"]
    assert same_job(new, old)
    assert all(field.metadata.get("absent_means", NOT_RECORDED) in (NOT_RECORDED, field.default)
               for field in FIELDS.values())


def test_a_checkpoint_from_before_identity_version_2_still_resumes_its_job():
    new = composed()
    recorded_then = json.loads(json.dumps(new))
    recorded_then["train"]["grad_accum_steps"], recorded_then["data"]["remode"] = None, None
    recorded_then["train"]["deterministic"] = None  # keys added after version 2, as absent then
    recorded_then["data"]["selection"] = None
    # version 1, as checkpoint.identity_hash computed it: train's run-only keys and every null left out
    def without_nulls(value):
        return {k: without_nulls(v) for k, v in value.items() if v is not None} if isinstance(value, dict) else value
    train = {k: v for k, v in recorded_then["train"].items() if k not in V1_RUN_ONLY}
    stored = config_hash(without_nulls({**recorded_then, "train": train}))
    assert version_1(new) == stored and checkpoint_matches(stored, new)
    assert checkpoint_matches(identity(new), new) and checkpoint_matches(None, new)
    assert not checkpoint_matches(stored, composed(["train.epochs=3"]))
    assert not checkpoint_matches(identity(new), composed(["seed=4"]))


def test_one_jobs_seeds_and_devices_share_a_group_and_nothing_else_does():
    base = composed()
    assert group_hash(base) == group_hash(composed(["seed=3", "train.device=cpu", "logger=none"]))
    assert group_hash(base) != group_hash(composed(["optim.lr=0.01"]))


@functools.lru_cache(maxsize=None)
def composed_without_seed(overrides: tuple) -> dict:
    return OmegaConf.to_container(compose_config(overrides), resolve=True)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.parent.relative_to(ROOT / "results")))
def test_every_shipped_run_is_the_job_its_command_composes_today(path: Path):
    """Running a shipped run's command line again finds its run dir completed for this very job, exactly where the
    identity of before version 2 did: no run dir is orphaned or newly claimed."""
    record = json.loads(path.read_text())
    today = {**composed_without_seed(tuple(o for o in record["overrides"] if not o.startswith("seed="))),
             "seed": record["seed"]}
    recognised = same_job(record["config"], today)
    assert recognised == (version_1(record["config"]) == version_1(today))
    assert recognised  # every shipped ablation ran on today's proxy (cross_layers re-run for issue 43)
