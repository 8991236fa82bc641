"""MQTT client wrapper, topics, payload schema, durable outbox."""
