"""The settings tree: its sections (`sections`; tracking, zones, lines and events in `events`, the MQTT broker in
`mqtt`), the name rule (`names`), the one check of a section's values against its types (`fields`), the
rules between sections (`rules`), the YAML loader with the tokens from the environment (`loader`), and the
camera API's changes to the file's `sources:` (`sources_file`), written back whole (`rewrite`)."""
