"""``python -m src.tune SPACE``: one Optuna study per arm of an ablation over a declared search space
(``conf/tune/SPACE.yaml``), each trial a normal ``python -m src.run`` job in its own run dir, poor trials stopped by
Optuna's pruner on the per-epoch selection top-1 (docs/tuning.md).

- ``space``: the space file, read and checked (``Space``)
- ``dists``: one key's distribution (``Dist``): float, int or categorical, and its grid
- ``errors``: ``BadSpace``, the one error of a bad input, naming the key and the fix
- ``check``: the space against the real config tree (Hydra's compose API), before any trial
- ``overrides``: Hydra override text, a trial's command line and run dir
- ``storage``: the study storage (SQLite, a server, a journal file) and its retry of lost trials
- ``trial``: the objective: one run launched, watched, reported, pruned
- ``child``: the trial's process, which stops when its worker dies
- ``worker``: the loop that runs trials until the study's budget is met
- ``costs``: ``study.json``, what a study found and what it cost against a grid
- ``report``: all arms in one Markdown table, and the best recipes' overrides
"""
