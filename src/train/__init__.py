"""Training: ``loop.train`` drives ``engine`` (one epoch, evaluation) and writes ``results``."""
