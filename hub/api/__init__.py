"""The hub's HTTP API: webhook ingress and health (the ops API joins later)."""
