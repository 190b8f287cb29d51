"""Console entry points (one module per command), and what they share.

Every cog command builds its parser with `CogParser` (cog.cli.parsing) and declares its
common options with the `add_*` helpers of cog.cli.options, so the same idea has the same
name everywhere; cog.cli.outputs checks output locations before work starts, and
cog.cli.errors turns expected failures into one line and exit status 2. The names are
re-exported here (`from cog.cli import CogParser, add_roots, ...`).

These modules import only the standard library and light parts of `cog`: `--help` must
answer at once, so the commands import torch, timm, pandas and the like inside `main`,
after parsing.
"""

from cog.cli.errors import (
    friendly_errors,
    system_error_line,
)
from cog.cli.options import (
    IN1K_HELP,
    IN21K_HELP,
    RANDOM_INIT_SUFFIX,
    add_cache_dir,
    add_datasets,
    add_extraction,
    add_levels_splits,
    add_out,
    add_overwrite,
    add_overwrite_features,
    add_quiet,
    add_roots,
    add_trust_checkpoint,
    add_weights,
    data_roots,
    extract_options,
    feature_source,
)
from cog.cli.outputs import (
    check_cache_dir,
    check_out_dir,
    check_out_file,
)
from cog.cli.parsing import (
    CogParser,
    HelpFormatter,
    add_deprecated,
    add_deprecated_value,
    dataclass_defaults,
    int_list,
    name_list,
)

__all__ = [
    "IN1K_HELP",
    "IN21K_HELP",
    "RANDOM_INIT_SUFFIX",
    "CogParser",
    "HelpFormatter",
    "add_cache_dir",
    "add_datasets",
    "add_deprecated",
    "add_deprecated_value",
    "add_extraction",
    "add_levels_splits",
    "add_out",
    "add_overwrite",
    "add_overwrite_features",
    "add_quiet",
    "add_roots",
    "add_trust_checkpoint",
    "add_weights",
    "check_cache_dir",
    "check_out_dir",
    "check_out_file",
    "data_roots",
    "dataclass_defaults",
    "extract_options",
    "feature_source",
    "friendly_errors",
    "int_list",
    "name_list",
    "system_error_line",
]
