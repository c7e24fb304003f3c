"""Studies: scripts that measure how well the labels carry what they claim (run as modules)."""
