"""Seeds added validly: a group-sequential design with alpha spending (Lan & DeMets 1983, Biometrika 70:659).

A design fixes, before any look, the most seeds a row may get (``max_seeds``) and how the error rate alpha is spent
over the looks: after n seeds the information fraction is t = n / max_seeds and at most ``spent(t)`` of alpha has
been spent. Looks may fall anywhere (a block of seeds, then another), as long as where they fall does not depend
on what the data showed; a look is a count of seeds shared by every row, seeds taken in ascending order.

Boundaries: each one-sided test rejects at look k when its statistic crosses c_k, the c_k chosen so that the
probability of a first crossing at look k under the null is spent(t_k) - spent(t_{k-1}). The statistics of the
looks are a Brownian motion in the information (Jennison & Turnbull 2000, "Group Sequential Methods", ch. 2, 19);
the crossing probabilities are integrated on a grid, look by look (their ch. 19). A test over seeds has an unknown
spread, so the boundary is carried over as its nominal level: reject when the test's own p-value (the paired t
over the seeds so far) is below 1 - Phi(c_k), which keeps the error rate at alpha to within simulation error
(tests/test_sequential.py).

Several rows against one reference: Holm's procedure carried into the looks by the graphical approach of Maurer &
Bretz (2013, Statistics in Biopharmaceutical Research 5:311): each open hypothesis tests at alpha / (number still
open); when one is rejected its alpha is passed to the others, whose boundaries at every look so far are computed
anew at the larger level. With one look at t = 1 this is Holm's procedure, exactly.

Spending functions (``SPENDING``): ``pocock`` (Lan-DeMets' Pocock type, alpha ln(1 + (e - 1) t)), the default:
it spends alpha about evenly, so a look after a small block can stop; ``obrien_fleming`` (alpha 2 (1 - Phi(z / sqrt
t))) keeps almost all of alpha for the last look.
"""
import functools
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
GRID_POINTS = 2001  # per look: the published boundaries to 3 decimals (tests/test_sequential.py)


def pocock(t: float, alpha: float) -> float:
    return alpha * math.log(1.0 + (math.e - 1.0) * min(t, 1.0))


def obrien_fleming(t: float, alpha: float) -> float:
    if t <= 0:
        return 0.0
    return 2.0 * (1.0 - stats.norm.cdf(stats.norm.ppf(1.0 - alpha / 2.0) / math.sqrt(min(t, 1.0))))


SPENDING: Dict[str, Callable[[float, float], float]] = {"pocock": pocock, "obrien_fleming": obrien_fleming}


class DesignError(ValueError):
    """A design that cannot be run: the message names the setting and the fix."""


@dataclass(frozen=True)
class Design:
    """A sequential design: ``max_seeds`` per row at most, alpha spent by ``spending``; ``looks`` are the seed
    counts at which the data were (or will be) looked at, ascending; ``block`` seeds are added after the last one."""
    max_seeds: int
    looks: Tuple[int, ...] = ()
    block: int = 2
    spending: str = "pocock"
    alpha: float = ALPHA

    def __post_init__(self):
        if self.spending not in SPENDING:
            raise DesignError(f"spending={self.spending!r}: pick one of {', '.join(SPENDING)}")
        if not 0 < self.alpha < 1:
            raise DesignError(f"alpha={self.alpha}: give a level between 0 and 1, e.g. 0.05")
        if self.max_seeds < 2:
            raise DesignError(f"max_seeds={self.max_seeds}: a paired test needs at least 2 seeds a row")
        if self.block < 1:
            raise DesignError(f"block={self.block}: add at least one seed a look")
        looks = list(self.looks)
        if looks != sorted(set(looks)) or (looks and (looks[0] < 2 or looks[-1] > self.max_seeds)):
            raise DesignError(f"looks={looks}: give increasing seed counts from 2 to max_seeds={self.max_seeds}")

    def schedule(self) -> List[int]:
        """Every planned look: the declared ones, then one every ``block`` seeds up to ``max_seeds``."""
        looks = list(self.looks)
        last = looks[-1] if looks else 0
        while last < self.max_seeds:
            last = min(last + self.block, self.max_seeds)
            if last >= 2:
                looks.append(last)
        return looks

    def looks_at(self, seeds: int) -> List[int]:
        """The looks taken when ``seeds`` seeds are in: the planned ones below it, then ``seeds`` itself (a look
        off the schedule, after an interrupted block, spends alpha at its own fraction: Lan-DeMets allows it)."""
        return [look for look in self.schedule() if look < seeds] + [min(seeds, self.max_seeds)]

    def next_look(self, seeds: int) -> int:
        """Seeds at the next planned look after ``seeds``."""
        return next((look for look in self.schedule() if look > seeds), self.max_seeds)

    def describe(self) -> str:
        looks = self.looks
        declared = f"looks declared at {', '.join(map(str, looks))} seeds, then " if looks else "a look "
        return (f"group-sequential design: {self.spending.replace('_', '-')}-type alpha spending (Lan-DeMets), "
                f"alpha {self.alpha:g}, at most {self.max_seeds} seeds a row, {declared}every {self.block} seeds")


