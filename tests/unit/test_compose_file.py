"""Structural checks of docker-compose.yml and the Dockerfile it builds, without Docker.

Each check is a function returning the problems it finds. The real files must have none, and
each check is also run on a deliberately broken copy of the compose file to prove it can fail.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

REQUIRED_SERVICES = frozenset(
    {
        "postgresql",
        "temporal",
        "temporal-admin-tools",
        "temporal-ui",
        "app-db",
        "migrate",
        "worker",
        "webhook",
    }
)
APP_SERVICES = ("migrate", "worker", "webhook")
DEPENDENCY_CONDITIONS = frozenset(
    {"service_started", "service_healthy", "service_completed_successfully"}
)
# Published ports bind to loopback only: Temporal and its UI have no authentication here.
ALLOWED_HOST_IP = "127.0.0.1"

Compose = dict[str, Any]


def load_compose(path: Path = COMPOSE_FILE) -> Compose:
    # Compose's YAML supports anchors and `<<` merge keys; so does PyYAML's safe loader.
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} must be a mapping at the top level"
    return data


def services_of(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "compose file defines no services"
    return services


def dependencies(service: Mapping[str, Any]) -> dict[str, str]:
    """depends_on in either syntax, as {service name: condition}."""
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in depends_on.items()
    }


# --- checks ---------------------------------------------------------------------------------


def missing_required_services(compose: Compose) -> list[str]:
    return [
        f"missing service {name!r}"
        for name in sorted(REQUIRED_SERVICES - set(services_of(compose)))
    ]


def dependency_problems(compose: Compose) -> list[str]:
    services = services_of(compose)
    problems: list[str] = []
    for name, service in services.items():
        for target, condition in dependencies(service).items():
            if target not in services:
                problems.append(f"{name} depends on undefined service {target!r}")
                continue
            if condition not in DEPENDENCY_CONDITIONS:
                problems.append(f"{name} -> {target}: unknown condition {condition!r}")
            if condition == "service_healthy" and not services[target].get("healthcheck"):
                problems.append(
                    f"{name} waits for {target} to be healthy, but it has no healthcheck"
                )
            restart = str(services[target].get("restart", "no"))
            if condition == "service_completed_successfully" and restart in {
                "always",
                "unless-stopped",
            }:
                problems.append(f"{name} waits for one-shot {target}, which restarts ({restart})")
    problems.extend(f"dependency cycle: {' -> '.join(cycle)}" for cycle in _cycles(services))
    return problems


def _cycles(services: Mapping[str, Mapping[str, Any]]) -> Iterator[list[str]]:
    state: dict[str, str] = {}  # "visiting" or "done"

    def visit(name: str, path: list[str]) -> Iterator[list[str]]:
        state[name] = "visiting"
        for target in dependencies(services[name]):
            if target not in services:
                continue
            if state.get(target) == "visiting":
                yield [*path[path.index(target) :], target]
            elif target not in state:
                yield from visit(target, [*path, target])
        state[name] = "done"

    for name in services:
        if name not in state:
            yield from visit(name, [name])


def image_or_build_problems(compose: Compose) -> list[str]:
    return [
        f"{name} has neither image nor build"
        for name, service in services_of(compose).items()
        if not service.get("image") and not service.get("build")
    ]


_DOLLAR = re.compile(r"\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*|.|$)", re.DOTALL)
_WITH_DEFAULT = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*:?-[^}]*\}")


def interpolation_problems(compose: Compose) -> list[str]:
    """Every ${VAR} needs a default (${VAR:-x}); `$$` is a literal dollar, not interpolation."""
    problems: list[str] = []
    for where, text in _strings(compose, "compose"):
        for match in _DOLLAR.finditer(text.replace("$$", "")):
            if not _WITH_DEFAULT.fullmatch(match.group(1)):
                problems.append(f"{where}: ${match.group(1)} has no default (use ${{VAR:-value}})")
    return problems


def _strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{where}[{index}]")


_HOST_IP = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:]*\]):")


def port_problems(compose: Compose) -> list[str]:
    problems: list[str] = []
    for name, service in services_of(compose).items():
        for port in service.get("ports") or []:
            if isinstance(port, Mapping):
                host_ip = port.get("host_ip")
            else:
                # "[host_ip:]host_port:container_port[/proto]"; no host_ip means every interface.
                match = _HOST_IP.match(str(port))
                host_ip = match.group(1).strip("[]") if match else None
            if host_ip != ALLOWED_HOST_IP:
                problems.append(f"{name} publishes {port!r} beyond {ALLOWED_HOST_IP}")
    return problems


def volume_problems(compose: Compose) -> list[str]:
    declared = set(compose.get("volumes") or {})
    problems: list[str] = []
    for name, service in services_of(compose).items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, Mapping):
                source = volume.get("source") if volume.get("type") == "volume" else None
            else:
                source = str(volume).split(":")[0]
                if source.startswith((".", "/", "~", "$")) or ":" not in str(volume):
                    source = None  # bind mount or anonymous volume
            if source and source not in declared:
                problems.append(f"{name} uses undeclared named volume {source!r}")
    return problems


def app_env_problems(compose: Compose) -> list[str]:
    """The app's TEO_* addresses must name services in this file, the same for every app service."""
    services = services_of(compose)
    problems: list[str] = []
    urls: dict[str, str] = {}
    for name in APP_SERVICES:
        env = _environment(services.get(name, {}))
        address = env.get("TEO_TEMPORAL_ADDRESS", "")
        database_url = env.get("TEO_DATABASE_URL", "")
        if address.rpartition(":")[0] not in services:
            problems.append(f"{name}: TEO_TEMPORAL_ADDRESS {address!r} is not a service here")
        if not database_url.startswith("postgresql+psycopg://"):
            problems.append(f"{name}: TEO_DATABASE_URL {database_url!r} is not postgresql+psycopg")
        elif urlsplit(database_url).hostname not in services:
            problems.append(f"{name}: TEO_DATABASE_URL host is not a service here")
        urls[name] = database_url
    if len(set(urls.values())) > 1:
        problems.append(f"the app services use different databases: {urls}")
    return problems


