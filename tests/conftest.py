"""Shared fixtures. Real data comes from scripts/fetch_data.sh (run by `make test`)."""

from __future__ import annotations

import pytest

from styletalker.assets import find_asset


@pytest.fixture(scope="session", autouse=True)
def _lod_cache(tmp_path_factory):
    """Live driving's level-of-detail cache (styletalker.lod) in a temporary folder, not ~/.cache."""
    import os

    old = os.environ.get("STYLETALKER_LOD_CACHE")
    os.environ["STYLETALKER_LOD_CACHE"] = str(tmp_path_factory.mktemp("lod_cache"))
    yield
    if old is None:
        os.environ.pop("STYLETALKER_LOD_CACHE", None)
    else:
        os.environ["STYLETALKER_LOD_CACHE"] = old


@pytest.fixture(scope="session")
def franck_video():
    return find_asset("videos/franck.webm")


@pytest.fixture(scope="session")
def driver_video():
    return find_asset("videos/cap13_edit2.mp4")


@pytest.fixture(scope="session")
def hands_video():
    """WolfgangLanger_Pexels.mp4: a woman who holds her hand over her mouth and nose from ~2.4 s to ~9.5 s."""
    return find_asset("videos/WolfgangLanger_Pexels.mp4")


@pytest.fixture(scope="session")
def carphone_video():
    return find_asset("videos/carphone.mp4")


@pytest.fixture(scope="session")
def franck_work(tmp_path_factory, franck_video):
    """A small preprocessed clip of the real sample video (4 s at 10 fps, 128 px), shared by tests."""
    from styletalker.preprocess import run_preprocess

    work = tmp_path_factory.mktemp("franck_work")
    run_preprocess(franck_video, work, start=10.0, duration=4.0, fps=10, size=128, progress=False)
    return work


@pytest.fixture(scope="session")
def franck_avatar_work(franck_work):
    """franck_work plus a tiny reconstruction (preset "test": seconds, not quality)."""
    from styletalker.reconstruct import run_reconstruct

    run_reconstruct(franck_work, preset="test", progress=False)
    return franck_work


@pytest.fixture(scope="session")
def tiny_hf_cache(tmp_path_factory):
    """A Hugging Face cache (hub layout) holding the tiny random Instruct-Pix2Pix, SVD and CLIP
    models of tests/tiny_models.py under their ids."""
    pytest.importorskip("diffusers")
    from tiny_models import (TINY_CLIP_ID, TINY_IP2P_ID, TINY_SVD_ID, make_tiny_clip, make_tiny_ip2p, make_tiny_svd,
                             put_in_hf_cache)

    cache = tmp_path_factory.mktemp("hf_home") / "hub"
    for repo_id, build in ((TINY_IP2P_ID, make_tiny_ip2p), (TINY_SVD_ID, make_tiny_svd), (TINY_CLIP_ID, make_tiny_clip)):
        put_in_hf_cache(cache, repo_id, build)
    return cache


@pytest.fixture
def hf_offline(tiny_hf_cache, monkeypatch):
    """HF_HOME / HF_HUB_CACHE pointing at :func:`tiny_hf_cache`, HF_HUB_OFFLINE=1."""
    monkeypatch.setenv("HF_HOME", str(tiny_hf_cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_hf_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tiny_hf_cache
