"""The unit of validation noise: the design effect of images that share a source against a hand computation
(sources of m images all right or all wrong: deff = m k / (k - 1); independent images: about 1), the cluster
bootstrap and Obuchowski's clustered McNemar test against the image-level ones, the cluster-robust interval of
one run's top-1, the sources of a shipped fusion run derived from its record (render i is of digit i % 360), and a
real run writing ``source`` into val_predictions.npz and ``val_units`` into results.json."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from analysis.runs.predictions import Predictions, pairing_problem, read_predictions
from analysis.stats import compare
from analysis.stats.flags import binomial_sd, last_epochs_trend
from analysis.stats.units import design_effect, run_design_effect, table_design_effect
from src.data import build_data, validation_sources
from src.data.digits import digits_split
from src.train.loop import train
from src.train.record_io import PREDICTIONS_FILE, RESULTS_FILE, write_predictions

from conftest import ROOT, compose_config

SHIPPED_FUSION = ROOT / "results" / "cpu" / "fusion"
SHIPPED_RUN = SHIPPED_FUSION / "fusion=cross,seed=0"


def clustered_correctness(sources: int, per_source: int, right_sources: int) -> tuple:
    """``per_source`` images of each of ``sources`` sources in the proxy's order (image i of source i % k),
    every image of the first ``right_sources`` sources right and of the others wrong."""
    source = np.arange(sources * per_source) % sources
    return source < right_sources, source


def test_sources_that_are_all_right_or_all_wrong_have_the_design_effect_of_their_size():
    correct, source = clustered_correctness(sources=50, per_source=8, right_sources=30)
    effect = design_effect(correct, source)
    p, k, n = 0.6, 50, 400
    # by hand: each source's total is 8 or 0; sum (y_i - p m_i)^2 = 30 (8 - 4.8)^2 + 20 (0 - 4.8)^2
    cluster = k / (k - 1) * (30 * (8 - 4.8) ** 2 + 20 * 4.8 ** 2) / n ** 2
    assert effect.deff == pytest.approx(cluster / (p * (1 - p) / n)) == pytest.approx(8 * k / (k - 1))
    assert (effect.images, effect.units) == (400, 50)
    assert effect.icc == pytest.approx((8 * k / (k - 1) - 1) / 7)  # ~1: the images of a source agree
    assert effect.se_binomial == pytest.approx(100 * math.sqrt(0.24 / 400))
    assert effect.se_cluster == pytest.approx(100 * math.sqrt(cluster))
    assert effect.effective_images == pytest.approx(n / effect.deff)


def test_independent_images_grouped_into_sources_have_a_design_effect_near_one():
    rng = np.random.default_rng(0)
    source = np.arange(360 * 28) % 360
    effects = [design_effect(rng.random(len(source)) < 0.9, source).deff for _ in range(50)]
    assert np.mean(effects) == pytest.approx(1.0, abs=0.03)  # the estimate's sd over draws is ~0.08
    assert design_effect(np.arange(100) % 3 == 0, np.arange(100)).deff == pytest.approx(100 / 99)  # n / (n - 1)


def paired_sets(seed: int = 0):
    """Two runs over 360 sources x 8 images: whether a source is right is drawn per source (so its images
    agree), the second run right on more sources."""
    rng = np.random.default_rng(seed)
    source = np.arange(360 * 8) % 360
    target = source % 10
    ref_right, row_right = rng.random(360) < 0.80, rng.random(360) < 0.84
    reference = Predictions(target, np.where(ref_right[source], target, (target + 1) % 10), source)
    other = Predictions(target, np.where(row_right[source], target, (target + 1) % 10), source)
    return reference, other


def test_sources_are_resampled_and_tested_as_the_unit_and_widen_the_interval():
    reference, other = paired_sets()
    clustered = compare.over_images(reference, other)
    naive = compare.over_images(Predictions(reference.target, reference.pred),
                                Predictions(other.target, other.pred))
    assert naive.test == compare.MCNEMAR and clustered.test == compare.CLUSTERED
    assert clustered.note.startswith("over 360 sources (2,880 validation images")
    assert clustered.diff == pytest.approx(naive.diff)
    width, naive_width = clustered.ci_high - clustered.ci_low, naive.ci_high - naive.ci_low
    assert width > 2 * naive_width  # 8 images of a source agree: sqrt(deff) ~ 2.8
    assert clustered.p_value > naive.p_value
    # Obuchowski's statistic by hand: D_i per source, d = sum D / n, SE^2 = k/(k-1) sum (D_i - m_i d)^2 / n^2
    per_image = other.correct.astype(float) - reference.correct.astype(float)
    totals = np.bincount(reference.source, weights=per_image)
    d = totals.sum() / len(per_image)
    se = math.sqrt(360 / 359 * np.sum((totals - 8 * d) ** 2) / len(per_image) ** 2)
    assert clustered.p_value == pytest.approx(2 * stats.norm.sf(abs(d / se)))


def test_the_cluster_bootstrap_with_every_image_its_own_source_is_the_image_bootstrap():
    reference, other = paired_sets()
    own = np.arange(len(reference.target))
    cluster = compare.over_sources(reference, other, own)
    naive = compare.over_images(Predictions(reference.target, reference.pred),
                                Predictions(other.target, other.pred))
    assert (cluster.ci_low, cluster.ci_high) == pytest.approx((naive.ci_low, naive.ci_high))  # the same draws
    # and files whose sources are all distinct (data.limit_val under 360) keep McNemar
    assert compare.over_images(Predictions(reference.target, reference.pred, own),
                               Predictions(other.target, other.pred, own)).test == compare.MCNEMAR


def test_one_runs_interval_is_cluster_robust_where_images_share_a_source():
    correct, source = clustered_correctness(sources=50, per_source=8, right_sources=30)
    target = np.zeros(len(correct), np.int64)
    clustered = Predictions(target, np.where(correct, 0, 1), source)
    low, high = compare.accuracy_interval(clustered)
    se = design_effect(correct, source).se_cluster
    assert (low, high) == pytest.approx((60 - 1.959964 * se, 60 + 1.959964 * se))
    exact_low, exact_high = compare.accuracy_interval(Predictions(target, clustered.pred))
    assert high - low > 2.5 * (exact_high - exact_low)


def test_the_sources_of_a_shipped_fusion_run_are_each_renders_held_out_digit():
    predictions = read_predictions(SHIPPED_RUN)
    with np.load(SHIPPED_RUN / PREDICTIONS_FILE) as saved:
        assert "source" not in saved.files  # written before sources were saved: derived from results.json
    assert isinstance(predictions, Predictions)
    np.testing.assert_array_equal(predictions.source, np.arange(10080) % 360)
    _, (_, held_out_targets) = digits_split(0.2, 0)
    np.testing.assert_array_equal(predictions.target, held_out_targets[predictions.source])
    record = json.loads((SHIPPED_RUN / RESULTS_FILE).read_text())
    np.testing.assert_array_equal(validation_sources(OmegaConf.create(record["config"]["data"]), 10080),
                                  predictions.source)
    effect = run_design_effect(SHIPPED_RUN)
    assert effect.units == 360 and effect.deff > 2  # the measured one: docs/analysis.md, "The unit of noise"


def test_an_old_file_without_a_record_still_reads_with_every_image_its_own_unit(tmp_path):
    shutil.copy(SHIPPED_RUN / PREDICTIONS_FILE, tmp_path / PREDICTIONS_FILE)
    predictions = read_predictions(tmp_path)
    assert isinstance(predictions, Predictions) and predictions.source is None and not predictions.clustered
    assert run_design_effect(tmp_path) is None and table_design_effect([tmp_path]) is None
    mixed = table_design_effect([tmp_path, SHIPPED_RUN])
    assert mixed == run_design_effect(SHIPPED_RUN)  # the mean over the runs that have sources


def test_runs_from_other_sources_do_not_pair(tmp_path):
    target = np.arange(20) % 10
    first = Predictions(target, target, np.arange(20) % 10)
    second = Predictions(target, target, np.arange(20) % 5)
    assert "sources differ" in pairing_problem(first, second)
    assert pairing_problem(first, Predictions(target, target)) is None


def test_the_flags_noise_scales_by_the_runs_design_effect():
    assert binomial_sd(90.0, 10080, deff=4.0) == pytest.approx(2 * binomial_sd(90.0, 10080))
    curve = [{"epoch": epoch, "top1": top1} for epoch, top1 in enumerate([88.0, 89.0, 90.0])]
    plain, clustered = last_epochs_trend(curve, 3, 10080), last_epochs_trend(curve, 3, 10080, deff=9.0)
    assert clustered.rise == plain.rise and clustered.noise_se == pytest.approx(3 * plain.noise_se)


def test_the_writer_refuses_sources_that_are_not_one_per_image(tmp_path):
    with pytest.raises(ValueError, match="3 validation sources for 4 predictions"):
        write_predictions(tmp_path, {"target": np.zeros(4, np.int64)}, np.zeros(3, np.int64))


def test_the_validation_loader_knows_its_sources_through_limit_val():
    cfg = compose_config(["data=multiscale_digits", "model=fusionvit_micro_32", "data.limit_val=720"])
    data = build_data(cfg.data, 32, 32, 64, seed=0)
    np.testing.assert_array_equal(data.val_sources, np.arange(720) % 360)
    assert data.val_units == 360
    digits = build_data(compose_config(["data=digits", "data.limit_val=64"]).data, 32, 32, 64, seed=0)
    assert digits.val_sources is None and digits.val_units is None


def test_a_real_run_writes_its_sources_and_its_independent_units(tmp_path):
    cfg = compose_config(["logger=none", "data=multiscale_digits", "model=fusionvit_micro_32", "train.epochs=1",
                          "data.limit_train=64", "data.limit_val=720", "train.batch_size=32", "train.threads=1"])
    train(cfg, tmp_path, {}, {}, None, "test")
    record = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert record["data_sizes"] == {"num_train": 64, "num_val": 720, "val_units": 360}
    with np.load(tmp_path / PREDICTIONS_FILE) as saved:
        assert saved["source"].dtype == np.int64
        np.testing.assert_array_equal(saved["source"], np.arange(720) % 360)
    predictions = read_predictions(Path(tmp_path))
    assert predictions.clustered and predictions.units == 360