def bind_mount_problems(compose: Compose, root: Path) -> list[str]:
    """Files and directories bind-mounted from the repository (``./deploy/...``) exist."""
    problems: list[str] = []
    for name, service in services_of(compose).items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, Mapping):
                source = str(volume.get("source", "")) if volume.get("type") == "bind" else ""
            else:
                source = str(volume).split(":")[0]
            if source.startswith(".") and not (root / source).exists():
                problems.append(f"{name} mounts {source}, which does not exist")
    return problems


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def built_service_problems(compose: Compose, root: Path) -> list[str]:
    """Services built from a Dockerfile run a script that exists and that the image contains."""
    problems: list[str] = []
    for name, service in services_of(compose).items():
        build = service.get("build")
        if not build:
            continue
        spec = {"context": build} if isinstance(build, str) else build
        context = (root / spec.get("context", ".")).resolve()
        dockerfile = context / spec.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"{name}: {dockerfile} does not exist")
            continue
        instructions = parse_dockerfile(dockerfile.read_text(encoding="utf-8"))
        command = service.get("command") or _final_cmd(instructions)
        argv = shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]
        scripts = [arg for arg in argv if arg.endswith(".py")]
        if not scripts:
            problems.append(f"{name}: command {argv} runs no Python script")
            continue
        script = scripts[0]
        if not (context / script).is_file():
            problems.append(f"{name}: runs {script}, which does not exist in {context}")
        if not any(_covers(source, script) for source in copied_sources(instructions)):
            problems.append(f"{name}: runs {script}, which the Dockerfile does not COPY")
        if _ignored(context, script):
            problems.append(f"{name}: runs {script}, which .dockerignore excludes")
        for source in copied_sources(instructions, final_stage_only=False):
            if not (context / source).exists() or _ignored(context, source.rstrip("/")):
                problems.append(f"{name}: the Dockerfile copies {source}, absent from the context")
    return problems


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :] if starts else instructions


