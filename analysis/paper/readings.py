"""The readings (each notebook's section 5, the README's results paragraph) as templates rendered from the table
they describe, so that no number or verdict in them can drift from it.

A placeholder is ``{KIND:ROW}`` (one of our rows, by its label in the table), ``{KIND:ROW@OTHER}`` (against our row
OTHER instead of the reference: the table is analysed again with OTHER as its reference, as ``python -m
analysis.collate --ref OTHER`` does), or ``{KIND}`` / ``{KIND:@OTHER}`` (the whole table). Paper kinds take our
row too and read the paper row it stands for (``rows`` in experiments/ablations.yaml; crossvit_paper.yaml's
numbers), against the paper's reference row or OTHER's paper row.

Our rows:    top1 "93.35%" (a flagged row: "flagged (why)"), std "0.60", diff "+1.33", ci "[1.0, 1.7]", p (Holm)
             "3e-05", mdd "0.53", verdict (the ``verdict`` column in words, with Δ and its interval), rank "the
             lowest of 6 rows", reach (the paper's gap beside the row's mdd), flops / params "1.47x" (cost
             against the reference), s_head / l_head (each branch's head alone, "61.21%"), lowest (the row's
             lowest seed, "10.28% (seed 4)": did every seed train).
The table:   seeds "13", std_range / mdd_range "0.36 to 0.75", params_range (millions), epochs, order (the rows
             from the highest top-1 down), verdicts (the rows by verdict), reach (every row's), pooled (the
             devices, torch versions and commits its runs pool, ``analysis.runs.records``), validation (the
             validation set's units and one evaluation's SE, ``analysis.stats.units``).
The paper:   paper "81.0%", paper_diff "-0.7", paper_flops / paper_params "1.20x", paper_gflops "5.6",
             paper_s_head / paper_l_head "0.1%".
Tuned rows:  (an ablation with ``tuning``: ``analysis.paper.tuned``) shared_diff (Δ to the row's fusion at the shared
             recipe, seed-paired, "+0.52 [-0.10, +1.14] (p 0.08, 6 seeds)"), shared_rank, best_recipe, search_counts,
             recheck (the best trial on new seeds); the table: search_cost (beside an exhaustive grid's).

``render_reading`` raises ReadingError, naming the placeholder and the ablation, for an unknown kind, a row the
table does not have, or a paper number crossvit_paper.yaml does not hold.
"""
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import pandas as pd

from analysis.present.formatting import bracket, is_missing, number, ratio, signed, signed_points
from analysis.present.tables import difference, p_value
from analysis.runs.local import load_runs
from analysis.runs.records import PROVENANCE_KINDS, blocked_by_seed, same_code
from analysis.stats.ablation import Ablation, analyse
from analysis.stats.summary import varying_factors
from analysis.stats.units import table_design_effect

from .ablations import SPEC_FILE, AblationSpec
from .rows import PaperRow, printed_decimals
from .shipped import results_dir
from .side_by_side import reference_row, rows_of
from .tuned import against_shared, arm_value, recheck_table, studies

PLACEHOLDER = re.compile(r"\{([a-z_0-9]+)(?::([^{}]*))?\}")
VERDICT_ORDER = ("better", "worse", "equivalent", "inconclusive", "not compared")

LIMITS = (
    "**What the proxy can and cannot say.** The proxy trains models of {params_range} million parameters (with the "
    "paper's 3-conv patch embedding) for {epochs} epochs on fresh renders of 1,437 8x8 digits, each drawn 10 to 32 px "
    "wide anywhere on a 32 px canvas, and validates on fixed renders of the held-out digits; the paper trains "
    "models of 7 to 105 million parameters on 1.28 million ImageNet images at 224-240 px for 300 epochs. The cost "
    "ratios are properties of the architectures and carry over in direction, not in size: the proxy's token counts "
    "and widths are far smaller. The accuracy columns say whether a design trains and whether, at this scale and "
    "budget, it helps or hurts by more than the noise of its seeds. On that noise: {validation}; a row's seeds "
    "spread by its std column ({std_range} points here); and the minimum-detectable-difference line under each "
    "table says what the seeds run can resolve. They cannot say what a design does on ImageNet. The paper's "
    "differences are single runs, mostly under a point, printed without error bars: a proxy that does not resolve "
    "them does not contradict them, and one that does measures the proxy, not ImageNet.")


