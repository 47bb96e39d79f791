"""`python -m deploy mwaa` makes the alert topic, the dashboard and the two alarms (moto)."""

from __future__ import annotations

import json

import pytest

from deploy.mwaa.config import DeployConfig
from deploy.mwaa.monitoring import alarms, dashboard
from tests.deploy.mwaa.conftest import Deployment, as_get_environment, expect_create, not_found
from tests.deploy.mwaa.test_apply import expect_update, first_apply

ALERTS = ("data-team@terrifictotes.com",)


def test_apply_makes_topic_subscriptions_alarms_and_dashboard(deployment: Deployment) -> None:
    first_apply(deployment)
    stem = f"totesys-{deployment.env_name}"
    clients = deployment.clients

    (topic,) = [t["TopicArn"] for t in clients.sns.list_topics()["Topics"]
                if t["TopicArn"].endswith(f":{stem}-alerts")]  # fmt: skip
    subscriptions = clients.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert {(s["Protocol"], s["Endpoint"]) for s in subscriptions} == {("email", ALERTS[0])}

    found = clients.cloudwatch.describe_alarms(AlarmNamePrefix=stem)["MetricAlarms"]
    by_name = {a["AlarmName"]: a for a in found}
    lag, dead = by_name[f"{stem}-warehouse-lag"], by_name[f"{stem}-nothing-loaded"]
    assert (lag["Namespace"], lag["MetricName"]) == (
        f"Totesys/Pipeline/{stem}",  # this environment's own namespace
        "WarehouseLagSeconds",
    )
    assert lag["Threshold"] == 1800.0 and lag["ComparisonOperator"] == "GreaterThanThreshold"
    # silence while ingest or transform fail is no recovery; one overrunning run no alarm
    assert lag["TreatMissingData"] == "ignore"
    assert (lag["EvaluationPeriods"], lag["DatapointsToAlarm"]) == (3, 2)
    assert (dead["MetricName"], dead["Statistic"]) == ("LoadSucceeded", "Sum")
    assert dead["Period"] == 3600 and dead["ComparisonOperator"] == "LessThanThreshold"
    assert dead["TreatMissingData"] == "breaching"  # silence is the failure it catches
    heartbeat = by_name[f"{stem}-scheduler-heartbeat"]
    assert (heartbeat["Namespace"], heartbeat["MetricName"]) == ("AmazonMWAA", "SchedulerHeartbeat")
    assert heartbeat["TreatMissingData"] == "breaching"
    assert {"Name": "Function", "Value": "Scheduler"} in heartbeat["Dimensions"]
    for alarm in (lag, dead, heartbeat):
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
        assert {"Name": "Environment", "Value": deployment.mwaa_name} in alarm["Dimensions"]

    body = json.loads(clients.cloudwatch.get_dashboard(DashboardName=stem)["DashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert "Warehouse lag (seconds)" in titles and "Rows loaded per warehouse table" in titles
    assert "Stage duration (seconds)" in titles and "Failed task tries (totesys_etl)" in titles


def test_a_second_apply_leaves_monitoring_alone(deployment: Deployment) -> None:
    created = first_apply(deployment)
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))

    assert deployment.run() == 0
    assert deployment.output[-1] == "no changes: everything is already as it should be"


def test_a_changed_threshold_updates_only_its_alarm_and_the_dashboard(
    deployment: Deployment,
) -> None:
    created = first_apply(deployment)
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))
    # the alarms live outside MWAA: they change without touching the environment
    assert deployment.run("--lag-alarm-minutes", "20") == 0
    stem = f"totesys-{deployment.env_name}"
    changes = [line for line in deployment.output if line.startswith(("cloudwatch", "sns", "mwaa"))]
    assert changes == [
        f"cloudwatch alarm {stem}-warehouse-lag: update",
        f"cloudwatch dashboard {stem}: update",  # its lag graph draws the threshold
    ]
    (lag,) = deployment.clients.cloudwatch.describe_alarms(AlarmNames=[f"{stem}-warehouse-lag"])[
        "MetricAlarms"
    ]
    assert lag["Threshold"] == 1200.0