def _final_cmd(instructions: list[tuple[str, str]]) -> list[str] | str:
    cmds = [arguments for keyword, arguments in _final_stage(instructions) if keyword == "CMD"]
    if not cmds:
        return []
    return json.loads(cmds[-1]) if cmds[-1].startswith("[") else cmds[-1]


def copied_sources(
    instructions: list[tuple[str, str]], *, final_stage_only: bool = True
) -> list[str]:
    """Sources of COPY/ADD instructions that read the build context (not another stage)."""
    sources: list[str] = []
    for keyword, arguments in _final_stage(instructions) if final_stage_only else instructions:
        if keyword not in {"COPY", "ADD"}:
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def _covers(source: str, path: str) -> bool:
    source_path = PurePosixPath(source.rstrip("/") or ".")
    target = PurePosixPath(path)
    return (
        source_path == PurePosixPath(".") or target == source_path or source_path in target.parents
    )


def _ignored(context: Path, path: str) -> bool:
    ignore_file = context / ".dockerignore"
    if not ignore_file.is_file():
        return False
    patterns = [
        line.strip().rstrip("/")
        for line in ignore_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        for pattern in patterns
        for prefix in prefixes
    )


# --- the real files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


def test_compose_file_parses_and_defines_the_required_services(compose: Compose) -> None:
    assert missing_required_services(compose) == []


def test_every_dependency_names_an_existing_service_and_can_be_met(compose: Compose) -> None:
    assert dependency_problems(compose) == []


def test_every_service_has_an_image_or_a_build(compose: Compose) -> None:
    assert image_or_build_problems(compose) == []


def test_every_interpolated_variable_has_a_default(compose: Compose) -> None:
    assert interpolation_problems(compose) == []


def test_published_ports_bind_to_loopback_only(compose: Compose) -> None:
    assert port_problems(compose) == []


def test_named_volumes_are_declared(compose: Compose) -> None:
    assert volume_problems(compose) == []


def test_app_services_point_at_services_of_this_stack(compose: Compose) -> None:
    assert app_env_problems(compose) == []


def test_built_services_run_scripts_that_exist_and_are_copied_into_the_image(
    compose: Compose,
) -> None:
    assert built_service_problems(compose, ROOT) == []


@pytest.mark.parametrize("name", ["worker", "webhook"])
def test_app_starts_only_after_migration_and_search_attribute_registration(
    compose: Compose, name: str
) -> None:
    service = dependencies(services_of(compose)[name])
    assert service.get("migrate") == "service_completed_successfully"
    assert service.get("temporal-admin-tools") == "service_completed_successfully"


def test_files_mounted_from_the_repository_exist(compose: Compose) -> None:
    assert bind_mount_problems(compose, ROOT) == []


def test_webhook_runs_webhook_py_and_starts_with_no_secret_baked_in(compose: Compose) -> None:
    webhook = services_of(compose)["webhook"]
    env = _environment(webhook)
    assert webhook["command"] == ["python", "webhook.py"]
    # Empty unless the operator sets one: the webhook then refuses to start.
    assert env["TEO_WEBHOOK_SHARED_SECRET"] == "${TEO_WEBHOOK_SHARED_SECRET:-}"
    assert env["TEO_WEBHOOK_HMAC_SECRET"] == "${TEO_WEBHOOK_HMAC_SECRET:-}"


def test_monitoring_services_are_optional(compose: Compose) -> None:
    services = services_of(compose)
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    assert not any(
        "prometheus" in dependencies(s) or "grafana" in dependencies(s)
        for name, s in services.items()
        if name not in {"prometheus", "grafana"}
    )


