"""Deprecated alias of `cog.ssl.train` (moved by issue 15; removed in cog 0.3)."""

import warnings

__deprecated_alias__ = "cog.ssl.train"
warnings.warn(
    "cog.train is deprecated: import cog.ssl.train instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
from cog.ssl.config import TrainConfig, TrainingInterrupted  # noqa: E402, F401
from cog.ssl.data import (  # noqa: E402, F401
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDataset,
    ImageSet,
    _is_image,
    eval_transform,
    find_images,
    load_rgb,
    moco_v2_augmentation,
)
from cog.ssl.runtime import (  # noqa: E402, F401
    CHECKPOINT,
    LOG,
    Runtime,
    _gather_objects,
    _log,
    _rng_state,
    _set_rng_state,
    _trim_log,
    load_checkpoint,
    read_log,
    save_checkpoint,
    setup_runtime,
)
from cog.ssl.train import (  # noqa: E402, F401
    STRUCTURAL,
    _autocast,
    _batches,
    _build_model,
    _checkpoint,
    _Loop,
    _restore,
    _split,
    _start_record,
    _train_epoch,
    cosine_lr,
    evaluate_heldout,
    mochi_card,
    resolve_arch,
    train,
)
