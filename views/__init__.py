"""The DuckDB store: schema and its migrations, the daily totals, and the SQL views people query."""
