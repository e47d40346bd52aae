"""nn.Modules: the two-head kernel estimator (docs/design.md §3) and its weight files."""

from blurfield.models.authors import convert_authors_state_dict, load_authors_weights  # noqa: F401
from blurfield.models.estimator import KernelEstimator  # noqa: F401
from blurfield.models.io import load_any_estimator, load_estimator_file, save_estimator  # noqa: F401
