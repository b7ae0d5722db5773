"""The results store: every evaluated cell, with the models and runs behind it (SQLite or PostgreSQL).

One module per job:

- :mod:`~robench.store.schema`: the tables, their version and migrations, what an existing file is;
- :mod:`~robench.store.engines`: connections (read-write, read-only, a server with timeouts);
- :mod:`~robench.store.results`: :class:`ResultsStore`, reading and writing cells, models and runs;
- :mod:`~robench.store.claims`: claims on cells and locks on models for many workers on one plan;
- :mod:`~robench.store.merge`: joining stores written apart;
- :mod:`~robench.store.bits` and :mod:`~robench.store.details`: how per-clip outcomes and attack details
  are encoded.
"""

from robench.store import claims
from robench.store.bits import pack_bits, unpack_bits
from robench.store.claims import worker_id
from robench.store.results import CellRow, ResultsStore

__all__ = ["CellRow", "ResultsStore", "claims", "pack_bits", "unpack_bits", "worker_id"]
