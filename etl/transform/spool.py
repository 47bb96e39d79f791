"""A parquet file written chunk by chunk to local disk and uploaded once complete.

Why not straight to S3: parquet's footer comes last and its size is unknown until the last
chunk, so the file is built on disk (compressed, far smaller than the rows) and then
streamed up in parts; memory holds one chunk and one part, never the table.
"""

from __future__ import annotations

import shutil
import tempfile
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from etl.storage import ObjectStore, WrittenObject

COMPRESSION = "zstd"
COPY_BUFFER = 1024 * 1024


class ParquetSpool:
    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows = 0
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - owned until close()
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self._file, schema, compression=COMPRESSION
        )

    def write(self, table: pa.Table) -> None:
        if table.num_rows and self._writer is not None:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def upload(self, store: ObjectStore, key: str) -> WrittenObject:
        """Finish the file and put it at `key`; an interrupted upload leaves no object."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._file.seek(0)
        with store.writer(key, "application/vnd.apache.parquet") as target:
            shutil.copyfileobj(self._file, target, COPY_BUFFER)
        assert target.result is not None
        return target.result

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._file.close()

    def __enter__(self) -> ParquetSpool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
