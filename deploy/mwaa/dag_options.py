"""The DAG's `totesys.*` options, checked before anything is written.

MWAA hands them to the DAG as AIRFLOW__TOTESYS__* variables, and the DAG parses them when it
is imported: a value its parser refuses (`load_every_minutes=15m`) or a cron string Airflow
refuses fails the DAG import on MWAA, where no task runs and so no email is sent. So the
options are parsed here with the DAG's own parser, taken from the tree being shipped
(`dags/totesys_airflow/config.py` imports nothing from Airflow; the pipeline settings among
its options are declared in `etl.config`, imported from this same tree), and a misspelt key,
which the DAG would silently ignore, is refused.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from croniter import croniter  # type: ignore[import-untyped]

from deploy.mwaa.config import DeployError
from etl.config import Settings, declarations, extra
from etl.errors import ConfigError

SECTION = "totesys"
DAG_CONFIG = Path("dags") / "totesys_airflow" / "config.py"
# fields that must be at least this (0 would divide by zero or disable a guard)
MINIMUM = {
    "load_every_minutes": 1,
    "freshness_threshold_minutes": 1,
    "task_timeout_minutes": 1,
    "retries": 0,
    "retry_delay_seconds": 0,
    "overlap_seconds": 0,
}


def _dag_config_class(project_root: Path) -> Any:
    """DagConfig from the project being deployed, loaded by path: the parser MWAA will run."""
    path = project_root / DAG_CONFIG
    spec = importlib.util.spec_from_file_location("_shipped_totesys_airflow_config", path)
    if spec is None or spec.loader is None:
        raise DeployError(f"cannot load the DAG's settings parser {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (pydantic's too) look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module.DagConfig


def check_dag_options(options: Mapping[str, str], project_root: Path) -> Any:
    """Refuse, in one line, a `totesys.*` option the DAG would ignore or fail on; the DAG's
    settings (its DagConfig) as MWAA will read them."""
    dag_config = _dag_config_class(project_root)
    known = list(dag_config.__dataclass_fields__)
    env = {}
    for option, value in options.items():
        section, _, key = option.partition(".")
        if section != SECTION:
            continue
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {SECTION}.{close[0]}?)" if close else ""
            raise DeployError(f"option {option}: the DAG has no such setting{hint}")
        variable = f"AIRFLOW__TOTESYS__{key.upper()}"
        try:
            dag_config.from_env({variable: value})
        except (TypeError, ValueError) as error:
            raise DeployError(f"option {option}: the DAG cannot read it ({error})") from None
        env[variable] = value
    config = dag_config.from_env(env)
    for key, minimum in MINIMUM.items():
        if not getattr(config, key) >= minimum:  # NaN too
            raise DeployError(f"option {SECTION}.{key} must be at least {minimum}")
    schedule = str(config.ingest_schedule)
    if not _valid_cron(schedule):
        raise DeployError(
            f"option {SECTION}.ingest_schedule {schedule!r} is not a cron expression "
            "(five fields, e.g. '*/5 * * * *', or a preset such as @hourly)"
        )
    _check_pipeline_settings(config, given=set(env))
    return config


def _check_pipeline_settings(config: Any, given: set[str]) -> None:
    """The pipeline settings among the options, read by `etl.config.Settings` as each task
    will read them: a value it refuses (a time zone that does not exist, a schema that is
    not an identifier) would otherwise fail every task on MWAA, one email each. Each option
    given is read alone first, so the error names it; then all together, for the checks
    that join two settings."""
    texts = config.pipeline_options()
    owners = {extra(info, "setting"): name for name, info in declarations(type(config)).items()}
    for setting, text in texts.items():
        option = owners[setting]
        if f"AIRFLOW__TOTESYS__{option.upper()}" not in given:
            continue
        try:
            # a file stands in, so `metrics_sink=local` is read alone; all together check it
            Settings.from_text({setting: text}, metrics_file="stand-in")
        except ConfigError as error:
            raise DeployError(f"option {SECTION}.{option}: {error}") from None
    try:
        Settings.from_text(texts)
    except ConfigError as error:
        raise DeployError(f"options {SECTION}.*: {error}") from None


def _valid_cron(expression: str) -> bool:
    """What Airflow's cron timetable takes: five fields, or one of croniter's @ presets."""
    if not expression.startswith("@") and len(expression.split()) != 5:
        return False
    return bool(croniter.is_valid(expression))