class ReadingError(ValueError):
    """A placeholder that cannot be rendered: the message names it, the ablation and the fix."""


@dataclass
class Collated:
    """An ablation's shipped results as its notebook collates them: the table and the runs behind it."""
    result: Ablation
    runs: pd.DataFrame
    warnings: List[str] = field(default_factory=list)


def analyse_shipped(spec: AblationSpec, runs: pd.DataFrame, factors, ref: Optional[str] = None) -> Ablation:
    """The table as ``notebook.show_shipped_ablation`` computes it (``ref``: another reference, as --ref)."""
    why = None if ref else f"it stands for the paper's {spec.paper_reference}"
    return analyse(runs, factors, ref=ref or spec.reference_label, warn=lambda message: None, ref_reason=why,
                   margin=spec.margin, design=spec.sequential_design)


def collate_shipped(spec: AblationSpec) -> Collated:
    """results/cpu/<name> collated as the notebook's section 3 does, without showing or writing anything."""
    warnings: List[str] = []
    collection = load_runs([results_dir(spec.name)], warn=warnings.append)
    factors = varying_factors(collection.runs, collection.candidate_factors)
    return Collated(analyse_shipped(spec, collection.runs, factors), collection.runs, warnings)


@dataclass
class Context:
    """What one template renders from; ``table(OTHER)`` analyses the runs again with OTHER as the reference, once."""
    spec: AblationSpec
    result: Ablation
    runs: Optional[pd.DataFrame]
    placeholder: str = ""
    _tables: Dict[str, Ablation] = field(default_factory=dict)

    def fail(self, why: str) -> ReadingError:
        return ReadingError(f"{SPEC_FILE.name}, {self.spec.name}: {self.placeholder}: {why}")

    def need_runs(self) -> pd.DataFrame:
        if self.runs is None:
            raise self.fail("needs the table's runs: pass runs= to render_reading (collate_shipped gives them)")
        return self.runs

    def table(self, other: Optional[str] = None) -> Ablation:
        if other is None or other == self.result.reference:
            return self.result
        if other not in self._tables:
            self.label_row(self.result, other)
            self._tables[other] = analyse_shipped(self.spec, self.need_runs(), self.result.factors, ref=other)
        return self._tables[other]

    def label_row(self, result: Ablation, label: Optional[str]) -> pd.Series:
        found = result.table[result.table["label"] == label]
        if not label or found.empty:
            raise self.fail(f"no row {label!r} in the table (its rows: {', '.join(result.table['label'])})")
        return found.iloc[0]

    def row(self, label: Optional[str], other: Optional[str] = None) -> pd.Series:
        return self.label_row(self.table(other), label)

    def paper(self, label: Optional[str], what: str = "top1") -> float:
        """The paper's ``what`` for the paper row our row ``label`` stands for."""
        name = self.spec.rows.get(label or "")
        if name is None:
            raise self.fail(f"our row {label!r} stands for no paper row (rows in {SPEC_FILE.name}: "
                            f"{', '.join(f'{ours}: {paper}' for ours, paper in self.spec.rows.items())})")
        return self.printed(next(row for row in rows_of(self.spec) if row.row == name), what)

    def paper_reference(self, other: Optional[str], what: str = "top1") -> float:
        """The paper's ``what`` for its reference row, or for the paper row our row ``other`` stands for."""
        if other is not None:
            return self.paper(other, what)
        return self.printed(reference_row(self.spec, rows_of(self.spec)), what)

    def printed(self, row: PaperRow, what: str) -> float:
        value = getattr(row, what)
        if value is None:
            raise self.fail(f"the paper prints no {what} for {row.row!r} (crossvit_paper.yaml)")
        return value


