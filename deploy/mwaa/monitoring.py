"""Watching the pipeline from outside Airflow: an SNS topic with the alert addresses, a
CloudWatch dashboard and three alarms, made idempotent like the rest of the deployment.

Two alarms watch the metrics the pipeline itself publishes (etl/ops/metrics.py) in this
environment's own namespace, `Totesys/Pipeline/<prefix>-<env>` (only this environment's
role may publish there), dimension Environment:

- **lag**: the oldest source change not yet in the warehouse has waited longer than the
  threshold (30 minutes: the brief's promise) in 2 of 3 five-minute periods. Missing data
  is ignored: freshness reports nothing while ingest or transform fail, and that silence
  must not read as a recovery; the dead-man's switch covers silence.
- **dead man's switch**: no successful load for N minutes (at least twice the DAG's load
  interval). Missing data counts as breaching, so it fires when nothing reports at all: the
  environment down, the scheduler stuck, the DAG paused or broken at import.

The third watches MWAA's own `SchedulerHeartbeat` (namespace AmazonMWAA): no heartbeat for
10 minutes, missing data breaching. All notify the topic on alarm and on recovery; each
address confirms its subscription once, from the email AWS sends it.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from deploy.mwaa.aws import error_code, is_not_found
from deploy.mwaa.config import DAG_ID, PROJECT_TAG, DeployConfig, DeployError
from deploy.mwaa.plan import Plan
from etl.tables import ALL_TABLES
from etl.warehouse import WAREHOUSE_TABLES

PERIOD = 300  # seconds: the DAG runs every 5 minutes
LAG_PERIODS, LAG_DATAPOINTS = 3, 2  # the lag alarm: 2 breaching 5-minute periods of 3
SCHEDULER_PERIODS = 2  # the heartbeat alarm: 10 minutes without one
MWAA_NAMESPACE = "AmazonMWAA"  # MWAA's own environment metrics
PENDING = "PendingConfirmation"  # SNS's SubscriptionArn until the address confirms


def topic_name(config: DeployConfig) -> str:
    return f"{config.name_stem}-alerts"


def lag_alarm_name(config: DeployConfig) -> str:
    return f"{config.name_stem}-warehouse-lag"


def dead_man_alarm_name(config: DeployConfig) -> str:
    return f"{config.name_stem}-nothing-loaded"


def dashboard_name(config: DeployConfig) -> str:
    return config.name_stem


def _dimensions(config: DeployConfig, stage: str, **more: str) -> list[dict[str, str]]:
    pairs = {"Environment": config.mwaa_name, "Stage": stage, **more}
    return [{"Name": k, "Value": v} for k, v in pairs.items()]


def scheduler_alarm_name(config: DeployConfig) -> str:
    return f"{config.name_stem}-scheduler-heartbeat"


def check_dead_man(config: DeployConfig, load_every_minutes: int) -> None:
    """The dead-man's period must hold a load even when one is a little late: at least twice
    the DAG's load interval, or the alarm fires between loads (and never clears)."""
    needed = 2 * load_every_minutes
    if config.dead_man_minutes < needed:
        raise DeployError(
            f"--dead-man-minutes {config.dead_man_minutes} is less than twice "
            f"totesys.load_every_minutes={load_every_minutes}: the alarm would fire between "
            f"loads; give at least {needed}"
        )


def alarms(config: DeployConfig, topic_arn: str) -> list[dict[str, Any]]:
    """The three alarms, as put_metric_alarm takes them."""
    return [
        _lag_alarm(config, topic_arn),
        _dead_man_alarm(config, topic_arn),
        _scheduler_alarm(config, topic_arn),
    ]


def _common(topic_arn: str) -> dict[str, Any]:
    """What every alarm shares: one topic for alarm and recovery, one period unless said."""
    return {
        "ActionsEnabled": True,
        "AlarmActions": [topic_arn],
        "OKActions": [topic_arn],
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
    }


