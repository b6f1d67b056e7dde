"""Model references: local folders and Hugging Face ids through a hub-layout cache, offline."""

from __future__ import annotations

import pytest

from styletalker.errors import MissingModelError
from styletalker.hub import (CLIP, IP2P, fetch_command, hub_cache_dir, hub_offline, is_hub_id, resolve_model)
from tiny_models import TINY_CLIP_ID, TINY_IP2P_ID


def test_is_hub_id(tmp_path, monkeypatch):
    assert is_hub_id("timbrooks/instruct-pix2pix") and is_hub_id("org/name@v1.0")
    assert not is_hub_id("./org/name") and not is_hub_id("/abs/path") and not is_hub_id("~/m")
    assert not is_hub_id("single") and not is_hub_id("a/b/c")
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id("org/name")  # an existing folder wins over the id


def test_cache_dir_and_offline_follow_the_environment(tmp_path, monkeypatch):
    for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE",
              "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert hub_cache_dir() == tmp_path / "c"
    assert not hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()


def test_local_folder_used_as_is(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(MissingModelError, match="no model_index.json"):
        resolve_model(tmp_path / "m", IP2P)
    (tmp_path / "m" / "model_index.json").write_text("{}")
    assert resolve_model(tmp_path / "m", IP2P) == tmp_path / "m"
    with pytest.raises(MissingModelError, match="folder not found"):
        resolve_model(tmp_path / "nothing", IP2P)
    with pytest.raises(MissingModelError, match="--editor-model is empty"):
        resolve_model("", IP2P)


def test_ids_resolve_offline_from_the_cache(hf_offline):
    snap = resolve_model(TINY_IP2P_ID, IP2P)
    assert snap.parent.name == "snapshots" and snap.parent.parent.parent == hf_offline
    commit = (snap.parent.parent / "refs" / "main").read_text()
    assert snap.name == commit and (snap / "unet" / "config.json").is_file()
    assert (snap / "unet" / "config.json").is_symlink()  # hub layout: snapshot files link to blobs/
    assert (resolve_model(TINY_CLIP_ID, CLIP) / "config.json").is_file()
    # a pipeline id asked for as a CLIP model: the marker file says what is wrong
    with pytest.raises(MissingModelError, match="no config.json"):
        resolve_model(TINY_IP2P_ID, CLIP)


def test_offline_and_not_cached_names_the_fetch_command(hf_offline):
    with pytest.raises(MissingModelError) as ei:
        resolve_model("openai/clip-vit-large-patch14", CLIP)
    msg = str(ei.value)
    assert msg.startswith("--clip-model openai/clip-vit-large-patch14: cannot get")
    assert "HF_HUB_OFFLINE=1" in msg and str(hf_offline) in msg
    assert fetch_command("openai/clip-vit-large-patch14", CLIP) in msg


def test_fetch_command_one_pattern_per_flag():
    cmd = fetch_command("org/name@abc", IP2P)
    assert cmd.startswith("hf download org/name --revision abc --include model_index.json --include '*/*.json'")
    assert "--exclude 'safety_checker/*'" in cmd
