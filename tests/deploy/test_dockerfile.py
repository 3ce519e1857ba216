"""The Dockerfile, checked without a Docker engine: it is parsed into stages and instructions, and its
promises are checked against the repository (multi-stage, non-root, healthcheck, no dev dependencies,
OCI labels, every COPY source present and not excluded by .dockerignore, an entrypoint that exists)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from portal.config import load_settings
from portal.ops import probe

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def resolve(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore glob (rooted; ``*`` within one name, ``**`` across directories)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context drops ``path``: a pattern matches it or one of its parent folders;
    the last matching pattern wins, ``!`` re-includes."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _ignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_parser_and_ignore_matcher_work() -> None:
    args, stages = parse_dockerfile("ARG A=x\nFROM img:${A} AS one\n# c\nRUN a \\\n  b\nFROM one\nUSER 1\n")
    assert args == {"A": "x"}
    assert [(s.base, s.name) for s in stages] == [("img:${A}", "one"), ("one", None)]
    assert stages[0].all("RUN") == ["a  b"]
    patterns = ["tests", "**/__pycache__", "*.env", "!keep.env"]
    assert dockerignored("tests/unit/x.py", patterns)
    assert dockerignored("portal/__pycache__/a.pyc", patterns)
    assert dockerignored("prod.env", patterns)
    assert not dockerignored("keep.env", patterns)
    assert not dockerignored("portal/app.py", patterns)
    assert not dockerignored("deploy/prod.env", patterns), "a root-level glob does not reach into folders"


def test_multi_stage_with_a_separate_runtime(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    args, stages = dockerfile
    assert len(stages) >= 2
    runtime = stages[-1]
    assert runtime.name == "runtime"
    names = [s.name for s in stages]
    for stage in stages:
        for copy in stage.all("COPY"):
            source_stage = re.search(r"--from=(\S+)", copy)
            if source_stage:
                assert source_stage.group(1) in names[: stages.index(stage)], copy
    base = resolve(runtime.base, args)
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", base), base
    minimum = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert tuple(map(int, base.split(":")[1].split("-")[0].split("."))) >= tuple(
        map(int, minimum.removeprefix(">=").split("."))
    )
    assert resolve(args["UV_IMAGE"], args).rsplit(":", 1)[1][0].isdigit(), "pin the uv image version"
    assert not runtime.all("RUN") or all("uv" not in r.split() for r in runtime.all("RUN"))
    assert all("--from=builder" in c for c in runtime.all("COPY")), "the runtime copies only the built venv"


def test_runtime_runs_as_an_unprivileged_user(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    runtime = dockerfile[1][-1]
    users = runtime.all("USER")
    assert users, "no USER in the runtime stage: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    keywords = [kw for kw, _ in runtime.instructions]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert keywords.index("USER") < keywords.index("CMD")


def test_dependencies_are_locked_and_without_dev(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    syncs = [r for s in dockerfile[1] for r in s.all("RUN") if "uv sync" in r]
    assert len(syncs) >= 2
    for command in syncs:
        assert "--locked" in command, command
        assert "--no-dev" in command, command
    assert any("--no-editable" in c for c in syncs), "the app must be installed, not linked to /src"


def test_every_copy_source_exists_and_reaches_the_context(
    dockerfile: tuple[dict[str, str], list[Stage]], ignore_patterns: list[str]
) -> None:
    copied = []
    for stage in dockerfile[1]:
        for copy in stage.all("COPY"):
            if "--from=" in copy:
                continue
            words = [w for w in shlex.split(copy) if not w.startswith("--")]
            copied.extend(words[:-1])
    assert {"pyproject.toml", "uv.lock", "portal", "migrations", "templates", "static"} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source, ignore_patterns), f"COPY {source}: excluded by .dockerignore"
    for secret in (".env", "deploy/.env", "data/portal.db", ".git/config", "tests/conftest.py"):
        assert dockerignored(secret, ignore_patterns), f"{secret} would be sent to the Docker daemon"


def test_labels_entrypoint_and_healthcheck(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    runtime = dockerfile[1][-1]
    labels = " ".join(runtime.all("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(entrypoint) == ["portal"]
    assert "portal" in scripts
    assert json.loads(cmd) == ["serve"]
    (healthcheck,) = runtime.all("HEALTHCHECK")
    probe_command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert probe_command == ["python", "-m", "portal.ops.probe"]
    assert (ROOT / "portal" / "ops" / "probe.py").is_file()
    assert "SIGTERM" in runtime.all("STOPSIGNAL")


def test_runtime_environment_is_valid_portal_settings(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    env: dict[str, str] = {}
    for line in dockerfile[1][-1].all("ENV"):
        for word in shlex.split(line):
            name, _, value = word.partition("=")
            env[name] = value
    portal_env = {k: v for k, v in env.items() if k.startswith("PORTAL_")}
    settings = load_settings({**portal_env, "PORTAL_SECRET_KEY": "s" * 40})
    assert settings.host == "0.0.0.0"
    assert settings.data_dir == "/data"
    assert probe.probe_url(portal_env) == f"http://127.0.0.1:{settings.port}/healthz"


def test_probe_speaks_https_when_tls_is_configured() -> None:
    assert probe.probe_url({"PORTAL_PORT": "9443", "PORTAL_TLS_CERT_FILE": "/c.pem"}) == (
        "https://127.0.0.1:9443/healthz"
    )
    assert probe.main({"PORTAL_PORT": "1"}, timeout_s=1) == 1
