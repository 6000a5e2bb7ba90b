"""sigtrace: who sent which signal to which process, and what the kernel did with it."""

__version__ = "0.1.0"
SCHEMA = "sigtrace.v1"
