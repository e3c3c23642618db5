"""emoedge device layer: labels, feature front end, manifests, runtimes, daemon, MQTT.

Imports only numpy, the inference runtimes and paho-mqtt; never torch, `distill` or `export`.
"""

__version__ = "0.1.0"