def _lag_alarm(config: DeployConfig, topic_arn: str) -> dict[str, Any]:
    """A source change waited longer than the lag limit to reach the warehouse."""
    return {
        **_common(topic_arn),
        "Namespace": config.metrics_namespace,
        "AlarmName": lag_alarm_name(config),
        "AlarmDescription": (
            f"totesys {config.mwaa_name}: a source change has waited more than "
            f"{config.lag_alarm_minutes} minutes to reach the warehouse "
            "(docs/operations.md: warehouse lag)"
        ),
        "MetricName": "WarehouseLagSeconds",
        "Dimensions": _dimensions(config, "freshness"),
        "Statistic": "Maximum",
        "Period": PERIOD,
        "Threshold": float(config.lag_alarm_minutes * 60),
        "ComparisonOperator": "GreaterThanThreshold",
        # freshness reports nothing while ingest or transform fail: silence must neither
        # clear the alarm (a false "recovery") nor raise it (the dead man's switch and
        # the heartbeat alarm cover silence); 2 of 3 periods, so one overrunning run
        # does not make it flap
        "EvaluationPeriods": LAG_PERIODS,
        "DatapointsToAlarm": LAG_DATAPOINTS,
        "TreatMissingData": "ignore",
    }


def _dead_man_alarm(config: DeployConfig, topic_arn: str) -> dict[str, Any]:
    """No load succeeded for the dead-man period, or nothing reported at all."""
    return {
        **_common(topic_arn),
        "Namespace": config.metrics_namespace,
        "AlarmName": dead_man_alarm_name(config),
        "AlarmDescription": (
            f"totesys {config.mwaa_name}: no successful load for "
            f"{config.dead_man_minutes} minutes, or nothing reporting at all "
            "(docs/operations.md: nothing loaded)"
        ),
        "MetricName": "LoadSucceeded",
        "Dimensions": _dimensions(config, "load"),
        "Statistic": "Sum",
        "Period": config.dead_man_minutes * 60,
        "Threshold": 1.0,
        "ComparisonOperator": "LessThanThreshold",
        "TreatMissingData": "breaching",
    }


def _scheduler_alarm(config: DeployConfig, topic_arn: str) -> dict[str, Any]:
    """MWAA's scheduler stopped sending heartbeats: nothing is being scheduled."""
    return {
        **_common(topic_arn),
        "AlarmName": scheduler_alarm_name(config),
        "AlarmDescription": (
            f"totesys {config.mwaa_name}: the Airflow scheduler sent no heartbeat for "
            f"{SCHEDULER_PERIODS * PERIOD // 60} minutes; nothing is being scheduled "
            "(docs/operations.md: scheduler heartbeat)"
        ),
        # MWAA's own metric (namespace AmazonMWAA), published by the environment itself
        "Namespace": MWAA_NAMESPACE,
        "MetricName": "SchedulerHeartbeat",
        "Dimensions": [
            {"Name": "Environment", "Value": config.mwaa_name},
            {"Name": "Function", "Value": "Scheduler"},
        ],
        "Statistic": "Sum",
        "Period": PERIOD,
        "EvaluationPeriods": SCHEDULER_PERIODS,
        "DatapointsToAlarm": SCHEDULER_PERIODS,
        "Threshold": 1.0,
        "ComparisonOperator": "LessThanThreshold",
        "TreatMissingData": "breaching",
    }


def _metric(config: DeployConfig, name: str, stage: str, **more: str) -> list[Any]:
    dims = [item for k, v in {"Environment": config.mwaa_name, "Stage": stage,
                              **more}.items() for item in (k, v)]  # fmt: skip
    return [config.metrics_namespace, name, *dims]


def dashboard(config: DeployConfig) -> dict[str, Any]:
    """Lag | rows loaded per table / stage durations | task failures (docs/operations.md
    shows the layout)."""
    env, region = config.mwaa_name, config.region

    def widget(x: int, y: int, title: str, metrics: list[Any], stat: str, **extra: Any) -> Any:
        return {
            "type": "metric", "x": x, "y": y, "width": 12, "height": 6,
            "properties": {"title": title, "region": region, "metrics": metrics, "stat": stat,
                           "period": PERIOD, "view": "timeSeries", **extra},
        }  # fmt: skip

    lag_line = {"label": f"{config.lag_alarm_minutes} min", "value": config.lag_alarm_minutes * 60}
    failures = (
        f'SEARCH(\'{{"{config.metrics_namespace}",Environment,Stage,Outcome}} MetricName="TaskOutcome" '
        f'Outcome="failed" Environment="{env}"\', \'Sum\', {PERIOD})'
    )
    return {
        "widgets": [
            widget(0, 0, "Warehouse lag (seconds)",
                   [_metric(config, "WarehouseLagSeconds", "freshness")], "Maximum",
                   annotations={"horizontal": [lag_line]}),
            widget(12, 0, "Successful loads", [_metric(config, "LoadSucceeded", "load")], "Sum"),
            widget(0, 6, "Rows loaded per warehouse table",
                   [_metric(config, "RowsLoaded", "load", Table=t) for t in WAREHOUSE_TABLES],
                   "Sum", stacked=True),
            widget(12, 6, "Stage duration (seconds)",
                   [_metric(config, "StageSeconds", s) for s in ("ingest", "transform", "load")],
                   "Maximum"),
            widget(0, 12, "Rows extracted per source table",
                   [_metric(config, "RowsExtracted", "ingest", Table=t) for t in ALL_TABLES],
                   "Sum", stacked=True),
            widget(12, 12, f"Failed task tries ({DAG_ID})",
                   [[{"expression": failures, "id": "failed", "label": ""}]], "Sum"),
            widget(0, 18, "Batches waiting",
                   [_metric(config, "BatchesPending", s) for s in ("transform", "load")],
                   "Maximum"),
            widget(12, 18, "Reconcile: tables differing",
                   [_metric(config, "ReconcileDifferences", "reconcile")], "Maximum"),
        ]
    }  # fmt: skip


