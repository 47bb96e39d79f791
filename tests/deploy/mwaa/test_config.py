"""The deployer's settings are declared once (deploy/mwaa/config.py): the alert addresses
are the DAG's own declaration, and the command line's flags take the declared defaults, so
the table docs/deploy-mwaa.md renders from the declarations is what the command does."""

from __future__ import annotations

import sys

import pytest

from deploy.mwaa.cli import _parser, config_from_args
from deploy.mwaa.config import DeployConfig, DeployError
from etl.config import AlertSettings, declarations, extra
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "dags"))

from totesys_airflow.config import DagConfig


def test_the_deployer_and_the_dag_share_one_declaration_of_the_alert_addresses() -> None:
    deploy, dag, declared = DeployConfig("prod"), DagConfig(), AlertSettings()
    assert deploy.alert_emails == dag.alert_emails == declared.alert_emails
    assert deploy.alert_from == dag.alert_from == declared.alert_from
    for name in ("alert_emails", "alert_from"):
        description = declarations(AlertSettings)[name].description
        assert declarations(DeployConfig)[name].description == description
        assert declarations(DagConfig)[name].description == description


def test_each_declared_flag_exists_with_the_declared_default() -> None:
    parser = _parser({})
    by_flag = {flag: action for action in parser._actions for flag in action.option_strings}
    for name, info in declarations(DeployConfig).items():
        flag = extra(info, "flag")
        if not flag:
            continue
        assert flag in by_flag, f"{name}: no {flag}"
        if info.is_required() or name == "extra_options":
            continue
        default = info.get_default(call_default_factory=True)
        assert by_flag[flag].default == default, (
            f"{flag}: the command's default is not the declared"
        )


def test_a_declared_environment_fallback_is_the_one_the_flag_reads() -> None:
    for name, info in declarations(DeployConfig).items():
        variable = extra(info, "env")
        if not variable:
            continue
        value = "subnet-a,subnet-b" if name.endswith("_ids") else "fallback"
        parser = _parser({variable: value})
        flag = str(extra(info, "flag"))
        read = getattr(parser.parse_args([]), flag.removeprefix("--").replace("-", "_"))
        assert read in (value, tuple(value.split(","))), f"{flag} does not fall back to {variable}"


def test_a_variable_set_to_nothing_is_refused_not_replaced_by_the_default() -> None:
    """An empty DEPLOY_PREFIX must not quietly aim the deploy at the default `totesys-<env>`."""
    args = _parser({"MWAA_ENV_NAME": "prod", "DEPLOY_PREFIX": ""}).parse_args([])
    with pytest.raises(DeployError, match=r"^prefix '': lower-case letters"):
        config_from_args(args)
