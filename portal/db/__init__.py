"""Database layer: declarative base, portable types, engine and session factory, all tables.

Every model and migration runs on SQLite, PostgreSQL and MariaDB/MySQL; the tests prove it on all
three. What MariaDB/MySQL needs from code and migrations (the engine and ``portal migrate`` already
set READ COMMITTED, UTC, strict mode, utf8mb4 and a code-point collation):

- Column types from :mod:`portal.db.types`: ``DateTimeUTC`` (``DATETIME(6)``), ``Double`` not
  ``Float``, ``Blob`` not ``LargeBinary``, ``LongText`` (or ``long_string(n)`` over ~1,000
  characters) not ``Text``/``String(10000)`` for anything that can exceed 64 KiB, ``Money``, ``JsonB``.
  A migration must use the same types as the model (autogenerate does); the models-vs-migrations test
  fails on MariaDB otherwise.
- Indexed ``VARCHAR`` columns: at most 768 characters in one index (3,072 bytes, 4 a character);
  ``TEXT``/``BLOB``/JSON columns cannot be indexed or unique.
- A dialect-specific statement needs a MySQL branch: upserts with
  ``sqlalchemy.dialects.mysql.insert(...).on_duplicate_key_update(...)`` (see ``portal.spend.writer``).
  No ``NULLS FIRST/LAST``, no ``LIMIT`` inside an ``IN (subquery)`` (select the ids, then delete them;
  or ``delete(...).with_dialect_options(mysql_limit=n)``), no ``RETURNING`` on ``UPDATE``.
- Bind datetimes through a typed column (``Model.created_at < moment``): an untyped ``text()``
  parameter loses its time zone on MariaDB (asyncmy drops it without converting to UTC).
- ``SUM``/``AVG`` of integer columns come back as ``Decimal`` on MariaDB (``SUM`` of a ``BIGINT``
  on PostgreSQL too): convert with ``int()``/``float()`` before putting them in a response.
- Python-side defaults (``default=utcnow``), not server ``now()``: ``NOW()`` has no microseconds.
- DDL is not transactional on MariaDB/MySQL: a migration that fails half-way stays half-applied.
  ``downgrade()`` drops tables without first dropping indexes that back foreign keys (MariaDB refuses).
- Hash or compare JSON documents after loading them (PostgreSQL's JSONB reorders keys; MariaDB keeps
  the text as sent), never as stored text.
"""