def test_dockerfile_installs_the_lock_and_runs_the_worker_as_non_root() -> None:
    instructions = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    final = _final_stage(instructions)
    users = [arguments.split(":")[0] for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage sets no USER, so the container runs as root"
    assert users[-1] not in {"root", "0"}
    assert any(
        keyword == "RUN" and "uv sync --frozen --no-dev" in arguments
        for keyword, arguments in instructions
    )
    assert {"pyproject.toml", "uv.lock"} <= {
        source
        for keyword, arguments in instructions
        if keyword == "COPY"
        for source in arguments.split()
    }
    assert _final_cmd(instructions) == ["python", "worker.py"]


# --- the checks can fail ----------------------------------------------------------------------


def _broken(compose: Compose, path: str, value: Any) -> Compose:
    """A deep copy with the value at a dotted path (services.worker.ports) replaced."""
    broken = copy.deepcopy(compose)
    *parents, leaf = path.split(".")
    node = broken
    for key in parents:
        node = node[key]
    if value is None:
        del node[leaf]
    else:
        node[leaf] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "check", "expected"),
    [
        ("services.migrate", None, missing_required_services, "missing service 'migrate'"),
        (
            "services.worker.depends_on",
            {"migrat": {"condition": "service_completed_successfully"}},
            dependency_problems,
            "undefined service 'migrat'",
        ),
        ("services.worker.depends_on", ["temporl"], dependency_problems, "undefined service"),
        (
            "services.migrate.depends_on",
            {"temporal": {"condition": "service_healthy"}},
            dependency_problems,
            "has no healthcheck",
        ),
        (
            "services.migrate.depends_on",
            {"worker": {"condition": "service_started"}},
            dependency_problems,
            "dependency cycle",
        ),
        ("services.migrate.restart", "always", dependency_problems, "restarts"),
        ("services.temporal.image", None, image_or_build_problems, "temporal has neither"),
        (
            "services.temporal.environment.POSTGRES_PWD",
            "${TEMPORAL_DB_PASSWORD}",
            interpolation_problems,
            "no default",
        ),
        (
            "services.temporal.environment.POSTGRES_PWD",
            "$PASSWORD",
            interpolation_problems,
            "no default",
        ),
        ("services.temporal.ports", ["7233:7233"], port_problems, "beyond"),
        ("services.temporal-ui.ports", ["0.0.0.0:8080:8080"], port_problems, "beyond"),
        (
            "services.temporal-ui.ports",
            [{"target": 8080, "published": 8080}],
            port_problems,
            "beyond",
        ),
        ("volumes", {}, volume_problems, "undeclared named volume"),
        (
            "services.worker.environment",
            {"TEO_TEMPORAL_ADDRESS": "temporl:7233", "TEO_DATABASE_URL": "sqlite:///x.db"},
            app_env_problems,
            "TEO_TEMPORAL_ADDRESS",
        ),
        ("services.webhook", None, missing_required_services, "missing service 'webhook'"),
        ("services.webhook.ports", ["8090:8090"], port_problems, "beyond"),
        (
            "services.webhook.environment.TEO_DATABASE_URL",
            "postgresql+psycopg://u:p@other-db:5432/x",
            app_env_problems,
            "TEO_DATABASE_URL host",
        ),
    ],
)
def test_check_reports_a_broken_compose_file(
    compose: Compose, path: str, value: Any, check: Any, expected: str
) -> None:
    problems = check(_broken(compose, path, value))
    assert any(expected in problem for problem in problems), problems


def test_bind_mount_check_reports_a_missing_file(compose: Compose) -> None:
    broken = _broken(compose, "services.prometheus.volumes", ["./deploy/nowhere.yml:/etc/x.yml"])
    assert bind_mount_problems(broken, ROOT) == [
        "prometheus mounts ./deploy/nowhere.yml, which does not exist"
    ]


