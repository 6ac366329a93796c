"""store: the results database and everything that reads or writes it.

Owns the schema and its migrations (schema.py), URLs and engines (engine.py), the run queue's
status changes (queue.py), the :class:`Store` API (store.py), moving runs between databases
(exchange.py, records.py), the provenance recorded with each run (provenance.py) and the
choices of ``lionbench tune`` (tunings.py). The
SQLAlchemy engine never leaves this package. May import only the core modules
(``lionbench.config``, ``lionbench.errors``); never torch, methods, data or training, so that
``status``, ``table`` and ``export`` stay fast.
"""

from lionbench.errors import StoreError

from .engine import DEFAULT_DB, create_db_engine, hide_password, resolve_url
from .schema import METRIC_COLUMNS, SCHEMA_VERSION, STATUSES, metadata
from .store import Store, check_database, stored_statuses

__all__ = ["DEFAULT_DB", "METRIC_COLUMNS", "SCHEMA_VERSION", "STATUSES", "Store", "StoreError",
           "check_database", "create_db_engine", "hide_password", "metadata", "resolve_url",
           "stored_statuses"]
