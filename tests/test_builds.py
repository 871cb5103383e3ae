from __future__ import annotations

from devenv.config.settings import load_settings
from devenv.render.builds import context_hash, service_build


def api_build(settings):
    return service_build(settings, settings.catalog["api"])


def test_reference_api_is_tagged_by_content_and_base(tmp_path):
    a = api_build(load_settings(tmp_path, {}, {}))
    b = api_build(load_settings(tmp_path, {"DEVENV_API_BASE_IMAGE": "other:1"}, {}))
    assert a["image"].startswith("devenv-reference-api:") and a["image"] != b["image"]
    templates = tmp_path / "templates" / "api"
    templates.mkdir(parents=True)
    (templates / "app.py").write_text("print('ours')\n")
    assert api_build(load_settings(tmp_path, {}, {}))["image"] != a["image"]


def test_image_or_source_instead_of_the_reference(tmp_path):
    assert api_build(load_settings(tmp_path, {"DEVENV_API_IMAGE": "team/api:1"}, {})) is None
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Dockerfile").write_text("FROM scratch\n")
    build = api_build(load_settings(tmp_path, {"DEVENV_API_BUILD": "src"}, {}))
    assert build == {"context": str(tmp_path / "src"), "args": {}}


def test_context_hash_follows_changes(tmp_path):
    (tmp_path / "a").write_text("1")
    first = context_hash(tmp_path)
    (tmp_path / "a").write_text("22")
    assert context_hash(tmp_path) != first
