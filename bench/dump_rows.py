#!/usr/bin/env python3
"""A canonical text dump of a cache's rows, to prove two builds of hyp write
the same cache (issue 15: the rows do not change).

Every column of `ai_gateway_messages`, in declared order, one row per line,
rows ordered by `part_id`. Each value is typed so that no two different
cells print alike: `N` (NULL), `i:<integer>`, `r:<float repr>`,
`t:<text as a JSON string>`, `b:<hex>`; cells are separated by tabs.

No column is excluded by default: every column of a row is a function of the
history files, the window and the environment (`HYP_NO_GIT`, the gateway
id), none of the import time. The import-time columns live in
`imported_files` (`imported_at`), which is not dumped. `--with-rowid`
prefixes each line with the row's rowid, the forward sink's sequence: equal
dumps then also prove the rows were committed in the same order.

Usage: dump_rows.py <cache.db> [--with-rowid] [--out FILE]
Prints the dump (or writes FILE) and, on stderr, rows and a SHA-256.
"""

import argparse
import hashlib
import json
import sqlite3
import sys


def cell(value):
    if value is None:
        return "N"
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, float):
        return f"r:{value!r}"
    if isinstance(value, bytes):
        return "b:" + value.hex()
    return "t:" + json.dumps(value, ensure_ascii=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--with-rowid", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    conn = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(ai_gateway_messages)")]
    select = ", ".join(["rowid"] + columns)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    digest = hashlib.sha256()
    rows = 0
    out_line = "\t".join(columns) + "\n"
    if args.with_rowid:
        out_line = "rowid\t" + out_line
    out.write(out_line)
    digest.update(out_line.encode())
    for row in conn.execute(f"SELECT {select} FROM ai_gateway_messages ORDER BY part_id"):
        cells = [cell(value) for value in (row if args.with_rowid else row[1:])]
        line = "\t".join(cells) + "\n"
        out.write(line)
        digest.update(line.encode())
        rows += 1
    if out is not sys.stdout:
        out.close()
    print(f"{rows} rows sha256 {digest.hexdigest()}", file=sys.stderr)


if __name__ == "__main__":
    main()
