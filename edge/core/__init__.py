"""What the device and the workstation share: labels, errors, the manifest contract,
the configuration and the fusion rule."""
