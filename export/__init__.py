"""The chargeback export: periods and buckets, the Chargeback table, CSV files and their
schedule."""
