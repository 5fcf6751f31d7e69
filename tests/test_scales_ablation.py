"""The scales ablation (conf/scales, +experiment=scales_ablation[_cpu]): each row is the model it says, with each
branch alone exactly that branch of the dual model, and the matched-FLOPs row is the whole number of blocks whose
GMACs, recounted here, are nearest the dual cross-attention model's."""
import re
from typing import Dict

import pytest
import torch
import yaml

from analysis.collate import main as collate_main
from analysis.paper import ablations
from analysis.paper.ablations import spec, specs
from analysis.paper.rows import compose_row, measure
from analysis.paper.shipped import results_dir
from analysis.paper.side_by_side import branch_table
from analysis.present.plots import tradeoff_figure
from analysis.runs.local import load_runs
from analysis.stats.ablation import analyse
from analysis.stats.summary import varying_factors
from src.train.build import build_model

CPU = "+experiment=scales_ablation_cpu"
IMAGENET = "+experiment=scales_ablation"


def shapes(*overrides: str) -> Dict[str, tuple]:
    with torch.device("meta"):
        model = build_model(compose_row(list(overrides)))
    return {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}


def branch_alone(dual: Dict[str, tuple], branch: int) -> Dict[str, tuple]:
    """The dual model's parameters of one branch, renamed as a one-branch model names them (branch 0)."""
    patterns = [(rf"^(patch_embed|cls_token|pos_embed|norm|head)\.{branch}(?=\.|$)", r"\1.0"),
                (rf"^(encoders\.\d+\.branches)\.{branch}\.", r"\1.0.")]
    return {re.sub(pattern, renamed, name): shape for name, shape in dual.items()
            for pattern, renamed in patterns if re.match(pattern, name)}


def test_each_branch_alone_is_exactly_that_branch_of_the_dual_model():
    dual = shapes(CPU, "scales=micro_dual_none")
    assert shapes(CPU, "scales=micro_s_branch") == branch_alone(dual, 0)
    assert shapes(CPU, "scales=micro_l_branch") == branch_alone(dual, 1)
    assert len(branch_alone(dual, 0)) + len(branch_alone(dual, 1)) == len(dual)  # no fusion parameters in `none`


def test_the_dual_rows_differ_in_the_fusion_only_and_deit_small_is_table_2s_row():
    none, cross = compose_row([CPU, "scales=micro_dual_none"]), compose_row([CPU, "scales=micro_dual_cross"])
    assert (none.fusion.name, cross.fusion.name) == ("none", "cross") and none.model == cross.model
    assert none.model.name == "fusionvit_micro_p8_32" and none.data.name == "multiscale_digits"
    deit = compose_row([IMAGENET, "scales=deit_small"])
    assert (deit.model.name, deit.fusion.name, deit.data.name) == ("fusionvit_deit_small_224", "none", "imagenet")
    assert measure([IMAGENET, "scales=deit_small"]) == pytest.approx(
        measure(["model=fusionvit_deit_small_224", "fusion=none"]))  # analysis.paper's DeiT-S row
    assert compose_row([IMAGENET, "scales=small_dual_cross"]).model.name == "fusionvit_small_240"


@pytest.mark.parametrize("preset, dual, matched, blocks", [(CPU, "micro_dual_cross", "micro_l_branch_matched", 8),
                                                            (IMAGENET, "small_dual_cross", "deit_small_matched", 15)])
def test_the_matched_row_is_the_depth_whose_flops_are_nearest_the_dual_cross_models(preset, dual, matched, blocks):
    target = measure([preset, f"scales={dual}"])["gmacs"]
    config = compose_row([preset, f"scales={matched}"])
    assert len(config.model.patch_size) == 1 and sum(sum(encoder) for encoder in config.model.depth) == blocks
    by_blocks = {count: measure([preset, f"scales={matched}", f"model.depth={[[1]] * count}"])["gmacs"]
                 for count in range(blocks - 2, blocks + 3)}
    assert by_blocks[blocks] == pytest.approx(measure([preset, f"scales={matched}"])["gmacs"])
    assert min(by_blocks, key=lambda count: abs(by_blocks[count] - target)) == blocks
    assert abs(by_blocks[blocks] / target - 1) < 0.06  # half a block: one is 11% of the proxy's cost, 7% of DeiT-S's


def test_a_one_branch_row_with_a_fusion_fails_before_any_work_naming_the_fix():
    with pytest.raises(Exception, match="fusion=none"):
        shapes(CPU, "scales=micro_l_branch", "fusion=cross")


def shipped_scales():
    collection = load_runs([results_dir("scales")], warn=pytest.fail)
    factors = varying_factors(collection.runs, collection.candidate_factors)
    return analyse(collection.runs, factors, ref="micro_dual_cross", warn=pytest.fail)


def test_a_scales_row_is_named_by_its_conf_scales_option_alone():
    result = shipped_scales()
    assert result.factors == ["scales"]  # fusion and the architecture columns split the runs no further
    assert sorted(result.table["label"]) == sorted(spec("scales").rows)


def test_the_single_scale_rows_are_joined_by_a_line_in_flops_order_and_only_they():
    result = shipped_scales()
    curve = spec("scales").curve
    axes = tradeoff_figure(result, "gmacs", curve).axes[0]
    joined = [line for line in axes.lines if line.get_linestyle() == "--"]
    assert len(joined) == 1
    rows = result.table.set_index("label").loc[curve].sort_values("gmacs")
    assert list(joined[0].get_xdata()) == list(rows["gmacs"] * 1e3)  # M multiply-accumulates on the proxy
    assert list(joined[0].get_ydata()) == list(rows["top1_mean"])
    assert not [line for line in tradeoff_figure(result, "gmacs").axes[0].lines if line.get_linestyle() == "--"]


def test_the_branch_table_leaves_out_one_branch_rows_whose_head_is_the_model(capsys):
    result = shipped_scales()
    branches = branch_table(spec("scales"), result)
    assert list(branches["ours"]) == ["micro_dual_cross", "micro_dual_none"]
    assert (branches["our S-branch"] != "-").all()


def test_collate_draws_the_curve_and_refuses_a_label_no_row_has(tmp_path, capsys):
    shipped = str(results_dir("scales"))
    assert collate_main([shipped, "--curve", "micro_l_branch,micro_s_brnch", "--out", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err
    assert "--curve names no row micro_s_brnch" in error and "micro_s_branch" in error
    assert not (tmp_path / "bad").exists()
    assert collate_main([shipped, "--curve", "micro_s_branch,micro_l_branch", "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "top1_vs_gflops.png").is_file()


def test_an_index_whose_curve_names_a_row_it_lacks_fails_naming_it(tmp_path, monkeypatch):
    index = yaml.safe_load(ablations.SPEC_FILE.read_text())
    index["ablations"]["scales"]["curve"] = ["micro_l_branch", "deit_tiny"]
    (tmp_path / "ablations.yaml").write_text(yaml.safe_dump(index, sort_keys=False, allow_unicode=True))
    monkeypatch.setattr(ablations, "SPEC_FILE", tmp_path / "ablations.yaml")
    with pytest.raises(KeyError, match="ablation scales: curve names deit_tiny, not among its rows"):
        specs()