def test_built_service_check_reports_a_webhook_script_missing_from_the_image(
    compose: Compose, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        (ROOT / "Dockerfile").read_text(encoding="utf-8").replace(" webhook.py", ""),
        encoding="utf-8",
    )
    for source in ("orchestrator", "workflows", "activities", "demo"):
        (tmp_path / source).mkdir()
    for script in ("worker.py", "starter.py", "webhook.py", "pyproject.toml", "uv.lock"):
        (tmp_path / script).write_text("", encoding="utf-8")
    problems = built_service_problems(compose, tmp_path)
    assert problems == ["webhook: runs webhook.py, which the Dockerfile does not COPY"]


def test_escaped_dollar_is_not_taken_for_interpolation(compose: Compose) -> None:
    fine = _broken(compose, "services.temporal.environment.X", "$${HOME} ${A:-1} ${B-2}")
    assert interpolation_problems(fine) == []


def test_built_service_check_reports_missing_and_uncopied_scripts(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        'FROM python:3.11-slim\nCOPY worker.py ./\nCMD ["python", "worker.py"]\n', encoding="utf-8"
    )
    (tmp_path / "worker.py").write_text("", encoding="utf-8")
    (tmp_path / "starter.py").write_text("", encoding="utf-8")
    compose = {
        "services": {
            "worker": {"build": "."},
            "missing": {"build": ".", "command": ["python", "nowhere.py"]},
            "uncopied": {"build": {"context": "."}, "command": "python starter.py db upgrade"},
        }
    }
    problems = built_service_problems(compose, tmp_path)
    assert not any(problem.startswith("worker:") for problem in problems), problems
    assert any("nowhere.py, which does not exist" in problem for problem in problems), problems
    assert any("starter.py, which the Dockerfile does not COPY" in problem for problem in problems)

    (tmp_path / "worker.py").unlink()
    problems = built_service_problems(compose, tmp_path)
    assert any("worker: runs worker.py, which does not exist" in p for p in problems), problems
    assert any("copies worker.py, absent from the context" in p for p in problems), problems


def test_built_service_check_reports_sources_excluded_by_dockerignore(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11-slim\nCOPY worker.py ./\nCOPY tests/ ./tests/\n"
        'CMD ["python", "worker.py"]\n',
        encoding="utf-8",
    )
    (tmp_path / ".dockerignore").write_text("tests/\n**/__pycache__\n", encoding="utf-8")
    (tmp_path / "worker.py").write_text("", encoding="utf-8")
    (tmp_path / "tests").mkdir()
    problems = built_service_problems({"services": {"worker": {"build": "."}}}, tmp_path)
    assert problems == ["worker: the Dockerfile copies tests/, absent from the context"]


# --- the Compose Specification's JSON schema --------------------------------------------------

COMPOSE_SCHEMA = ROOT / ".tools" / "compose-spec" / "compose-spec.json"
"""Fetched by ``make test`` (scripts/fetch-compose-schema.sh): the schema as of 2021-10."""
NEWER_THAN_THE_SCHEMA = ("name",)
"""Top-level keys the Compose Specification added after that schema (``name``: 2022)."""


def schema_errors(document: Mapping[str, Any]) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema_rs.validator_for(schema)
    checked = {k: v for k, v in document.items() if k not in NEWER_THAN_THE_SCHEMA}
    return [
        f"{'/'.join(map(str, e.instance_path))}: {e.message}"
        for e in validator.iter_errors(checked)
    ]


def test_compose_file_is_valid_against_the_compose_specification_schema(
    compose: Compose,
) -> None:
    assert COMPOSE_SCHEMA.is_file(), f"{COMPOSE_SCHEMA} is missing: run `make test` (it fetches it)"
    assert schema_errors(compose) == []


def test_the_schema_check_reports_a_broken_compose_file(compose: Compose) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["restart"] = ["always"]
    broken["services"]["worker"]["depends_on"] = "migrate"
    broken["services"]["webhook"]["ports"] = [{"target": "not-a-number"}]
    errors = schema_errors(broken)
    assert any(e.startswith("services/worker/restart") for e in errors), errors
    assert any(e.startswith("services/worker/depends_on") for e in errors), errors
    assert any(e.startswith("services/webhook/ports") for e in errors), errors