def verdict_phrase(row: pd.Series, reference: str) -> str:
    """The ``verdict`` column in words, with Δ and its interval; "no effect" only where it is equivalent."""
    verdict, shown, reference = row["verdict"], difference(row), f"`{reference}`"
    if verdict in ("better", "worse"):
        seeds = row["n"] if is_missing(row.get("resolved_at")) else row["resolved_at"]
        return f"{verdict} than {reference} at {seeds:.0f} seeds ({shown})"
    if verdict == "equivalent":
        return f"equivalent to {reference} within ±{row['margin']:g} points at {row['n']:.0f} seeds ({shown})"
    if verdict == "inconclusive":
        return f"inconclusive against {reference} at {row['n']:.0f} seeds ({shown}): {ruled_out(row)}"
    if verdict == "reference":
        return "the reference"
    return f"not compared ({row['flag'] or row['note']})"


def ruled_out(row: pd.Series) -> str:
    low, high = row["diff_ci_low"], row["diff_ci_high"]
    if is_missing(low) or is_missing(high):
        return "no interval bounds it"
    if low > 0 or high < 0:
        return ("its unadjusted 95% interval excludes no difference, but not at the level the correction for the "
                "other rows (and for earlier looks, under a sequential design) requires")
    return (f"the data rule out a gain above {high:.1f} and a loss above {-low:.1f} points (95% interval), not "
            f"every difference")


