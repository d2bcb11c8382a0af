"""Toy world: a measuring instrument for CLIP inversion that needs no downloaded weights.

* `world` - a procedural world of captioned images (attributes, held-out split, nuisances).
* `judge` - deterministic pixel code that reads the attributes back from any image.
* `train_clip` / `clip_metrics` - train and measure the small open_clip `CLIP` in `model/`.
* `make_reference_set` - writes the captioned image folder for the reference-bank features.
* `baselines` / `run` - the benchmark: peer methods and CLIP⁻¹ on held-out prompts.

Nothing is imported here: `import benchmarks.toyworld.world` and friends load what they need.
README.md in this folder has the measured numbers and the commands that reproduce them.
"""
