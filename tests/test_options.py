"""The option bundles (cog.features.options) and the one CLI declaration of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cog import CogError
from cog.features.options import (
    DataRoots,
    ExtractOptions,
    FeatureSource,
    updated,
    updated_options,
)


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(dtype="float64"), "--dtype 'float64': choose one of float16, float32"),
        (dict(decode="nvjpeg"), "--decode 'nvjpeg'"),
        (dict(precision="int8"), "--precision 'int8'"),
        (dict(exact=True, jpeg_draft=True), "exclude each other"),
        (dict(exact=True, decode="gpu"), "--decode gpu needs the fast mode"),
        (dict(workers=-1), "--workers -1"),
        (dict(batch_size=0), "--batch-size 0"),
    ],
)
def test_bad_extract_options_are_refused_when_made(kw, message):
    with pytest.raises(CogError, match=re.escape(message)):
        ExtractOptions(**kw)


def test_mode_is_what_the_cache_records():
    assert ExtractOptions().mode == "fast"
    assert ExtractOptions(exact=True).mode == "exact"
    assert ExtractOptions(jpeg_draft=True).mode == "fast+jpeg-draft"


def test_data_roots_take_strings_and_name_a_missing_path(tmp_path):
    roots = DataRoots(in1k_root=str(tmp_path), levels="~/x.csv")
    assert roots.in1k_root == tmp_path and roots.levels == Path.home() / "x.csv"
    with pytest.raises(CogError, match=r"--levels .*x\.csv: no such file"):
        roots.check()
    with pytest.raises(CogError, match=r"--imagenet-root .*nope: no such folder"):
        DataRoots(imagenet_root=tmp_path / "nope").check()
    DataRoots(in1k_root=tmp_path).check()


def test_keyword_settings_update_the_bundles():
    start = FeatureSource(options=ExtractOptions(dtype="float32"), cache_dir="c")
    src = updated(start, dict(levels="l", exact=True, random_init=True), "f")
    assert src.roots == DataRoots(levels=Path("l")) and src.cache_dir == Path("c")
    assert src.options == ExtractOptions(exact=True, dtype="float32") and src.random_init
    assert updated(None, {}, "f") == FeatureSource()
    with pytest.raises(TypeError, match=r"f\(\) got unexpected keyword argument\(s\) exakt"):
        updated(None, dict(exakt=True), "f")
    with pytest.raises(CogError, match="--dtype"):
        updated(None, dict(dtype="int8"), "f")
    assert updated_options(None, dict(exact=True)) == ExtractOptions(exact=True)
    with pytest.raises(TypeError, match=r"extract\(\) .* in1k_root"):
        updated_options(None, dict(in1k_root="x"))  # a root is no extraction setting


ARGS = (
    "--exact --dtype float32 --precision fp32 --device cpu --workers 0 --decode cpu -q "
    "--in1k-root /data/in1k --imagenet-root /data/in21k --levels l.csv --splits s --cache-dir cc"
).split()


def test_every_command_reads_the_same_options_into_the_same_bundles():
    """cog-extract, cog-eval and cog-tldr declare the extraction options once (cog.cli):
    the same words give the same ExtractOptions and DataRoots, batch size included."""
    from cog.cli import data_roots, extract_options, feature_source
    from cog.cli import eval as ev
    from cog.cli import extract as ex
    from cog.cli import tldr as tl

    parsed = [
        ex.parser().parse_args(["m", *ARGS, "--batch-size", "8"]),
        ev.parser().parse_args(["m", *ARGS, "--batch-size", "8"]),
        tl.parser().parse_args(["fit", "m", "--dim", "4", *ARGS, "--extract-batch-size", "8"]),
    ]
    want = ExtractOptions(
        exact=True,
        dtype="float32",
        precision="fp32",
        device="cpu",
        workers=0,
        decode="cpu",
        batch_size=8,
        progress=False,
    )
    roots = DataRoots("/data/in1k", "/data/in21k", "l.csv", "s")
    for a in parsed:
        assert extract_options(a) == want and data_roots(a) == roots
        assert feature_source(a) == FeatureSource(roots, want, cache_dir="cc")
    cfg = ev.config_from_args(parsed[1])
    assert cfg.extraction == want and cfg.roots == roots and cfg.device == "cpu"
    assert cfg.source() == FeatureSource(roots, want, cache_dir="cc")
    assert not cfg.progress
    # cog-tldr's own --batch-size is TLDR's, untouched by the extraction one
    assert parsed[2].batch_size is None


def test_the_run_json_records_both_bundles(tmp_path):
    from cog.bench.config import EvalConfig

    cfg = EvalConfig("m", roots=DataRoots(in1k_root=tmp_path), extraction=ExtractOptions())
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["roots"]["in1k_root"] == str(tmp_path) and d["roots"]["levels"] is None
    assert d["extraction"] == ExtractOptions().to_dict() and d["out"] == "results"