def test_dry_run_lists_the_dashboard_the_alarms_and_the_topic(deployment: Deployment) -> None:
    not_found(deployment.stub)

    assert deployment.run("--dry-run") == 0

    plan = "\n".join(deployment.output)
    stem = f"totesys-{deployment.env_name}"
    assert f"would sns topic {stem}-alerts: create" in plan
    assert f"would sns topic {stem}-alerts: subscribe {ALERTS[0]} (email)" in plan
    assert f"would cloudwatch alarm {stem}-warehouse-lag: create" in plan
    assert f"would cloudwatch alarm {stem}-nothing-loaded: create" in plan
    assert f"would cloudwatch dashboard {stem}: create" in plan
    assert not deployment.clients.cloudwatch.describe_alarms(AlarmNamePrefix=stem)["MetricAlarms"]


def test_the_dashboard_and_alarms_name_only_this_environment() -> None:
    config = DeployConfig("prod", dead_man_minutes=45)
    text = json.dumps(dashboard(config))
    assert '"Environment", "totesys-prod"' in text and 'Environment=\\"totesys-prod\\"' in text
    assert "Totesys/Pipeline/totesys-prod" in text and '"Totesys/Pipeline",' not in text
    lag, dead, *_ = alarms(config, "arn:aws:sns:eu-west-2:1:totesys-prod-alerts")
    assert dead["Period"] == 45 * 60
    assert lag["Namespace"] == dead["Namespace"] == "Totesys/Pipeline/totesys-prod"
    assert lag["Dimensions"] == [{"Name": "Environment", "Value": "totesys-prod"},
                                 {"Name": "Stage", "Value": "freshness"}]  # fmt: skip


def test_a_dead_man_period_shorter_than_two_load_intervals_is_refused(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    # loads every 90 minutes would leave 60-minute periods without one: always firing
    assert deployment.run("--option", "totesys.load_every_minutes=90") == 1
    assert capsys.readouterr().err == (
        "error: --dead-man-minutes 60 is less than twice totesys.load_every_minutes=90: the "
        "alarm would fire between loads; give at least 180\n"
    )
    assert deployment.sent == {} and deployment.buckets() == set()
    expect_create(deployment)
    assert deployment.run("--option", "totesys.load_every_minutes=90",
                          "--dead-man-minutes", "180") == 0  # fmt: skip


def test_the_topic_is_encrypted_with_a_key_cloudwatch_may_use_and_only_its_alarms_publish(
    deployment: Deployment,
) -> None:
    first_apply(deployment)
    clients, stem = deployment.clients, f"totesys-{deployment.env_name}"
    (topic,) = [t["TopicArn"] for t in clients.sns.list_topics()["Topics"]
                if t["TopicArn"].endswith(f":{stem}-alerts")]  # fmt: skip
    attributes = clients.sns.get_topic_attributes(TopicArn=topic)["Attributes"]

    key = clients.kms.describe_key(KeyId=f"alias/{stem}-alerts")["KeyMetadata"]
    assert attributes["KmsMasterKeyId"] == key["Arn"]  # a customer key, not AWS's own
    key_policy = json.loads(
        clients.kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    )
    (for_cloudwatch,) = [s for s in key_policy["Statement"]
                         if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]  # fmt: skip
    assert set(for_cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}

    statements = {s["Sid"]: s for s in json.loads(attributes["Policy"])["Statement"]}
    publish = statements["AlarmsPublish"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    alarm_arns = {a["AlarmArn"] for a in
                  clients.cloudwatch.describe_alarms(AlarmNamePrefix=stem)["MetricAlarms"]}  # fmt: skip
    assert set(publish["Condition"]["ArnLike"]["aws:SourceArn"]) == alarm_arns
    assert statements["OnlyAlarmsPublish"]["Effect"] == "Deny"
    assert statements["DenyInsecureTransport"]["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    assert not [s for s in statements.values()
                if s["Effect"] == "Allow" and s["Principal"] == "*"]  # fmt: skip


def test_an_address_removed_from_alert_emails_is_unsubscribed(deployment: Deployment) -> None:
    created = first_apply(deployment)
    expect_update(deployment, created)  # the DAG's failure emails go to the new address too
    stem = f"totesys-{deployment.env_name}"

    assert deployment.run("--alert-emails", "on-call@terrifictotes.com") == 0
    assert f"sns topic {stem}-alerts: unsubscribe {ALERTS[0]} (no longer in --alert-emails)" in (
        deployment.output
    )
    clients = deployment.clients
    (topic,) = [t["TopicArn"] for t in clients.sns.list_topics()["Topics"]
                if t["TopicArn"].endswith(f":{stem}-alerts")]  # fmt: skip
    subscriptions = clients.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [s["Endpoint"] for s in subscriptions] == ["on-call@terrifictotes.com"]
