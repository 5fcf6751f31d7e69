"""Training: ``loop.train`` drives ``engine`` (one epoch, evaluation), saves and resumes through ``checkpoint``,
keeps the run's ``record`` (``results.json``) and logs through ``loggers``; ``process`` isolates each job."""
