"""docker-compose.yml against the Compose specification's JSON schema (shipped by the
check-jsonschema package, a dev dependency), and against what the image really contains."""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from importlib.metadata import entry_points, requires
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema

from beliefscope.cli import build_parser
from beliefscope.config import Settings
from tests.deploy.conftest import interpolations

APP_IMAGE = "${BELIEFSCOPE_IMAGE:-beliefscope:latest}"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")


def _schema() -> dict[str, Any]:
    text = (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    schema = json.loads(text)
    assert "compose" in json.dumps(schema.get("$id", "")) + schema.get("title", "").lower()
    return schema


def _validate(document: dict[str, Any]) -> list[str]:
    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def _app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == APP_IMAGE}


def test_compose_file_is_valid_against_the_compose_specification(compose: dict) -> None:
    assert _validate(compose) == []
    broken = copy.deepcopy(compose)
    broken["services"]["server"]["depends_on"]["postgres"]["condition"] = "when_it_feels_like_it"
    broken["services"]["server"]["healthcheck"]["retries"] = "three"
    errors = _validate(broken)
    assert len(errors) >= 2, errors  # the schema really is applied


def test_services_and_their_order(compose: dict) -> None:
    services = compose["services"]
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    volume = pg["volumes"][0].split(":")[0]
    assert volume in compose["volumes"], "PostgreSQL keeps its data in a named volume"
    assert services["migrate"]["command"][1:] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("migrate", "server", "ingest"):
        assert services[name]["depends_on"]["postgres" if name == "migrate" else "migrate"][
            "condition"
        ] in ("service_healthy", "service_completed_successfully")
    assert services["server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["server"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert "/healthz" in " ".join(services["server"]["healthcheck"]["test"])
    assert services["ingest"]["command"][1] == "watch"
    assert services["ingest"]["command"][2].startswith("/logs/")
    assert any(v.endswith(":/logs:ro") for v in services["ingest"]["volumes"])
    for name in ("dask-scheduler", "dask-worker", "ingest-cluster"):
        assert services[name]["profiles"] == ["cluster"], name
    for name, service in _app_services(compose).items():
        if name != "server":
            assert service["healthcheck"] == {"disable": True}, name


def test_every_command_is_an_entry_point_of_the_image(compose: dict) -> None:
    """The image installs beliefscope with its `cluster` extra: each service's program must be
    one of those distributions' console scripts, and its arguments must parse."""
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts")}
    installed = {"beliefscope"} | {
        req.split("[")[0].split(">")[0].strip()
        for req in requires("beliefscope") or []
        if 'extra == "cluster"' in req
    }
    assert "dask" in installed
    for name, service in _app_services(compose).items():
        program, *args = service["command"]
        assert program in scripts, f"{name}: {program} is not a console script"
        dist = scripts[program].dist
        assert dist is not None and dist.name in installed, f"{name}: {program} is not installed"
        args = [a if not interpolations(a) else "x" for a in args]
        if program == "beliefscope":
            build_parser(args[0]).parse_args(args)  # argparse exits on an unknown flag
        else:
            exe = Path(sys.executable).with_name(program)
            done = subprocess.run([str(exe), args[0], "--help"], capture_output=True, text=True)
            assert done.returncode == 0, f"{name}: {shlex.join([program, args[0]])}: {done.stderr}"
            flags = {a for a in args if a.startswith("--")}
            unknown = [f for f in flags if f not in done.stdout]
            assert not unknown, f"{name}: {program} {args[0]} has no {unknown}"


def test_configuration_comes_from_the_environment_and_has_no_secrets(compose: dict) -> None:
    fields = {f"BELIEFSCOPE_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if key.startswith("BELIEFSCOPE_"):
                assert key in fields, f"{name}: {key} is not a setting"
            if any(word in key for word in SECRET_WORDS):
                (expr,) = interpolations(str(value)) or [None]
                assert expr is not None and ":?" in expr and str(value) == f"${{{expr}}}", (
                    f"{name}: {key} must come from the environment with no default"
                )
        url = (service.get("environment") or {}).get("BELIEFSCOPE_STORE", "")
        userinfo = re.sub(r"\$\{[^}]*\}", "x", url).split("//")[-1].split("@")[0]
        assert "@" not in url or ":" not in userinfo, f"{name}: a password in the store URL"
