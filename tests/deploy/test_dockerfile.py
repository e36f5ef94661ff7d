"""Lint-like checks of the Dockerfile: non-root, healthcheck, layer order, torch build, secrets."""

from __future__ import annotations

import fnmatch
import re
import tomllib

from tests.deploy.conftest import ROOT, Instruction, parse_dockerfile

PACKAGES = ("beliefscope", "ingest", "server", "dashboard")


def _final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(dockerfile) if ins.keyword == "FROM"]
    assert starts, "no FROM"
    return dockerfile[starts[-1] :]


def _index(stage: list[Instruction], keyword: str, pattern: str) -> int:
    hits = [
        i for i, ins in enumerate(stage) if ins.keyword == keyword and re.search(pattern, ins.args)
    ]
    assert hits, f"no {keyword} matching {pattern!r}"
    return hits[0]


def test_runs_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    stage = _final_stage(dockerfile)
    users = [i for i, ins in enumerate(stage) if ins.keyword == "USER"]
    assert users, "no USER: the container would run as root"
    assert stage[users[-1]].args.split(":")[0] not in ("root", "0")
    cmd = [i for i, ins in enumerate(stage) if ins.keyword in ("CMD", "ENTRYPOINT")]
    assert cmd and users[-1] < cmd[-1]


def test_healthcheck_calls_healthz_on_the_served_port(dockerfile: list[Instruction]) -> None:
    stage = _final_stage(dockerfile)
    (check,) = [ins for ins in stage if ins.keyword == "HEALTHCHECK"]
    assert "/healthz" in check.args and "CMD" in check.args
    env = " ".join(ins.args for ins in stage if ins.keyword == "ENV")
    port = re.search(r"BELIEFSCOPE_PORT=(\d+)", env)
    assert port, "the image sets BELIEFSCOPE_PORT"
    assert [ins.args for ins in stage if ins.keyword == "EXPOSE"] == [port.group(1)]
    (cmd,) = [ins for ins in stage if ins.keyword == "CMD"]
    assert '"beliefscope", "serve"' in cmd.args


def test_dependencies_layer_comes_before_the_source(dockerfile: list[Instruction]) -> None:
    stage = _final_stage(dockerfile)
    manifest = _index(stage, "COPY", r"^pyproject\.toml\b")
    deps = _index(stage, "RUN", r"pip install .*-r ")
    sources = [_index(stage, "COPY", rf"^{name}\b") for name in PACKAGES]
    install = _index(stage, "RUN", r"pip install --no-deps ")
    assert manifest < deps < min(sources) <= max(sources) < install
    # nothing of the source is copied before the dependencies are installed
    early = [ins.args for ins in stage[:deps] if ins.keyword in ("COPY", "ADD")]
    assert early == ["pyproject.toml ./"], early
    # the packages copied are the ones pyproject.toml ships
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert shipped == set(PACKAGES)


def test_cpu_torch_by_default_and_a_build_argument_for_cuda(dockerfile: list[Instruction]) -> None:
    args = dict(
        ins.args.split("=", 1) for ins in dockerfile if ins.keyword == "ARG" and "=" in ins.args
    )
    assert args["TORCH_INDEX"] == "cpu"
    pin = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert pin and args["TORCH_VERSION"] == pin.group(1), "the image's torch is the project's pin"
    torch_run = _index(dockerfile, "RUN", r"torch==\$\{TORCH_VERSION\}")
    assert "download.pytorch.org/whl/${TORCH_INDEX}" in dockerfile[torch_run].args
    assert "cluster" in args["EXTRAS"].split(",")


def test_no_secrets_in_the_image(dockerfile: list[Instruction]) -> None:
    for ins in dockerfile:
        if ins.keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", ins.args) or [ins.args.split()[0]]
            for name in names:
                assert not re.search(r"PASSWORD|SECRET|TOKEN|KEY", name, re.I), (ins.line, name)
            assert "postgresql" not in ins.args, f"line {ins.line}: a store URL baked in"
        if ins.keyword in ("COPY", "ADD"):
            assert ".env" not in ins.args and not ins.args.startswith(". "), ins
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore and "*" in ignore, ".dockerignore must exclude everything not named"
    for secret in (".env", "server/.env", "store.db", "keys/server.key"):
        assert _ignored(secret, ignore), f"{secret} would be sent to the build"
    for needed in ("pyproject.toml", "README.md", "beliefscope/cli/__init__.py", "server/app.py"):
        assert not _ignored(needed, ignore), f"{needed} would be missing from the build"


def test_parser_joins_continuations_and_drops_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM x\nRUN a \\\n  # inner\n  && b\nUSER u\n")
    assert [(i.keyword, i.args, i.line) for i in parsed] == [
        ("FROM", "x", 2),
        ("RUN", "a && b", 3),
        ("USER", "u", 6),
    ]


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics (last match wins, `!` re-includes, a dir covers its files)."""
    ignored = False
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").removeprefix("**/")
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))] + parts
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            ignored = not negate
    return ignored
