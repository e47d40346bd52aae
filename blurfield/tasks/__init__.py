"""LightningModules, their callbacks, and the Trainer builder.

- ``estimator``: KernelEstimatorModule (the two-head estimator, docs/design.md §3-§4)
- ``callbacks``: KernelLossSwitch, RunSummary (summary.json), FieldPictures
- ``loggers``: W&B (offline by default) / CSV / none from the ``logging`` section
- ``train``: the Trainer builder of ``blurfield train`` (:mod:`blurfield.commands.train`)
- ``finetune``: the DeblurGAN reblur fine-tune (docs/design.md §6)

Submodules are imported on use: ``import lightning`` costs seconds.
"""
