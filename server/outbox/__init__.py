"""The transactional outbox: effects of a committed change, delivered after the commit by
`haodian worker`, each handler at most once per event."""
