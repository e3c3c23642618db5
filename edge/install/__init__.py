"""Installing the daemon as a hardened systemd service."""