def alarm_arn(config: DeployConfig, account: str, name: str) -> str:
    return f"arn:aws:cloudwatch:{config.region}:{account}:alarm:{name}"


def key_alias(config: DeployConfig) -> str:
    return f"alias/{config.name_stem}-alerts"


def key_policy(account: str) -> dict[str, Any]:
    """The account administers the key (KMS's default statement, without which nobody
    could); CloudWatch may use it, as it must to publish to an encrypted topic."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministers", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow",
         "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"},
    ]}  # fmt: skip


def topic_policy(config: DeployConfig, account: str, topic_arn: str) -> dict[str, Any]:
    """Only this environment's alarms publish (CloudWatch, with their ARNs as source), only
    over TLS; the account manages the topic. Publishing by anyone else, a person with
    sns:Publish in their IAM policy included, is denied, so nobody can send a fake alert
    or a fake recovery."""
    alarms_arns = [alarm_arn(config, account, name) for name in
                   (lag_alarm_name(config), dead_man_alarm_name(config), scheduler_alarm_name(config))]  # fmt: skip
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountManages", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:Subscribe",
                    "SNS:ListSubscriptionsByTopic", "SNS:DeleteTopic"],
         "Resource": topic_arn},
        {"Sid": "AlarmsPublish", "Effect": "Allow",
         "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "SNS:Publish",
         "Resource": topic_arn,
         "Condition": {"ArnLike": {"aws:SourceArn": alarms_arns},
                       "StringEquals": {"aws:SourceAccount": account}}},
        {"Sid": "OnlyAlarmsPublish", "Effect": "Deny", "Principal": "*", "Action": "SNS:Publish",
         "Resource": topic_arn,
         "Condition": {"StringNotEqualsIfExists": {
             "aws:PrincipalServiceName": "cloudwatch.amazonaws.com"}}},
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "SNS:Publish",
         "Resource": topic_arn, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}  # fmt: skip


def ensure_key(kms: Any, config: DeployConfig, account: str, plan: Plan) -> str:
    """The customer-managed key that encrypts the topic (AWS's own SNS key does not admit
    CloudWatch, so alarms could not publish); its ARN."""
    alias, wanted = key_alias(config), key_policy(account)
    try:
        key = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as error:
        if not is_not_found(error) and error_code(error) != "NotFoundException":
            raise
        key = None
    if key is None:
        created = plan.change(f"kms key {alias}", "create (encrypts the alert topic)", _create_key,
                              kms=kms, alias=alias, policy=wanted, project=config.prefix)  # fmt: skip
        return created or f"arn:aws:kms:{config.region}:{account}:{alias}"
    stored = kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    if json.loads(stored) != wanted:
        plan.change(f"kms key {alias}", "reset its key policy", kms.put_key_policy,
                    KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(wanted))  # fmt: skip
    return str(key["Arn"])


def _create_key(kms: Any, alias: str, policy: dict[str, Any], project: str) -> str:
    key = kms.create_key(Policy=json.dumps(policy), Description=f"SNS topic {alias[6:]}",
                         Tags=[{"TagKey": PROJECT_TAG, "TagValue": project}])["KeyMetadata"]  # fmt: skip
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return str(key["Arn"])


def ensure_topic(sns: Any, config: DeployConfig, account: str, key_arn: str, plan: Plan) -> str:
    """The alert topic's ARN, encrypted with our key and with our access policy."""
    name = topic_name(config)
    resource = f"sns topic {name}"
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                arn = str(topic["TopicArn"])
                found = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
                if found.get("KmsMasterKeyId") != key_arn:
                    plan.change(resource, "encrypt with its KMS key", sns.set_topic_attributes,
                                TopicArn=arn, AttributeName="KmsMasterKeyId",
                                AttributeValue=key_arn)  # fmt: skip
                wanted = topic_policy(config, account, arn)
                if json.loads(found.get("Policy") or "{}") != wanted:
                    plan.change(resource, "set its access policy (only its alarms publish)",
                                sns.set_topic_attributes, TopicArn=arn, AttributeName="Policy",
                                AttributeValue=json.dumps(wanted))  # fmt: skip
                return arn
    arn = f"arn:aws:sns:{config.region}:{account}:{name}"
    attributes = {"KmsMasterKeyId": key_arn,
                  "Policy": json.dumps(topic_policy(config, account, arn))}  # fmt: skip
    created = plan.change(resource, "create (encrypted; only its alarms publish)",
                          sns.create_topic, Name=name, Attributes=attributes)  # fmt: skip
    return str(created["TopicArn"]) if created else arn


