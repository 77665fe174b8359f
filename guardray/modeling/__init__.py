"""Models: resolving the embedded offline defaults and (later) encoder classifier heads."""
