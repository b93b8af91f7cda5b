"""The settings tree: its sections (`sections`), the tracking, events and MQTT sections (`events`), and
the YAML loader (`loader`)."""
