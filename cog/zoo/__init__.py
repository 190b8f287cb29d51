"""The model zoo: declarative cards -> `Backbone` modules with verified weights.

A card (YAML, one per model) says which architecture to build, where its weights live, how
the original checkpoint maps onto the architecture (a named converter from `cog.zoo.convert`),
the exact eval preprocessing and the feature layer. Shipped cards live in `cog/zoo/cards/`
(package data, so a non-editable install finds them); user cards (MoCHi runs, TLDR
projections) in `$COG_HOME/models/`. Loading is strict: every architecture tensor must come
from the checkpoint, and every checkpoint tensor must land somewhere or be one of the card's
documented dropped heads; anything else is a CogError listing the keys. Random weights only
with `random_init=True`.
"""

from cog.zoo.build import (  # noqa: F401
    __getattr__,
    _dropped,
    _listing,
    _load_composite,
    _load_converted,
    _pick_device,
    build_arch,
    load,
    load_strict,
    n_params,
    timm_hub_filter,
)
from cog.zoo.lazy import _Lazy, nn, torch  # noqa: F401
from cog.zoo.registry import (  # noqa: F401
    BROKEN_USER_CARDS,
    _add,
    _leave_out,
    _norm,
    _read_card_file,
    _registry,
    _shipped,
    _user_cards,
    get_card,
    list_models,
    register_card,
    user_dir,
)
from cog.zoo.schema import (  # noqa: F401
    _CARD_FIELDS,
    _FAMILY_FIELDS,
    _HASH_PREFIX,
    ARCH_SOURCES,
    FAMILIES_FILE,
    GROUPS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    POOLS,
    PRECISIONS,
    SHIPPED_DIR,
    SOURCE_KINDS,
    Arch,
    ModelCard,
    Preprocess,
    Projection,
    WeightSource,
    _check,
    _expand_family,
    _FlipChannels,
    _merge,
    _normalize,
    _only_keys,
    _plain_name,
    _str_list,
    _ToRGB,
    families,
)
from cog.zoo.weights import (  # noqa: F401
    _SHA_CACHE,
    _UNCHECKED_WARNED,
    HUB_FILES,
    TRUST_ENV,
    _cached,
    _host,
    _hub_blob_sha,
    _hub_cached,
    _hub_download,
    _is_torchscript,
    _local_target,
    _reachable,
    _unpack_member,
    _unsafe_message,
    _url_download,
    _where_to_put,
    cached_weights_sha256,
    checkpoint_dir,
    file_sha256,
    load_checkpoint,
    offline,
    package_file,
    projection_file,
    read_checkpoint,
    resolve_weights,
    trust_requested,
    verify_sha256,
)
