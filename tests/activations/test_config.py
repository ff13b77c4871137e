"""syncs.yml validation: every error names the file, the sync and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from activations.config import SyncConfigError, load_syncs, parse_syncs, resolve_destination
from activations.templates import compile_templates

REPO_SYNCS = Path(__file__).resolve().parents[2] / "dbt_project" / "syncs.yml"


def _doc(**over):
    doc = {
        "name": "s1", "audience": "audience_x", "mode": "mirror",
        "destination": {"kind": "sendgrid", "credentials": {"api_key": "SENDGRID_API_KEY"}},
        "identifiers": {"email": "email"},
    }
    doc.update(over)
    return {"syncs": [doc]}


def test_repository_syncs_file_is_valid():
    syncs = load_syncs(REPO_SYNCS)
    assert syncs and len({s.name for s in syncs}) == len(syncs)
    for s in syncs:
        compile_templates(s.name, s.templates)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        pytest.param({"mode": "sometimes"}, "sync s1, field mode", id="bad_mode"),
        pytest.param({"name": "Bad-Name"}, "sync Bad-Name, field name", id="bad_name"),
        pytest.param({"identifiers": {}}, "declare at least one", id="no_identifiers"),
        pytest.param({"colour": "red"}, "field colour", id="unknown_key"),
        pytest.param(
            {"destination": {"kind": "sendgrid", "credentials": {"api_key": "SG.abc123"}}},
            "must name an environment variable", id="secret_in_yaml",
        ),
        pytest.param({"channel": "ads", "mode": "upsert"}, "must be `mirror`", id="ads_upsert"),
        pytest.param(
            {"fields": {"email": "email"}}, "declared twice", id="field_declared_twice"
        ),
    ],
)
def test_invalid_declarations(over, message):
    with pytest.raises(SyncConfigError, match=message) as info:
        parse_syncs(_doc(**over), source="dbt_project/syncs.yml")
    assert "dbt_project/syncs.yml" in str(info.value)


def test_duplicate_names():
    doc = _doc()
    doc["syncs"].append(dict(doc["syncs"][0]))
    with pytest.raises(SyncConfigError, match="repeated: s1"):
        parse_syncs(doc)


def test_template_syntax_error_names_field():
    with pytest.raises(SyncConfigError, match=r"sync s1, field templates.subject: line 1"):
        compile_templates("s1", {"subject": "{{ first_name "})


def test_template_is_sandboxed_and_strict():
    from activations.templates import TemplateRenderError

    t = compile_templates("s1", {"x": "{{ name.__class__.__mro__ }}", "y": "{{ nope }}"})
    with pytest.raises(TemplateRenderError):
        t.render({"name": "a", "nope": 1})
    t2 = compile_templates("s1", {"y": "Hi {{ first_name }}"})
    with pytest.raises(TemplateRenderError, match="first_name"):
        t2.render({})
    assert t2.variables == {"first_name"}


def test_base_url_env_override_and_credentials():
    spec = parse_syncs(_doc())[0]
    env = {"SENDGRID_API_KEY": "SG.secret", "HEADWATER_SENDGRID_BASE_URL": "http://127.0.0.1:1/"}
    cfg = resolve_destination(spec, "https://api.sendgrid.com", env)
    assert cfg.base_url == "http://127.0.0.1:1" and cfg.credentials == {"api_key": "SG.secret"}
    assert "SG.secret" not in repr(cfg)
    assert resolve_destination(spec, "https://api.sendgrid.com", {"SENDGRID_API_KEY": "k"}
                               ).base_url == "https://api.sendgrid.com"
    with pytest.raises(SyncConfigError, match="SENDGRID_API_KEY"):
        resolve_destination(spec, "https://api.sendgrid.com", {})
