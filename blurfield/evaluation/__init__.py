"""Evaluation (docs/design.md §7): metrics, alignment, benchmark readers, protocols, reports.

- :mod:`.metrics`: PSNR / Gaussian SSIM, their RealBlur masked forms, the kernel error.
- :mod:`.align`: intensity match, ECC homography (RealBlur), translation (Köhler).
- :mod:`.readers`: RealBlur-J/-R, Köhler, GoPro, a folder of photos, synthetic shards.
- :mod:`.protocols`: how each benchmark scores a restoration; per-benchmark defaults.
- :mod:`.synthetic`: kernel error and RL with estimated / true / uniform fields.
- :mod:`.report`: results.csv, summary.md/.json, pictures, index.html.
- :mod:`.benchmark`: a method (estimate + RL, or a generator) run and scored per image;
  the command around it is :mod:`blurfield.commands.evaluate`.
"""
