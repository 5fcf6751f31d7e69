"""Every row of the paper's Tables 2 (CrossViT and its DeiT baselines), 4, 6 and 7 (analysis/paper/crossvit_paper.yaml),
built from the same Hydra overrides the presets train, has the paper's parameter count and FLOPs within tolerance, or
a documented exception that still holds."""
import pytest

from analysis.paper import rows as paper

ROWS = paper.paper_rows()


def test_the_transcription_covers_every_row_of_tables_2_6_and_7():
    counts = {table: sum(row.table == table for row in ROWS) for table in ("2", "6", "7")}
    assert counts == {"2": 12, "6": 5, "7": 6}
    assert {row.row for row in ROWS if row.table == "2" and row.row.startswith("DeiT")} == {"DeiT-Ti", "DeiT-S",
                                                                                            "DeiT-B"}
    # Table 2's throughput column (images/s, batch 64, V100), every row; Table 4's for its 384-px rows
    assert all(row.throughput is not None for row in ROWS if row.table in ("2", "4"))
    table_2 = {row.row: row.throughput for row in ROWS if row.table == "2"}
    assert (table_2["DeiT-S"], table_2["CrossViT-S"], table_2["DeiT-B"]) == (966, 690, 314)
    assert {row.row for row in ROWS if row.table == "6"} == {"None", "All-Attention", "Class Token", "Pairwise",
                                                              "Cross-Attention"}
    assert all(row.top1_l is not None and row.top1_s is not None for row in ROWS if row.table == "6")


def test_the_deit_rows_are_single_branch_models_within_tolerance():
    deit = [row for row in ROWS if row.row.startswith("DeiT")]
    assert all(any(o.startswith("model=fusionvit_deit_") for o in row.overrides) for row in deit)
    records = paper.measure_rows(deit)
    assert records["ok"].all(), records[["row", "ours_params_m", "ours_gmacs"]]
    assert list(records["ours_params_m"].round(2)) == [5.72, 22.05, 86.57]  # timm's deit_*_patch16_224


@pytest.fixture(scope="module")
def comparison():  # every row composed, built and counted on the meta device: about 13 s
    return paper.measure_rows(ROWS)


@pytest.mark.slow  # the comparison fixture: every row composed, built and counted on the meta device, ~13 s
@pytest.mark.parametrize("index", range(len(ROWS)), ids=[f"table{r.table}-{r.row}" for r in ROWS])
def test_row_is_within_tolerance_or_a_documented_exception_that_still_misses(comparison, index):
    record = comparison.iloc[index]
    if isinstance(record["exception"], str):
        assert not record["ok"], f"{record['row']} now matches the paper: drop its exception"
    else:
        assert record["ok"], (record["row"], record["ours_params_m"], record["ours_gmacs"])


@pytest.mark.slow  # the comparison fixture
def test_all_attention_exception_is_the_params_alone(comparison):
    record = comparison[comparison["row"] == "All-Attention"].iloc[0]
    assert record["flops_ok"] and not record["params_ok"]
    assert record["ours_params_m"] == pytest.approx(26.85, abs=0.01)


def test_tolerance_is_two_percent_of_params_and_rounding_plus_two_percent_of_flops():
    row = paper.PaperRow(table="x", row="x", overrides=[], params_m=10.0, gflops=5.6)
    assert paper.within_tolerance(row, {"params_m": 10.199, "gmacs": 5.6 + 0.05 + 0.111})["ok"]
    assert not paper.within_tolerance(row, {"params_m": 10.21, "gmacs": 5.6})["params_ok"]
    assert not paper.within_tolerance(row, {"params_m": 10.0, "gmacs": 5.6 + 0.05 + 0.114})["flops_ok"]
    assert paper.printed_decimals(9.03) == 2 and paper.printed_decimals(2.0) == 1


def test_cli_prints_every_row_and_rejects_an_unknown_table(tmp_path, capsys):
    assert paper.main(["--table", "7", "--out", str(tmp_path / "paper.md")]) == 0
    text = (tmp_path / "paper.md").read_text()
    assert all(row.row in text for row in ROWS if row.table == "7")
    assert paper.main(["--table", "9"]) == 2
    assert "no table 9" in capsys.readouterr().err
