"""Statistics over runs: the summary of each group over its seeds (``summary``), the tests between two rows
(``compare``), the rows that are not a result yet (``flags``), the reference row (``reference``), the seeds a
gap needs (``power``), and the ablation table that puts them together (``ablation``)."""
