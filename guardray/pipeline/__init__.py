"""The end-to-end pipeline job's configuration and stage bookkeeping."""