def listing(items: List[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def shown_rows(result: Ablation) -> pd.DataFrame:
    return result.table[result.table["flag"] == ""]


def span(values, digits: int = 2) -> str:
    values = [value for value in values if not is_missing(value)]
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f} to {high:.{digits}f}"


def rank(context: Context, label: str, other: Optional[str]) -> str:
    row = context.row(label, other)
    if row["flag"]:
        return f"flagged ({row['flag']})"
    order = list(shown_rows(context.table(other)).sort_values("top1_mean", ascending=False)["label"])
    place, count = order.index(label) + 1, len(order)
    if place == 1:
        return f"the highest of {count} rows"
    if place == count:
        return f"the lowest of {count} rows"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(place if place < 20 else place % 10, "th")
    return f"the {place}{suffix} highest of {count} rows"


def paper_gap(context: Context, label: str) -> Optional[float]:
    if context.spec.rows.get(label) is None:
        return None
    return abs(context.paper(label) - context.paper_reference(None))


def reach(context: Context, label: str, other: Optional[str]) -> str:
    gap, mdd = paper_gap(context, label), context.row(label, other)["mdd"]
    if gap is None:
        return "no paper row to compare with"
    if gap == 0:
        return "the paper prints no difference to reach"
    if is_missing(mdd):
        return "no detectable difference to set the paper's gap against"
    where = "within" if gap >= mdd else "below"
    return f"the paper's gap of {gap:.1f} point is {where} this table's reach of {mdd:.2f}"


def reach_all(context: Context, _: str, other: Optional[str]) -> str:
    rows = shown_rows(context.table(other))
    sized = [(label, paper_gap(context, label), mdd) for label, mdd in zip(rows["label"], rows["mdd"])
             if not is_missing(mdd) and paper_gap(context, label)]
    if not sized:
        return "no row has both a paper gap and a detectable difference"
    listed = {within: listing([f"`{label}` (paper {gap:.1f}, reach {mdd:.2f})" for label, gap, mdd in sized
                               if (gap >= mdd) == within]) for within in (True, False)}
    parts = [f"{'within' if within else 'below'} this table's reach for {listed[within]}" for within in (True, False)
             if listed[within]]
    return "a gap the size of the paper's is " + "; ".join(parts)


def verdicts(context: Context, _: str, other: Optional[str]) -> str:
    """"`a` and `b` are better than `ref`; `c` is inconclusive"."""
    result = context.table(other)
    compared, reference = result.table[~result.table["is_ref"]], f"`{result.reference}`"
    groups = []
    for verdict in VERDICT_ORDER:
        labels = [f"`{label}`" for label in compared.loc[compared["verdict"] == verdict, "label"]]
        if labels:
            name = {"better": f"better than {reference}", "worse": f"worse than {reference}",
                    "equivalent": f"equivalent to {reference}"}.get(verdict, verdict)
            groups.append(f"{listing(labels)} {'is' if len(labels) == 1 else 'are'} {name}")
    return "; ".join(groups) or "no row is compared"


def pooled(context: Context, _: str, __: Optional[str]) -> str:
    runs = context.need_runs()
    mixed = {kind: runs[kind.column].dropna().map(kind.shown).nunique() for kind in PROVENANCE_KINDS
             if kind.column in runs and runs[kind.column].dropna().map(kind.shown).nunique() > 1
             and not (kind.column == "git_sha" and same_code(runs[kind.column].dropna().unique()))}
    if not mixed:
        return "every run ran on one device, with one thread count, torch version and commit"
    listed = listing([f"{count} {kind.plural}" for kind, count in mixed.items()])
    split = [kind.plural for kind in mixed if not blocked_by_seed(runs, kind.column)]
    if not split:
        return (f"the runs pool {listed}; each seed's runs share one {listing([kind.one for kind in mixed])}, so "
                f"every seed-paired difference is within one")
    return f"the runs pool {listed}, and some seeds' runs span {listing(split)}"


def validation(context: Context, _: str, __: Optional[str]) -> str:
    runs = context.need_runs()
    effect = table_design_effect(runs["run_dir"])
    if effect is None:
        images = runs["num_val"].dropna()
        if images.empty:
            return "the validation set's size is not recorded"
        accuracy = shown_rows(context.result)["top1_mean"].mean() / 100
        se = 100 * (accuracy * (1 - accuracy) / images.iloc[0]) ** 0.5
        return (f"the validation set has {int(images.iloc[0]):,} images; one evaluation's binomial SE is about "
                f"{se:.2f} point")
    return (f"the validation set has {effect.units:,} independent units (digits) in {effect.images:,} images; one "
            f"evaluation's SE is about {effect.se_cluster:.2f} point ({effect.se_binomial:.2f} as if images were "
            f"independent)")


def column(name: str, shown: Callable[[float], str]) -> Callable[[Context, str, Optional[str]], str]:
    def render(context: Context, label: str, other: Optional[str]) -> str:
        value = context.row(label, other)[name]
        return "n/a" if is_missing(value) else shown(value)
    return render


def cost(name: str) -> Callable[[Context, str, Optional[str]], str]:
    def render(context: Context, label: str, other: Optional[str]) -> str:
        reference = context.result.reference if other is None else other
        return ratio(context.row(label)[name], context.row(reference)[name])
    return render


def paper(what: str, shown: Callable[[float], str]) -> Callable[[Context, str, Optional[str]], str]:
    def render(context: Context, label: str, _: Optional[str]) -> str:
        return shown(context.paper(label, what))
    return render


def paper_against(what: str, shown: Callable[[float, float], str]) -> Callable[[Context, str, Optional[str]], str]:
    def render(context: Context, label: str, other: Optional[str]) -> str:
        return shown(context.paper(label, what), context.paper_reference(other, what))
    return render


def two_decimals(value: float) -> str:
    return f"{value:.2f}"


def top1(context: Context, label: str, other: Optional[str]) -> str:
    row = context.row(label, other)
    return f"flagged ({row['flag']})" if row["flag"] else f"{row['top1_mean']:.2f}%"


def lowest(context: Context, label: str, _: Optional[str]) -> str:
    """The row's lowest final top-1 over its seeds, and the seed."""
    runs, factors = context.need_runs(), context.result.factors
    if len(factors) != 1:
        raise context.fail(f"lowest reads a one-factor table (this one varies {', '.join(factors)})")
    mine = runs[runs[factors[0]].astype(str) == label]
    if mine.empty:
        raise context.fail(f"no runs of row {label!r}")
    low = mine.loc[mine["top1"].idxmin()]
    return f"{low['top1']:.2f}% (seed {int(low['seed'])})"


def order(context: Context, _: str, other: Optional[str]) -> str:
    rows = shown_rows(context.table(other)).sort_values("top1_mean", ascending=False)
    return ", ".join(f"`{label}` {mean:.2f}%" for label, mean in zip(rows["label"], rows["top1_mean"]))


def table_column(name: str, shown: Callable[[pd.Series], str]) -> Callable[[Context, str, Optional[str]], str]:
    return lambda context, _, other: shown(shown_rows(context.table(other))[name])


def tuned(context: Context) -> None:
    if not context.spec.tuning:
        raise context.fail("a kind of tuned ablations only: this ablation sets no tuning (experiments/ablations.yaml)")


def against_shared_row(context: Context, label: str) -> pd.Series:
    tuned(context)
    if "against_shared" not in context._tables:
        context._tables["against_shared"] = against_shared(context.spec)
    table = context._tables["against_shared"]
    found = table[table["row"] == label]
    if found.empty:
        raise context.fail(f"no row {label!r} beside the shared recipe (rows: {', '.join(table['row'])})")
    return found.iloc[0]


def shared_diff(context: Context, label: str, _: Optional[str]) -> str:
    """Δ tuned - shared recipe of the row's fusion, paired over seeds, with its 95% interval and p."""
    row = against_shared_row(context, label)
    if row["same jobs"]:
        differ = row["seeds"] - row["identical seeds"]
        return (f"the same jobs (the search kept the shared recipe): identical on {row['identical seeds']} of "
                f"{row['seeds']} seeds" + (f", the other {differ} (run on another torch or CPU) within "
                                          f"{row['max |Δ|']:.2f} points" if differ else ""))
    return f"{signed_points(row['Δ tuned - shared'])} {row['95% CI']} (p {p_value(row['p'])}, {row['seeds']} seeds)"


def shared_rank(context: Context, label: str, _: Optional[str]) -> str:
    row = against_shared_row(context, label)
    return f"{ordinal(int(row['rank shared']))} at the shared recipe, {ordinal(int(row['rank tuned']))} tuned"


def ordinal(rank: int) -> str:
    return f"{rank}{'th' if 10 <= rank % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(rank % 10, 'th')}"


def study_of(context: Context, label: str) -> Dict:
    tuned(context)
    found = [summary for summary in studies(context.spec) if arm_value(summary) == label]
    if not found:
        raise context.fail(f"no study for {label!r} under results/cpu/{context.spec.tuning}")
    return found[0]


def best_recipe(context: Context, label: str, _: Optional[str]) -> str:
    """The best trial's recipe in words, its selection top-1, and whether it is the shared recipe (trial 0)."""
    summary = study_of(context, label)
    best = summary["best"]
    if best is None:
        return "no complete trial"
    params = ", ".join(f"{key.split('.')[-1].replace('_', ' ')} {value:.2g}" if isinstance(value, float) else
                       f"{key.split('.')[-1].replace('_', ' ')} {value}" for key, value in best["params"].items())
    which = "the shared recipe itself" if best["trial"] == 0 else f"trial {best['trial']}"
    return f"{which} ({params}; selection top-1 {best['value']:.2f}%)"


def search_counts(context: Context, label: str, _: Optional[str]) -> str:
    totals = study_of(context, label)["totals"]
    return f"{totals['complete']} complete, {totals['pruned']} pruned"


def search_cost(context: Context, _: str, __: Optional[str]) -> str:
    """The whole search's trial-epochs and CPU hours beside an exhaustive grid's."""
    tuned(context)
    found = studies(context.spec)
    epochs, cpu = sum(s["totals"]["trial_epochs"] for s in found), sum(s["totals"]["cpu_s"] for s in found)
    grid_epochs = sum(s["grid"]["trial_epochs"] or 0 for s in found)
    grid_cpu = sum(s["grid"]["cpu_s"] or 0 for s in found)
    return (f"{epochs:,} trial-epochs ({cpu / 3600:.2f} CPU hours) over {len(found)} arms, where an exhaustive grid "
            f"over the space's grid values would have trained {grid_epochs:,} ({grid_cpu / 3600:.1f} CPU hours, "
            f"{grid_epochs / max(epochs, 1):.0f}x)")


def recheck_of(context: Context, label: str, _: Optional[str]) -> str:
    """The best trial's tuning value beside its new seeds' mean, and whether it kept its place."""
    tuned(context)
    table = recheck_table(context.spec)
    if table is None:
        raise context.fail(f"no recheck under results/cpu/{context.spec.tuning}: run python -m src.tune recheck")
    rows = table[table["arm"] == label]
    if rows.empty:
        raise context.fail(f"no recheck of {label!r}")
    best = rows.iloc[0]
    text = (f"{best['tuning (seed 0)']:.2f}% on its tuning seed, {best['new mean']:.2f}% on new seeds "
            f"({signed_points(-best['tuning - new mean'])})")
    if len(rows) > 1:
        kept = best["new mean"] >= rows["new mean"].iloc[1:].max()
        text += (f"; the runner-up {'stayed behind it' if kept else 'overtook it'} "
                 f"({rows['new mean'].iloc[1]:.2f}% on new seeds)")
    return text


ROW_KINDS = {
    "top1": top1, "std": column("top1_std", two_decimals), "diff": column("diff_vs_ref", signed_points),
    "ci": lambda context, label, other: bracket(*context.row(label, other)[["diff_ci_low", "diff_ci_high"]]),
    "p": column("p_holm", p_value), "mdd": column("mdd", two_decimals),
    "verdict": lambda context, label, other: verdict_phrase(context.row(label, other), context.table(other).reference),
    "rank": rank, "reach": reach, "lowest": lowest, "flops": cost("gmacs"), "params": cost("params_m"),
    "s_head": column("top1_branch0_mean", lambda value: f"{value:.2f}%"),
    "l_head": column("top1_branch1_mean", lambda value: f"{value:.2f}%"),
    "paper": paper("top1", lambda value: f"{value:.1f}%"),
    "paper_diff": paper_against("top1", lambda value, reference: signed(value - reference, 1)),
    "paper_flops": paper_against("gflops", ratio), "paper_params": paper_against("params_m", ratio),
    "paper_gflops": paper("gflops", lambda value: number(value, printed_decimals(value))),
    "paper_s_head": paper("top1_s", lambda value: f"{value:.1f}%"),
    "paper_l_head": paper("top1_l", lambda value: f"{value:.1f}%"),
    # tuned ablations (experiments/ablations.yaml's tuning): analysis/paper/tuned.py
    "shared_diff": shared_diff, "shared_rank": shared_rank, "best_recipe": best_recipe,
    "search_counts": search_counts, "recheck": recheck_of,
}
TABLE_KINDS = {
    "seeds": table_column("n", lambda values: span(values, 0)), "std_range": table_column("top1_std", span),
    "mdd_range": table_column("mdd", span), "params_range": table_column("params_m", span),
    "epochs": table_column("epochs", lambda values: span(values, 0)), "order": order, "verdicts": verdicts,
    "reach": reach_all, "pooled": pooled, "validation": validation, "search_cost": search_cost,
}


def render_placeholder(context: Context, kind: str, argument: Optional[str]) -> str:
    label, _, other = (argument or "").partition("@")
    kinds = ROW_KINDS if label else TABLE_KINDS
    if kind not in kinds:
        where = "a row" if label else "no row"
        known = ", ".join(kinds)
        raise context.fail(f"unknown kind {kind!r} with {where}; the kinds with {where} are {known} "
                           f"(analysis/paper/readings.py)")
    return kinds[kind](context, label, other or None)


def render(template: str, spec: AblationSpec, result: Ablation, runs: Optional[pd.DataFrame] = None) -> str:
    """``template`` with every placeholder replaced from ``result`` (and ``runs``, for @OTHER, pooled and
    validation) and the paper's rows of ``spec``."""
    context = Context(spec, result, runs)

    def one(match: re.Match) -> str:
        context.placeholder = match.group(0)
        return render_placeholder(context, match.group(1), match.group(2))

    return PLACEHOLDER.sub(one, template.strip())


def render_reading(spec: AblationSpec, result: Ablation, runs: Optional[pd.DataFrame] = None) -> str:
    """The ablation's ``reading`` (experiments/ablations.yaml) rendered from its table."""
    return render(spec.reading, spec, result, runs)


def render_limits(spec: AblationSpec, result: Ablation, runs: Optional[pd.DataFrame] = None) -> str:
    """The paragraph every reading ends with, rendered from the ablation's table."""
    return render(LIMITS, spec, result, runs)
