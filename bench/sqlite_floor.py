#!/usr/bin/env python3
"""The SQLite floor `make bench` prints beside each backfill: SQLite alone
(no hyp code, no parsing, no binding) copying one provider's rows from the
bench cache into a fresh cache with the same schema and pragmas, with
`INSERT OR IGNORE ... SELECT` in 50k-row transactions, then the final
`wal_checkpoint(TRUNCATE)`. It bounds what any writer of the contract's cache
can do on this machine.

Usage: sqlite_floor.py <source cache.db> <provider> <scratch dir>
Prints: rows seconds
"""

import os
import sqlite3
import sys
import time

BATCH = 50_000


def main():
    source, provider, scratch = sys.argv[1:4]
    target = os.path.join(scratch, "sqlite-floor.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.remove(target + suffix)
    schema = [
        sql
        for (sql,) in sqlite3.connect(source).execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
        )
    ]
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA page_size=65536")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-32768")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    for sql in schema:
        conn.execute(sql)
    conn.execute("ATTACH ? AS source", (source,))
    rowids = [
        rowid
        for (rowid,) in conn.execute(
            "SELECT rowid FROM source.ai_gateway_messages WHERE client_name = ? ORDER BY rowid",
            (provider,),
        )
    ]
    bounds = rowids[::BATCH] + [rowids[-1] + 1] if rowids else []
    started = time.monotonic()
    for low, high in zip(bounds, bounds[1:]):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT OR IGNORE INTO main.ai_gateway_messages SELECT * FROM source.ai_gateway_messages"
            " WHERE rowid >= ? AND rowid < ? AND client_name = ? ORDER BY rowid",
            (low, high, provider),
        )
        conn.execute("COMMIT")
    conn.execute("PRAGMA main.wal_checkpoint(TRUNCATE)")
    seconds = time.monotonic() - started
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.remove(target + suffix)
    print(f"{len(rowids)} {seconds:.3f}")


if __name__ == "__main__":
    main()
