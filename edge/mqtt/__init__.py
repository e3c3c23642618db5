"""MQTT: the publisher that owns the connection, topics and payloads, the consumer client,
broker launchers and the bench."""
