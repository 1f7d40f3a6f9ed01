"""The record of a run: one typed line per cell (`record`), the store that writes and reads it, merging shard folders."""
