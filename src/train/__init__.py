"""Training: ``loop.train`` drives ``engine`` (one epoch, evaluation), saves and resumes through ``checkpoint``
and writes ``results``."""
