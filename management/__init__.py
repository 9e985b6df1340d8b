"""FLOps management service: API, project store, pipeline, orchestrators."""