def ensure_subscriptions(sns: Any, config: DeployConfig, topic_arn: str, plan: Plan) -> None:
    """An email subscription per --alert-emails address; an address no longer listed is
    unsubscribed. A subscription awaiting its confirmation gets no alerts: it is named."""
    resource = f"sns topic {topic_name(config)}"
    subscribed: dict[str, str] = {}  # address -> subscription ARN, or PendingConfirmation
    if not plan.dry_run or not any(c.resource == resource and c.action.startswith("create")
                                   for c in plan.changes):  # fmt: skip
        for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
            subscribed |= {s["Endpoint"]: s["SubscriptionArn"] for s in page["Subscriptions"]
                           if s["Protocol"] == "email"}  # fmt: skip
    for address in config.alert_emails:
        if address not in subscribed:
            plan.change(resource, f"subscribe {address} (email)",
                        sns.subscribe, TopicArn=topic_arn, Protocol="email", Endpoint=address)  # fmt: skip
        elif subscribed[address] == PENDING:
            plan.say(f"note: {address} has not confirmed its subscription to {topic_name(config)}"
                     " yet, so it gets no alerts: confirm from the email AWS sent")  # fmt: skip
    for address, arn in sorted(subscribed.items()):
        if address in config.alert_emails:
            continue
        if arn == PENDING:  # nothing to unsubscribe yet; AWS drops it unconfirmed
            plan.say(f"note: {address} is no longer in --alert-emails; its unconfirmed "
                     "subscription lapses on its own")  # fmt: skip
            continue
        plan.change(resource, f"unsubscribe {address} (no longer in --alert-emails)",
                    sns.unsubscribe, SubscriptionArn=arn)  # fmt: skip


def _current_alarm(cloudwatch: Any, name: str) -> dict[str, Any] | None:
    found = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm"])
    return found["MetricAlarms"][0] if found["MetricAlarms"] else None


def _differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    def canonical(value: Any) -> Any:
        if isinstance(value, list):
            return sorted((canonical(v) for v in value), key=json.dumps)
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items()}
        return value

    return any(canonical(current.get(k)) != canonical(v) for k, v in desired.items())


def ensure_alarms(cloudwatch: Any, config: DeployConfig, topic_arn: str, plan: Plan) -> None:
    for desired in alarms(config, topic_arn):
        current = _current_alarm(cloudwatch, desired["AlarmName"])
        if current is None:
            action = "create"
        elif _differs(current, desired):
            action = "update"
        else:
            continue
        plan.change(f"cloudwatch alarm {desired['AlarmName']}", action,
                    cloudwatch.put_metric_alarm, **desired)  # fmt: skip


def ensure_dashboard(cloudwatch: Any, config: DeployConfig, plan: Plan) -> None:
    name, body = dashboard_name(config), dashboard(config)
    try:
        current = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
    except cloudwatch.exceptions.ResourceNotFound:
        current = None
    if current == body:
        return
    plan.change(f"cloudwatch dashboard {name}", "create" if current is None else "update",
                cloudwatch.put_dashboard, DashboardName=name, DashboardBody=json.dumps(body))  # fmt: skip


def ensure_monitoring(
    cloudwatch: Any, sns: Any, kms: Any, config: DeployConfig, account: str, plan: Plan
) -> None:
    key_arn = ensure_key(kms, config, account, plan)
    topic_arn = ensure_topic(sns, config, account, key_arn, plan)
    ensure_subscriptions(sns, config, topic_arn, plan)
    ensure_alarms(cloudwatch, config, topic_arn, plan)
    ensure_dashboard(cloudwatch, config, plan)
