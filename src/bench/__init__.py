"""Benchmarks: our CrossViT vs timm's, hardware ceiling, fusion cost scaling, harness overhead."""
