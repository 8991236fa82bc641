"""Back office: ingest, store, fleet registry, rollout, reports."""
