"""The loader part of the benchmark on a tiny setting: checks the report against the files it wrote and against
its own recorded times, and that the pipelines it times are the harness's; not the speed."""
import json
import math
import os
import statistics
from pathlib import Path

import pytest
from PIL import Image
from test_bench import markdown_rows

from src.bench import jpegs, loader
from src.bench.__main__ import main
from src.data import build_transforms

from conftest import compose_config

IMAGES, CLASSES, WIDTH, HEIGHT, BATCH, BATCHES = 8, 2, 64, 48, 4, 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One run of ``--parts loader``: (its JSON, its Markdown, the folder of JPEGs it wrote)."""
    out = tmp_path_factory.mktemp("bench")
    jpegs = out / "jpegs"
    main(["--parts", "loader", "--loader-root", str(jpegs), "--loader-images", str(IMAGES),
          "--loader-classes", str(CLASSES), "--loader-size", f"{WIDTH}x{HEIGHT}", "--loader-workers", "0,1",
          "--loader-batch", str(BATCH), "--loader-batches", str(BATCHES), "--out", str(out), "--name", "tiny",
          "--matmul-n", "64"])
    return json.loads((out / "tiny.json").read_text())["loader"], (out / "tiny.md").read_text(), jpegs


def test_loader_rates_follow_from_the_recorded_times_and_workers_needed_from_the_rates(tiny):
    r, _, _ = tiny
    assert r["cpus"] == len(os.sched_getaffinity(0)) and r["image_size"] == 240 and r["target_img_s"] == 1350
    for name, p in r["pipelines"].items():
        assert [run["workers"] for run in p["runs"]] == [0, 1]
        for run in p["runs"]:
            assert run["warmup_batches"] == max(1, run["workers"]) and run["warmup_s"] > 0
            assert run["batch_shape"] == [BATCH, 3, 240, 240]  # the model's image size, whatever the JPEG's
            assert run["img_s"] > 0 and math.isclose(run["img_s"], BATCHES * BATCH / run["timed_s"])
            assert math.isclose(run["per_worker_img_s"], run["img_s"] / max(1, run["workers"]))
        one_worker = p["runs"][1]  # the only count with workers: the per-worker rate is its own
        assert (p["per_worker_from"], p["per_worker_img_s"]) == (1, one_worker["img_s"]), name
        assert p["workers_needed"] == math.ceil(1350 / one_worker["img_s"]) >= 1


def test_loader_reports_the_files_it_wrote(tiny):
    r, _, jpegs = tiny
    assert (r["pipelines"]["train"]["split"], r["pipelines"]["eval"]["split"]) == ("train", "val")
    for p in r["pipelines"].values():
        files = sorted((jpegs / p["split"]).glob("*/*.jpg"))
        assert len(files) == p["images"] == IMAGES
        assert len({f.parent for f in files}) == CLASSES
        assert math.isclose(p["mean_kb"], statistics.fmean(f.stat().st_size for f in files) / 1024)
        assert {Image.open(f).size for f in files} == {(WIDTH, HEIGHT)}
    d = r["decode"]
    assert d["files"] == 2 * IMAGES and d["pil_img_s"] > 0 and d["torchvision_img_s"] > 0
    slower, faster = sorted([d["pil_img_s"], d["torchvision_img_s"]])
    assert d["faster"] == ("pil" if d["pil_img_s"] == faster else "torchvision")
    assert math.isclose(d["ratio"], faster / slower)


def test_loader_times_the_harness_pipelines(tiny):
    """The transforms timed are those a run of data=imagenet with a 240 px CrossViT builds, composed apart here."""
    r, _, _ = tiny
    cfg = compose_config(["data=imagenet", "model=fusionvit_tiny_240"])
    train, evaluation = build_transforms(cfg.data, cfg.model.img_size)
    assert r["pipelines"]["train"]["transform"] == repr(train)
    assert r["pipelines"]["eval"]["transform"] == repr(evaluation)
    assert "RandAugment" in repr(train) and "CenterCrop(size=(240, 240))" in repr(evaluation)


def test_loader_markdown_shows_the_json_numbers(tiny):
    r, md, _ = tiny
    rows = markdown_rows(md, "Loader: the harness's ImageNet pipelines")
    expected = [[name, str(run["workers"]), f"{run['img_s']:.1f}", f"{run['per_worker_img_s']:.1f}",
                 f"{run['warmup_s']:.2f}"] for name, p in r["pipelines"].items() for run in p["runs"]]
    assert rows == expected
    rows = markdown_rows(md, "Loader workers for 1350 img/s")
    assert rows == [[name, p["split"], str(IMAGES), f"{p['mean_kb']:.1f}", f"{p['per_worker_img_s']:.1f}",
                     str(p["per_worker_from"]), str(p["workers_needed"])] for name, p in r["pipelines"].items()]
    decode = [row[1] for row in markdown_rows(md, "Loader JPEG decode")]
    assert decode == [f"{r['decode']['pil_img_s']:.1f}", f"{r['decode']['torchvision_img_s']:.1f}"]
    assert "crossvit_tiny_240 AMP training speed on one RTX 3090" in md and "not measured, no GPU here" in md
    notice = r["decode"]["torchvision_deprecated"]  # torchvision 0.29 deprecates its decoders
    assert notice is None or f"torchvision says: {notice}" in md


def test_workers_needed_takes_the_best_per_worker_rate_with_workers():
    runs = [{"workers": 0, "per_worker_img_s": 200.0}, {"workers": 1, "per_worker_img_s": 90.0},
            {"workers": 2, "per_worker_img_s": 80.0}]
    assert loader.workers_needed(runs, 1350) == {"per_worker_img_s": 90.0, "per_worker_from": 1,
                                                 "workers_needed": 15}
    assert loader.workers_needed(runs[:1], 1350)["workers_needed"] == 7  # the main process alone: ceil(6.75)


def test_written_jpegs_are_imagenet_sized(tmp_path):
    written = loader.write_images(tmp_path, images=2, classes=1, size=loader.IMAGE_WH)
    assert 90 < loader.mean_kb(written["train"] + written["val"]) < 130  # ImageNet's mean is about 110 KB
    with pytest.raises(ValueError, match="ImageFolder needs an image in every class folder"):
        loader.write_images(Path(tmp_path / "few"), images=1, classes=2, size=(8, 8))


def test_the_uint8_pipeline_times_a_cuda_runs_transforms_on_jpegs_already_written(tmp_path):
    """What the GPU check times: the JPEGs its first step wrote (``src.bench.jpegs``), through the transforms a CUDA
    run builds (``prefetch=True``: uint8 out, normalised on the GPU), not the CPU run's float ones."""
    summary = jpegs.write_jpegs(tmp_path, train=4, val=2, classes=2, size=(WIDTH, HEIGHT), processes=1)
    r = loader.bench_loader(str(tmp_path), batch=2, workers=[0], batches=1, decode_rounds=1, pipeline="uint8",
                            existing=True, decode_files=3)
    cfg = compose_config(["data=imagenet", "model=fusionvit_tiny_240"])
    train, evaluation = build_transforms(cfg.data, cfg.model.img_size, prefetch=True)
    assert r["pipelines"]["train"]["transform"] == repr(train) and "Normalize" not in repr(train)
    assert r["pipelines"]["eval"]["transform"] == repr(evaluation)
    for p in r["pipelines"].values():
        assert p["runs"][0]["batch_dtype"] == "torch.uint8" and p["runs"][0]["batch_shape"] == [2, 3, 240, 240]
    assert (r["pipelines"]["train"]["images"], r["pipelines"]["eval"]["images"]) == (4, 2)  # none written anew
    assert (r["classes"], r["image_wh"], r["decode"]["files"]) == (2, [WIDTH, HEIGHT], 3)
    assert summary["mean_kb"] == statistics.fmean(
        f.stat().st_size for f in sorted(tmp_path.glob("*/*/*.jpg"))) / 1024
    assert "the uint8 pipeline of a CUDA run, normalised on the GPU" in "\n".join(loader.to_markdown(r))


def test_existing_jpegs_need_a_root_that_holds_them(tmp_path):
    with pytest.raises(ValueError, match="--loader-existing times the JPEGs under --loader-root: give --loader-root"):
        loader.bench_loader(None, existing=True)
    with pytest.raises(FileNotFoundError, match="no JPEGs in .*train, .*val: write them first"):
        loader.existing_images(tmp_path)


def test_the_jpegs_are_the_same_whatever_the_number_of_processes(tmp_path):
    for processes in (1, 2):
        jpegs.write_jpegs(tmp_path / str(processes), train=3, val=2, classes=2, size=(16, 12), processes=processes)
    one, two = (sorted((tmp_path / str(n)).glob("*/*/*.jpg")) for n in (1, 2))
    assert [p.relative_to(tmp_path / "1") for p in one] == [p.relative_to(tmp_path / "2") for p in two]
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two] and len(one) == 5
    assert json.loads((tmp_path / "1" / "jpegs.json").read_text())["train_images"] == 3
