//! The local SQLite cache (`S/cache/cache.db`): schema, the writer thread,
//! `imported_files`, and read-only queries.
