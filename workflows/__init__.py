"""Orchestration above `training` and `export`: the demo, promotion of a run, and tuning's export step.

Dependency direction (tests/test_dependencies.py checks it):

    runtime  <-  training  <-  export  <-  workflows

`runtime` imports none of the others; `training` never imports `export` or `workflows`; `export` may load
runs and data through `training` but never imports `workflows`. Anything that needs both a training run
and an exported artifact (train then export, export then stitch) lives here.
"""
