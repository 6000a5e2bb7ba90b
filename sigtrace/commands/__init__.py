"""One module per subcommand; `options.py` holds what the trace and daemon commands share."""
