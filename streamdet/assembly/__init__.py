"""A run put together from the settings, cheap before slow: `plan` (checks that open nothing), then
`assemble` (what opens: listener, sources, broker, model), then `wiring` (lanes, outputs, stages); what a
reload did (`changes`)."""
