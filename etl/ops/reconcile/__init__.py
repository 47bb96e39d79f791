"""Does the warehouse still agree with the source? One check per warehouse table.

The warehouse is compared with what it should hold *as of the last loaded batch*: the
source keeps changing while we look, so a row changed after that batch's watermark (less
the overlap, inside which late commits may still arrive) is left out on both sides. What
remains must agree exactly:

- each dimension (but `dim_date`): the source's current rows remodelled by transform's own
  builders, compared row by row on the natural id with the warehouse's rows;
- each fact: the distinct source ids and the newest version per id, compared as a count
  and an order-independent checksum computed by each database (nothing leaves the source
  unless they differ, and then only ids and timestamps to name examples); plus no version
  held twice in the warehouse;
- `dim_date`: every date a fact refers to is in the calendar.

Versions kept out of the warehouse on purpose are counted apart, not as differences: a
dimension row transform's builders set aside today (an impossible value, etl.transform.
rejects), and a fact version set aside by transform (open in the transform state) or
waiting in the warehouse for its dimension row (etl.load.waiting).

Cost on the source: one scan of each of the 11 tables (the dimension sources are read
whole, the large fact sources only aggregated); nothing is written anywhere.

The checks are in `dimensions.py` and `facts.py`, what they share in `verdict.py`; which
source tables feed which warehouse table is read from the declarations in etl/warehouse.py.
"""

from __future__ import annotations

from etl.config import Settings
from etl.database import connect
from etl.errors import EtlError
from etl.ingest.watermark import IngestState
from etl.load import ledger
from etl.load.target import Target
from etl.manifests import ingestion as ingestion_manifest
from etl.ops.reconcile.dimensions import check_calendar, check_dimensions
from etl.ops.reconcile.facts import check_fact, set_aside_facts
from etl.ops.reconcile.verdict import Reconciliation, TableCheck, horizons
from etl.storage import ObjectStore
from etl.warehouse import FACTS

__all__ = ["Reconciliation", "TableCheck", "reconcile"]


def loaded_state(settings: Settings, ingestion: ObjectStore) -> IngestState:
    """The ingestion state after the newest batch the warehouse holds."""
    with connect(settings.warehouse_db_url, "the warehouse") as conn:
        ledger.ensure_ledger(conn)
        batch_id = ledger.last_loaded(conn)
    if batch_id is None:
        return IngestState()
    manifest = ingestion_manifest.read(ingestion, batch_id)
    if manifest is None:
        raise EtlError(
            f"the warehouse's last batch {batch_id} has no ingestion manifest in "
            f"s3://{ingestion.bucket}; run `python -m etl doctor`"
        )
    return IngestState.from_json(manifest["state_after"])


def reconcile(
    settings: Settings, ingestion: ObjectStore, processed: ObjectStore | None = None
) -> Reconciliation:
    """Compare the warehouse with the source as of the last loaded batch; with `processed`,
    the fact versions transform set aside are counted apart too."""
    settings.require("totesys_db_url", "warehouse_db_url", "ingestion_bucket")
    state = loaded_state(settings, ingestion)
    horizon = horizons(state, settings.overlap)
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    with (
        connect(settings.totesys_db_url, "totesys") as source_conn,
        connect(settings.warehouse_db_url, "the warehouse") as warehouse_conn,
    ):
        source_conn.read_only = True
        checks = check_dimensions(source_conn, warehouse_conn, target, horizon)
        checks.append(check_calendar(warehouse_conn, target))
        aside = set_aside_facts(warehouse_conn, processed)
        checks += [
            check_fact(
                source_conn,
                warehouse_conn,
                target,
                fact,
                horizon[fact.sources[0].table],
                aside[fact.name],
            )
            for fact in FACTS
        ]
    return Reconciliation(state.batch_id, checks)
