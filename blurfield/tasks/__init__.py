"""LightningModules, their callbacks, and the commands that run them.

- ``estimator``: KernelEstimatorModule (the two-head estimator, docs/design.md §3-§4)
- ``callbacks``: KernelLossSwitch, RunSummary (summary.json), FieldPictures
- ``loggers``: W&B (offline by default) / CSV / none from the ``logging`` section
- ``train``: ``blurfield train``; ``report``: ``blurfield report``
- ``finetune``: the DeblurGAN reblur fine-tune (docs/design.md §6)

Submodules are imported on use: ``import lightning`` costs seconds.
"""