def _spend(design_spending: str, fractions: Sequence[float], alpha: float) -> np.ndarray:
    function = SPENDING[design_spending]
    return np.array([function(t, alpha) for t in fractions])


def boundaries(fractions: Sequence[float], alpha: float, spending: str = "pocock") -> np.ndarray:
    """One-sided z boundaries c_k of the looks at information fractions ``fractions`` (increasing, in (0, 1]) for a
    one-sided test at ``alpha``; inf where a look spends nothing."""
    fractions = np.asarray(fractions, float)
    if len(fractions) == 0:
        return np.array([])
    if np.any(np.diff(fractions) <= 0) or fractions[0] <= 0 or fractions[-1] > 1 + 1e-12:
        raise DesignError(f"information fractions {list(fractions)}: give increasing values in (0, 1]")
    spent = _spend(spending, fractions, alpha)
    increments = np.diff(np.concatenate([[0.0], spent]))
    bounds = np.empty(len(fractions))
    # The sub-density of S_k (the score, Brownian motion with variance t) on the region not yet rejected.
    bounds[0] = stats.norm.isf(increments[0]) if increments[0] > 0 else math.inf
    top = bounds[0] * math.sqrt(fractions[0])
    grid = np.linspace(-8.0, min(top, 8.0), GRID_POINTS)
    density = stats.norm.pdf(grid, scale=math.sqrt(fractions[0]))
    for k in range(1, len(fractions)):
        step = math.sqrt(fractions[k] - fractions[k - 1])
        weights = np.gradient(grid) * density  # trapezoid-like weights of the sub-density on the grid
        if increments[k] <= 0:
            bounds[k] = math.inf
            score_bound = 8.0 + grid[-1]
        else:
            score_bound = optimize.brentq(_crossing, -10.0, 20.0, args=(weights, grid, step, increments[k]),
                                          xtol=1e-10)
            bounds[k] = score_bound / math.sqrt(fractions[k])
        new_grid = np.linspace(-8.0 * math.sqrt(fractions[k]) - 2.0, min(score_bound, 8.0), GRID_POINTS)
        kernel = stats.norm.pdf((new_grid[:, None] - grid[None, :]) / step) / step
        density, grid = kernel @ weights, new_grid
    return bounds


def _crossing(score_bound: float, weights: np.ndarray, grid: np.ndarray, step: float, target: float) -> float:
    """The probability of crossing ``score_bound`` at this look, not before, less ``target``."""
    return float(np.sum(weights * stats.norm.sf((score_bound - grid) / step))) - target


def nominal_levels(seed_counts: Sequence[int], max_seeds: int, alpha: float, spending: str = "pocock") -> np.ndarray:
    """The one-sided nominal p-level of each look (seed counts, increasing) of a one-sided test at ``alpha``."""
    return np.array(_nominal_levels(tuple(int(count) for count in seed_counts), max_seeds, float(alpha), spending))


@functools.lru_cache(maxsize=4096)  # a table asks for the same levels once a row and look; a simulation, thousands
def _nominal_levels(seed_counts: Tuple[int, ...], max_seeds: int, alpha: float, spending: str) -> Tuple[float, ...]:
    fractions = [min(count, max_seeds) / max_seeds for count in seed_counts]
    return tuple(stats.norm.sf(boundaries(fractions, alpha, spending)))


def graphical_holm(p_values: Dict[str, Sequence[float]], levels: Callable[[float], np.ndarray],
                   alpha: float) -> Dict[str, int]:
    """Maurer & Bretz's Holm over looks. ``p_values[row]``: that row's p-value at each look so far (NaN: no test);
    ``levels(a)``: the nominal levels of those looks for one hypothesis tested at ``a``. Returns, for each rejected
    row, the index of the first look at which it is rejected."""
    open_rows = [row for row, values in p_values.items() if np.any(np.isfinite(np.asarray(values, float)))]
    rejected: Dict[str, int] = {}
    cache: Dict[float, np.ndarray] = {}
    while open_rows:
        level = alpha / len(open_rows)
        nominal = cache.setdefault(level, levels(level))
        newly = {}
        for row in open_rows:
            values = np.asarray(p_values[row], float)
            below = np.flatnonzero(np.isfinite(values) & (values < nominal[:len(values)]))
            if below.size:
                newly[row] = int(below[0])
        if not newly:
            break
        rejected.update(newly)
        open_rows = [row for row in open_rows if row not in newly]
    return rejected
