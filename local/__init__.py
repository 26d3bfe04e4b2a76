"""The local stack: moto server, the API and the event-source pollers on loopback (never packaged)."""
