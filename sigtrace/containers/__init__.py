"""Container identity: which container and pod a host process is in (cgroups → runtime records)."""
